"""The message vocabulary: every api used on the ZeroMQ path encodes and decodes losslessly."""

from __future__ import annotations

import dataclasses
import datetime
import pickle
import types
import typing
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records

from kafkalab.protocol import apis
from kafkalab.protocol.apis import (
    ZMQ_VERSIONS,
    api_name,
    decode_request,
    decode_response,
    encode,
    request_class,
    response_class,
    supported_versions,
)
from kafkalab.protocol.errors import KafkaError, MalformedMessageError, UnsupportedApiError

st.register_type_strategy(Records, st.binary(max_size=64))

EXPECTED_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
    13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics", 21: "DeleteRecords",
    22: "InitProducerId", 23: "OffsetForLeaderEpoch", 24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn", 26: "EndTxn", 27: "WriteTxnMarkers", 28: "TxnOffsetCommit",
    32: "DescribeConfigs", 33: "AlterConfigs", 35: "DescribeLogDirs", 37: "CreatePartitions",
    42: "DeleteGroups", 43: "ElectLeaders", 44: "IncrementalAlterConfigs", 47: "OffsetDelete",
    61: "DescribeProducers", 65: "DescribeTransactions", 66: "ListTransactions", 52: "Vote",
    53: "BeginQuorumEpoch", 54: "EndQuorumEpoch", 55: "DescribeQuorum", 56: "AlterPartition",
    59: "FetchSnapshot",
    60: "DescribeCluster", 62: "BrokerRegistration", 63: "BrokerHeartbeat",
    64: "UnregisterBroker", 67: "AllocateProducerIds", 68: "ConsumerGroupHeartbeat",
    69: "ConsumerGroupDescribe", 76: "ShareGroupHeartbeat", 77: "ShareGroupDescribe", 78: "ShareFetch", 79: "ShareAcknowledge",
    84: "ReadShareGroupState", 85: "WriteShareGroupState",
}  # fmt: skip


