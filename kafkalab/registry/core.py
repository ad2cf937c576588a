"""The schema registry's state and rules, with no I/O: a request in, a response and the
`_schemas` records to write out.

The contract with the wiring (`server.py`): a change is only acknowledged after its records
are in `_schemas` with acks=all, and the state changes only by `apply(record)` — the same call
that rebuilds it, record by record, when a registry starts and reads the topic from offset 0.
So what a restarted registry knows is exactly what the topic holds. Calls must not overlap:
the wiring holds one lock from `handle()` to the `apply()` of its records, as Confluent's
single leader serializes every write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import avro.errors
import avro.schema

from kafkalab.registry import compatibility
from kafkalab.registry.records import (
    CONFIG,
    DELETE_SUBJECT,
    SCHEMA,
    Record,
    config_key,
    config_value,
    delete_subject_key,
    delete_subject_value,
    schema_key,
    schema_value,
)

# Confluent's error codes (the `error_code` of an error body; the HTTP status is its first 3 digits).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_LEVEL_CONFIG_NOT_FOUND = 40408
INCOMPATIBLE_SCHEMA = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
STORE_ERROR = 50001
STORE_TIMEOUT = 50002


class RegistryError(Exception):
    """A refusal, carried to the client as Confluent's error body."""

    def __init__(self, error_code: int, message: str, status: int | None = None):
        super().__init__(message)
        self.error_code = error_code
        self.status = status if status is not None else int(str(error_code)[:3])
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


@dataclass
class Response:
    status: int
    body: Any
    records: list[Record] = field(default_factory=list)


@dataclass
class Version:
    """One version of a subject as `_schemas` holds it."""

    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False

    def body(self) -> dict[str, Any]:
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, "schema": self.schema}


def parse_schema(text: Any, schema_type: Any = None, references: Any = None) -> avro.schema.Schema:
    """An Avro schema from a request's `schema` string, or RegistryError 42201 naming why not."""
    if schema_type not in (None, "AVRO"):
        raise RegistryError(INVALID_SCHEMA, f"Invalid schema: schemaType {schema_type!r} is not supported "
                                            "here; this registry handles AVRO schemas")
    if references:
        raise RegistryError(INVALID_SCHEMA, "Invalid schema: schema references are not supported here; "
                                            "inline the referenced types")
    if not isinstance(text, str) or not text.strip():
        raise RegistryError(INVALID_SCHEMA, 'Invalid schema: the request needs a non-empty "schema" string')
    try:
        return avro.schema.parse(text)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError, AttributeError) as e:
        raise RegistryError(INVALID_SCHEMA, f"Invalid schema {text[:200]}: {e}") from None


def canonical(schema: avro.schema.Schema) -> str:
    """The form stored and compared: the parsed schema as compact JSON (whitespace and key
    order in the request do not make a new schema)."""
    return json.dumps(_fields_name_first(schema.to_json()), separators=(",", ":"))


