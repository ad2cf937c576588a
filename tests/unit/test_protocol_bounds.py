"""The bounds pre-pass: every length and count is checked against the bytes present before kio.

Hand-made frames put each length kind on both sides of its boundary: exactly what is there is
accepted (and kio then decodes it to the same size), one more is refused with the field named.
Then the checker is compared with kio on random valid and damaged messages of every API and
version kio has, and kio is only ever called on input the checker accepted.
"""

import dataclasses
import importlib
import io
import pkgutil
import random
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import ClassVar

import kio.schema
import pytest
from kio.schema.index import api_key_map
from kio.serial import entity_reader, entity_writer

from kafkalab.protocol.apis import (
    decode_request,
    encode,
    request_class,
    response_class,
    supported_versions,
)
from kafkalab.protocol.bounds import BoundsError, check_bounds, plan
from kafkalab.protocol.errors import MalformedMessageError
from tests.kio_messages import random_entity

# Structs shaped like kio's generated ones (the same field metadata), one length kind each.
# (No `from __future__ import annotations` here: kio, like the checker, needs real types.)

def _struct(name: str, flexible: bool, kafka_type: str | None, tp: object, **extra: object) -> type:
    cls = type(name, (), {
        "__annotations__": {"value": tp, **{k: v[0] for k, v in extra.items()}},  # type: ignore[index]
        "__flexible__": flexible,
        "value": field(metadata={"kafka_type": kafka_type} if kafka_type else {}),
        **{k: field(metadata=v[1], default=None) for k, v in extra.items()},  # type: ignore[index]
    })
    cls.__annotations__["__flexible__"] = ClassVar[bool]
    return dataclass(frozen=True, slots=True)(cls)


FlexItem = _struct("FlexItem", True, "int32", tuple[int, ...])
KINDS = {  # name -> (struct, how a length is written, bytes of one unit)
    "compact array": (_struct("CompactArray", True, None, tuple[FlexItem, ...]), "uvarint", 2),
    "compact string": (_struct("CompactString", True, "string", str), "uvarint", 1),
    "compact bytes": (_struct("CompactBytes", True, "bytes", bytes), "uvarint", 1),
    "compact records": (_struct("CompactRecords", True, "records", bytes | None), "uvarint", 1),
    "array": (_struct("LegacyArray", False, "int64", tuple[int, ...]), ">i", 8),
    "string": (_struct("LegacyString", False, "string", str), ">h", 1),
    "bytes": (_struct("LegacyBytes", False, "bytes", bytes), ">i", 1),
    "records": (_struct("LegacyRecords", False, "records", bytes | None), ">i", 1),
}
Tagged = _struct("Tagged", True, "int8", int, note=(str | None, {"kafka_type": "string", "tag": 0}))
Nested = _struct("Nested", True, None, tuple[FlexItem, ...])


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length(how: str, n: int) -> bytes:
    return uvarint(n + 1) if how == "uvarint" else struct.pack(how, n)


def encode_entity(entity: object) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def accepted(cls: type, body: bytes) -> None:
    """The checker accepts body whole, and kio reads exactly as many bytes."""
    assert check_bounds(cls, body) == len(body)
    _obj, size = entity_reader(cls)(memoryview(body), 0)
    assert size == len(body)


def refused(cls: type, body: bytes, where: str) -> None:
    with pytest.raises(BoundsError, match=where):
        check_bounds(cls, body)


# -- each length kind, both sides of its boundary ----------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_length_kind_fits_the_bytes_present_or_is_refused(kind: str) -> None:
    cls, how, unit = KINDS[kind]
    n = 3
    payload = (uvarint(1) + b"\x00") * n if kind == "compact array" else b"\x07" * (n * unit)
    tail = b"\x00" if cls.__flexible__ else b""  # a flexible struct ends with its tagged fields
    accepted(cls, length(how, n) + payload + tail)
    # Declaring more than every byte that follows the length is refused at this field, before
    # anything is allocated; the message says how much was declared and what remains.
    more = n + 1 + len(tail)
    refused(cls, length(how, more) + payload + tail, rf"{cls.__name__}\.value: .*{kind} .*{more}")
    refused(cls, length(how, n + 1) + payload + tail, cls.__name__)  # one short: refused too


@pytest.mark.parametrize("kind", list(KINDS))
def test_huge_and_negative_lengths_are_refused(kind: str) -> None:
    cls, how, _unit = KINDS[kind]
    if how == "uvarint":
        refused(cls, uvarint(2**32 - 1) + b"\x00" * 30, rf"{kind} .*{2**32 - 2}")
        refused(cls, bytes.fromhex("ffffffff0f") * 20, kind)  # the issue's bytes
        refused(cls, b"\xff" * 6, "longer than 5 bytes")
        refused(cls, b"\x81", "runs past the end")
    else:
        big = 2**15 - 1 if how == ">h" else 2**31 - 1
        refused(cls, struct.pack(how, big) + b"\x00" * 30, f"{kind} .*{big}")
        refused(cls, struct.pack(how, -2), "negative and not -1")
        refused(cls, struct.pack(how, -(2**15 if how == ">h" else 2**31)), "negative and not -1")
        if kind in ("array", "records"):  # the nullable ones here
            accepted(cls, struct.pack(how, -1))


