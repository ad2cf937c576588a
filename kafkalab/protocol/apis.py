"""Kafka's API messages as kio dataclasses: which version each lab link speaks, and the codec.

Every lab process talks with Kafka's own request/response bodies. On the ZeroMQ path one
version per api key is used (ZMQ_VERSIONS), a recent *flexible* one (compact strings, tagged
fields). The Kafka TCP listener reuses the same codec for whatever version a real client
negotiated, so `request_class` and friends accept every version kio has, not only these.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from kafkalab.protocol.bounds import check_bounds
from kafkalab.protocol.errors import MalformedMessageError, UnsupportedApiError

__all__ = [
    "ZMQ_VERSIONS",
    "api_key_of",
    "api_name",
    "decode_request",
    "decode_response",
    "encode",
    "request_class",
    "response_class",
    "supported_versions",
]

# Api key -> version used between lab processes. All exist in kio 0.6.5 (checked by the tests).
ZMQ_VERSIONS: dict[int, int] = {
    0: 9,  # Produce
    1: 12,  # Fetch (last version addressing topics by name; v13+ use topic ids)
    2: 7,  # ListOffsets
    3: 12,  # Metadata
    8: 8,  # OffsetCommit
    9: 8,  # OffsetFetch (v8: several groups per request)
    10: 4,  # FindCoordinator (v4: batched coordinator keys)
    11: 9,  # JoinGroup
    12: 4,  # Heartbeat
    13: 5,  # LeaveGroup
    14: 5,  # SyncGroup
    15: 6,  # DescribeGroups (v6: an error message, e.g. for a group that is not classic)
    16: 5,  # ListGroups (v5: group types, classic or consumer)
    18: 3,  # ApiVersions
    19: 7,  # CreateTopics
    20: 6,  # DeleteTopics
    21: 2,  # DeleteRecords
    22: 4,  # InitProducerId
    23: 4,  # OffsetForLeaderEpoch
    24: 3,  # AddPartitionsToTxn (v3: the client form; v4+ is the broker-to-broker batch form)
    25: 3,  # AddOffsetsToTxn
    26: 3,  # EndTxn
    27: 1,  # WriteTxnMarkers
    28: 3,  # TxnOffsetCommit
    32: 4,  # DescribeConfigs
    33: 2,  # AlterConfigs
    43: 2,  # ElectLeaders
    # Admin APIs served on the Kafka listener (kafkalab.broker.admin):
    35: 4,  # DescribeLogDirs
    37: 3,  # CreatePartitions
    42: 2,  # DeleteGroups
    44: 1,  # IncrementalAlterConfigs
    47: 0,  # OffsetDelete
    61: 0,  # DescribeProducers
    65: 0,  # DescribeTransactions
    66: 1,  # ListTransactions
    # AlterPartition v2 is the highest whose new ISR is a plain list of broker ids (v3 switches
    # to NewIsrWithEpochs). Like every version kio has (2-3), it names topics by topic_id, so the
    # controller must give each topic a UUID.
    56: 2,  # AlterPartition
    52: 0,  # Vote (KRaft quorum)
    53: 0,  # BeginQuorumEpoch
    54: 0,  # EndQuorumEpoch
    55: 0,  # DescribeQuorum
    59: 0,  # FetchSnapshot
    60: 0,  # DescribeCluster
    62: 4,  # BrokerRegistration (highest in kio: listeners, features, log_dirs, previous epoch)
    63: 2,  # BrokerHeartbeat (highest in kio)
    64: 0,  # UnregisterBroker (the only version)
    67: 0,  # AllocateProducerIds (the only version)
    68: 1,  # ConsumerGroupHeartbeat (KIP-848; v1: the member names itself)
    69: 1,  # ConsumerGroupDescribe
    76: 1,  # ShareGroupHeartbeat (KIP-932)
    77: 1,  # ShareGroupDescribe
    78: 1,  # ShareFetch
    79: 1,  # ShareAcknowledge
    84: 0,  # ReadShareGroupState (share-partition leader -> share coordinator)
    85: 0,  # WriteShareGroupState
}

_NAME_EXCEPTIONS = {"api_versions": "ApiVersions"}


def api_name(api_key: int) -> str:
    """Kafka's name for an api key, e.g. 1 -> "Fetch", 56 -> "AlterPartition"."""
    try:
        snake = api_key_map[api_key]
    except KeyError:
        raise UnsupportedApiError(api_key, -1) from None
    return _NAME_EXCEPTIONS.get(snake) or "".join(w.capitalize() for w in snake.split("_"))


