"""Random kio messages for tests: valid instances of any kio entity class, built from its schema.

Derived from the dataclass fields and their kafka_type metadata, like the bounds pre-pass, so
every API and version kio has can be generated without a hand-written list. Seeded.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
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
