"""Checkers and reference functions for lab 12 (Schema Registry and schema evolution)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

import avro.schema
from checkers import Feedback, call_learner, not_answered, right, wrong

from kafkalab.registry.compatibility import check

MODES = ("BACKWARD", "FORWARD", "FULL")


def order(*fields: dict) -> str:
    return json.dumps({"type": "record", "name": "Order", "fields": list(fields)})


ID = {"name": "id", "type": "long"}
AMOUNT = {"name": "amount", "type": "double"}
QUANTITY = {"name": "quantity", "type": "int"}
NOTE = {"name": "note", "type": "string", "default": ""}

# The subject holds one version; each change is a candidate second version.
BASE = order(ID, AMOUNT, QUANTITY, NOTE)
CHANGES: dict[str, tuple[str, str]] = {
    "A": ("add `currency` (string) with default \"EUR\"",
          order(ID, AMOUNT, QUANTITY, NOTE, {"name": "currency", "type": "string", "default": "EUR"})),
    "B": ("add `customer` (string) with no default",
          order(ID, AMOUNT, QUANTITY, NOTE, {"name": "customer", "type": "string"})),
    "C": ("remove `amount` (it has no default)", order(ID, QUANTITY, NOTE)),
    "D": ("widen `quantity` from int to long", order(ID, AMOUNT, {"name": "quantity", "type": "long"}, NOTE)),
    "E": ("change `id` from long to string", order({"name": "id", "type": "string"}, AMOUNT, QUANTITY, NOTE)),
}


def accepted_by(change: str) -> set[str]:
    """The modes (of BACKWARD, FORWARD, FULL) that accept CHANGES[change] after BASE."""
    new = avro.schema.parse(CHANGES[change][1])
    old = [(1, avro.schema.parse(BASE))]
    return {mode for mode in MODES if not check(mode, new, old)}


def acceptance_reference() -> dict[str, set[str]]:
    return {name: accepted_by(name) for name in CHANGES}


def check_acceptance(answers: Mapping[str, Any]) -> Feedback:
    """Exercise 2: for each change, the set of modes among BACKWARD, FORWARD, FULL that accept it."""
    if answers is None or all(answers.get(n) is None for n in CHANGES):
        return not_answered()
    if set(answers) != set(CHANGES) or any(answers[n] is None for n in CHANGES):
        return wrong(f"answer each of {sorted(CHANGES)} with a set of modes, e.g. {{\"BACKWARD\"}}, "
                     "or set() if none accepts it.")
    got: dict[str, set[str]] = {}
    for name in CHANGES:
        try:
            modes = {str(m).upper() for m in answers[name]}
        except TypeError:
            return wrong(f"{name}: give a set of modes such as {{\"BACKWARD\", \"FULL\"}}, not {answers[name]!r}.")
        modes.discard("NONE")  # NONE accepts everything: leaving it in or out is fine
        if not modes <= set(MODES):
            return wrong(f"{name}: {sorted(modes - set(MODES))} is not one of {list(MODES)}.")
        got[name] = modes
    want = acceptance_reference()
    if got == want:
        return right("BACKWARD asks whether the NEW schema reads data written with the OLD one, FORWARD "
                     "whether the OLD schema reads data written with the NEW one, FULL asks both.")
    swapped = {n: {{"BACKWARD": "FORWARD", "FORWARD": "BACKWARD"}.get(m, m) for m in w} for n, w in want.items()}
    if got == swapped:
        return wrong("you swapped BACKWARD and FORWARD. BACKWARD: consumers upgrade first, so the NEW "
                     "schema must read data written with the OLD one. FORWARD: producers upgrade first, "
                     "so the OLD schema must read data written with the NEW one.")
    for name, modes in got.items():
        if "FULL" in modes and not {"BACKWARD", "FORWARD"} <= modes:
            return wrong(f"{name}: FULL is BACKWARD and FORWARD together; it accepts a change only if "
                         "both do.")
    if "BACKWARD" in got["B"]:
        return wrong("B: a new reader that needs `customer` meets old records without it; with no default "
                     "it has nothing to fill in. That breaks BACKWARD (an old reader just skips the new "
                     "field, so FORWARD is fine).")
    if "BACKWARD" not in got["C"] or "FORWARD" in got["C"]:
        return wrong("C: a reader ignores fields it does not know, so the new schema reads old data "
                     "(BACKWARD ok); but an old reader needs `amount`, which new records lack and which "
                     "has no default (FORWARD breaks).")
    if got["D"] != want["D"]:
        return wrong("D: Avro promotes an int to a long when it reads (a long reader takes int data), "
                     "never a long to an int. Which side reads which?")
    if got["E"]:
        return wrong("E: no reader turns a long into a string: every mode but NONE refuses it.")
    if got["A"] != want["A"]:
        return wrong("A: a field with a default is safe both ways: a new reader fills the default into "
                     "old records, an old reader skips the new field.")
    bad = sorted(n for n in CHANGES if got[n] != want[n])
    return wrong(f"change(s) {bad}: for each, ask the two questions (new reads old? old reads new?).")


def schema_id_reference(value: bytes | None) -> int | None:
    """Confluent's wire format: magic byte 0, then the schema id as 4 bytes big-endian, then the
    payload. None if the value is not in that format."""
    if value is None or len(value) < 5 or value[0] != 0:
        return None
    return struct.unpack(">I", value[1:5])[0]


SCHEMA_ID_CASES: list[tuple[bytes | None, int | None]] = [
    (b"\x00\x00\x00\x00\x01\x02\x06abc", 1),
    (b"\x00\x00\x00\x01\x02", 258),
    (b"\x00\x00\x01\x00\x00", 65536),
    (b"\x00\x00\x00\x00\x07", 7),                  # an empty payload is allowed
    (b"\x01\x00\x00\x00\x07\x02", None),           # magic byte 1 is not this format
    (b'{"id": 7}', None),                          # plain JSON
    (b"\x00\x00\x01", None),                       # too short
    (None, None),                                  # a tombstone
]


def check_schema_id(fn: Callable[[bytes | None], Any]) -> Feedback:
    """Exercise 1: schema_id_of(value) -> the schema id a record value carries, or None."""
    for value, want in SCHEMA_ID_CASES:
        done, got = call_learner(fn, value)
        if not done:
            return got
        if got == want:
            continue
        case = f"schema_id_of({value!r}) returned {got!r}, expected {want!r}"
        if want is not None and value is not None and got == int.from_bytes(value[1:5], "little"):
            return wrong(f"{case}: the id is big-endian (network order), as Kafka writes every integer.")
        if want is not None and value is not None and got == int.from_bytes(value[0:4], "big"):
            return wrong(f"{case}: byte 0 is the magic byte; the id is bytes 1 to 4.")
        if want is None and value is not None and len(value) >= 5 and value[0] != 0:
            return wrong(f"{case}: check the magic byte: only a value starting with 0 is in this format.")
        if want is None:
            return wrong(f"{case}: a value shorter than 5 bytes (or None) carries no schema id.")
        return wrong(f"{case}: magic byte 0, then 4 bytes of id, big-endian.")
    return right("1 magic byte, 4 bytes of schema id, then the Avro payload: every record names its schema "
                 "in 5 bytes.")
