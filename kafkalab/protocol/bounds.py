"""The bounds pre-pass: no length read from untrusted bytes reaches kio before it is checked.

kio decodes natively (Rust). Strings, bytes and records are sliced only after their length
is checked, but an array's element count goes straight into `Vec::with_capacity(count)`:
a compact array length of 2^32-1 asks for 34 GB, the allocation fails and Rust aborts the
whole process, not just the request. Kafka's own generated readers refuse any count larger
than the bytes remaining before they allocate; this module gives kio's input the same rule.

`check_bounds(cls, body)` walks the body with kio's own schema for cls — the entity
dataclasses' fields in declaration order, each field's `kafka_type` metadata, `__flexible__`
(compact lengths as unsigned varints of n+1 and tagged fields, or int16/int32 lengths with
-1 for null), optional structs with their int8 marker, and tag numbers — and checks every
length and count against the bytes actually left, without building a single value. A
message passes only if each array's count times its element's smallest encoding, each
string's, bytes' and records' length and each tagged field's size fit in what remains.
Because the walk is derived from the schema, it covers every API and version kio can
decode, including ones no test sends; a schema construct it does not know is refused when
the plan is built (SchemaError), never skipped.

The walk visits every element, so it follows kio field by field: it reads each length at
the offset where kio will read it. Its cost is a few microseconds per small request.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from kafkalab.protocol.errors import MalformedMessageError

__all__ = ["BoundsError", "SchemaError", "check_bounds"]


class BoundsError(MalformedMessageError):
    """A length or count in a message is larger than the bytes that follow it."""


class SchemaError(TypeError):
    """A kio schema uses a construct the pre-pass does not know (a kio upgrade to review)."""


# (buffer, position, end) -> position after the field; raises _Overrun / BoundsError.
Step = Callable[[Any, int, int], int]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

# Fixed-width kafka_types and their size in bytes (uuid: kio always reads 16, null is all-zero).
_FIXED: dict[str, int] = {
    "int8": 1, "uint8": 1, "bool": 1,
    "int16": 2, "uint16": 2, "error_code": 2,
    "int32": 4, "uint32": 4, "timedelta_i32": 4,
    "int64": 8, "uint64": 8, "float64": 8, "timedelta_i64": 8, "datetime_i64": 8,
    "uuid": 16,
}
_SIZED = ("string", "bytes", "records")


class _Overrun(Exception):
    """Raised deep in the walk; check_bounds turns it into a BoundsError naming the field."""

    def __init__(self, what: str, at: int, path: tuple[str, ...] = ()):
        self.what, self.at, self.path = what, at, path


def _uvarint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes, as Kafka (and kio) read them."""
    value = shift = 0
    for i in range(5):
        if pos + i >= end:
            raise _Overrun("a varint runs past the end of the message", pos)
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise _Overrun("a varint is longer than 5 bytes", pos)


def _fits(count: int, width: int, pos: int, end: int, kind: str) -> None:
    if count * max(width, 1) > end - pos:
        raise _Overrun(f"{kind} of {count} (data from byte {pos}) needs at least "
                       f"{count * max(width, 1)} bytes, but only {end - pos} remain", pos)


# -- steps -------------------------------------------------------------------------------------


def _skip(width: int) -> Step:
    def step(buf: Any, pos: int, end: int) -> int:
        if pos + width > end:
            raise _Overrun(f"{width} fixed bytes needed at byte {pos}, {end - pos} remain", pos)
        return pos + width
    return step


def _compact_sized(kind: str) -> Step:
    def step(buf: Any, pos: int, end: int) -> int:
        if pos < end and buf[pos] < 0x80:  # a one-byte length: the common case, inlined
            n, at = buf[pos], pos + 1
        else:
            n, at = _uvarint(buf, pos, end)
        if n == 0:  # null
            return at
        if n - 1 > end - at:
            _fits(n - 1, 1, at, end, f"compact {kind} length")
        return at + n - 1
    return step