def minimal(cls: type) -> object:
    """The smallest valid instance of a kio dataclass: defaults, zeros, empty collections."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        values[f.name] = _zero(hints[f.name])
    return cls(**values)


def _zero(hint: object) -> object:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return None if type(None) in typing.get_args(hint) else _zero(typing.get_args(hint)[0])
    if origin is tuple:
        return ()
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            return minimal(hint)
        if issubclass(hint, ErrorCode):
            return ErrorCode.none
        if issubclass(hint, bool):
            return False
        if issubclass(hint, int):
            return 0
        if issubclass(hint, float):
            return 0.0
        if issubclass(hint, str):
            return ""
        if issubclass(hint, bytes):
            return b""
        if issubclass(hint, datetime.timedelta):
            return datetime.timedelta(0)
        if issubclass(hint, uuid.UUID):
            return uuid.UUID(int=1)
    raise AssertionError(f"no zero value for {hint!r}")


ZMQ_APIS = sorted(ZMQ_VERSIONS.items())


def test_zmq_versions_cover_the_apis_the_lab_speaks() -> None:
    assert {k: api_name(k) for k in ZMQ_VERSIONS} == EXPECTED_NAMES


@pytest.mark.parametrize(("api_key", "version"), ZMQ_APIS, ids=[EXPECTED_NAMES[k] for k, _ in ZMQ_APIS])
def test_minimal_request_and_response_round_trip(api_key: int, version: int) -> None:
    req_cls, resp_cls = request_class(api_key, version), response_class(api_key, version)
    assert (req_cls.__api_key__, req_cls.__version__) == (api_key, version)
    assert (resp_cls.__api_key__, resp_cls.__version__) == (api_key, version)
    # The quorum core speaks Begin/EndQuorumEpoch v0, pre-flexible; OffsetDelete has only v0.
    if api_key not in (47, 53, 54):
        assert req_cls.__flexible__ and resp_cls.__flexible__, "the ZeroMQ path uses flexible versions"
    request, response = minimal(req_cls), minimal(resp_cls)
    assert decode_request(api_key, version, encode(request)) == request
    assert decode_response(api_key, version, encode(response)) == response


@pytest.mark.slow
@pytest.mark.parametrize(("api_key", "version"), ZMQ_APIS, ids=[EXPECTED_NAMES[k] for k, _ in ZMQ_APIS])
def test_random_messages_round_trip(api_key: int, version: int) -> None:
    @settings(max_examples=5, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.from_type(request_class(api_key, version)), st.from_type(response_class(api_key, version)))
    def check(request: object, response: object) -> None:
        assert decode_request(api_key, version, encode(request)) == request
        assert decode_response(api_key, version, encode(response)) == response

    check()


def test_classes_are_cached() -> None:
    assert request_class(3, 12) is request_class(3, 12)
    assert response_class(3, 12) is response_class(3, 12)


def test_other_versions_are_available_for_the_kafka_listener() -> None:
    assert 0 in supported_versions(3) and 12 in supported_versions(3)
    assert request_class(3, 1).__version__ == 1


def test_unknown_api_key_names_the_key() -> None:
    with pytest.raises(UnsupportedApiError, match="api key 9999") as e:
        request_class(9999, 0)
    assert e.value.api_key == 9999


def test_unknown_version_names_the_api_and_the_supported_versions() -> None:
    with pytest.raises(UnsupportedApiError, match=r"Produce \(api key 0\) version 99.*3-13") as e:
        response_class(0, 99)
    assert e.value.supported == supported_versions(0)
    again = pickle.loads(pickle.dumps(e.value))
    assert str(again) == str(e.value)


def test_truncated_and_trailing_bytes_are_malformed() -> None:
    body = encode(request_class(3, 12)(topics=None, include_topic_authorized_operations=False))
    with pytest.raises(MalformedMessageError, match="Metadata v12"):
        decode_request(3, 12, body[:-1])
    with pytest.raises(MalformedMessageError, match="left over"):
        decode_request(3, 12, body + b"\x00")
    with pytest.raises(MalformedMessageError):
        decode_request(0, 9, b"\xff" * 20)
    assert decode_request(3, 12, bytearray(body)) == decode_request(3, 12, body)  # writable ok


def test_encode_rejects_what_is_not_a_message() -> None:
    with pytest.raises(TypeError, match="kio request or response"):
        encode({"acks": -1})
    nested = apis.request_class(0, 9).__module__
    part = __import__(nested, fromlist=["_"]).PartitionProduceData(index=0, records=None)
    with pytest.raises(TypeError):
        encode(part)


def test_kafka_error_carries_kafkas_name_and_retriability() -> None:
    e = KafkaError(ErrorCode.unknown_topic_or_partition, "no topic 'orders'")
    assert str(e) == "UNKNOWN_TOPIC_OR_PARTITION: no topic 'orders'"
    assert (e.code, e.name, e.retriable) == (3, "UNKNOWN_TOPIC_OR_PARTITION", True)
    assert KafkaError(6).name == "NOT_LEADER_OR_FOLLOWER"
    for code in ("not_leader_or_follower", "unknown_topic_or_partition", "leader_not_available",
                 "request_timed_out", "not_enough_replicas", "not_enough_replicas_after_append",
                 "fenced_leader_epoch", "unknown_leader_epoch", "coordinator_load_in_progress",
                 "coordinator_not_available", "not_coordinator", "network_exception",
                 "kafka_storage_error", "offset_not_available", "concurrent_transactions"):  # fmt: skip
        assert KafkaError(ErrorCode[code]).retriable, code
    for code in ("offset_out_of_range", "invalid_topic_exception", "topic_already_exists",
                 "invalid_producer_epoch", "producer_fenced", "message_too_large"):  # fmt: skip
        assert not KafkaError(ErrorCode[code]).retriable, code
    odd = KafkaError(31000)
    assert odd.name == "UNKNOWN_ERROR_CODE_31000" and not odd.retriable
    again = pickle.loads(pickle.dumps(e))
    assert (str(again), again.code) == (str(e), e.code)
