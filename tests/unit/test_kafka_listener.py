"""The Kafka TCP listener against a fake broker: framing, versions, ordering, sendfile, cuts.

The listener runs on a real EventLoop in a background thread with real sockets; only the
broker behind `handle()` is a stand-in, so the tests can choose when each reply arrives.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.cluster import wait_until
from kafkalab.protocol.apis import ZMQ_VERSIONS, decode_response, request_class, response_class
from kafkalab.protocol.kafka_framing import encode_request, encode_response
from kafkalab.protocol.versions import convert_default, convertible_versions, response_to
from kafkalab.storage import FileRegion
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.kafka_listener import (
    KAFKA_CLIENT_NODE,
    KafkaListener,
    encode_fetch_response,
)
from kafkalab.transport.loop import EventLoop

TD0 = datetime.timedelta(0)


class FakeBroker:
    """What KafkaListener needs of BrokerServer; records requests, replies when told."""

    def __init__(self, config: dict[str, Any] | None = None):
        self.loop = EventLoop()
        self.faults = FaultTable()
        self.node = "broker-1"
        self.broker_id = 1
        self.config = {"socket.request.max.bytes": 1 << 20, "fetch.sendfile.enable": True, **(config or {})}
        self.requests: list[tuple[int, int, Any, bool]] = []
        self.replies: list[Any] = []  # reply callbacks for requests held back
        self.hold = False
        self.fetch_records: Any = b""

    def handle(self, api_key: int, version: int, req: Any, reply: Any, *, zero_copy: bool = False) -> bool:
        self.requests.append((api_key, version, req, zero_copy))
        if api_key == 3:
            resp = _metadata_response(version, [str(t.name) for t in req.topics or ()])
        elif api_key == 1:
            resp = _fetch_response(version, self.fetch_records)
        elif api_key == 0:
            resp = response_class(0, version)(responses=(), throttle_time=TD0)
        else:
            return False
        if self.hold:
            self.replies.append(lambda: reply(resp))
        else:
            reply(resp)
        return True


def _metadata_response(version: int, names: list[str]) -> Any:
    cls = response_class(3, version)
    mod = __import__(cls.__module__, fromlist=["_"])
    brokers = (mod.MetadataResponseBroker(node_id=1, host="127.0.0.1", port=9092, rack=None),)
    topics = tuple(mod.MetadataResponseTopic(error_code=ErrorCode.none, name=n, topic_id=None,
                                             is_internal=False, partitions=()) for n in names)
    return cls(throttle_time=TD0, brokers=brokers, cluster_id="kafkalab", controller_id=-1, topics=topics)


def _fetch_response(version: int, records: Any) -> Any:
    return response_to(_fetch_response_v12(records), version)


def _fetch_response_v12(records: Any) -> Any:
    cls = response_class(1, 12)
    mod = __import__(cls.__module__, fromlist=["_"])
    part = mod.PartitionData(partition_index=0, error_code=ErrorCode.none, high_watermark=10,
                             last_stable_offset=10, log_start_offset=0, aborted_transactions=None,
                             records=records)
    return cls(throttle_time=TD0, error_code=ErrorCode.none, session_id=0,
               responses=(mod.FetchableTopicResponse(topic="t", partitions=(part,)),))


@pytest.fixture
def broker() -> Iterator[tuple[FakeBroker, KafkaListener]]:
    fake = FakeBroker()
    listener = KafkaListener(fake, 0)
    thread = threading.Thread(target=fake.loop.run_forever, daemon=True)
    thread.start()
    try:
        yield fake, listener
    finally:
        fake.loop.call_later(0, listener.close)
        fake.loop.call_later(0, fake.loop.stop)
        thread.join(5)


def _connect(listener: KafkaListener) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
    return sock


def _read_frame(sock: socket.socket) -> bytes:
    head = _recv_exact(sock, 4)
    (size,) = struct.unpack(">i", head)
    return _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray(n)
    view, got = memoryview(out), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        got += k
    return bytes(out)


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _response(frame: bytes, api_key: int, version: int, header_len: int) -> tuple[int, Any]:
    (corr,) = struct.unpack_from(">i", frame)
    return corr, decode_response(api_key, version, frame[header_len:])


def _metadata_request(version: int, topics: list[str] | None) -> Any:
    cls = request_class(3, version)
    topic_cls = convert_default(cls).__class__.__module__
    mod = __import__(topic_cls, fromlist=["_"])
    ts = None if topics is None else tuple(convert_default(mod.MetadataRequestTopic).__class__(
        **{**_fields(convert_default(mod.MetadataRequestTopic)), "name": n}) for n in topics)
    return dataclasses.replace(convert_default(cls), topics=ts)


def _fields(entity: Any) -> dict[str, Any]:
    return {f.name: getattr(entity, f.name) for f in dataclasses.fields(entity)}


# -- ApiVersions -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_lists_what_is_converted(broker, version: int) -> None:
    fake, listener = broker
    req = request_class(18, version)(**({"client_software_name": "t", "client_software_version": "1"}
                                        if version >= 3 else {}))
    with _connect(listener) as sock:
        sock.sendall(encode_request(req, 7))
        corr, resp = _response(_read_frame(sock), 18, version, 4)  # always header v0
    assert corr == 7 and resp.error_code == ErrorCode.none
    got = {int(a.api_key): (int(a.min_version), int(a.max_version)) for a in resp.api_keys}
    assert got[0] == (3, ZMQ_VERSIONS[0])  # Produce from v3: RecordBatch v2
    assert got[1] == (4, 12)  # Fetch from v4 (RecordBatch v2) to v12 (last by topic name)
    assert got[3] == convertible_versions(3, ZMQ_VERSIONS[3])
    assert 11 not in got  # no group service in this fake broker: JoinGroup not advertised


def test_api_versions_too_new_gets_v0_unsupported_version_with_the_list(broker) -> None:
    fake, listener = broker
    with _connect(listener) as sock:
        # v99 of ApiVersions, flexible header (v2): key, version, corr, client id, no tags
        payload = struct.pack(">hhih", 18, 99, 5, 1) + b"x" + b"\x00" + b"\x00\x00"
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        corr, resp = _response(_read_frame(sock), 18, 0, 4)
    assert corr == 5 and resp.error_code == ErrorCode.unsupported_version
    assert {int(a.api_key) for a in resp.api_keys} >= {0, 1, 3, 18}


# -- conversion and ordering -------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 4, 9, 12])
def test_metadata_is_served_at_the_lab_version_and_answered_at_the_clients(broker, version: int) -> None:
    fake, listener = broker
    with _connect(listener) as sock:
        sock.sendall(encode_request(_metadata_request(version, ["a", "b"]), 11))
        header_len = 5 if version >= 9 else 4
        corr, resp = _response(_read_frame(sock), 3, version, header_len)
    assert corr == 11
    api_key, lab_version, lab_req, _ = fake.requests[-1]
    assert (api_key, lab_version) == (3, ZMQ_VERSIONS[3])
    assert [str(t.name) for t in lab_req.topics] == ["a", "b"]
    assert [str(t.name) for t in resp.topics] == ["a", "b"]
    if version >= 1:  # the controller id is a live broker, never -1 (admin clients need one)
        assert resp.controller_id == 1


def test_metadata_v0_empty_topic_list_means_all_topics(broker) -> None:
    fake, listener = broker
    with _connect(listener) as sock:
        sock.sendall(encode_request(_metadata_request(0, []), 1))
        _read_frame(sock)
        sock.sendall(encode_request(_metadata_request(1, []), 2))
        _read_frame(sock)
    assert fake.requests[0][2].topics is None  # v0 []: all
    assert fake.requests[1][2].topics == ()  # v1 []: none


def test_pipelined_requests_are_answered_in_request_order(broker) -> None:
    fake, listener = broker
    fake.hold = True
    with _connect(listener) as sock:
        sock.sendall(b"".join(encode_request(_metadata_request(12, [f"t{i}"]), 100 + i) for i in range(5)))
        wait_until(lambda: len(fake.replies) == 5, 5, "5 requests handled")
        for i in (3, 1, 4, 0, 2):  # the broker completes them out of order
            fake.loop.call_later(0, fake.replies[i])
        corrs = [_response(_read_frame(sock), 3, 12, 5)[0] for _ in range(5)]
    assert corrs == [100, 101, 102, 103, 104]


def test_produce_with_acks_0_gets_no_response_and_keeps_the_order(broker) -> None:
    fake, listener = broker
    produce = request_class(0, 9)(transactional_id=None, acks=0, timeout=datetime.timedelta(seconds=1),
                                  topic_data=())
    with _connect(listener) as sock:
        sock.sendall(encode_request(produce, 1) + encode_request(_metadata_request(12, ["x"]), 2))
        corr, _ = _response(_read_frame(sock), 3, 12, 5)
    assert corr == 2 and [r[0] for r in fake.requests] == [0, 3]


def _produce(index: int, records: bytes, acks: int = 1) -> Any:
    cls = request_class(0, 9)
    mod = __import__(cls.__module__, fromlist=["_"])
    return cls(transactional_id=None, acks=acks, timeout=datetime.timedelta(seconds=1), topic_data=(
        mod.TopicProduceData(name="t", partition_data=(mod.PartitionProduceData(index=index, records=records),)),))


def test_large_produce_frames_arrive_whole_in_pieces_and_held_records_are_never_overwritten(broker) -> None:
    # Frames of 64 KiB and more are read in place into one buffer, reused for the next frame
    # only when nothing holds a view of it: this fake broker keeps every request (views and all).
    fake, listener = broker
    payloads = [bytes([i]) * (100_000 + i) for i in range(3)]
    stream = b"".join(encode_request(_produce(i, p), 10 + i) for i, p in enumerate(payloads))
    stream += encode_request(_metadata_request(12, ["after"]), 20)
    with _connect(listener) as sock:
        for at in range(0, len(stream), 7_001):  # frames cut at odd places, sizes in two pieces
            sock.sendall(stream[at:at + 7_001])
        corrs = [struct.unpack_from(">i", _read_frame(sock))[0] for _ in range(4)]
    assert corrs == [10, 11, 12, 20]
    produced = [bytes(r[2].topic_data[0].partition_data[0].records) for r in fake.requests if r[0] == 0]
    assert produced == payloads


def test_a_produce_frame_buffer_is_reused_once_the_broker_let_go_of_the_records(broker) -> None:
    fake, listener = broker
    real, got = fake.handle, []

    def handle(api_key, version, req, reply, *, zero_copy=False):  # a broker that writes and forgets
        if api_key == 0:
            got.append(bytes(req.topic_data[0].partition_data[0].records))
            req = dataclasses.replace(req, topic_data=())
        return real(api_key, version, req, reply, zero_copy=zero_copy)

    fake.handle = handle
    payloads = [b"a" * 200_000, b"b" * 150_000]
    spares = []
    with _connect(listener) as sock:
        for corr, payload in enumerate(payloads):
            frame = encode_request(_produce(0, payload), corr)
            sock.sendall(frame[:1000])  # the start first: the listener sees a frame still arriving
            wait_until(lambda: any(c.frame is not None for c in listener.connections.values()), 5,
                       "the frame read in place")
            sock.sendall(frame[1000:])
            _read_frame(sock)
            (conn,) = listener.connections.values()
            wait_until(lambda c=conn: c.spare is not None, 5, "the frame's buffer kept for the next")
            spares.append(conn.spare)
    assert got == payloads
    spare = spares[0]
    assert spares[1] is spare
    assert len(spare) > 200_000 and conn.spare is spare  # one buffer, reused


# -- refusals ------------------------------------------------------------------------------------


def test_oversized_frame_closes_only_that_connection(broker, caplog) -> None:
    fake, listener = broker
    with caplog.at_level(logging.WARNING), _connect(listener) as bad, _connect(listener) as good:
        bad.sendall(struct.pack(">i", (1 << 20) + 1) + b"\x00" * 16)
        assert _closed_by_peer(bad)
        good.sendall(encode_request(_metadata_request(12, ["ok"]), 3))
        assert _response(_read_frame(good), 3, 12, 5)[0] == 3
    assert "socket.request.max.bytes" in caplog.text


def test_a_client_resetting_its_connection_is_closed_quietly(broker, caplog) -> None:
    # A client that closes with unread data, or with SO_LINGER 0, resets the connection:
    # routine for Kafka clients (librdkafka does it on close), so no warning on stderr.
    fake, listener = broker
    with caplog.at_level(logging.WARNING):
        sock = _connect(listener)
        sock.sendall(encode_request(_metadata_request(12, ["ok"]), 3))
        assert _response(_read_frame(sock), 3, 12, 5)[0] == 3
        wait_until(lambda: len(listener.connections) == 1, 5, "the listener to hold the connection")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        wait_until(lambda: not listener.connections, 5, "the listener to drop the reset connection")
    assert "closing Kafka connection" not in caplog.text
    with _connect(listener) as again:  # and the listener still serves
        again.sendall(encode_request(_metadata_request(12, ["ok"]), 4))
        assert _response(_read_frame(again), 3, 12, 5)[0] == 4


@pytest.mark.parametrize("payload, reason", [
    (struct.pack(">hhih", 1, 99, 1, -1) + b"\x00", "not supported"),  # Fetch v99
    (struct.pack(">hhih", 1, 2, 1, -1), "not supported"),  # Fetch v2: pre-RecordBatch v2
    (struct.pack(">hhih", 11, 9, 1, -1) + b"\x00", "not served"),  # JoinGroup: no group service
    (struct.pack(">hhih", 9999, 0, 1, -1), "not served"),  # no such api
    (struct.pack(">hhih", 3, 12, 1, -1) + b"\x00\xff\xff\xff", "does not decode"),  # garbage body
    (b"\x00\x03", "header"),  # too short for a header
])
def test_bad_requests_close_the_connection_with_a_reason(broker, caplog, payload: bytes, reason: str) -> None:
    fake, listener = broker
    with caplog.at_level(logging.WARNING), _connect(listener) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        assert _closed_by_peer(sock)
    wait_until(lambda: reason in caplog.text, 5, f"a log line saying {reason!r}")
    assert not fake.requests


# -- Fetch and sendfile -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 11, 12])
def test_fetch_response_with_file_regions_encodes_like_the_bytes(tmp_path, version: int) -> None:
    data = os.urandom(5000)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(data)
    region = FileRegion(str(path), 1000, 3000, 0, 10)
    chunks, size = encode_fetch_response(_fetch_response(version, region), 42)
    wire = b"".join(data[c.position:c.position + c.length] if isinstance(c, FileRegion) else c for c in chunks)
    assert wire == encode_response(_fetch_response(version, data[1000:4000]), 42)
    assert size == len(wire)


def test_fetch_streams_a_large_region_through_a_slow_reader(broker, tmp_path) -> None:
    fake, listener = broker
    data = os.urandom(8 << 20)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(data)
    fake.fetch_records = FileRegion(str(path), 123, len(data) - 500, 0, 10)
    req = request_class(1, 12)(max_wait=TD0, min_bytes=1, topics=(), forgotten_topics_data=())
    with _connect(listener) as sock:
        sock.sendall(encode_request(req, 9) + encode_request(_metadata_request(12, ["after"]), 10))
        # Not reading yet: the socket buffers fill, sendfile stops short and the rest waits
        # for writability.
        wait_until(lambda: any(c.writing for c in list(listener.connections.values())), 5,
                   "a partial write")
        corr, resp = _response(_read_frame(sock), 1, 12, 5)
        corr2, _ = _response(_read_frame(sock), 3, 12, 5)
    assert fake.requests[0][3] is True  # the listener asks for zero-copy fetches
    assert (corr, corr2) == (9, 10)
    assert bytes(resp.responses[0].partitions[0].records) == data[123:len(data) - 377]
    assert listener.counters["kafka_sendfile_bytes"] == len(data) - 500


# -- network cuts -------------------------------------------------------------------------------


@pytest.mark.parametrize("one_way", [(KAFKA_CLIENT_NODE, "broker-1"), ("broker-1", KAFKA_CLIENT_NODE)])
def test_a_cut_leaves_requests_unanswered_until_a_new_connection(broker, one_way) -> None:
    fake, listener = broker
    fake.loop.call_later(0, lambda: fake.faults.cut(*one_way, one_way=True))
    wait_until(lambda: fake.faults.is_cut(*one_way), 5, "the cut")
    with _connect(listener) as sock:
        sock.settimeout(0.3)
        sock.sendall(encode_request(_metadata_request(12, ["x"]), 1))
        with pytest.raises(TimeoutError):
            sock.recv(1)
        fake.loop.call_later(0, fake.faults.heal)
        wait_until(lambda: not fake.faults.is_cut(*one_way), 5, "the heal")
        sock.sendall(encode_request(_metadata_request(12, ["x"]), 2))
        with pytest.raises(TimeoutError):  # that connection stays dark, like a dead TCP path
            sock.recv(1)
    with _connect(listener) as sock:
        sock.sendall(encode_request(_metadata_request(12, ["x"]), 3))
        assert _response(_read_frame(sock), 3, 12, 5)[0] == 3


def _lab_fetch_response(records: list[Any]) -> Any:
    """A lab (v12) Fetch response that uses every field: two topics, errors, aborted
    transactions, null and empty records, and each of v12's tagged fields."""
    cls = response_class(1, 12)
    mod = __import__(cls.__module__, fromlist=["_"])
    parts = [
        mod.PartitionData(partition_index=0, error_code=ErrorCode.none, high_watermark=10, last_stable_offset=8,
                          log_start_offset=2, aborted_transactions=(mod.AbortedTransaction(producer_id=7, first_offset=3),),
                          preferred_read_replica=2, records=records[0]),
        mod.PartitionData(partition_index=3, error_code=ErrorCode.not_leader_or_follower, high_watermark=-1,
                          last_stable_offset=-1, log_start_offset=-1, aborted_transactions=None, records=b"",
                          current_leader=mod.LeaderIdAndEpoch(leader_id=2, leader_epoch=5)),
        mod.PartitionData(partition_index=4, error_code=ErrorCode.none, high_watermark=3, aborted_transactions=(),
                          diverging_epoch=mod.EpochEndOffset(epoch=1, end_offset=3),
                          snapshot_id=mod.SnapshotId(end_offset=9, epoch=1), records=None),
    ]
    other = mod.PartitionData(partition_index=1, error_code=ErrorCode.none, high_watermark=5 << 33,
                              aborted_transactions=None, records=records[1])
    return cls(throttle_time=datetime.timedelta(milliseconds=3), error_code=ErrorCode.none, session_id=123456,
               responses=(mod.FetchableTopicResponse(topic="orders", partitions=tuple(parts)),
                          mod.FetchableTopicResponse(topic="t" * 300, partitions=(other,))))


