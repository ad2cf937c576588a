"""KafkaListener: the broker's PLAINTEXT listener, Kafka's wire protocol over TCP.

Real clients (kafka-python, librdkafka/confluent-kafka, kcat) connect here. Each request is
decoded at the version the client negotiated, converted to the lab version (ZMQ_VERSIONS) and
served by the same `BrokerServer.handle` the ZeroMQ transport uses; the response goes back
converted to the client's version. Like Kafka, a connection's responses leave in request
order even when a later request (a Metadata) completes before an earlier one (a long-poll
Fetch), so each connection keeps a queue of reply slots.

Fetch record data leaves with os.sendfile straight from the segment file: the response is
encoded in one pass from the lab's version to the client's, cut where each partition's
records go, and the pieces are queued as [bytes, file region, bytes, ...] on the
connection's output queue, drained as the non-blocking socket accepts them.

Sockets are non-blocking and share the broker's single event loop: no thread per connection.

Network faults: clients outside the lab are the node "client-kafka" (KAFKA_CLIENT_NODE). A
connection that sees a cut between that node and this broker, in either direction, goes
dark for good: what it receives is dropped unread and nothing more is written, like a TCP
connection across a partition. The client times out and reconnects, and the new connection
works once the cut is healed. Dropping whole connections rather than single requests keeps
the stream consistent (a Kafka client treats a skipped correlation id as a broken
connection anyway).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from functools import cache
from typing import Any

import zmq
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import (
    ZMQ_VERSIONS,
    api_name,
    decode_request,
    encode,
    request_class,
    response_class,
    schema_module,
)
from kafkalab.protocol.bounds import check_bounds
from kafkalab.protocol.errors import MalformedMessageError, UnsupportedApiError
from kafkalab.protocol.kafka_framing import (
    encode_response_header,
    parse_request_header,
    put_uvarint,
    response_header_version,
)
from kafkalab.protocol.versions import convertible_versions, request_to, response_to
from kafkalab.storage import FileRegion
from kafkalab.transport.produce_request import read_produce_request

__all__ = ["KAFKA_CLIENT_NODE", "KafkaListener", "advertised_versions"]

log = logging.getLogger(__name__)

KAFKA_CLIENT_NODE = "client-kafka"
# APIs BrokerServer.handle serves itself; group and transaction APIs join when their
# service is present (server.groups.api_keys, server.transactions.api_keys).
BROKER_APIS = (ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.LIST_OFFSETS, ApiKey.METADATA, ApiKey.CREATE_TOPICS,
               ApiKey.DELETE_TOPICS, ApiKey.INIT_PRODUCER_ID, ApiKey.OFFSET_FOR_LEADER_EPOCH)
READ_CHUNK = 1 << 18
# A Produce frame of this many bytes, once its api and version are judged, is read straight
# into a buffer of its size (recv_into): no growing input buffer and no copies of the
# records before they are written. Capped (clients' requests are at most 1 MB by default),
# so that 8 bytes cannot make the broker allocate socket.request.max.bytes: a larger frame
# is buffered as it arrives, like any other.
PRODUCE_FRAME_DIRECT = (1 << 16, 4 << 20)
# A connection keeps its last Produce frame's buffer for the next one up to this size: fresh
# megabytes cost more (page faults) than the copy into them. (One buffer per producing
# connection: librdkafka's requests are at most message.max.bytes, 1 MB by default.)
PRODUCE_FRAME_KEPT = 2 << 20
# Large socket buffers: a fetch of many MB leaves in a few sendfile calls and wake-ups rather
# than one per default-sized buffer (Linux doubles the value, capped by net.core.wmem_max).
SOCKET_BUFFER_BYTES = 4 << 20
_SIZE = struct.Struct(">i")
_MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux; elsewhere each piece leaves as it is written
_HEAD = struct.Struct(">hh")  # a request header starts with its api key and version


def advertised_versions(api_keys: list[int] | tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """api key -> (min, max) version the listener serves: ApiVersions itself plus api_keys."""
    return dict(_advertised_versions(tuple(api_keys)))


@cache
def _advertised_versions(api_keys: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    # Asked on every request: worked out once per set of services (callers get a copy).
    out = {ApiKey.API_VERSIONS: (0, ZMQ_VERSIONS[ApiKey.API_VERSIONS])}
    for key in api_keys:
        if key in ZMQ_VERSIONS and key != ApiKey.API_VERSIONS:
            out[key] = convertible_versions(key, ZMQ_VERSIONS[key])
    return dict(sorted(out.items()))


def api_versions_response(version: int, versions: dict[int, tuple[int, int]],
                          error: ErrorCode = ErrorCode.none) -> Any:
    cls = response_class(ApiKey.API_VERSIONS, version)
    mod = schema_module(cls)
    keys = tuple(mod.ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in versions.items())
    fields = {f.name for f in dataclasses.fields(cls)}
    extra: dict[str, Any] = {"throttle_time": _td0()} if "throttle_time" in fields else {}
    return cls(error_code=error, api_keys=keys, **extra)


def _td0() -> Any:
    import datetime
    return datetime.timedelta(0)


@dataclasses.dataclass
class _FileChunk:
    """Part of a file still to be sent with os.sendfile."""

    fd: int
    position: int
    remaining: int
    path: str


Chunk = bytes | memoryview | _FileChunk


_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I64_I64 = struct.Struct(">qq")
_PARTITION_HEAD = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_EPOCH_END = struct.Struct(">iq")  # diverging_epoch: epoch, end_offset
_LEADER = struct.Struct(">ii")  # current_leader: leader_id, leader_epoch
_SNAPSHOT = struct.Struct(">qi")  # snapshot_id: end_offset, epoch
FETCH_MAX_VERSION = 12  # the encoder below knows Fetch response v4..v12
_OWN_CHUNK_BYTES = 1 << 16  # records in memory (sendfile off) this large are a chunk of their own


def _records_prefix(length: int, flexible: bool) -> bytes:
    """Length prefix of a records field: int32, or unsigned varint of length+1 when compact."""
    return put_uvarint(length + 1) if flexible else _SIZE.pack(length)


def encode_fetch_response(resp: Any, correlation_id: int, version: int | None = None) -> tuple[list[Any], int]:
    """A framed Fetch response at `version` (default: resp's own) as chunks: bytes, with each
    partition's FileRegion where its records are in a file.

    Written in one pass from the lab's response straight to the client's version: nothing is
    converted, copied or searched afterwards. Fields the version lacks are left out, as
    converting to that version and encoding with kio would (the unit tests hold it to that).
    Returns (chunks, frame size including its 4-byte prefix).
    """
    version = int(resp.__version__) if version is None else version
    if not 4 <= version <= FETCH_MAX_VERSION:
        raise ValueError(f"Fetch response v{version} is outside v4-v{FETCH_MAX_VERSION}")
    flexible = version >= 12
    out = bytearray(encode_response_header(correlation_id, 1 if flexible else 0))
    out += _I32.pack(int(resp.throttle_time.total_seconds() * 1000))
    if version >= 7:
        out += _I16.pack(int(getattr(resp, "error_code", 0))) + _I32.pack(int(getattr(resp, "session_id", 0)))

    def count(n: int) -> bytes:
        return put_uvarint(n + 1) if flexible else _I32.pack(n)

    chunks: list[Any] = []
    size = 0
    out += count(len(resp.responses))
    for t in resp.responses:
        name = str(t.topic).encode()
        out += (put_uvarint(len(name) + 1) if flexible else _I16.pack(len(name))) + name
        out += count(len(t.partitions))
        for p in t.partitions:
            out += _PARTITION_HEAD.pack(int(p.partition_index), int(p.error_code), int(p.high_watermark),
                                        int(getattr(p, "last_stable_offset", -1)))
            if version >= 5:
                out += _I64.pack(int(getattr(p, "log_start_offset", -1)))
            aborted = p.aborted_transactions
            if aborted is None:
                out += b"\0" if flexible else _I32.pack(-1)
            else:
                out += count(len(aborted))
                for a in aborted:
                    out += _I64_I64.pack(int(a.producer_id), int(a.first_offset))
                    if flexible:
                        out += b"\0"
            if version >= 11:
                out += _I32.pack(int(getattr(p, "preferred_read_replica", -1)))
            records = p.records
            if records is None:
                out += b"\0" if flexible else _I32.pack(-1)
            elif isinstance(records, FileRegion):
                out += _records_prefix(records.length, flexible)
                chunks.append(bytes(out))
                chunks.append(records)
                size += len(out) + records.length
                out = bytearray()
            elif len(records) >= _OWN_CHUNK_BYTES:  # queued as they are, not copied once more
                out += _records_prefix(len(records), flexible)
                chunks.append(bytes(out))
                chunks.append(records)
                size += len(out) + len(records)
                out = bytearray()
            else:
                out += _records_prefix(len(records), flexible)
                out += records
            if flexible:
                out += _partition_tags(p)
        if flexible:
            out += b"\0"  # the topic's tagged fields
    if flexible:
        out += b"\0"  # the response's tagged fields
    chunks.append(bytes(out))
    size += len(out)
    chunks[0] = _SIZE.pack(size) + chunks[0]
    return chunks, size + 4


def _partition_tags(p: Any) -> bytes:
    """Fetch v12's tagged partition fields, each written only when it is not its default."""
    fields = []
    d = getattr(p, "diverging_epoch", None)
    if d is not None and (int(d.epoch), int(d.end_offset)) != (-1, -1):
        fields.append((0, _EPOCH_END.pack(int(d.epoch), int(d.end_offset)) + b"\0"))
    c = getattr(p, "current_leader", None)
    if c is not None and (int(c.leader_id), int(c.leader_epoch)) != (-1, -1):
        fields.append((1, _LEADER.pack(int(c.leader_id), int(c.leader_epoch)) + b"\0"))
    s = getattr(p, "snapshot_id", None)
    if s is not None and (int(s.end_offset), int(s.epoch)) != (-1, -1):
        fields.append((2, _SNAPSHOT.pack(int(s.end_offset), int(s.epoch)) + b"\0"))
    if not fields:
        return b"\0"
    out = bytearray(put_uvarint(len(fields)))
    for tag, payload in fields:  # (tag, size, payload) in tag order
        out += put_uvarint(tag) + put_uvarint(len(payload)) + payload
    return bytes(out)


class _Slot:
    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[Any] | None = None


class Connection:
    """One client connection: input buffer, reply slots in request order, output queue."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int]):
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = f"{peer[0]}:{peer[1]}"
        self.inbuf = bytearray()
        self.frame: memoryview | None = None  # a large Produce frame read in place
        self.frame_got = 0
        self.spare: bytearray | None = None  # the buffer of the last one, for the next
        self.slots: deque[_Slot] = deque()
        self.out: deque[Chunk] = deque()
        self.closed = False
        self.dark = False  # a network cut was seen: drop input, write nothing
        self.writing = False  # registered for POLLOUT


class KafkaListener:
    """Listens on 127.0.0.1:port, serves Kafka clients through server.handle."""

    def __init__(self, server: Any, port: int, host: str = "127.0.0.1"):
        self.server = server
        self.loop = server.loop
        self.max_frame_bytes = int(server.config.get("socket.request.max.bytes", 104_857_600))
        # Shared with the ReplicaManager's counters so the broker's metrics publish them.
        self.counters: dict[str, int] = getattr(getattr(server, "rm", None), "counters", None) or {}
        for key in ("kafka_bytes_in", "kafka_bytes_out", "kafka_sendfile_bytes", "kafka_requests",
                    "kafka_connections", "kafka_malformed_requests", "kafka_request_errors"):
            self.counters.setdefault(key, 0)
        self.connections: dict[int, Connection] = {}
        self.sock = socket.create_server((host, port), reuse_port=False, backlog=128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.loop.add_socket(self.sock, self._accept)

    # -- versions ----------------------------------------------------------------------------

    def served_api_keys(self) -> list[int]:
        keys = set(BROKER_APIS)
        for service in (getattr(self.server, "groups", None), getattr(self.server, "transactions", None),
                        getattr(self.server, "admin", None)):
            keys |= set(getattr(service, "api_keys", ()) or ())
        return sorted(keys)

    def versions(self) -> dict[int, tuple[int, int]]:
        return _advertised_versions(tuple(self.served_api_keys()))

    # -- connections -------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. out of file descriptors: keep serving the others
                log.warning("%s: accepting a Kafka connection failed: %s", self.server.node, e)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
                except OSError:  # a system that refuses keeps its default
                    pass
            conn = Connection(sock, peer)
            self.connections[conn.fd] = conn
            self.counters["kafka_connections"] = len(self.connections)
            self.loop.add_socket(conn.fd, lambda c=conn: self._on_ready(c))

    def close_connection(self, conn: Connection, reason: str | None = None) -> None:
        if conn.closed:
            return
        if reason:
            log.warning("%s: closing Kafka connection from %s: %s", self.server.node, conn.peer, reason)
        conn.closed = True
        self.loop.remove_socket(conn.fd)
        self._drop_output(conn)
        for slot in conn.slots:
            _close_files(slot.chunks or ())
        conn.slots.clear()
        self.connections.pop(conn.fd, None)
        self.counters["kafka_connections"] = len(self.connections)
        try:
            conn.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        for conn in list(self.connections.values()):
            self.close_connection(conn)
        self.loop.remove_socket(self.sock)
        self.sock.close()

    def _is_cut(self) -> bool:
        faults = self.server.faults
        node = self.server.node
        return faults.is_cut(KAFKA_CLIENT_NODE, node) or faults.is_cut(node, KAFKA_CLIENT_NODE)

    # -- reading -----------------------------------------------------------------------------

    def _on_ready(self, conn: Connection) -> None:
        if conn.writing:
            self._flush(conn)
        if not conn.closed:
            self._read(conn)

    def _read(self, conn: Connection) -> None:
        if conn.frame is not None:
            self._read_produce_frame(conn)
            return
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection(conn)  # the client hung up abruptly: routine, not a warning
            return
        except OSError as e:
            self.close_connection(conn, f"read failed: {e}")
            return
        if not data:
            self.close_connection(conn)
            return
        self.counters["kafka_bytes_in"] += len(data)
        if conn.dark or self._is_cut():
            conn.dark = True
            return
        # The budget: a frame's size is checked as soon as its 4 bytes arrive, and its api and
        # version as soon as 4 more do, so a connection holds at most one frame of
        # socket.request.max.bytes (plus one read) unparsed, and only for a request this broker
        # serves: garbage is turned away after 8 bytes.
        buf = conn.inbuf
        buf += data
        start = 0
        while not conn.closed and len(buf) - start >= 4:
            (size,) = _SIZE.unpack_from(buf, start)
            if size < 0 or size > self.max_frame_bytes:
                self.counters["kafka_malformed_requests"] += 1
                self.close_connection(
                    conn, f"request frame of {size} bytes is outside 0..{self.max_frame_bytes} "
                    "(socket.request.max.bytes): not Kafka's protocol, or a request too large")
                return
            if len(buf) - start - 4 < size:
                if len(buf) - start >= 8:  # judge the api and version before buffering the rest
                    key, version = _HEAD.unpack_from(buf, start + 4)
                    reason = self._refuse(key, version)
                    if reason:
                        self.close_connection(conn, f"{reason} (refused before its {size}-byte frame arrived)")
                        return
                    if key == ApiKey.PRODUCE and PRODUCE_FRAME_DIRECT[0] <= size <= PRODUCE_FRAME_DIRECT[1]:
                        self._start_produce_frame(conn, size, start + 4)
                        return
                break
            with memoryview(buf) as view:  # one copy of the frame, not two
                payload = view[start + 4:start + 4 + size].tobytes()
            start += 4 + size
            try:
                self._on_frame(conn, payload)
            except Exception:  # a bug on a path that has no answer: this connection only
                self.counters["kafka_request_errors"] += 1
                log.exception("%s: a request from %s failed", self.server.node, conn.peer)
                self.close_connection(conn)
        if not conn.closed:
            del buf[:start]

    def _start_produce_frame(self, conn: Connection, size: int, at: int) -> None:
        """Move the start of a large Produce frame (inbuf[at:]) into a buffer of its size;
        the rest is read into it in place (_read_produce_frame)."""
        buf, spare = conn.inbuf, conn.spare
        conn.spare = None
        if spare is None or len(spare) < size:
            spare = bytearray(size)
        frame = memoryview(spare)[:size]
        got = len(buf) - at
        frame[:got] = memoryview(buf)[at:]
        del buf[:]
        conn.frame, conn.frame_got = frame, got

    def _read_produce_frame(self, conn: Connection) -> None:
        frame = conn.frame
        assert frame is not None
        try:
            n = conn.sock.recv_into(frame[conn.frame_got:])
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection(conn)
            return
        except OSError as e:
            self.close_connection(conn, f"read failed: {e}")
            return
        if not n:
            self.close_connection(conn)
            return
        self.counters["kafka_bytes_in"] += n
        if conn.dark or self._is_cut():
            conn.dark = True
            conn.frame = None
            return
        conn.frame_got += n
        if conn.frame_got < len(frame):
            return
        conn.frame = None
        try:
            self._on_frame(conn, frame)
        except Exception:  # a bug on a path that has no answer: this connection only
            self.counters["kafka_request_errors"] += 1
            log.exception("%s: a request from %s failed", self.server.node, conn.peer)
            self.close_connection(conn)
        buffer = frame.obj
        del frame
        if len(buffer) <= PRODUCE_FRAME_KEPT and not conn.closed and _unshared(buffer):
            conn.spare = buffer

    def _on_frame(self, conn: Connection, payload: bytes | bytearray) -> None:
        self.counters["kafka_requests"] += 1
        try:
            header, body_at = parse_request_header(payload)
        except MalformedMessageError as e:
            self.counters["kafka_malformed_requests"] += 1
            self.close_connection(conn, f"malformed request header: {e}")
            return
        key, version, corr = header.api_key, header.api_version, header.correlation_id
        versions = self.versions()
        body = memoryview(payload)[body_at:]  # a view: a Produce body is megabytes
        if key == ApiKey.API_VERSIONS:
            self._api_versions(conn, version, corr, body, versions)
            return
        reason = self._refuse(key, version, versions)
        if reason:
            self.close_connection(conn, reason)
            return
        try:
            # A Produce is read in place (already the lab version): its records stay views
            # into the frame, written to the log without a copy.
            request = read_produce_request(version, body) if key == ApiKey.PRODUCE \
                else _decode_lenient(key, version, body)
        except (MalformedMessageError, UnsupportedApiError) as e:
            self.counters["kafka_malformed_requests"] += 1
            self.close_connection(conn, str(e))
            return
        try:
            lab_request = request_to(request, ZMQ_VERSIONS[key])
        except Exception as e:  # a value the lab version cannot hold (out of range ...)
            self.close_connection(conn, f"{_name(key)} v{version} request cannot be served: "
                                  f"{type(e).__name__}: {e}")
            return
        slot: _Slot | None = None
        if not (key == ApiKey.PRODUCE and int(request.acks) == 0):  # Kafka never answers acks=0
            slot = _Slot()
            conn.slots.append(slot)
        reply = self._reply(conn, slot, key, version, corr)
        try:
            served = self.server.handle(key, ZMQ_VERSIONS[key], lab_request, reply, zero_copy=key == ApiKey.FETCH)
        except Exception:  # a broker survives any single bad request
            self.counters["kafka_request_errors"] += 1
            log.exception("%s: %s v%d from %s failed", self.server.node, _name(key), version, conn.peer)
            self.close_connection(conn)
            return
        if not served:
            self.close_connection(conn, f"{_name(key)} is not served by this broker")

    def _refuse(self, key: int, version: int, versions: dict[int, tuple[int, int]] | None = None) -> str:
        """Why a request for (key, version) cannot be served here, or "" if it can."""
        versions = versions or self.versions()
        if key == ApiKey.API_VERSIONS:
            return ""  # any version: a too-new one is answered at v0 with the list
        if key not in versions:
            return f"api key {key} ({_name(key)}) is not served by this broker"
        lo, hi = versions[key]
        if not lo <= version <= hi:
            return (f"{_name(key)} v{version} is not supported (this broker serves v{lo}-v{hi}); "
                    "the client should have used ApiVersions")
        return ""

    def _api_versions(self, conn: Connection, version: int, corr: int, body: bytes | memoryview,
                      versions: dict[int, tuple[int, int]]) -> None:
        lo, hi = versions[ApiKey.API_VERSIONS]
        if not lo <= version <= hi:
            # Kafka answers a too-new ApiVersions at v0 with the list, so the client can retry.
            resp = api_versions_response(0, versions, ErrorCode.unsupported_version)
        else:
            try:
                decode_request(ApiKey.API_VERSIONS, version, body)
            except MalformedMessageError as e:
                self.counters["kafka_malformed_requests"] += 1
                self.close_connection(conn, str(e))
                return
            resp = api_versions_response(version, versions)
        slot = _Slot()
        conn.slots.append(slot)
        self._fill(conn, slot, [_frame_response(resp, corr)])

    # -- replies -----------------------------------------------------------------------------

    def _reply(self, conn: Connection, slot: _Slot | None, key: int, version: int,
               corr: int) -> Callable[[Any], None]:
        def reply(lab_response: Any) -> None:
            if slot is None or conn.closed:
                return
            try:
                if key == ApiKey.FETCH:  # straight from the lab's version to the client's
                    chunks = self._open_regions(encode_fetch_response(lab_response, corr, version)[0])
                else:
                    resp = response_to(lab_response, version)
                    if key == ApiKey.METADATA:
                        resp = self._fix_metadata(resp)
                    chunks = [_frame_response(resp, corr)]
            except Exception:
                log.exception("%s: encoding the %s v%d response for %s failed", self.server.node,
                              _name(key), version, conn.peer)
                self.close_connection(conn)
                return
            self._fill(conn, slot, chunks)
        return reply

    def _fix_metadata(self, resp: Any) -> Any:
        # KRaft brokers name a live broker as the "controller" (admin clients send it their
        # CreateTopics, which it forwards); -1 would leave admin clients waiting.
        if hasattr(resp, "controller_id") and int(resp.controller_id) < 0:
            return dataclasses.replace(resp, controller_id=self.server.broker_id)
        return resp

    def _fill(self, conn: Connection, slot: _Slot, chunks: list[Any]) -> None:
        slot.chunks = chunks
        while conn.slots and conn.slots[0].chunks is not None:
            conn.out.extend(conn.slots.popleft().chunks or ())
        self._flush(conn)

    def _open_regions(self, chunks: list[Any]) -> list[Chunk]:
        """Open each FileRegion's segment now, so that a later deletion (retention) cannot
        take the data away before it is sent: an open file lives on until closed."""
        out: list[Chunk] = []
        try:
            for chunk in chunks:
                if isinstance(chunk, FileRegion):
                    fd = os.open(chunk.path, os.O_RDONLY)
                    out.append(_FileChunk(fd, chunk.position, chunk.length, chunk.path))
                else:
                    out.append(chunk)
        except OSError:
            _close_files(out)
            raise
        return out

    # -- writing -----------------------------------------------------------------------------

    def _flush(self, conn: Connection) -> None:
        if conn.closed:
            return
        if conn.dark or self._is_cut():
            conn.dark = True
            self._drop_output(conn)
            self._want_write(conn, False)
            return
        out = conn.out
        try:
            while out:
                chunk = out[0]
                if isinstance(chunk, _FileChunk):
                    sent = os.sendfile(conn.fd, chunk.fd, chunk.position, chunk.remaining)
                    if sent == 0:
                        self.close_connection(conn, f"{chunk.path} is shorter than the fetch response "
                                              "promised (truncated while being sent)")
                        return
                    chunk.position += sent
                    chunk.remaining -= sent
                    self.counters["kafka_bytes_out"] += sent
                    self.counters["kafka_sendfile_bytes"] += sent
                    if chunk.remaining:
                        break  # the socket buffer is full: wait for POLLOUT, not for EAGAIN
                    os.close(chunk.fd)
                    out.popleft()
                else:
                    # Bytes just before file data (a response's head, the fields between two
                    # partitions' records) wait for that data instead of leaving as a packet of
                    # their own: fewer, fuller segments for the client to wake up for.
                    more = len(out) > 1 and isinstance(out[1], _FileChunk)
                    sent = conn.sock.send(chunk, _MSG_MORE if more else 0)
                    self.counters["kafka_bytes_out"] += sent
                    if sent != len(chunk):
                        out[0] = memoryview(chunk)[sent:]
                        break
                    out.popleft()
        except (BlockingIOError, InterruptedError):
            pass
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection(conn)  # the client went away before its answer: routine
            return
        except OSError as e:
            self.close_connection(conn, f"write failed: {e}")
            return
        self._want_write(conn, bool(out))

    def _drop_output(self, conn: Connection) -> None:
        _close_files(conn.out)
        conn.out.clear()

    def _want_write(self, conn: Connection, on: bool) -> None:
        """Also wake on writability while output is queued (level-triggered POLLOUT)."""
        if conn.writing == on or conn.closed:
            return
        conn.writing = on
        self.loop.set_events(conn.fd, zmq.POLLIN | (zmq.POLLOUT if on else 0))


def _frame_response(resp: Any, corr: int) -> bytes:
    api_key, version = int(resp.__api_key__), int(resp.__version__)
    header = encode_response_header(corr, response_header_version(api_key, version))
    body = encode(resp)
    return _SIZE.pack(len(header) + len(body)) + header + body


@cache
def _reader(cls: type) -> Callable[[memoryview, int], tuple[Any, int]]:
    return entity_reader(cls)


def _decode_lenient(api_key: int, version: int, body: bytes | memoryview) -> Any:
    """Decode a request body, ignoring bytes after the message as Kafka's brokers do.

    (librdkafka 2.x sends a few trailing bytes on some Metadata v12 requests; a strict
    decoder would turn its admin client away.)
    """
    try:
        return decode_request(api_key, version, body)
    except MalformedMessageError as e:
        if "left over" not in str(e):
            raise
    cls = request_class(api_key, version)
    check_bounds(cls, body)  # passed inside decode_request already; kept next to the reader
    entity, size = _reader(cls)(memoryview(body).toreadonly(), 0)
    log.debug("%s v%d request had %d bytes after the message; ignored", api_name(api_key), version,
              len(body) - size)
    return entity


def _name(api_key: int) -> str:
    try:
        return api_name(api_key)
    except UnsupportedApiError:
        return "unknown"


def _unshared(buffer: bytearray) -> bool:
    """No view of buffer is left (a resize fails while one exists): its bytes may be reused
    for the next frame without changing records that something still refers to."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    buffer.pop()
    return True


def _close_files(chunks: Any) -> None:
    for chunk in chunks:
        if isinstance(chunk, _FileChunk) and chunk.fd >= 0:
            os.close(chunk.fd)
            chunk.fd = -1
