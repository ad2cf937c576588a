"""Produce request bodies by hand (read in place, written in one join), and the lab's Produce
response read by hand.

Reading: each partition's records stay a view into the frame.

kio's decoder copies every partition's records into a new bytes object. A librdkafka producer
sends up to a megabyte per request, and that copy (into fresh memory the kernel must fault in)
cost the broker more than the rest of the request together. This reader walks the same fields
(Kafka's ProduceRequest.json, v3-v9), checks every length against the bytes present before
using it, and builds the lab version's request (v9) with memoryviews as records, so the batches
go from the socket buffer to the segment file's writev without being copied in between.

Bytes after the message are ignored, as Kafka's brokers (and the listener's other requests) do.

Writing: the lab producer's sender sends a Produce (v9) per batch it drains, hundreds of times a
second; kio's generic writer checks every field's type on the way (a quarter of the sender's
time). write_produce_request writes the same bytes (a unit test holds it to kio's) with the
records copied once, by the final join.

The response: the sender reads one Produce response (v9) per request it sent. kio's generic
reader (after protocol.bounds' walk of every length) costs more than the rest of handling the
response; read_produce_response reads the same fields with every length checked as it goes,
into the same kio objects (a unit test holds it to kio's decoder).
"""

from __future__ import annotations

import datetime
import struct

from kafkalab.protocol.apis import lazy_schema
from kafkalab.protocol.errors import MalformedMessageError
from kafkalab.protocol.kafka_framing import put_uvarint

lab = lazy_schema("kio.schema.produce.v9.request")
lab_response = lazy_schema("kio.schema.produce.v9.response")

__all__ = ["FIRST_FLEXIBLE", "read_produce_request", "read_produce_response", "write_produce_request"]

FIRST_FLEXIBLE = 9  # Produce v9 (KIP-482): compact lengths and tagged fields
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_PARTITION_HEAD = struct.Struct(">ihqqq")  # index, error_code, base_offset, log_append_time_ms, log_start_offset
_MAX_MILLIS = 253402300799999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds
_ACKS_TIMEOUT = struct.Struct(">hi")
_NO_TAGS = b"\x00"  # an empty tagged-field section; also a null compact string or bytes


class _Cursor:
    __slots__ = ("buf", "end", "label", "pos")

    def __init__(self, buf: memoryview, label: str):
        self.buf, self.pos, self.end, self.label = buf, 0, len(buf), label

    def fail(self, what: str) -> MalformedMessageError:
        return MalformedMessageError(
            f"{self.label} ({self.end} bytes) does not decode: {what} at byte {self.pos} (the "
            "message is damaged, of another version, or hostile)")

    def take(self, n: int, what: str) -> int:
        """Reserve n bytes; returns where they start."""
        at = self.pos
        if n > self.end - at:
            raise self.fail(f"{what} needs {n} bytes, {self.end - at} are left")
        self.pos = at + n
        return at

    def int16(self, what: str) -> int:
        return _INT16.unpack_from(self.buf, self.take(2, what))[0]

    def int32(self, what: str) -> int:
        return _INT32.unpack_from(self.buf, self.take(4, what))[0]

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack_from(self.buf, self.take(fmt.size, what))

    def uvarint(self, what: str) -> int:
        value = shift = 0
        buf, end = self.buf, self.end
        while True:
            if self.pos >= end:
                raise self.fail(f"{what}: unsigned varint cut short")
            b = buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise self.fail(f"{what}: unsigned varint longer than 5 bytes")

    def string(self, flexible: bool, what: str, *, nullable: bool) -> str | None:
        n = self.uvarint(what) - 1 if flexible else self.int16(what)
        if n < 0:
            if nullable and n == -1:
                return None
            raise self.fail(f"{what} has length {n}" + ("" if nullable else " (it may not be null)"))
        at = self.take(n, what)
        try:
            return str(self.buf[at:at + n], "utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not UTF-8 ({e})") from None

    def count(self, flexible: bool, what: str) -> int:
        n = self.uvarint(what) - 1 if flexible else self.int32(what)
        if n < 0:
            raise self.fail(f"{what} count {n} (the array may not be null)")
        return n

    def records(self, flexible: bool) -> memoryview | None:
        n = self.uvarint("records length") - 1 if flexible else self.int32("records length")
        if n < 0:
            if n == -1:
                return None
            raise self.fail(f"records length {n}")
        at = self.take(n, "records")
        return self.buf[at:at + n]

    def skip_tagged_fields(self, what: str) -> None:
        for _ in range(self.uvarint(f"{what} tagged field count")):
            self.uvarint(f"{what} tag")
            self.take(self.uvarint(f"{what} tagged field size"), f"{what} tagged field")


