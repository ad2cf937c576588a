"""The lab consumer's KIP-848 member as a pure machine: step(now) out, responses in."""

from __future__ import annotations

import datetime
import uuid
from types import SimpleNamespace as NS

from kio.schema.errors import ErrorCode

from kafkalab.client.config import consumer_config
from kafkalab.client.consumer_group_member import ConsumerGroupMember

TID = uuid.UUID(int=9)


def member(**cfg):
    m = ConsumerGroupMember("g", consumer_config({"group.id": "g", "group.protocol": "consumer", **cfg}), "c1")
    m.subscribe(["orders"], 0.0)
    return m


def ready(m, now=0.0):
    (node, req, handler), = m.step(now)
    handler(NS(coordinators=[NS(error_code=ErrorCode.none, node_id=1)]), now)
    m.names[str(TID)] = "orders"


def answer(code=ErrorCode.none, epoch=1, parts=None, message=None):
    assignment = None if parts is None else NS(topic_partitions=[NS(topic_id=TID, partitions=parts)])
    return NS(error_code=code, error_message=message, member_epoch=epoch,
              heartbeat_interval=datetime.timedelta(milliseconds=100), assignment=assignment)


def beat(m, now, resp):
    sends = m.step(now)
    assert len(sends) == 1
    _, req, handler = sends[0]
    handler(resp, now)
    return req


def test_join_assign_then_revoke_only_after_the_application_let_go():
    m = member()
    ready(m)
    req = beat(m, 0.0, answer(epoch=1, parts=[0, 1, 2]))
    assert req.member_epoch == 0 and req.subscribed_topic_names == ("orders",) and m.member_id
    assert [e[:2] for e in m.events] == [("assign", [("orders", 0), ("orders", 1), ("orders", 2)])]
    m.app_done = m.seq
    req = beat(m, 0.2, answer(epoch=2, parts=[0, 1]))  # the broker takes partition 2 away
    assert req.member_epoch == 1 and req.subscribed_topic_names is None
    assert m.events[-1][:2] == ("revoke", [("orders", 2)])
    # until the application has handled the revoke, the member still reports partition 2
    req = beat(m, 0.4, answer(epoch=2))
    assert sorted(req.topic_partitions[0].partitions) == [0, 1, 2]
    m.app_done = m.seq
    req = beat(m, 0.41, answer(epoch=2))  # at once, not a heartbeat interval later
    assert sorted(req.topic_partitions[0].partitions) == [0, 1]


def test_a_fenced_member_loses_its_partitions_and_rejoins_with_epoch_0():
    m = member()
    ready(m)
    beat(m, 0.0, answer(epoch=1, parts=[0]))
    beat(m, 0.2, answer(code=ErrorCode.fenced_member_epoch, epoch=-1, message="stale"))
    assert m.events[-1][:2] == ("lost", [("orders", 0)]) and m.generation == 0
    req = beat(m, 0.2, answer(epoch=3, parts=[0]))
    assert req.member_epoch == 0 and req.subscribed_topic_names == ("orders",)


def test_an_unknown_assignor_is_fatal_with_the_brokers_words():
    m = member(**{"group.remote.assignor": "sticky"})
    ready(m)
    beat(m, 0.0, answer(code=ErrorCode.unsupported_assignor, epoch=-1,
                        message="assignor 'sticky' is not one of group.consumer.assignors"))
    assert m.error is not None and "group.consumer.assignors" in str(m.error)
    assert m.step(1.0) == []


def test_an_unsupported_group_protocol_names_the_choices():
    import pytest

    from kafkalab.config import ConfigError
    with pytest.raises(ConfigError, match="classic"):
        consumer_config({"group.id": "g", "group.protocol": "eager"})