def _fields_name_first(node: Any) -> Any:
    """A record's fields read {"name":..,"type":..} as Avro's own toString writes them."""
    if isinstance(node, list):
        return [_fields_name_first(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _fields_name_first(v) for k, v in node.items()}
    if isinstance(out.get("fields"), list):
        out["fields"] = [{"name": f["name"], **{k: v for k, v in f.items() if k != "name"}}
                         if isinstance(f, dict) and "name" in f else f for f in out["fields"]]
    return out


class SchemaRegistry:
    """Subjects, their versions, global schema ids and compatibility configs."""

    def __init__(self) -> None:
        self.subjects: dict[str, dict[int, Version]] = {}
        self.configs: dict[str | None, str] = {}  # None: the global level
        self.next_id = 1
        self._parsed: dict[str, avro.schema.Schema] = {}

    # -- replay: the only way the state changes ------------------------------------------------
    def apply(self, record: Record) -> None:
        key, value = record.key, record.value
        kind = key.get("keytype")
        if kind == SCHEMA:
            subject, version = key["subject"], int(key["version"])
            if value is None:
                versions = self.subjects.get(subject, {})
                versions.pop(version, None)
                if not versions:
                    self.subjects.pop(subject, None)
                return
            v = Version(subject, version, int(value["id"]), value["schema"], bool(value.get("deleted", False)))
            self.subjects.setdefault(subject, {})[version] = v
            self.next_id = max(self.next_id, v.schema_id + 1)
        elif kind == CONFIG:
            subject = key.get("subject")
            if value is None:
                self.configs.pop(subject, None)
            else:
                self.configs[subject] = value["compatibilityLevel"]
        elif kind == DELETE_SUBJECT and value is not None:
            for v in self.subjects.get(key["subject"], {}).values():
                if v.version <= int(value["version"]):
                    v.deleted = True
        # NOOP (and keytypes this registry never writes) change nothing

    # -- reads -----------------------------------------------------------------------------------
    def level(self, subject: str | None) -> str:
        """The compatibility level that applies to `subject`: its own, else the global one."""
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, compatibility.DEFAULT_LEVEL)

    def versions(self, subject: str, deleted: bool = False) -> list[Version]:
        """A subject's versions, oldest first (soft-deleted ones only if `deleted`)."""
        return [v for _, v in sorted(self.subjects.get(subject, {}).items()) if deleted or not v.deleted]

    def _live_versions(self, subject: str, deleted: bool = False) -> list[Version]:
        found = self.versions(subject, deleted)
        if not found:
            raise RegistryError(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return found

    def list_subjects(self, deleted: bool = False) -> list[str]:
        return sorted(s for s in self.subjects if self.versions(s, deleted))

    def list_versions(self, subject: str, deleted: bool = False) -> list[int]:
        return [v.version for v in self._live_versions(subject, deleted)]

    def get_version(self, subject: str, version: str | int, deleted: bool = False) -> Version:
        found = self._live_versions(subject, deleted)
        if version == "latest" or version == -1:
            return found[-1]
        number = parse_version(version)
        for v in found:
            if v.version == number:
                return v
        raise RegistryError(VERSION_NOT_FOUND, f"Version {number} not found for subject '{subject}'.")

    def schema_by_id(self, schema_id: int) -> str:
        for versions in self.subjects.values():
            for v in versions.values():
                if v.schema_id == schema_id:
                    return v.schema
        raise RegistryError(SCHEMA_NOT_FOUND, f"Schema {schema_id} not found")

    def subjects_of_id(self, schema_id: int) -> list[str]:
        return sorted({v.subject for vs in self.subjects.values() for v in vs.values()
                       if v.schema_id == schema_id and not v.deleted})

    def _id_of(self, text: str) -> int | None:
        for versions in self.subjects.values():
            for v in versions.values():
                if v.schema == text:
                    return v.schema_id
        return None

    def _avro(self, text: str) -> avro.schema.Schema:
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = self._parsed[text] = avro.schema.parse(text)
        return parsed

    def lookup(self, subject: str, schema: avro.schema.Schema, deleted: bool = False) -> Version:
        """POST /subjects/{subject}: the version of this subject that holds this schema."""
        text = canonical(schema)
        found = self._live_versions(subject, deleted)
        for v in found:
            if v.schema == text:
                return v
        raise RegistryError(SCHEMA_NOT_FOUND, f"Schema not found in subject '{subject}'")

    def incompatibilities(self, subject: str, schema: avro.schema.Schema,
                          version: str | int | None = None) -> list[str]:
        """Why `schema` is refused in `subject` ([] if accepted): against the versions the
        subject's level names, or against one given version."""
        level = self.level(subject)
        if version is None or version == "latest":
            previous = [(v.version, self._avro(v.schema)) for v in self.versions(subject)]
        else:
            one = self.get_version(subject, version)
            previous = [(one.version, self._avro(one.schema))]
            level = level.removesuffix("_TRANSITIVE")
        return compatibility.check(level, schema, previous)

    # -- writes: a response and the records that make it true -----------------------------------
    def register(self, subject: str, schema: avro.schema.Schema) -> Response:
        """POST /subjects/{subject}/versions: the global id, new or existing."""
        text = canonical(schema)
        for v in self.versions(subject):
            if v.schema == text:  # registered already: same id, nothing written
                return Response(200, {"id": v.schema_id})
        reasons = self.incompatibilities(subject, schema)
        if reasons:
            raise RegistryError(INCOMPATIBLE_SCHEMA, (
                f'Schema being registered is incompatible with an earlier schema for subject "{subject}" '
                f"(compatibility {self.level(subject)}), details: [{'; '.join(reasons)}]"))
        schema_id = self._id_of(text) or self.next_id
        everything = self.versions(subject, deleted=True)
        version = everything[-1].version + 1 if everything else 1
        record = Record(schema_key(subject, version), schema_value(subject, version, schema_id, text))
        return Response(200, {"id": schema_id}, [record])

    def set_level(self, subject: str | None, level: Any) -> Response:
        """PUT /config or /config/{subject}."""
        checked = check_level(level)
        return Response(200, {"compatibility": checked}, [Record(config_key(subject), config_value(checked))])

    def get_level(self, subject: str | None, default_to_global: bool = False) -> dict[str, str]:
        if subject is None or subject in self.configs or default_to_global:
            return {"compatibilityLevel": self.level(subject)}
        raise RegistryError(SUBJECT_LEVEL_CONFIG_NOT_FOUND,
                            f"Subject '{subject}' does not have subject-level compatibility configured")

    def delete_level(self, subject: str) -> Response:
        """DELETE /config/{subject}: back to the global level."""
        if subject not in self.configs:
            raise RegistryError(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return Response(200, {"compatibilityLevel": self.configs[subject]}, [Record(config_key(subject), None)])

    def delete_subject(self, subject: str, permanent: bool = False) -> Response:
        """DELETE /subjects/{subject}: soft (versions hidden, ids still readable) or, after a
        soft delete, permanent (tombstones: compaction removes them from `_schemas`)."""
        everything = self.versions(subject, deleted=True)
        if not everything:
            raise RegistryError(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        live = [v for v in everything if not v.deleted]
        if not permanent:
            if not live:
                raise RegistryError(SUBJECT_SOFT_DELETED, f"Subject '{subject}' was soft deleted. "
                                                          "Set permanent=true to delete permanently")
            record = Record(delete_subject_key(subject), delete_subject_value(subject, live[-1].version))
            return Response(200, [v.version for v in live], [record])
        if live:
            raise RegistryError(SUBJECT_NOT_SOFT_DELETED, f"Subject '{subject}' was not deleted first before "
                                                          "being permanently deleted")
        records = [Record(schema_key(subject, v.version), None) for v in everything]
        records.append(Record(delete_subject_key(subject), None))
        if subject in self.configs:
            records.append(Record(config_key(subject), None))
        return Response(200, [v.version for v in everything], records)

    def delete_version(self, subject: str, version: str | int, permanent: bool = False) -> Response:
        """DELETE /subjects/{subject}/versions/{version}: soft, or permanent after soft."""
        if not permanent:
            v = self.get_version(subject, version, deleted=version != "latest")
            if v.deleted:
                raise RegistryError(VERSION_SOFT_DELETED, f"Subject '{subject}' Version {v.version} was soft deleted. "
                                                      "Set permanent=true to delete permanently")
            record = Record(schema_key(subject, v.version),
                            schema_value(subject, v.version, v.schema_id, v.schema, deleted=True))
            return Response(200, v.version, [record])
        v = self.get_version(subject, version, deleted=True)
        if not v.deleted:
            raise RegistryError(VERSION_NOT_SOFT_DELETED, f"Subject '{subject}' Version {v.version} was not deleted "
                                                          "first before being permanently deleted")
        return Response(200, v.version, [Record(schema_key(subject, v.version), None)])


def parse_version(version: str | int) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= 2**31 - 1:
        raise RegistryError(INVALID_VERSION, f"The specified version '{version}' is not a valid version id. "
                                             'Allowed values are between [1, 2^31-1] and the string "latest"')
    return number


def check_level(level: Any) -> str:
    if isinstance(level, str) and compatibility.is_level(level.upper()):
        return level.upper()
    raise RegistryError(INVALID_COMPATIBILITY_LEVEL, (
        f"Invalid compatibility level {level!r}. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive"))