def test_a_count_is_checked_against_the_smallest_element_not_one_byte() -> None:
    cls, _how, _unit = KINDS["array"]
    refused(cls, struct.pack(">i", 3) + b"\x00" * 23, "needs at least 24 bytes, but only 23 remain")
    accepted(cls, struct.pack(">i", 3) + b"\x00" * 24)


def test_nested_compact_arrays_name_the_element_that_overruns() -> None:
    ok = uvarint(0 + 1) + b"\x00"
    bad = uvarint(2**31) + b"\x00"
    refused(Nested, uvarint(2 + 1) + ok + bad + b"\x00", r"Nested\.value > \[1\] > FlexItem\.value")
    accepted(Nested, uvarint(2 + 1) + ok + ok + b"\x00")


def test_tagged_fields_fit_their_declared_size() -> None:
    note = uvarint(2 + 1) + b"hi"
    accepted(Tagged, b"\x05" + uvarint(1) + uvarint(0) + uvarint(len(note)) + note)
    refused(Tagged, b"\x05" + uvarint(1) + uvarint(0) + uvarint(len(note) + 1) + note, "size")
    refused(Tagged, b"\x05" + uvarint(1) + uvarint(0) + uvarint(len(note) - 1) + note, r"Tagged\.note")
    refused(Tagged, b"\x05" + uvarint(2**32 - 1) + b"\x00" * 8, "tagged field count")
    refused(Tagged, b"\x05" + uvarint(1) + uvarint(7) + uvarint(1) + b"x", "unknown tagged field 7")


def test_a_real_kio_message_of_the_issue_is_refused_through_decode_request() -> None:
    with pytest.raises(MalformedMessageError, match=r"ListOffsets v7.*topics.*compact array count"):
        decode_request(2, 7, bytes.fromhex("ffffffff0f") * 20)


def test_the_issue_frame_no_longer_aborts_the_process() -> None:
    # Before the pre-pass this aborted the interpreter (a 34 GB allocation in kio's reader).
    code = textwrap.dedent("""
        from kafkalab.protocol.apis import decode_request
        from kafkalab.protocol.errors import MalformedMessageError
        for version in (7, 8, 9):
            try:
                decode_request(2, version, bytes.fromhex("ffffffff0f") * 50)
            except MalformedMessageError:
                print("refused", version)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == ["refused 7", "refused 8", "refused 9"]


# -- generic over kio's schema -----------------------------------------------------------------


def _every_class() -> list[type]:
    return [f(key, version) for key in sorted(api_key_map) for version in supported_versions(key)
            for f in (request_class, response_class)]


def _every_struct_in_kio() -> list[type]:
    """Every entity class kio has: requests, responses, headers, data (consumer protocol,
    LeaderChange ...) and the structs nested in them."""
    out = []
    for info in pkgutil.walk_packages(kio.schema.__path__, "kio.schema."):
        if info.name.rsplit(".", 1)[-1] not in ("request", "response", "header", "data"):
            continue
        module = importlib.import_module(info.name)
        out += [obj for obj in vars(module).values() if isinstance(obj, type) and
                dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__ and
                hasattr(obj, "__flexible__")]
    return out


def test_every_struct_kio_has_gets_a_plan_and_agrees_with_kio() -> None:
    structs = _every_struct_in_kio()
    assert len(structs) > 1000
    rng = random.Random(1560)
    for cls in structs:
        plan(cls)  # a construct the checker does not know raises SchemaError here
        accepted(cls, encode_entity(random_entity(cls, rng)))


def test_checker_and_kio_agree_on_random_valid_messages_of_every_api() -> None:
    rng = random.Random(25)
    for cls in _every_class():
        for _ in range(3):
            body = encode(random_entity(cls, rng))
            accepted(cls, body)


def test_damaged_messages_are_refused_or_read_by_kio_to_the_same_size() -> None:
    rng = random.Random(2025)
    outcomes = {"same size": 0, "kio error": 0, "refused": 0}
    for cls in _every_class():
        for _ in range(4):
            body = bytearray(encode(random_entity(cls, rng)))
            if not body:
                continue
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
            data = bytes(body[:len(body) - rng.randrange(0, 3)])
            try:
                size = check_bounds(cls, data)
            except BoundsError:
                outcomes["refused"] += 1
                continue
            try:  # only input the checker accepted ever reaches kio
                _obj, read = entity_reader(cls)(memoryview(data), 0)
            except Exception:  # kio's own errors (bad UTF-8, unknown enum ...) are fine
                outcomes["kio error"] += 1
                continue
            assert read == size, cls
            outcomes["same size"] += 1
    assert min(outcomes.values()) > 50, outcomes