def read_produce_request(version: int, body: memoryview) -> lab.ProduceRequest:
    """The Produce request in body (version 3-9) as the lab version's request, records as
    views into body. MalformedMessageError names the field that does not fit."""
    if not 3 <= version <= FIRST_FLEXIBLE:
        raise MalformedMessageError(f"Produce v{version} is not read here (v3-v{FIRST_FLEXIBLE} are)")
    flexible = version >= FIRST_FLEXIBLE
    r = _Cursor(body.toreadonly() if not body.readonly else body, f"request body for Produce v{version}")
    transactional_id = r.string(flexible, "transactional_id string", nullable=True)
    acks = r.int16("acks")
    timeout_ms = r.int32("timeout_ms")
    topics = []
    for _ in range(r.count(flexible, "topic_data")):
        name = r.string(flexible, "topic name string", nullable=False)
        partitions = []
        for _ in range(r.count(flexible, "partition_data")):
            index = r.int32("partition index")
            records = r.records(flexible)
            if flexible:
                r.skip_tagged_fields("partition_data")
            partitions.append(lab.PartitionProduceData(index=index, records=records))
        if flexible:
            r.skip_tagged_fields("topic_data")
        topics.append(lab.TopicProduceData(name=name, partition_data=tuple(partitions)))  # type: ignore[arg-type]
    if flexible:
        r.skip_tagged_fields("request")
    return lab.ProduceRequest(transactional_id=transactional_id, acks=acks,  # type: ignore[arg-type]
                              timeout=datetime.timedelta(milliseconds=timeout_ms), topic_data=tuple(topics))


def read_produce_response(body: bytes | memoryview) -> lab_response.ProduceResponse:
    """The Produce v9 response in body, as kio's decoder reads it. MalformedMessageError names
    the field that does not fit; bytes left after the message are refused, as for every other
    response the lab's clients decode."""
    view = memoryview(body)
    r = _Cursor(view if view.readonly else view.toreadonly(), "response body for Produce v9")
    m = lab_response
    error_code = m.ErrorCode
    topics = []
    for _ in range(r.count(True, "responses")):
        name = r.string(True, "topic name string", nullable=False)
        partitions = []
        for _ in range(r.count(True, "partition_responses")):
            index, code, base_offset, append_ms, log_start = r.unpack(_PARTITION_HEAD, "partition response")
            try:
                code = error_code(code)
            except ValueError:
                raise r.fail(f"error code {code} is not one Kafka defines") from None
            if append_ms == -1:
                append_time = None
            elif 0 <= append_ms <= _MAX_MILLIS:
                # kio's conversion (through a float: exact to the millisecond for this era's clocks)
                append_time = datetime.datetime.fromtimestamp(append_ms / 1000, datetime.UTC)
            else:
                raise r.fail(f"log_append_time_ms {append_ms} is no timestamp")
            record_errors = []
            for _ in range(r.count(True, "record_errors")):
                batch_index = r.int32("batch_index")
                message = r.string(True, "batch_index_error_message string", nullable=True)
                r.skip_tagged_fields("record_errors")
                record_errors.append(m.BatchIndexAndErrorMessage(
                    batch_index=batch_index, batch_index_error_message=message))  # type: ignore[arg-type]
            error_message = r.string(True, "error_message string", nullable=True)
            r.skip_tagged_fields("partition_responses")
            partitions.append(m.PartitionProduceResponse(
                index=index, error_code=code, base_offset=base_offset, log_append_time=append_time,
                log_start_offset=log_start, record_errors=tuple(record_errors), error_message=error_message))
        r.skip_tagged_fields("responses")
        topics.append(m.TopicProduceResponse(name=name, partition_responses=tuple(partitions)))
    throttle_ms = r.int32("throttle_time_ms")
    r.skip_tagged_fields("response")
    if r.pos != r.end:
        raise MalformedMessageError(
            f"response body for Produce v9 has {r.end - r.pos} bytes left over after a {r.pos}-byte "
            "message; the sender used another version")
    return m.ProduceResponse(responses=tuple(topics),  # type: ignore[arg-type]
                             throttle_time=datetime.timedelta(milliseconds=throttle_ms))


def _compact_string(value: str) -> bytes:
    raw = value.encode()
    return put_uvarint(len(raw) + 1) + raw


def write_produce_request(req: lab.ProduceRequest) -> bytes:
    """The body of a Produce v9 request (what kio's writer writes), records joined once."""
    txn = req.transactional_id
    parts: list[bytes | bytearray | memoryview] = [
        _NO_TAGS if txn is None else _compact_string(txn),
        _ACKS_TIMEOUT.pack(req.acks, round(req.timeout.total_seconds() * 1000)),
        put_uvarint(len(req.topic_data) + 1),
    ]
    for topic in req.topic_data:
        parts += (_compact_string(topic.name), put_uvarint(len(topic.partition_data) + 1))
        for p in topic.partition_data:
            records = p.records
            parts.append(_INT32.pack(p.index))
            if records is None:
                parts.append(_NO_TAGS)
            else:
                parts += (put_uvarint(len(records) + 1), records)
            parts.append(_NO_TAGS)
        parts.append(_NO_TAGS)
    parts.append(_NO_TAGS)
    return b"".join(parts)