def _legacy_sized(kind: str, head: struct.Struct) -> Step:
    def step(buf: Any, pos: int, end: int) -> int:
        if pos + head.size > end:
            raise _Overrun(f"{kind} length runs past the end of the message", pos)
        (n,) = head.unpack_from(buf, pos)
        at = pos + head.size
        if n == -1:  # null
            return at
        if n < 0:
            raise _Overrun(f"{kind} length {n} at byte {pos} is negative and not -1 (null)", pos)
        _fits(n, 1, at, end, f"{kind} length")
        return at + n
    return step


def _array(item: Step, width: int, flexible: bool) -> Step:
    unit = max(width, 1)
    if flexible:
        def step(buf: Any, pos: int, end: int) -> int:
            if pos < end and buf[pos] < 0x80:
                n, at = buf[pos], pos + 1
            else:
                n, at = _uvarint(buf, pos, end)
            if n == 0:  # null
                return at
            if (n - 1) * unit > end - at:
                _fits(n - 1, width, at, end, "compact array count")
            for i in range(n - 1):
                try:
                    at = item(buf, at, end)
                except _Overrun as e:
                    e.path = (f"[{i}]", *e.path)
                    raise
            return at
        return step

    def legacy(buf: Any, pos: int, end: int) -> int:
        if pos + 4 > end:
            raise _Overrun("array count runs past the end of the message", pos)
        (n,) = _I32.unpack_from(buf, pos)
        at = pos + 4
        if n == -1:  # null
            return at
        if n < 0:
            raise _Overrun(f"array count {n} at byte {pos} is negative and not -1 (null)", pos)
        if n * unit > end - at:
            _fits(n, width, at, end, "array count")
        for i in range(n):
            try:
                at = item(buf, at, end)
            except _Overrun as e:
                e.path = (f"[{i}]", *e.path)
                raise
        return at
    return legacy


def _entity(cls: type, nullable: bool) -> tuple[Step, int]:
    """The walk of one struct and its smallest encoding in bytes."""
    flexible = bool(cls.__flexible__)  # type: ignore[attr-defined]
    fields: list[tuple[str, Step]] = []
    tagged: dict[int, tuple[str, Step]] = {}
    width = 1 if flexible else 0  # the tagged-field count
    fixed_run, run_names = 0, []
    for f in dataclasses.fields(cls):
        tag = f.metadata.get("tag")
        step, w, fixed = _field(cls, f, flexible, tagged=tag is not None)
        if tag is not None:
            if not flexible:
                raise SchemaError(f"{cls.__qualname__}.{f.name}: a tagged field in a non-flexible struct")
            tagged[int(tag)] = (f.name, step)
            continue
        width += w
        if fixed is not None:  # merge runs of fixed-width fields into one bounds check
            fixed_run += fixed
            run_names.append(f.name)
            continue
        if fixed_run:
            fields.append((_run_name(run_names), _skip(fixed_run)))
            fixed_run, run_names = 0, []
        fields.append((f.name, step))
    if fixed_run:
        fields.append((_run_name(run_names), _skip(fixed_run)))
    plan = tuple(fields)
    name = cls.__qualname__

    def walk(buf: Any, pos: int, end: int) -> int:
        if nullable:
            if pos >= end:
                raise _Overrun("a struct's null marker runs past the end of the message", pos)
            marker = buf[pos]
            pos += 1
            if marker == 0xFF:  # int8 -1: null
                return pos
        for fname, step in plan:
            try:
                pos = step(buf, pos, end)
            except _Overrun as e:
                e.path = (f"{name}.{fname}", *e.path)
                raise
        if flexible:
            pos = _tagged(buf, pos, end, tagged, name)
        return pos

    return walk, (1 if nullable else width)


