"""The share consumer's heartbeat member (ShareGroupHeartbeat, KIP-932): its coordinator lookup
and what each coordinator error means, with retry.backoff.ms between tries."""

from __future__ import annotations

import datetime
from types import SimpleNamespace as NS

import pytest

from kafkalab.client.share_consumer import ShareGroupMember
from kafkalab.protocol.errors import ErrorCode, KafkaError

BACKOFF = 0.25


def only(sends):
    (send,) = sends
    return send


def joined() -> ShareGroupMember:
    m = ShareGroupMember("sg", "m-1", retry_backoff_s=BACKOFF)
    m.topics = ["t"]
    node, fc, on_found = only(m.step(0.0))
    assert node is None and fc.coordinator_keys == ("sg",)
    on_found(NS(coordinators=[NS(error_code=ErrorCode.none, node_id=2)]), 0.0)
    node, hb, on_beat = only(m.step(0.0))
    assert node == 2 and hb.member_epoch == 0 and hb.subscribed_topic_names == ("t",)
    on_beat(NS(error_code=ErrorCode.none, error_message=None, member_epoch=3,
               heartbeat_interval=datetime.timedelta(seconds=1), assignment=None), 0.0)
    assert m.epoch == 3
    return m


def test_a_failed_lookup_is_tried_again_after_retry_backoff():
    m = ShareGroupMember("sg", "m-1", retry_backoff_s=BACKOFF)
    m.topics = ["t"]
    _, _, on_found = only(m.step(0.0))
    on_found(NS(coordinators=[NS(error_code=ErrorCode.coordinator_not_available, node_id=-1)]), 0.0)
    assert m.step(BACKOFF / 2) == []
    node, fc, _ = only(m.step(BACKOFF))
    assert node is None and type(fc).__name__ == "FindCoordinatorRequest"


def test_a_coordinator_still_loading_is_asked_again_not_looked_up_again():
    m = joined()
    _, _, on_beat = only(m.step(1.0))
    on_beat(NS(error_code=ErrorCode.coordinator_load_in_progress, error_message=None), 1.0)
    assert m.coordinator == 2 and m.step(1.0 + BACKOFF / 2) == []
    node, hb, _ = only(m.step(1.0 + BACKOFF))
    assert node == 2 and hb.member_epoch == 3


@pytest.mark.parametrize("error", [ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                                   "connection lost"])
def test_a_moved_or_lost_coordinator_is_looked_up_again_keeping_the_epoch(error):
    m = joined()
    _, _, on_beat = only(m.step(1.0))
    if error == "connection lost":
        on_beat(KafkaError(ErrorCode.network_exception, "broker 2 is gone"), 1.0)
    else:
        on_beat(NS(error_code=error, error_message=None), 1.0)
    assert m.coordinator is None and m.epoch == 3 and m.step(1.0 + BACKOFF / 2) == []
    node, fc, _ = only(m.step(1.0 + BACKOFF))
    assert node is None and type(fc).__name__ == "FindCoordinatorRequest"
