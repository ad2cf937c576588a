"""The thin constructors build what the broker and clients decode, and walk it back."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.protocol import build
from kafkalab.protocol.apis import ZMQ_VERSIONS, api_key_of, decode_request, decode_response, encode


def wire(entity):
    """Through the codec, as a peer would see it."""
    api_key, version = api_key_of(entity)
    assert version == ZMQ_VERSIONS[api_key]
    decode = decode_request if type(entity).__name__.endswith("Request") else decode_response
    return decode(api_key, version, encode(entity))


def test_produce_request_carries_batches_per_partition() -> None:
    batches = {"orders": {0: b"batch-0", 3: b"batch-3"}, "audit": {1: None}}
    req = wire(build.produce_request(-1, 1500, batches, transactional_id="tx-1"))
    assert (req.acks, req.timeout, req.transactional_id) == (-1, datetime.timedelta(seconds=1.5), "tx-1")
    got = {t.name: {p.index: p.records for p in t.partition_data} for t in req.topic_data}
    assert got == batches


def test_produce_request_rejects_a_bad_acks() -> None:
    with pytest.raises(ValueError, match="acks must be 0, 1 or -1"):
        build.produce_request(2, 100, {})


def test_produce_response_round_trip_to_rows() -> None:
    rows = {
        "orders": {
            0: {"error_code": 0, "base_offset": 42, "log_start_offset": 7, "log_append_time_ms": 1_700_000_000_123, "error_message": None},
            1: {"error_code": ErrorCode.not_leader_or_follower, "base_offset": -1, "log_start_offset": -1, "log_append_time_ms": -1, "error_message": "moved"},
        }
    }  # fmt: skip
    assert build.produce_results(wire(build.produce_response(rows))) == rows


def test_fetch_request_positions() -> None:
    req = wire(build.fetch_request(
        {"orders": {0: 10, 1: {"fetch_offset": 5, "current_leader_epoch": 3, "last_fetched_epoch": 2, "log_start_offset": 1}}},
        replica_id=2, max_wait_ms=250, isolation_level=1, partition_max_bytes=4096,
    ))  # fmt: skip
    assert (req.replica_id, req.max_wait, req.isolation_level) == (2, datetime.timedelta(milliseconds=250), 1)
    p0, p1 = req.topics[0].partitions
    assert (p0.partition, p0.fetch_offset, p0.current_leader_epoch, p0.partition_max_bytes) == (0, 10, -1, 4096)
    assert (p1.fetch_offset, p1.current_leader_epoch, p1.last_fetched_epoch, p1.log_start_offset) == (5, 3, 2, 1)


def test_fetch_request_rejects_an_unknown_position_key() -> None:
    with pytest.raises(ValueError, match="fetch_offset"):
        build.fetch_request({"orders": {0: {"offset": 1}}})


def test_fetch_response_round_trip_to_rows() -> None:
    rows = {"orders": {
        0: {"error_code": 0, "high_watermark": 10, "last_stable_offset": 8, "log_start_offset": 0,
            "aborted_transactions": [(1000, 3)], "diverging_epoch": None, "current_leader": (1, 4),
            "preferred_read_replica": -1, "records": b"\x00" * 100},
        1: {"error_code": ErrorCode.fenced_leader_epoch, "high_watermark": -1, "last_stable_offset": -1,
            "log_start_offset": -1, "aborted_transactions": None, "diverging_epoch": (2, 17),
            "current_leader": (-1, -1), "preferred_read_replica": -1, "records": None},
    }}  # fmt: skip
    assert build.fetch_results(wire(build.fetch_response(rows))) == rows


def test_metadata_request_all_none_or_some_topics() -> None:
    assert wire(build.metadata_request(None)).topics is None
    assert wire(build.metadata_request([])).topics == ()
    assert [t.name for t in wire(build.metadata_request(["a", "b"])).topics] == ["a", "b"]
    with pytest.raises(TypeError, match=r"\['orders'\]"):
        build.metadata_request("orders")


def test_metadata_response_round_trip_to_rows() -> None:
    import uuid

    tid = uuid.uuid4()
    resp = wire(build.metadata_response(
        {1: ("127.0.0.1", 9001), 2: ("127.0.0.1", 9002)},
        {"orders": {0: {"leader_id": 1, "leader_epoch": 3, "replica_nodes": [1, 2], "isr_nodes": [1]}}},
        controller_id=1, cluster_id="lab", topic_ids={"orders": tid},
        topic_errors={"nope": ErrorCode.unknown_topic_or_partition},
    ))  # fmt: skip
    got = build.metadata_results(resp)
    assert got["brokers"] == {1: ("127.0.0.1", 9001), 2: ("127.0.0.1", 9002)}
    assert (got["controller_id"], got["cluster_id"]) == (1, "lab")
    assert got["topics"]["orders"]["topic_id"] == tid
    assert got["topics"]["orders"]["partitions"][0] == {
        "error_code": 0, "leader_id": 1, "leader_epoch": 3, "replica_nodes": [1, 2],
        "isr_nodes": [1], "offline_replicas": [],
    }  # fmt: skip
    assert got["topics"]["nope"]["error_code"] == ErrorCode.unknown_topic_or_partition
    assert got["topics"]["nope"]["partitions"] == {}


def test_list_offsets_round_trip() -> None:
    req = wire(build.list_offsets_request({"orders": {0: build.EARLIEST_TIMESTAMP, 1: build.LATEST_TIMESTAMP}}, isolation_level=1))
    assert {p.partition_index: p.timestamp for p in req.topics[0].partitions} == {0: -2, 1: -1}
    rows = {"orders": {0: {"error_code": 0, "offset": 12, "timestamp": -1, "leader_epoch": 2}}}
    assert build.list_offsets_results(wire(build.list_offsets_response(rows))) == rows


def test_error_codes_are_checked() -> None:
    with pytest.raises(ValueError, match="not a Kafka error code"):
        build.list_offsets_response({"t": {0: {"error_code": 12345}}})
