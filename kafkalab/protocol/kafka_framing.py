"""Kafka's own wire framing, for the TCP listener that real Kafka clients talk to. Pure functions.

On a Kafka connection every message is [size: int32 BE][header][body]. Request headers:

    v1: api_key int16, api_version int16, correlation_id int32, client_id nullable string (int16 length)
    v2: v1 + tagged fields (used by *flexible* api versions)

(client_id stays a non-compact string in v2, so any version's api key, version, correlation
id and client id can be read the same way.) Response headers: v0 is the correlation id;
v1 adds tagged fields and is used by flexible versions, except that ApiVersions responses
always use v0, so a client that asked with a too-new version can still read the answer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import api_key_of, encode, request_class, supported_versions
from kafkalab.protocol.errors import MalformedMessageError, UnsupportedApiError

__all__ = [
    "MAX_FRAME_BYTES",
    "RequestHeader",
    "encode_request",
    "encode_response",
    "encode_response_header",
    "frame",
    "is_flexible",
    "parse_request_header",
    "request_header_version",
    "response_header_version",
    "split_frames",
]

MAX_FRAME_BYTES = 104_857_600  # Kafka's socket.request.max.bytes default (100 MiB)

_SIZE = struct.Struct(">i")
_HEAD = struct.Struct(">hhi")


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    tagged_fields: dict[int, bytes] = field(default_factory=dict)
    header_version: int = 1


# -- frames ----------------------------------------------------------------------------------


def frame(payload: bytes | bytearray | memoryview) -> bytes:
    """payload with its int32 size in front."""
    return _SIZE.pack(len(payload)) + bytes(payload)


def split_frames(
    buffer: bytes | bytearray | memoryview, max_frame_bytes: int = MAX_FRAME_BYTES
) -> tuple[list[memoryview], int]:
    """The complete frames at the start of a stream buffer, and how many bytes they used.

    A trailing partial frame is left for the next read. A negative or oversized length
    means the peer is not speaking Kafka's protocol (or is hostile): MalformedMessageError,
    and the caller should close the connection.
    """
    view = memoryview(buffer)
    frames: list[memoryview] = []
    pos = 0
    while len(view) - pos >= 4:
        (size,) = _SIZE.unpack_from(view, pos)
        if size < 0 or size > max_frame_bytes:
            raise MalformedMessageError(
                f"frame size {size} at byte {pos} is outside 0..{max_frame_bytes}: the peer "
                "is not speaking Kafka's protocol (a TLS or HTTP client on a PLAINTEXT port?)"
            )
        if len(view) - pos - 4 < size:
            break
        frames.append(view[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames, pos


# -- which header versions -------------------------------------------------------------------


@cache
def _flexible(api_key: int, version: int) -> bool:
    return bool(request_class(api_key, version).__flexible__)


def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether (api, version) uses compact encodings and tagged fields.

    Versions newer than kio knows count as flexible when the api already is at its newest
    known version: Kafka never goes back from flexible. Only the schema of the version asked
    about is loaded (not every older one: a first Fetch would import a dozen modules).
    """
    versions = supported_versions(api_key)
    if api_version < versions[0]:
        return False
    return _flexible(api_key, min(api_version, versions[-1]))


def request_header_version(api_key: int, api_version: int) -> int:
    return 2 if is_flexible(api_key, api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key == ApiKey.API_VERSIONS:
        return 0
    return 1 if is_flexible(api_key, api_version) else 0


# -- request headers -------------------------------------------------------------------------


def _uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise MalformedMessageError("request header ends inside a varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise MalformedMessageError("request header has a varint longer than 5 bytes")


def put_uvarint(value: int) -> bytes:
    """An unsigned varint, as flexible versions write lengths, counts and tags."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def parse_request_header(
    payload: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[RequestHeader, int]:
    """Read a request header (v1 or v2, chosen by the api and version it names).

    Returns the header and the offset where the body starts. An api key kio does not know
    is read as a v1 header, so the listener can still answer with the right correlation id.
    """
    buf = memoryview(payload)
    if len(buf) - offset < 10:
        raise MalformedMessageError(
            f"request header needs at least 10 bytes, got {len(buf) - offset}"
        )
    api_key, api_version, correlation_id = _HEAD.unpack_from(buf, offset)
    pos = offset + 8
    (length,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    client_id: str | None = None
    if length >= 0:
        if pos + length > len(buf):
            raise MalformedMessageError(f"client_id of {length} bytes runs past the request")
        try:
            client_id = bytes(buf[pos : pos + length]).decode()
        except UnicodeDecodeError as e:
            raise MalformedMessageError(f"client_id is not UTF-8: {e}") from None
        pos += length
    elif length != -1:
        raise MalformedMessageError(f"client_id length {length} is negative and not -1 (null)")
    try:
        version = request_header_version(api_key, api_version)
    except UnsupportedApiError:
        version = 1
    tagged: dict[int, bytes] = {}
    if version == 2:
        count, pos = _uvarint(buf, pos)
        for _ in range(count):
            tag, pos = _uvarint(buf, pos)
            size, pos = _uvarint(buf, pos)
            if pos + size > len(buf):
                raise MalformedMessageError(f"tagged field {tag} runs past the request")
            tagged[tag] = bytes(buf[pos : pos + size])
            pos += size
    return RequestHeader(api_key, api_version, correlation_id, client_id, tagged, version), pos


def _encode_request_header(header: RequestHeader) -> bytes:
    out = bytearray(_HEAD.pack(header.api_key, header.api_version, header.correlation_id))
    if header.client_id is None:
        out += b"\xff\xff"
    else:
        raw = header.client_id.encode()
        out += struct.pack(">h", len(raw)) + raw
    if request_header_version(header.api_key, header.api_version) == 2:
        out += put_uvarint(len(header.tagged_fields))
        for tag in sorted(header.tagged_fields):
            data = header.tagged_fields[tag]
            out += put_uvarint(tag) + put_uvarint(len(data)) + data
    return bytes(out)


def encode_request(request: Any, correlation_id: int, client_id: str | None = "kafkalab") -> bytes:
    """A whole framed request, as a Kafka client sends it (for tests and lab tools)."""
    api_key, version = api_key_of(request)
    header = RequestHeader(api_key, version, correlation_id, client_id)
    return frame(_encode_request_header(header) + encode(request))


# -- responses -------------------------------------------------------------------------------


def encode_response_header(correlation_id: int, header_version: int) -> bytes:
    if header_version == 0:
        return _SIZE.pack(correlation_id)
    if header_version == 1:
        return _SIZE.pack(correlation_id) + b"\x00"  # no tagged fields
    raise ValueError(f"response header version is 0 or 1, not {header_version}")


def encode_response(response: Any, correlation_id: int) -> bytes:
    """A whole framed response: size, header (v0/v1 as the api requires), body."""
    api_key, version = api_key_of(response)
    header = encode_response_header(correlation_id, response_header_version(api_key, version))
    return frame(header + encode(response))
