"""Confluent's wire format for a serialized record value (or key):

    byte 0      magic byte 0
    bytes 1-4   the schema's global id, big-endian
    bytes 5-    the payload (Avro binary, written with that schema)

So a record carries 4 bytes of schema id instead of its schema; a reader fetches the schema
by id from the registry once and caches it.
"""

from __future__ import annotations

import struct

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")


def frame(schema_id: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC_BYTE, schema_id) + payload


def schema_id(value: bytes | None) -> int | None:
    """The schema id a value carries, or None if it does not start with the wire header."""
    if value is None or len(value) < HEADER.size or value[0] != MAGIC_BYTE:
        return None
    return HEADER.unpack_from(value)[1]


def payload(value: bytes) -> bytes:
    return value[HEADER.size:]


def describe_value(value: bytes | None, text: str) -> str:
    """dump-log's payload column: `schemaId: N payload: ...` for a value in the wire format
    (`text` is how dump-log prints the value)."""
    sid = schema_id(value)
    return f"payload: {text}" if sid is None else f"schemaId: {sid} payload: {text}"
