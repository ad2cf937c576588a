"""Converting Kafka API messages between versions of the same API. Pure functions.

A real client negotiates its own version of each API; the lab processes speak one version per
API among themselves (ZMQ_VERSIONS). Most version changes only add fields, so the generic
converter copies fields by name, recursively through nested structs, and fills the fields the
older version lacks with the schema's default (what Kafka assumes when an old client omits
them). Where versions differ in *meaning*, not just in fields, an API-specific rule runs
after the generic copy:

- Metadata v0: an empty topic list meant "all topics"; from v1 that is null.
- FindCoordinator v0-v3 ask for one key; v4 batches keys (request and response reshaped).
- OffsetFetch v0-v7 name one group; v8 takes a list of groups (reshaped both ways).
- LeaveGroup v0-v2 name one member; v3 lists members (reshaped both ways).
- DeleteTopics v0-v5 list names; v6 lists (name, topic id) states.

`convertible_versions(api_key, lab_version)` is the range the Kafka listener may advertise:
the versions from which nothing the lab version needs is lost (e.g. Fetch v13+ names topics
by id, so Fetch stops at the lab's v12; Produce v3 is the first with RecordBatch v2).
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import request_class, response_class, supported_versions

__all__ = [
    "MIN_VERSIONS",
    "convert",
    "convert_default",
    "convertible_versions",
    "request_to",
    "response_to",
    "unfilled_fields",
]

# Oldest version each API is served at: the first where the records are RecordBatch v2
# (Produce v3, Fetch v4), or the oldest kio knows.
MIN_VERSIONS: dict[ApiKey, int] = {ApiKey.PRODUCE: 3, ApiKey.FETCH: 4}

_MISSING = object()


def _is_entity(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and hasattr(tp, "__type__")


def _nested(tp: Any) -> tuple[type | None, bool]:
    """(entity class inside a field's type, whether it is a tuple of them)."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for arg in args:
            if arg is not type(None):
                return _nested(arg)
        return None, False
    if typing.get_origin(tp) is tuple and args:
        inner, _ = _nested(args[0])
        return inner, True
    return (tp, False) if _is_entity(tp) else (None, False)


def _optional(tp: Any) -> bool:
    return (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) and \
        type(None) in typing.get_args(tp)


def _zero(f: dataclasses.Field[Any]) -> Any:
    """A value for a required field the source version does not have."""
    if _optional(f.type):
        return None
    entity, many = _nested(f.type)
    if many or typing.get_origin(f.type) is tuple:
        return ()
    kind = f.metadata.get("kafka_type", "")
    if entity is not None:
        return convert_default(entity)
    if kind == "error_code":
        return ErrorCode.none
    if kind == "string":
        return ""
    if kind == "bool":
        return False
    if kind in ("bytes", "records"):
        return b""
    if kind == "uuid":
        return uuid.UUID(int=0)
    if kind.startswith("timedelta"):
        import datetime
        return datetime.timedelta(0)
    if kind == "datetime_i64":
        import datetime
        return datetime.datetime.fromtimestamp(0, tz=datetime.UTC)
    if kind == "float64":
        return 0.0
    return 0


def convert_default(cls: type) -> Any:
    """An instance of cls with every field at its default (or zero)."""
    return _build(cls, {})


def _build(cls: type, given: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            kwargs[f.name] = given[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _zero(f)
    return cls(**kwargs)


@cache
def _plan(src: type, dst: type) -> tuple[tuple[str, type | None, bool, Any], ...]:
    """Per shared field: name, nested entity class, is-a-tuple, value to use for a null that
    dst cannot hold (a field that became nullable in a later version, e.g. JoinGroup's
    protocol_name) or _MISSING if dst can hold null."""
    names = {f.name for f in dataclasses.fields(src)}
    plan = []
    for f in dataclasses.fields(dst):
        if f.name in names:
            inner, many = _nested(f.type)
            plan.append((f.name, inner, many, _MISSING if _optional(f.type) else _zero(f)))
    return tuple(plan)


def convert(entity: Any, dst: type) -> Any:
    """entity as an instance of dst (another version of the same struct), by field name."""
    if type(entity) is dst:
        return entity
    given: dict[str, Any] = {}
    for name, inner, many, if_null in _plan(type(entity), dst):
        value = getattr(entity, name)
        if value is None and if_null is not _MISSING:
            value = if_null
        elif inner is not None and value is not None:
            value = tuple(convert(v, inner) for v in value) if many else convert(value, inner)
        given[name] = value
    return _build(dst, given)


def unfilled_fields(src: type, dst: type) -> list[str]:
    """Fields of dst (recursively) that src lacks and that have no schema default (for tests)."""
    out = []
    names = {f.name: f for f in dataclasses.fields(src)}
    for f in dataclasses.fields(dst):
        inner, _ = _nested(f.type)
        if f.name in names:
            src_inner, _ = _nested(names[f.name].type)
            if inner is not None and src_inner is not None:
                out += [f"{f.name}.{n}" for n in unfilled_fields(src_inner, inner)]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out.append(f.name)
    return out


# -- API-specific rules ------------------------------------------------------------------------

Rule = Callable[[Any, Any], Any]  # (source entity, generically converted entity) -> result


def _replace(entity: Any, **changes: Any) -> Any:
    return dataclasses.replace(entity, **changes)


def _metadata_request(src: Any, out: Any) -> Any:
    if src.__version__ == 0 and not src.topics:
        return _replace(out, topics=None)
    return out


def _find_coordinator_request(src: Any, out: Any) -> Any:
    if src.__version__ < 4 <= out.__version__:
        return _replace(out, coordinator_keys=(src.key,))
    if out.__version__ < 4 <= src.__version__:
        return _replace(out, key=src.coordinator_keys[0] if src.coordinator_keys else "")
    return out


def _find_coordinator_response(src: Any, out: Any) -> Any:
    if out.__version__ < 4 <= src.__version__:
        if not src.coordinators:
            return _replace(out, error_code=ErrorCode.coordinator_not_available,
                            node_id=-1, host="", port=-1)
        c = src.coordinators[0]
        fields = {f.name for f in dataclasses.fields(out)}
        extra = {"error_message": c.error_message} if "error_message" in fields else {}
        return _replace(out, error_code=c.error_code, node_id=c.node_id, host=c.host, port=c.port, **extra)
    return out


def _offset_fetch_request(src: Any, out: Any) -> Any:
    if src.__version__ < 8 <= out.__version__:
        group_cls = _nested(_field_type(type(out), "groups"))[0]
        topic_cls = _nested(_field_type(group_cls, "topics"))[0]
        topics = None if src.topics is None else tuple(
            topic_cls(name=t.name, partition_indexes=t.partition_indexes) for t in src.topics)
        return _replace(out, groups=(_build(group_cls, {"group_id": src.group_id, "topics": topics}),))
    return out


def _offset_fetch_response(src: Any, out: Any) -> Any:
    if out.__version__ < 8 <= src.__version__:
        topic_cls = _nested(_field_type(type(out), "topics"))[0]
        has_error = "error_code" in {f.name for f in dataclasses.fields(out)}
        if not src.groups:
            extra = {"error_code": ErrorCode.coordinator_not_available} if has_error else {}
            return _replace(out, topics=(), **extra)
        group = src.groups[0]
        topics = tuple(convert(t, topic_cls) for t in group.topics)
        return _replace(out, topics=topics, **({"error_code": group.error_code} if has_error else {}))
    return out


def _leave_group_request(src: Any, out: Any) -> Any:
    if src.__version__ < 3 <= out.__version__:
        member_cls = _nested(_field_type(type(out), "members"))[0]
        return _replace(out, members=(_build(member_cls, {"member_id": src.member_id}),))
    return out


def _leave_group_response(src: Any, out: Any) -> Any:
    if out.__version__ < 3 <= src.__version__ and src.error_code == ErrorCode.none and src.members:
        return _replace(out, error_code=src.members[0].error_code)
    return out


def _delete_topics_request(src: Any, out: Any) -> Any:
    if src.__version__ < 6 <= out.__version__:
        state_cls = _nested(_field_type(type(out), "topics"))[0]
        return _replace(out, topics=tuple(_build(state_cls, {"name": n}) for n in src.topic_names))
    return out


def _field_type(cls: type, name: str) -> Any:
    return next(f.type for f in dataclasses.fields(cls) if f.name == name)


_REQUEST_RULES: dict[int, Rule] = {3: _metadata_request, 9: _offset_fetch_request,
                                   10: _find_coordinator_request, 13: _leave_group_request,
                                   20: _delete_topics_request}
_RESPONSE_RULES: dict[int, Rule] = {9: _offset_fetch_response, 10: _find_coordinator_response,
                                    13: _leave_group_response}


def request_to(request: Any, version: int) -> Any:
    """A request at another version of its API."""
    api_key = int(request.__api_key__)
    out = convert(request, request_class(api_key, version))
    rule = _REQUEST_RULES.get(api_key)
    return rule(request, out) if rule is not None and out is not request else out


def response_to(response: Any, version: int) -> Any:
    """A response at another version of its API."""
    api_key = int(response.__api_key__)
    out = convert(response, response_class(api_key, version))
    rule = _RESPONSE_RULES.get(api_key)
    return rule(response, out) if rule is not None and out is not response else out


def convertible_versions(api_key: int, lab_version: int) -> tuple[int, int]:
    """(min, max) client versions the listener converts to and from lab_version faithfully.

    Newer versions than the lab's are not offered: they add semantics (topic ids in Fetch
    v13+, ...) the lab version cannot carry back.
    """
    versions = [v for v in supported_versions(api_key) if v <= lab_version]
    lo = max(versions[0], MIN_VERSIONS.get(api_key, versions[0]))
    return lo, lab_version