def _run_name(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def _tagged(buf: Any, pos: int, end: int, tagged: dict[int, tuple[str, Step]], name: str) -> int:
    if pos < end and buf[pos] == 0:  # no tagged fields: the common case
        return pos + 1
    count, pos = _uvarint(buf, pos, end)
    _fits(count, 2, pos, end, "tagged field count")  # each needs a tag and a size
    for _ in range(count):
        tag, pos = _uvarint(buf, pos, end)
        size, pos = _uvarint(buf, pos, end)
        _fits(size, 1, pos, end, f"tagged field {tag} size")
        known = tagged.get(tag)
        if known is None:  # kio cannot skip a tag its schema lacks: it would fail anyway
            raise _Overrun(f"unknown tagged field {tag} at byte {pos}", pos, (name,))
        fname, step = known
        try:
            after = step(buf, pos, pos + size)  # the field must fit in its declared size
        except _Overrun as e:
            e.path = (f"{name}.{fname}", *e.path)
            raise
        if after != pos + size:
            raise _Overrun(f"tagged field {tag} declares {size} bytes but its value takes "
                           f"{after - pos}", pos, (f"{name}.{fname}",))
        pos = after
    return pos


def _is_optional(tp: Any) -> bool:
    return (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) and \
        type(None) in typing.get_args(tp)


def _strip_optional(tp: Any) -> Any:
    if _is_optional(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) != 1:
            raise SchemaError(f"union {tp} has more than one non-null member")
        return rest[0]
    return tp


def _field(cls: type, f: dataclasses.Field[Any], flexible: bool,
           tagged: bool) -> tuple[Step, int, int | None]:
    """(walk, smallest encoding, fixed width or None) of one field, as kio reads it."""
    if isinstance(f.type, str):
        raise SchemaError(f"{cls.__qualname__}.{f.name}: the annotation is a string; kio needs types")
    if cls.__name__ == "RequestHeader" and f.name == "client_id":
        # kio, like Kafka, keeps the header's client_id a nullable int16-length string even
        # in the flexible header v2.
        return _legacy_sized("string", _I16), 2, None
    tp = _strip_optional(f.type)
    is_array = typing.get_origin(tp) is tuple
    inner = tp
    if is_array:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise SchemaError(f"{cls.__qualname__}.{f.name}: tuple type {tp} is not tuple[X, ...]")
        inner = args[0]
    inner_entity = _strip_optional(inner)
    if dataclasses.is_dataclass(inner_entity):
        # kio reads a struct field as nullable (int8 marker) when its type is Optional;
        # array elements never are.
        step, width = _entity_plan(inner_entity, (not is_array) and _is_optional(f.type))
        fixed = None
    else:
        kind = f.metadata.get("kafka_type")
        if not isinstance(kind, str):
            raise SchemaError(f"{cls.__qualname__}.{f.name} has no kafka_type")
        if kind in _FIXED:
            width = _FIXED[kind]
            step, fixed = _skip(width), width
        elif kind in _SIZED:
            fixed = None
            if flexible:
                step, width = _compact_sized(kind), 1
            elif kind == "string":
                step, width = _legacy_sized(kind, _I16), 2
            else:
                step, width = _legacy_sized(kind, _I32), 4
        else:
            raise SchemaError(f"{cls.__qualname__}.{f.name}: kafka_type {kind!r} is not known "
                              "to the bounds pre-pass; teach it before serving this message")
    if not is_array:
        return step, width, fixed
    return _array(step, width, flexible), (1 if flexible else 4), None


@cache
def _entity_plan(cls: type, nullable: bool) -> tuple[Step, int]:
    return _entity(cls, nullable)


@cache
def plan(cls: type) -> Step:
    """The compiled walk of a top-level kio entity (built once per class)."""
    return _entity_plan(cls, False)[0]


def check_bounds(cls: type, body: bytes | bytearray | memoryview, label: str | None = None) -> int:
    """Walk body as an encoded cls; raise BoundsError if any length overruns the bytes present.

    Returns the number of bytes the message takes (what kio's reader will report). label
    names the message in the error (default: kio's module and class).
    """
    buf = body if isinstance(body, bytes) else memoryview(body).cast("B")
    try:
        return plan(cls)(buf, 0, len(buf))
    except _Overrun as e:
        where = " > ".join(e.path) or cls.__qualname__
        label = label or f"{cls.__module__.removeprefix('kio.schema.')}.{cls.__qualname__}"
        raise BoundsError(
            f"{label} ({len(buf)} bytes) does not decode: at {where}: {e.what} (refused "
            "before decoding: the message is damaged, of another version, or hostile)"
        ) from None
