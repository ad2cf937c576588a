"""Kafka's TCP framing, checked against kafka-python's protocol classes as an outside witness."""

from __future__ import annotations

import importlib
import pkgutil
import struct

import kafka.protocol
import pytest
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.metadata import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    MetadataResponse,
)

from kafkalab.protocol import build
from kafkalab.protocol.apis import ZMQ_VERSIONS, decode_request, response_class, supported_versions
from kafkalab.protocol.errors import ErrorCode, MalformedMessageError
from kafkalab.protocol.kafka_framing import (
    encode_request,
    encode_response,
    encode_response_header,
    frame,
    is_flexible,
    parse_request_header,
    request_header_version,
    response_header_version,
    split_frames,
)


def _kafka_python_requests() -> dict[int, type]:
    for module in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
        try:
            importlib.import_module(module.name)
        except Exception:  # optional pieces (e.g. sasl backends) may not import
            pass
    found: dict[int, type] = {}
    stack = list(ApiMessage.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        try:
            if cls.type == "request" and cls._class_version is None:
                found[cls.API_KEY] = cls
        except Exception:
            pass
    return found


KP_REQUESTS = _kafka_python_requests()


def test_the_witness_knows_most_apis() -> None:
    assert len(set(KP_REQUESTS) & set(ZMQ_VERSIONS)) >= 25


@pytest.mark.parametrize("api_key", sorted(set(KP_REQUESTS) & set(ZMQ_VERSIONS)))
def test_flexible_versions_agree_with_kafka_python(api_key: int) -> None:
    witness = KP_REQUESTS[api_key]
    for version in supported_versions(api_key):
        if version <= witness.max_version:
            assert is_flexible(api_key, version) == bool(witness.flexible_version_q(version)), version
            assert request_header_version(api_key, version) == (2 if is_flexible(api_key, version) else 1)


def test_response_header_versions() -> None:
    assert response_header_version(3, 1) == 0  # Metadata v1: not flexible
    assert response_header_version(3, 12) == 1
    assert response_header_version(18, 3) == 0  # ApiVersions: always v0
    assert response_header_version(18, 99) == 0
    assert request_header_version(18, 3) == 2 and request_header_version(18, 99) == 2
    assert encode_response_header(7, 0) == b"\x00\x00\x00\x07"
    assert encode_response_header(7, 1) == b"\x00\x00\x00\x07\x00"
    with pytest.raises(ValueError, match="0 or 1"):
        encode_response_header(7, 2)


@pytest.mark.parametrize(
    ("witness", "version", "fields"),
    [
        (MetadataRequest, 1, {"topics": None}),
        (MetadataRequest, 12, {"topics": None, "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}),
        (ApiVersionsRequest, 0, {}),
        (ApiVersionsRequest, 3, {"client_software_name": "kafka-python", "client_software_version": "3"}),
    ],
    ids=["metadata-v1", "metadata-v12", "apiversions-v0", "apiversions-v3"],
)  # fmt: skip
def test_parse_requests_kafka_python_sends(witness: type, version: int, fields: dict) -> None:
    request = witness[version](**fields)
    request.with_header(correlation_id=1234, client_id="console-consumer")
    wire = request.encode(header=True, framed=True)
    frames, used = split_frames(wire + b"\x00\x00")  # a partial next frame stays unread
    assert used == len(wire) and len(frames) == 1
    header, body_at = parse_request_header(frames[0])
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (
        witness.API_KEY, version, 1234, "console-consumer",
    )  # fmt: skip
    assert header.header_version == (2 if witness.flexible_version_q(version) else 1)
    body = decode_request(header.api_key, header.api_version, frames[0][body_at:])
    for name, value in fields.items():
        assert getattr(body, name) == value


def test_our_requests_read_back_by_kafka_python() -> None:
    wire = encode_request(build.metadata_request(["orders"]), correlation_id=9, client_id="lab")
    decoded = MetadataRequest.decode(wire, version=12, header=True, framed=True)
    assert (decoded.header.correlation_id, decoded.header.client_id) == (9, "lab")
    assert [t.name for t in decoded.topics] == ["orders"]
    header, at = parse_request_header(split_frames(wire)[0][0])
    assert header.client_id == "lab" and header.tagged_fields == {}


def test_our_responses_read_back_by_kafka_python() -> None:
    response = build.metadata_response(
        {1: ("127.0.0.1", 9092)}, {"orders": {0: {"leader_id": 1, "isr_nodes": [1]}}}, cluster_id="lab"
    )
    decoded = MetadataResponse.decode(encode_response(response, 42), version=12, header=True, framed=True)
    assert decoded.header.correlation_id == 42 and decoded.cluster_id == "lab"
    assert [(b.node_id, b.host, b.port) for b in decoded.brokers] == [(1, "127.0.0.1", 9092)]
    assert decoded.topics[0].partitions[0].isr_nodes == [1]


def test_api_versions_response_uses_header_v0() -> None:
    cls = response_class(18, 3)
    response = cls(error_code=ErrorCode.none, api_keys=(), throttle_time=build.ms(0))
    wire = encode_response(response, 5)
    assert wire[4:8] == b"\x00\x00\x00\x05" and len(wire) == 4 + 4 + len(wire[8:])
    decoded = ApiVersionsResponse.decode(wire, version=3, header=True, framed=True)
    assert decoded.header.correlation_id == 5 and decoded.error_code == 0


def test_tagged_fields_in_a_v2_header() -> None:
    # Metadata v12 header v2 with one tagged field (tag 3, 2 bytes) and a null client id
    raw = struct.pack(">hhih", 3, 12, 77, -1) + b"\x01\x03\x02hi" + b"BODY"
    header, at = parse_request_header(raw)
    assert (header.client_id, header.tagged_fields, raw[at:]) == (None, {3: b"hi"}, b"BODY")


def test_unknown_api_keys_still_yield_a_correlation_id() -> None:
    raw = struct.pack(">hhih", 999, 0, 5, 0) + b"rest"
    header, at = parse_request_header(raw)
    assert (header.api_key, header.correlation_id, header.header_version, raw[at:]) == (999, 5, 1, b"rest")


@pytest.mark.parametrize(
    "raw",
    [b"\x00\x03\x00", struct.pack(">hhih", 3, 1, 1, 50) + b"short", struct.pack(">hhih", 3, 1, 1, -7),
     struct.pack(">hhih", 3, 12, 1, -1) + b"\x01\x03\x09hi", struct.pack(">hhih", 3, 12, 1, -1) + b"\xff\xff\xff\xff\xff\xff",
     struct.pack(">hhih", 3, 1, 1, 2) + b"\xff\xfe"],
    ids=["too-short", "client-id-overrun", "bad-length", "tag-overrun", "long-varint", "not-utf8"],
)  # fmt: skip
def test_malformed_headers_are_explained(raw: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        parse_request_header(raw)


def test_split_frames_handles_partial_and_many() -> None:
    wire = frame(b"one") + frame(b"") + frame(b"three")
    for cut in range(len(wire) + 1):
        frames, used = split_frames(wire[:cut])
        rest_frames, _ = split_frames(wire[used:])
        assert [bytes(f) for f in frames + rest_frames] == [b"one", b"", b"three"]


@pytest.mark.parametrize("size", [-1, 2_000])
def test_split_frames_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(MalformedMessageError, match="not speaking Kafka"):
        split_frames(struct.pack(">i", size) + b"x", max_frame_bytes=1_000)
