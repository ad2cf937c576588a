"""The controller quorum's wiring helpers: committed reads, NOT_CONTROLLER answers, control
batches in the metadata log, held answers, the admin's re-routing rule."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.cluster.admin_client import not_controller as _not_controller
from kafkalab.controller.active import PendingReplies
from kafkalab.controller.quorum import (
    controller_id_of,
    metadata_fetch_error,
    not_controller_response,
    read_committed,
)
from kafkalab.controller.raft_log import InMemoryRaftLog, encode_data_batch, encode_leader_change
from kafkalab.metadata.image import MetadataImage, encode_record
from kafkalab.metadata.replay import apply_batches
from kafkalab.protocol.apis import (
    ZMQ_VERSIONS,
    decode_response,
    encode,
    request_class,
    response_class,
    schema_module,
)


def _value(record: dict) -> bytes:
    return encode_record(record)[1]


def _quorum_log() -> InMemoryRaftLog:
    """[0] LEADER_CHANGE, [1-2] two brokers registered, [3] LEADER_CHANGE, [4] a topic."""
    log = InMemoryRaftLog()
    log.append_as_leader(encode_leader_change(1, [1, 2, 3], [1, 2], 0), 1)
    log.append_as_leader(encode_data_batch([_value(
        {"type": "RegisterBrokerRecord", "broker_id": b, "broker_epoch": b, "endpoint": "tcp://x", "host": "h", "port": 1})
        for b in (1, 2)], 0), 1)
    log.append_as_leader(encode_leader_change(2, [1, 2, 3], [2, 3], 0), 2)
    log.append_as_leader(encode_data_batch([_value(
        {"type": "TopicRecord", "name": "orders", "topic_id": "00000000-0000-0000-0000-000000000001"})],
        0), 2)
    return log


def test_brokers_skip_leader_change_records_and_move_past_them() -> None:
    log = _quorum_log()
    image = MetadataImage()
    nxt = apply_batches(log.read(0, 1 << 20), image, 0)
    assert sorted(image.brokers) == [1, 2]
    assert "orders" in image.topics
    assert nxt == image.offset == log.log_end_offset == 5


def test_a_log_ending_in_a_leader_change_is_consumed_whole() -> None:
    # Otherwise the broker would fetch the same control batch for ever.
    log = _quorum_log()
    image = MetadataImage()
    apply_batches(read_committed(log.read(0, 1 << 20), 4), image, 0)
    assert image.offset == 4
    assert "orders" not in image.topics


@pytest.mark.parametrize("hw, expected_end", [(0, 0), (1, 1), (2, 1), (3, 3), (4, 4), (5, 5)])
def test_read_committed_stops_at_the_high_watermark_on_a_batch_boundary(hw: int, expected_end: int) -> None:
    log = _quorum_log()
    image = MetadataImage()
    apply_batches(read_committed(log.read(0, 1 << 20), hw), image, 0)
    assert image.offset == expected_end
    assert len(image.brokers) == (2 if expected_end >= 3 else 0)


@pytest.mark.parametrize("api_key", [19, 20, 43, 56, 62, 63, 67])
def test_not_controller_answers_encode_and_say_not_controller(api_key: int) -> None:
    version = ZMQ_VERSIONS[api_key]
    req_cls = request_class(api_key, version)
    request = None
    if api_key == 19:
        mod = schema_module(req_cls)
        request = req_cls(topics=(mod.CreatableTopic(name="t", num_partitions=1, replication_factor=1,
                                                     assignments=(), configs=()),),
                          timeout=datetime.timedelta(seconds=1))
    elif api_key == 20:
        mod = schema_module(req_cls)
        request = req_cls(topics=(mod.DeleteTopicState(name="t", topic_id=None),),
                          timeout=datetime.timedelta(seconds=1))
    resp = not_controller_response(api_key, version, request)
    again = decode_response(api_key, version, encode(resp))
    assert _not_controller(again, asked=1)


def test_an_unknown_api_gets_no_not_controller_answer() -> None:
    assert not_controller_response(0, ZMQ_VERSIONS[0], None) is None


def test_metadata_fetch_error_names_the_leader() -> None:
    resp = metadata_fetch_error(response_class(1, 12), leader_hint=3, epoch=7)
    part = decode_response(1, 12, encode(resp)).responses[0].partitions[0]
    assert part.error_code == ErrorCode.not_controller
    assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (3, 7)


def test_metadata_from_another_controller_means_ask_again() -> None:
    from kio.schema.metadata.v12 import response as md
    resp = md.MetadataResponse(throttle_time=datetime.timedelta(0), brokers=(), cluster_id="kafkalab",
                               controller_id=2, topics=())
    assert _not_controller(resp, asked=1)
    assert not _not_controller(resp, asked=2)


def test_held_answers_go_out_once_their_offset_is_committed() -> None:
    held = PendingReplies()
    held.add(4, "req-a", "a")  # type: ignore[arg-type]
    held.add(6, "req-b", "b")  # type: ignore[arg-type]
    assert held.release(4) == []
    assert held.release(5) == [("req-a", "a")]
    assert held.drop() == ["req-b"]
    assert held.release(100) == []


def test_controller_names_map_to_voter_ids() -> None:
    # The single controller is voter 0 of a one-voter quorum; it keeps the name "controller".
    assert [controller_id_of(n) for n in ("controller", "controller-2", "broker-1", "controller-x")] == [
        0, 2, None, None]
