"""Kafka's API messages as kio dataclasses: which version each lab link speaks, and the codec.

Every lab process talks with Kafka's own request/response bodies. On the ZeroMQ path one
version per api key is used (ZMQ_VERSIONS), a recent *flexible* one (compact strings, tagged
fields). The Kafka TCP listener reuses the same codec for whatever version a real client
negotiated, so `request_class` and friends accept every version kio has, not only these.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.bounds import check_bounds
from kafkalab.protocol.errors import MalformedMessageError, UnsupportedApiError

__all__ = [
    "ZMQ_VERSIONS",
    "api_key_of",
    "api_name",
    "decode_request",
    "decode_response",
    "encode",
    "lazy_schema",
    "request_class",
    "response_class",
    "schema_module",
    "supported_versions",
]

# Api key -> version used between lab processes. All exist in kio 0.6.5 (checked by the tests).
ZMQ_VERSIONS: dict[ApiKey, int] = {
    ApiKey.PRODUCE: 9,
    ApiKey.FETCH: 12,  # last version addressing topics by name; v13+ use topic ids
    ApiKey.LIST_OFFSETS: 7,
    ApiKey.METADATA: 12,
    ApiKey.OFFSET_COMMIT: 8,
    ApiKey.OFFSET_FETCH: 8,  # v8: several groups per request
    ApiKey.FIND_COORDINATOR: 4,  # v4: batched coordinator keys
    ApiKey.JOIN_GROUP: 9,
    ApiKey.HEARTBEAT: 4,
    ApiKey.LEAVE_GROUP: 5,
    ApiKey.SYNC_GROUP: 5,
    ApiKey.DESCRIBE_GROUPS: 6,  # v6: an error message, e.g. for a group that is not classic
    ApiKey.LIST_GROUPS: 5,  # v5: group types, classic or consumer
    ApiKey.API_VERSIONS: 3,
    ApiKey.CREATE_TOPICS: 7,
    ApiKey.DELETE_TOPICS: 6,
    ApiKey.DELETE_RECORDS: 2,
    ApiKey.INIT_PRODUCER_ID: 4,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: 4,
    ApiKey.ADD_PARTITIONS_TO_TXN: 3,  # v3: the client form; v4+ is the broker-to-broker batch form
    ApiKey.ADD_OFFSETS_TO_TXN: 3,
    ApiKey.END_TXN: 3,
    ApiKey.WRITE_TXN_MARKERS: 1,
    ApiKey.TXN_OFFSET_COMMIT: 3,
    ApiKey.DESCRIBE_CONFIGS: 4,
    ApiKey.ALTER_CONFIGS: 2,
    ApiKey.ELECT_LEADERS: 2,
    # Admin APIs served on the Kafka listener (kafkalab.broker.admin):
    ApiKey.DESCRIBE_LOG_DIRS: 4,
    ApiKey.CREATE_PARTITIONS: 3,
    ApiKey.DELETE_GROUPS: 2,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: 1,
    ApiKey.OFFSET_DELETE: 0,
    ApiKey.DESCRIBE_PRODUCERS: 0,
    ApiKey.DESCRIBE_TRANSACTIONS: 0,
    ApiKey.LIST_TRANSACTIONS: 1,
    # AlterPartition v2 is the highest whose new ISR is a plain list of broker ids (v3 switches
    # to NewIsrWithEpochs). Like every version kio has (2-3), it names topics by topic_id, so the
    # controller must give each topic a UUID.
    ApiKey.ALTER_PARTITION: 2,
    ApiKey.VOTE: 0,  # KRaft quorum
    ApiKey.BEGIN_QUORUM_EPOCH: 0,
    ApiKey.END_QUORUM_EPOCH: 0,
    ApiKey.DESCRIBE_QUORUM: 0,
    ApiKey.FETCH_SNAPSHOT: 0,
    ApiKey.DESCRIBE_CLUSTER: 0,
    ApiKey.BROKER_REGISTRATION: 4,  # highest in kio: listeners, features, log_dirs, previous epoch
    ApiKey.BROKER_HEARTBEAT: 2,  # highest in kio
    ApiKey.UNREGISTER_BROKER: 0,  # the only version
    ApiKey.ALLOCATE_PRODUCER_IDS: 0,  # the only version
    ApiKey.CONSUMER_GROUP_HEARTBEAT: 1,  # KIP-848; v1: the member names itself
    ApiKey.CONSUMER_GROUP_DESCRIBE: 1,
    ApiKey.SHARE_GROUP_HEARTBEAT: 1,  # KIP-932
    ApiKey.SHARE_GROUP_DESCRIBE: 1,
    ApiKey.SHARE_FETCH: 1,
    ApiKey.SHARE_ACKNOWLEDGE: 1,
    ApiKey.READ_SHARE_GROUP_STATE: 0,  # share-partition leader -> share coordinator
    ApiKey.WRITE_SHARE_GROUP_STATE: 0,
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


def schema_module(entity_or_cls: Any) -> Any:
    """The kio module of a request or response class (or object): it holds that version's
    nested entities, e.g. schema_module(CreateTopicsResponse).CreatableTopicResult. The one way
    from a message class to its module."""
    return importlib.import_module(entity_or_cls.__module__)


class _LazySchema(ModuleType):
    """Stands for a kio schema module until an attribute is first asked for, then imports it,
    copies its names in and becomes a plain module: later lookups cost what a module's do."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # copy, pickle and introspection must not import it
        module = importlib.import_module(self.__name__)
        self.__dict__.update((k, v) for k, v in vars(module).items() if not k.startswith("__"))
        self.__class__ = ModuleType  # type: ignore[assignment]
        return getattr(self, attr)


def lazy_schema(name: str) -> Any:
    """A kio schema module, e.g. "kio.schema.fetch.v12.request", imported on first use.

    A process imports each api's schemas (~140 KB a version) only once it speaks that api:
    `fetch_req = lazy_schema("kio.schema.fetch.v12.request")` at the top of a module, then
    `fetch_req.FetchRequest(...)` as with the module itself."""
    if not name.startswith("kio.schema."):
        raise ValueError(f"lazy_schema takes a kio schema module name, not {name!r}")
    return _LazySchema(name)


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
