"""Avro compatibility levels, as Confluent's Schema Registry applies them.

The reader/writer rules themselves (may a reader with schema R decode what a writer with
schema W wrote?) are Avro's schema resolution: the `avro` library's
ReaderWriterCompatibilityChecker decides them. This module only says which pairs a level
checks, in which direction, and words the answer:

    BACKWARD   the new schema reads data written with the latest version (upgrade consumers first)
    FORWARD    the latest version reads data written with the new schema (upgrade producers first)
    FULL       both
    *_TRANSITIVE   the same against every registered version, not only the latest
    NONE       no check
"""

from __future__ import annotations

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import Schema

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
          "FULL_TRANSITIVE")
DEFAULT_LEVEL = "BACKWARD"

# Plain words for the avro library's incompatibility types: what went wrong, from the reader's side.
_REASONS = {
    "reader_field_missing_default_value": "has no default value and is missing in the writer's schema",
    "type_mismatch": "changed type",
    "name_mismatch": "changed its name",
    "fixed_size_mismatch": "changed its fixed size",
    "missing_enum_symbols": "lacks enum symbols the writer uses",
    "missing_union_branch": "lacks a union branch the writer uses",
}


def is_level(level: str) -> bool:
    return level in LEVELS


def pairs(level: str, new: Schema, previous: list[tuple[int, Schema]]
          ) -> list[tuple[str, int, Schema, Schema]]:
    """(direction, old version, reader, writer) pairs a level checks; `previous` holds
    (version, schema) oldest first."""
    if level == "NONE" or not previous:
        return []
    olds = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    out: list[tuple[str, int, Schema, Schema]] = []
    for version, old in reversed(olds):  # newest first: the usual culprit is named first
        if level.startswith(("BACKWARD", "FULL")):
            out.append(("backward", version, new, old))
        if level.startswith(("FORWARD", "FULL")):
            out.append(("forward", version, old, new))
    return out


def check(level: str, new: Schema, previous: list[tuple[int, Schema]]) -> list[str]:
    """The reasons `new` is refused under `level` against `previous` ((version, schema) oldest
    first); [] if it is accepted. Each reason names the direction, the version, the field or
    path and what is wrong."""
    if not is_level(level):
        raise ValueError(f"unknown compatibility level {level!r}; valid levels are {', '.join(LEVELS)}")
    reasons: list[str] = []
    for direction, version, reader, writer in pairs(level, new, previous):
        result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
        if result.compatibility is SchemaCompatibilityType.compatible:
            continue
        who = (f"the new schema cannot read data written with version {version}" if direction == "backward"
               else f"version {version} cannot read data written with the new schema")
        reasons.append(f"{direction.upper()}: {who}: {describe(result)}")
    return reasons


def describe(result: object) -> str:
    """One line per incompatibility of an avro SchemaCompatibilityResult. The library keeps
    types, locations and messages as separate sets; when there is one of each they pair up."""
    types = [t.value for t in result.incompatibilities]  # type: ignore[attr-defined]
    locations = sorted(result.locations)  # type: ignore[attr-defined]
    messages = sorted(result.messages)  # type: ignore[attr-defined]
    if len(types) == 1 and len(locations) == 1 and len(messages) == 1:
        return _one(types[0], locations[0], messages[0])
    return "; ".join([
        f"{', '.join(sorted({t.upper() for t in types}))} at {', '.join(locations)}",
        *messages])


def _one(kind: str, location: str, message: str) -> str:
    if kind == "reader_field_missing_default_value":
        return (f"{kind.upper()}: the field '{message}' at {location} {_REASONS[kind]}; "
                "give it a default to add it safely")
    return f"{kind.upper()} at {location}: {_REASONS.get(kind, kind)} ({message})"
