"""The issue's frame and a raising handler, on each transport: refused, counted, and the rest served.

The Kafka listener runs against the fake broker of test_kafka_listener; the ZeroMQ server is a
real RpcServer. These would abort the test process before the bounds pre-pass existed.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map

from kafkalab.cluster import wait_until
from kafkalab.protocol import build
from kafkalab.protocol.apis import encode, request_class, response_class, supported_versions
from kafkalab.protocol.error_response import error_response
from kafkalab.protocol.kafka_framing import encode_request
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.kafka_listener import KafkaListener
from kafkalab.transport.rpc import RpcClient, RpcServer
from tests.unit.test_kafka_listener import (
    FakeBroker,
    _closed_by_peer,
    _connect,
    _metadata_request,
    _read_frame,
    _response,
)

ISSUE_BODY = bytes.fromhex("ffffffff0f") * 20  # ListOffsets v7: a compact array of 2^32-2
LIST_OFFSETS_V7_HEADER = struct.pack(">hhih", 2, 7, 1, 4) + b"evil" + b"\x00"  # header v2


@pytest.fixture
def served() -> Iterator[tuple[FakeBroker, KafkaListener]]:
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


def test_the_issue_frame_closes_its_connection_and_others_are_served(served, caplog) -> None:
    fake, listener = served
    with _connect(listener) as good, caplog.at_level(logging.WARNING):
        with _connect(listener) as evil:
            payload = LIST_OFFSETS_V7_HEADER + ISSUE_BODY
            evil.sendall(struct.pack(">i", len(payload)) + payload)
            assert _closed_by_peer(evil)
        wait_until(lambda: "ListOffsets v7" in caplog.text and "compact array count" in caplog.text,
                   5, "a log line naming the refused field")
        good.sendall(encode_request(_metadata_request(12, ["ok"]), 9))
        assert _response(_read_frame(good), 3, 12, 5)[0] == 9
    assert listener.counters["kafka_malformed_requests"] == 1
    assert not [r for r in fake.requests if r[0] == 2]  # the handler never saw it


def test_a_frame_larger_than_socket_request_max_bytes_is_refused_before_it_is_buffered(served, caplog) -> None:
    fake, listener = served
    limit = fake.config["socket.request.max.bytes"]
    with caplog.at_level(logging.WARNING):
        with _connect(listener) as sock:
            sock.sendall(struct.pack(">i", limit + 1) + b"\x00" * 100)
            assert _closed_by_peer(sock)
        with _connect(listener) as sock:  # a Metadata v12 of exactly the limit may arrive
            sock.sendall(struct.pack(">i", limit) + struct.pack(">hh", 3, 12) + b"\x00" * 100)
            wait_until(lambda: any(len(c.inbuf) for c in listener.connections.values()), 5,
                       "the listener to buffer a frame within the limit")
    assert "socket.request.max.bytes" in caplog.text
    assert listener.counters["kafka_malformed_requests"] == 1


def test_a_handler_that_raises_closes_only_its_connection_and_is_counted(served, caplog) -> None:
    fake, listener = served
    real = fake.handle

    def handle(api_key, version, req, reply, *, zero_copy=False):
        if api_key == 3 and req.topics and str(req.topics[0].name) == "boom":
            raise RuntimeError("a bug in a handler")
        return real(api_key, version, req, reply, zero_copy=zero_copy)

    fake.handle = handle
    with caplog.at_level(logging.ERROR), _connect(listener) as good:
        with _connect(listener) as bad:
            bad.sendall(encode_request(_metadata_request(12, ["boom"]), 1))
            assert _closed_by_peer(bad)
        good.sendall(encode_request(_metadata_request(12, ["fine"]), 2))
        assert _response(_read_frame(good), 3, 12, 5)[0] == 2
    assert listener.counters["kafka_request_errors"] == 1
    assert "a bug in a handler" in caplog.text


# -- the ZeroMQ transport ---------------------------------------------------------------------


@pytest.fixture
def rpc() -> Iterator[tuple[zmq.Context, RpcServer, RpcClient]]:
    ctx = zmq.Context()
    faults = FaultTable()
    server = RpcServer(ctx, "broker-1", 0, faults)
    client = RpcClient(ctx, "client-1", "broker-1", server.endpoint, faults)
    try:
        yield ctx, server, client
    finally:
        client.close()
        server.close()
        ctx.term()


def test_the_issue_body_over_zeromq_is_dropped_and_counted(rpc) -> None:
    ctx, server, client = rpc
    evil = ctx.socket(zmq.DEALER)
    evil.setsockopt(zmq.LINGER, 0)
    evil.setsockopt(zmq.IDENTITY, b"client-evil")
    try:
        evil.connect(server.endpoint)
        for version in (7, 8, 9):
            evil.send(struct.pack(">hhi", 2, version, 1) + ISSUE_BODY)
        deadline = time.monotonic() + 5
        while server.malformed < 3 and time.monotonic() < deadline:
            assert not server.receive(time.monotonic())
            server.socket.poll(50)
    finally:
        evil.close(linger=0)
    assert server.malformed == 3
    corr = client.send(build.metadata_request(None))
    deadline = time.monotonic() + 5
    got: list = []
    while not got and time.monotonic() < deadline:
        server.socket.poll(50)
        got = server.receive(time.monotonic())
    assert [e.correlation_id for e in got] == [corr]


def test_the_zeromq_server_refuses_messages_above_the_frame_budget() -> None:
    ctx = zmq.Context()
    try:
        server = RpcServer(ctx, "broker-1", 0, FaultTable())
        assert server.socket.getsockopt(zmq.MAXMSGSIZE) == 104_857_600  # socket.request.max.bytes
        server.close()
    finally:
        ctx.term()


def test_an_error_response_exists_for_every_api_and_version_and_encodes() -> None:
    for api_key in sorted(api_key_map):
        for version in supported_versions(api_key):
            resp = error_response(api_key, version)
            assert type(resp) is response_class(api_key, version)
            encode(resp)
            if hasattr(resp, "error_code"):
                assert resp.error_code == ErrorCode.unknown_server_error


def test_a_zeromq_handler_that_raises_answers_unknown_server_error_and_is_counted(rpc, caplog) -> None:
    _ctx, server, client = rpc

    def handle(envelope):
        raise RuntimeError("a bug in a handler")

    request = request_class(63, 2)(broker_id=1, broker_epoch=1, current_metadata_offset=0,
                                  want_fence=False, want_shut_down=False)
    corr = client.send(request)
    deadline = time.monotonic() + 5
    envelopes: list = []
    while not envelopes and time.monotonic() < deadline:
        server.socket.poll(50)
        envelopes = server.receive(time.monotonic())
    with caplog.at_level(logging.ERROR):
        assert [server.serve(e, handle) for e in envelopes] == [False]
    assert server.request_errors == 1
    assert "a bug in a handler" in caplog.text
    got: list = []
    while not got and time.monotonic() < deadline:
        client.socket.poll(50)
        got = client.receive(time.monotonic())
    assert [(c, r.error_code) for c, r in got] == [(corr, ErrorCode.unknown_server_error)]
    assert server.serve(envelopes[0], lambda e: None) is True  # a handler that works: no answer added
    assert server.request_errors == 1


def test_garbage_is_turned_away_before_its_declared_frame_is_buffered(served, caplog) -> None:
    fake, listener = served
    limit = fake.config["socket.request.max.bytes"]
    with caplog.at_level(logging.WARNING):
        with _connect(listener) as sock:  # declares a frame just within the limit, then garbage
            sock.sendall(struct.pack(">i", limit) + struct.pack(">hh", 9999, 0) + b"\xff" * 100)
            assert _closed_by_peer(sock)
        with _connect(listener) as sock:  # a served api at an unserved version: the same
            sock.sendall(struct.pack(">i", limit) + struct.pack(">hh", 3, 99) + b"\x00" * 100)
            assert _closed_by_peer(sock)
    assert "refused before its 1048576-byte frame arrived" in caplog.text
    assert "Metadata v99 is not supported" in caplog.text