def supported_versions(api_key: int) -> tuple[int, ...]:
    """Every version of an api that kio has a schema for, ascending."""
    try:
        return tuple(sorted(schema_name_map[api_key_map[api_key]]))
    except KeyError:
        raise UnsupportedApiError(api_key, -1) from None


def _check(api_key: int, version: int) -> None:
    try:
        versions = supported_versions(api_key)
    except UnsupportedApiError:
        raise UnsupportedApiError(api_key, version) from None
    if version not in versions:
        raise UnsupportedApiError(api_key, version, versions, api_name(api_key))


@cache
def request_class(api_key: int, version: int) -> type:
    """The kio dataclass of a request body, e.g. (0, 9) -> produce.v9 ProduceRequest."""
    _check(api_key, version)
    try:
        return load_request_schema(api_key, version)
    except Exception as e:  # kio's index and its modules disagree: treat as unsupported
        raise UnsupportedApiError(api_key, version, (), api_name(api_key)) from e


@cache
def response_class(api_key: int, version: int) -> type:
    """The kio dataclass of a response body."""
    _check(api_key, version)
    try:
        return load_response_schema(api_key, version)
    except Exception as e:
        raise UnsupportedApiError(api_key, version, (), api_name(api_key)) from e


def api_key_of(entity: Any) -> tuple[int, int]:
    """(api_key, version) of a kio request or response object (or class)."""
    return int(entity.__api_key__), int(entity.__version__)


@cache
def _writer(cls: type) -> Callable[[Any, Any], None]:
    return entity_writer(cls)


@cache
def _reader(cls: type) -> Callable[[memoryview, int], tuple[Any, int]]:
    return entity_reader(cls)


def encode(entity: Any) -> bytes:
    """The body of a request or response, without any header."""
    kind = getattr(entity, "__type__", None)
    if kind not in (EntityType.request, EntityType.response):
        raise TypeError(
            f"encode() takes a kio request or response object, not {type(entity).__name__}; "
            "build one with kafkalab.protocol.build or request_class(api_key, version)(...)"
        )
    buffer = io.BytesIO()
    _writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def _decode(cls: type, api_key: int, version: int, body: bytes | memoryview, what: str) -> Any:
    view = memoryview(body).toreadonly()  # kio refuses writable buffers (e.g. bytearray)
    # kio's native reader allocates an array from its declared count before reading it:
    # every length is checked against the bytes present first (BoundsError otherwise).
    check_bounds(cls, view, f"{what} body for {api_name(api_key)} v{version}")
    try:
        entity, size = _reader(cls)(view, 0)
    except Exception as e:  # kio raises DecodeError, ValueError, UnicodeDecodeError ...
        raise MalformedMessageError(
            f"{what} body for {api_name(api_key)} v{version} ({len(view)} bytes) does not "
            f"decode: {type(e).__name__}: {e}; the sender and receiver disagree on the "
            "api version, or the bytes were damaged"
        ) from e
    if size != len(view):
        raise MalformedMessageError(
            f"{what} body for {api_name(api_key)} v{version} has {len(view) - size} bytes "
            f"left over after a {size}-byte message; the sender used another version"
        )
    return entity


def decode_request(api_key: int, version: int, body: bytes | memoryview) -> Any:
    """Decode a request body; UnsupportedApiError or MalformedMessageError if it cannot.

    Safe on untrusted bytes: no length reaches kio before it is bounded (protocol.bounds).
    """
    return _decode(request_class(api_key, version), api_key, version, body, "request")


def decode_response(api_key: int, version: int, body: bytes | memoryview) -> Any:
    """Decode a response body; UnsupportedApiError or MalformedMessageError if it cannot."""
    return _decode(response_class(api_key, version), api_key, version, body, "response")
