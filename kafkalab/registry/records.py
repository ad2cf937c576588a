"""The `_schemas` topic's records, in Confluent Schema Registry's JSON layouts.

Every change is one record; the key says what it is about, so compaction keeps the latest
state of each thing (a version of a subject, a config) and a null value (a tombstone) removes it:

    {"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}
        -> {"subject":"orders-value","version":1,"id":1,"schema":"...","deleted":false}
           (null: the version was deleted permanently)
    {"keytype":"CONFIG","subject":"orders-value","magic":0}    (no "subject": the global config)
        -> {"compatibilityLevel":"FULL"}                        (null: back to the global level)
    {"keytype":"DELETE_SUBJECT","subject":"orders-value","magic":0}
        -> {"subject":"orders-value","version":3}               (soft delete up to this version)
    {"keytype":"NOOP","magic":0} -> null    written on start: reading up to it means caught up

Keys are written with Confluent's field order and no spaces, so the same thing always has the
same key bytes (compaction compares bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TOPIC = "_schemas"
SCHEMA, CONFIG, DELETE_SUBJECT, NOOP = "SCHEMA", "CONFIG", "DELETE_SUBJECT", "NOOP"
KEYTYPES = (SCHEMA, CONFIG, DELETE_SUBJECT, NOOP, "MODE", "CLEAR_SUBJECT", "CONTEXT")


@dataclass(frozen=True)
class Record:
    """One record to write to (or read from) `_schemas`: key and value as JSON objects."""

    key: dict[str, Any]
    value: dict[str, Any] | None

    def encode(self) -> tuple[bytes, bytes | None]:
        return _dumps(self.key), None if self.value is None else _dumps(self.value)

    @staticmethod
    def decode(key: bytes, value: bytes | None) -> Record:
        try:
            k = json.loads(key)
            v = None if value is None else json.loads(value)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"not a schema registry record ({e}): key {key[:60]!r}") from None
        if not isinstance(k, dict) or k.get("keytype") not in KEYTYPES:
            raise ValueError(f"not a schema registry key: {key[:60]!r}")
        return Record(k, v)


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def schema_key(subject: str, version: int) -> dict[str, Any]:
    return {"keytype": SCHEMA, "subject": subject, "version": version, "magic": 1}


def schema_value(subject: str, version: int, schema_id: int, schema: str, deleted: bool = False,
                 schema_type: str = "AVRO") -> dict[str, Any]:
    value: dict[str, Any] = {"subject": subject, "version": version, "id": schema_id}
    if schema_type != "AVRO":  # Confluent leaves out the default
        value["schemaType"] = schema_type
    value["schema"] = schema
    value["deleted"] = deleted
    return value


def config_key(subject: str | None) -> dict[str, Any]:
    if subject is None:
        return {"keytype": CONFIG, "magic": 0}
    return {"keytype": CONFIG, "subject": subject, "magic": 0}


def config_value(level: str) -> dict[str, Any]:
    return {"compatibilityLevel": level}


def delete_subject_key(subject: str) -> dict[str, Any]:
    return {"keytype": DELETE_SUBJECT, "subject": subject, "magic": 0}


def delete_subject_value(subject: str, version: int) -> dict[str, Any]:
    return {"subject": subject, "version": version}


def noop_key() -> dict[str, Any]:
    return {"keytype": NOOP, "magic": 0}
