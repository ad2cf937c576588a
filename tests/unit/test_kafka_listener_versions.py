"""Version conversion for the Kafka listener (kafkalab.protocol.versions)."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.protocol.apis import (
    ZMQ_VERSIONS,
    decode_request,
    encode,
    request_class,
    response_class,
)
from kafkalab.protocol.versions import (
    convert_default,
    convertible_versions,
    request_to,
    response_to,
)


def _mod(cls: type):
    return __import__(cls.__module__, fromlist=["_"])


ADVERTISABLE = [(k, v) for k, lab in ZMQ_VERSIONS.items() for v in range(*convertible_versions(k, lab))]


@pytest.mark.parametrize("api_key, version", ADVERTISABLE)
def test_every_advertisable_version_converts_to_the_lab_version_and_back(api_key: int, version: int) -> None:
    lab = ZMQ_VERSIONS[api_key]
    req = convert_default(request_class(api_key, version))
    up = request_to(req, lab)
    assert type(up) is request_class(api_key, lab)
    # What reaches the lab encodes and decodes (no value a lab process could not read).
    assert decode_request(api_key, lab, encode(up)) == up
    down = response_to(convert_default(response_class(api_key, lab)), version)
    assert type(down) is response_class(api_key, version)
    encode(down)


def test_fetch_v4_fields_survive_the_trip_and_new_ones_get_kafkas_defaults() -> None:
    v4 = request_class(1, 4)
    m = _mod(v4)
    req = v4(max_wait=datetime.timedelta(milliseconds=500), min_bytes=7, max_bytes=1000, isolation_level=1,
             topics=(m.FetchTopic(topic="t", partitions=(m.FetchPartition(partition=2, fetch_offset=42,
                                                                          partition_max_bytes=99),)),))
    up = request_to(req, 12)
    p = up.topics[0].partitions[0]
    assert (up.min_bytes, up.max_bytes, up.isolation_level, up.topics[0].topic) == (7, 1000, 1, "t")
    assert (p.partition, p.fetch_offset, p.partition_max_bytes) == (2, 42, 99)
    assert p.current_leader_epoch == -1  # "no epoch known": the leader skips the fencing check
    assert up.forgotten_topics_data == () and up.replica_id == -1


def test_find_coordinator_single_key_versions_are_reshaped() -> None:
    req = request_class(10, 2)(key="billing", key_type=0)
    assert request_to(req, 4).coordinator_keys == ("billing",)
    v4 = response_class(10, 4)
    m = _mod(v4)
    resp = v4(throttle_time=datetime.timedelta(0), coordinators=(m.Coordinator(
        key="billing", node_id=2, host="127.0.0.1", port=9093, error_code=ErrorCode.none, error_message=None),))
    down = response_to(resp, 2)
    assert (down.node_id, down.host, down.port, down.error_code) == (2, "127.0.0.1", 9093, ErrorCode.none)


def test_offset_fetch_single_group_versions_are_reshaped() -> None:
    v5 = request_class(9, 5)
    m5 = _mod(v5)
    req = v5(group_id="g", topics=(m5.OffsetFetchRequestTopic(name="t", partition_indexes=(0, 1)),))
    up = request_to(req, 8)
    assert [g.group_id for g in up.groups] == ["g"]
    assert [(t.name, tuple(t.partition_indexes)) for t in up.groups[0].topics] == [("t", (0, 1))]
    assert request_to(v5(group_id="g", topics=None), 8).groups[0].topics is None  # all topics
    r8 = response_class(9, 8)
    m8 = _mod(r8)
    part = m8.OffsetFetchResponsePartitions(partition_index=1, committed_offset=17, committed_leader_epoch=-1,
                                            metadata="", error_code=ErrorCode.none)
    resp = r8(throttle_time=datetime.timedelta(0), groups=(m8.OffsetFetchResponseGroup(
        group_id="g", topics=(m8.OffsetFetchResponseTopics(name="t", partitions=(part,)),),
        error_code=ErrorCode.not_coordinator),))
    down = response_to(resp, 5)
    assert down.error_code == ErrorCode.not_coordinator
    assert down.topics[0].partitions[0].committed_offset == 17


def test_leave_group_and_delete_topics_old_forms_are_reshaped() -> None:
    assert [m.member_id for m in request_to(request_class(13, 1)(group_id="g", member_id="m-1"), 5).members] \
        == ["m-1"]
    dt = request_class(20, 3)(topic_names=("a", "b"), timeout=datetime.timedelta(seconds=5))
    assert [t.name for t in request_to(dt, 6).topics] == ["a", "b"]


def test_metadata_v0_empty_list_is_all_topics_but_not_later() -> None:
    assert request_to(request_class(3, 0)(topics=()), 12).topics is None
    v1 = request_to(request_class(3, 1)(topics=()), 12)
    assert v1.topics == ()
    assert v1.allow_auto_topic_creation is True  # before v4 brokers always auto-created


def test_newer_versions_than_the_lab_are_not_offered() -> None:
    assert convertible_versions(1, ZMQ_VERSIONS[1]) == (4, 12)  # v13+ name topics by id
    assert convertible_versions(0, ZMQ_VERSIONS[0])[0] == 3  # RecordBatch v2 from Produce v3


def test_convert_keeps_values_not_just_types() -> None:
    v12 = response_class(3, 12)
    m = _mod(v12)
    resp = v12(throttle_time=datetime.timedelta(0), brokers=(m.MetadataResponseBroker(
        node_id=3, host="h", port=1234, rack="r"),), cluster_id="c", controller_id=3, topics=())
    down = response_to(resp, 1)
    assert dataclasses.asdict(down.brokers[0]) == {"node_id": 3, "host": "h", "port": 1234, "rack": "r"}