@pytest.mark.parametrize("version", range(4, 13))
def test_the_fetch_encoder_writes_each_version_as_converting_and_encoding_with_kio_would(tmp_path, version) -> None:
    data = os.urandom(5000)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(data)
    regions = [FileRegion(str(path), 100, 700, 0, 10), FileRegion(str(path), 900, 3000, 0, 10)]
    chunks, size = encode_fetch_response(_lab_fetch_response(regions), 42, version)
    wire = b"".join(data[c.position:c.position + c.length] if isinstance(c, FileRegion) else c for c in chunks)
    expected = encode_response(response_to(_lab_fetch_response([data[100:800], data[900:3900]]), version), 42)
    assert wire == expected and size == len(wire)
    assert sum(isinstance(c, FileRegion) for c in chunks) == 2  # the records stay in the file


@pytest.mark.parametrize("version", [4, 12])
def test_the_fetch_encoder_writes_records_held_in_memory_small_and_large(version) -> None:
    small, large = os.urandom(300), os.urandom(200_000)  # sendfile off: records are bytes
    lab = _lab_fetch_response([small, large])
    chunks, size = encode_fetch_response(lab, 42, version)
    wire = b"".join(chunks)
    assert wire == encode_response(response_to(lab, version), 42) and size == len(wire)
    assert any(c is large for c in chunks)  # queued as it is, not copied into the frame
