"""Random kio messages for tests: valid instances of any kio entity class, built from its schema.

Derived from the dataclass fields and their kafka_type metadata, like the bounds pre-pass, so
every API and version kio has can be generated without a hand-written list. Seeded.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import struct
import types
import typing
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

_INTS = {"int8": 7, "int16": 15, "int32": 31, "int64": 63}
_UINTS = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}


def _optional(tp: Any) -> bool:
    return (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) and \
        type(None) in typing.get_args(tp)


def _strip(tp: Any) -> Any:
    if _optional(tp):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _scalar(kind: str, rng: random.Random) -> Any:
    if kind in _INTS:
        bits = _INTS[kind]
        return rng.randint(-(1 << bits), (1 << bits) - 1)
    if kind in _UINTS:
        return rng.randrange(1 << _UINTS[kind])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float64":
        return rng.uniform(-1e9, 1e9)
    if kind == "string":
        return "".join(rng.choice("abcxyzé-_.") for _ in range(rng.randrange(0, 12)))
    if kind in ("bytes", "records"):
        return rng.randbytes(rng.randrange(0, 40))
    if kind == "uuid":
        return uuid.UUID(int=rng.getrandbits(128) | 1)
    if kind == "error_code":
        return rng.choice(list(ErrorCode))
    if kind == "timedelta_i32":
        return datetime.timedelta(milliseconds=rng.randrange(0, 1 << 31))
    if kind == "timedelta_i64":
        return datetime.timedelta(milliseconds=rng.randrange(0, 1 << 40))
    if kind == "datetime_i64":
        return datetime.datetime.fromtimestamp(rng.randrange(0, 1 << 31), tz=datetime.UTC)
    raise AssertionError(f"no generator for kafka_type {kind!r}")


def random_entity(cls: type, rng: random.Random, depth: int = 0) -> Any:
    """A valid instance of cls: arrays of 0-2 items, optional values sometimes None."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kwargs[f.name] = _value(f, f.type, rng, depth)
    return cls(**kwargs)


def _value(f: dataclasses.Field[Any], tp: Any, rng: random.Random, depth: int) -> Any:
    tagged = "tag" in f.metadata
    if _optional(tp) and not tagged and rng.random() < 0.2:
        return None
    tp = _strip(tp)
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(_item(f, inner, rng, depth) for _ in range(rng.randrange(0, 3)))
    return _item(f, tp, rng, depth)


def _item(f: dataclasses.Field[Any], tp: Any, rng: random.Random, depth: int) -> Any:
    tp = _strip(tp)
    if dataclasses.is_dataclass(tp):
        return random_entity(tp, rng, depth + 1)
    return _scalar(f.metadata["kafka_type"], rng)


# -- hostile bodies ------------------------------------------------------------------------------
# Written straight from the wire grammar (not through kio or the bounds checker), so the fuzz
# test does not share a mistake with the code it tests.

HOSTILE_VARINTS = (
    bytes.fromhex("ffffffff0f"),  # 2^32-1: a compact length of 2^32-2 (the frame)
    bytes.fromhex("ffffffff07"),  # 2^31-1
    bytes.fromhex("8080808008"),  # 2^31
    bytes.fromhex("ffffffff7f"),  # 2^35-1: the largest 5-byte varint
    bytes.fromhex("ffffffffff01"),  # six bytes: longer than any varint may be
    b"\x80",  # cut inside the varint
)
HOSTILE_INT32 = (2**31 - 1, 2**31 - 2, -2, -(2**31), 2**24)
HOSTILE_INT16 = (2**15 - 1, -2, -(2**15))
_FIXED = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "uint16": 2, "error_code": 2, "int32": 4,
          "uint32": 4, "timedelta_i32": 4, "int64": 8, "uint64": 8, "float64": 8, "timedelta_i64": 8,
          "datetime_i64": 8, "uuid": 16}


class _Hostile(Exception):
    """The hostile length was written: stop encoding and let the caller finish the body."""


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hostile_body(cls: type, rng: random.Random) -> bytes:
    """A body of cls that is well-formed up to one length (array, string, bytes, records or
    tagged field) which is hostile: huge, negative, 2^31-1, an oversized or cut varint. Nested
    compact arrays are reached because the walk goes into array elements before it strikes.
    What follows is nothing, a few random bytes, or more hostile varints."""
    out = bytearray()
    lengths = _count_lengths(cls, rng)
    strike = rng.randrange(max(lengths, 1))
    state = {"left": strike}
    try:
        _write_entity(cls, out, rng, state, nullable=False)
    except _Hostile:
        tail = rng.randrange(3)
        if tail == 1:
            out += rng.randbytes(rng.randrange(1, 32))
        elif tail == 2:
            out += rng.choice(HOSTILE_VARINTS) * rng.randrange(1, 8)
    return bytes(out)


def _count_lengths(cls: type, rng: random.Random) -> int:
    return 2 + sum(1 for f in dataclasses.fields(cls) if f.metadata.get("kafka_type") in
                   ("string", "bytes", "records") or typing.get_origin(_strip(f.type)) is tuple)


def _length(out: bytearray, rng: random.Random, state: dict[str, int], flexible: bool, head: str,
            n: int) -> None:
    """Write length n, or a hostile one when this is the length chosen to strike."""
    state["left"] -= 1
    if state["left"] < 0:
        if flexible:
            out += rng.choice(HOSTILE_VARINTS)
        elif head == ">h":
            out += struct.pack(">h", rng.choice(HOSTILE_INT16))
        else:
            out += struct.pack(">i", rng.choice(HOSTILE_INT32))
        raise _Hostile
    out += _uvarint(n + 1) if flexible else struct.pack(head, n)


def _write_entity(cls: type, out: bytearray, rng: random.Random, state: dict[str, int],
                  nullable: bool) -> None:
    flexible = bool(cls.__flexible__)  # type: ignore[attr-defined]
    if nullable:
        out += b"\x01"
    for f in dataclasses.fields(cls):
        if "tag" not in f.metadata:
            _write_field(f, flexible, out, rng, state)
    if flexible:
        if rng.random() < 0.2:  # a tagged field whose count or size lies
            state["left"] = 0
            _length(out, rng, state, True, "", 0)
        out += b"\x00"


def _write_field(f: dataclasses.Field[Any], flexible: bool, out: bytearray, rng: random.Random,
                 state: dict[str, int]) -> None:
    tp = _strip(f.type)
    if typing.get_origin(tp) is tuple:
        inner = _strip(typing.get_args(tp)[0])
        n = rng.randrange(1, 3)
        _length(out, rng, state, flexible, ">i", n)
        for _ in range(n):
            _write_item(f, inner, flexible, out, rng, state, nullable=False)
        return
    _write_item(f, tp, flexible, out, rng, state, nullable=_optional(f.type))


def _write_item(f: dataclasses.Field[Any], tp: Any, flexible: bool, out: bytearray,
                rng: random.Random, state: dict[str, int], nullable: bool) -> None:
    if dataclasses.is_dataclass(tp):
        _write_entity(tp, out, rng, state, nullable)
        return
    kind = f.metadata["kafka_type"]
    if kind in _FIXED:
        out += bytes(_FIXED[kind]) if kind in ("bool", "uuid") else rng.randbytes(_FIXED[kind])
        return
    data = rng.randbytes(rng.randrange(0, 6)) if kind != "string" else b"abc"
    _length(out, rng, state, flexible, ">h" if kind == "string" else ">i", len(data))
    out += data
