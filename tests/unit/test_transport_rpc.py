"""RpcServer / RpcClient on real ZeroMQ sockets on 127.0.0.1, with faults applied."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

from kafkalab.protocol import build
from kafkalab.protocol.apis import encode
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import (
    FaultPublisher,
    FaultSubscriber,
    RequestTimeoutError,
    RpcClient,
    RpcServer,
)

pytestmark = pytest.mark.timeout(30)


def wait_for(condition: Callable[[], object], timeout_s: float = 5.0, what: str = "") -> object:
    """Poll condition until it is truthy; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(0.002)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def faults() -> FaultTable:
    return FaultTable()


@pytest.fixture
def server(ctx: zmq.Context, faults: FaultTable) -> Iterator[RpcServer]:
    with RpcServer(ctx, "broker-1", 0, faults) as s:
        yield s


@pytest.fixture
def client(ctx: zmq.Context, faults: FaultTable, server: RpcServer) -> Iterator[RpcClient]:
    with RpcClient(ctx, "client-1", "broker-1", server.endpoint, faults) as c:
        yield c


def metadata_for(sender: str):
    return build.metadata_response({1: ("127.0.0.1", 1)}, {}, cluster_id=sender)


def serve_one(server: RpcServer, timeout_s: float = 5.0) -> list:
    """Receive at least one request and answer each with a Metadata naming its sender."""
    envelopes = wait_for(lambda: server.receive(time.monotonic()), timeout_s, "a request")
    for env in envelopes:
        server.reply(env, metadata_for(env.sender))
    return envelopes


def test_request_and_response(server: RpcServer, client: RpcClient) -> None:
    assert server.port > 0 and server.endpoint == f"tcp://127.0.0.1:{server.port}"
    corr = client.send(build.metadata_request(["orders"]))
    assert client.pending == 1
    (env,) = serve_one(server)
    assert (env.sender, env.api_key, env.version, env.correlation_id) == ("client-1", 3, 12, corr)
    assert env.api_name == "Metadata" and [t.name for t in env.body.topics] == ["orders"]
    got = wait_for(lambda: client.receive(time.monotonic()), what="the response")
    assert [(c, r.cluster_id) for c, r in got] == [(corr, "client-1")]
    assert client.pending == 0


def test_correlation_ids_match_out_of_order_replies(server: RpcServer, client: RpcClient) -> None:
    ids = [client.send(build.metadata_request([f"t{i}"])) for i in range(3)]
    envelopes: list = []
    wait_for(lambda: envelopes.extend(server.receive(time.monotonic())) or len(envelopes) == 3)
    for env in reversed(envelopes):
        server.reply(env, build.metadata_response({}, {}, cluster_id=env.body.topics[0].name))
    got: list = []
    wait_for(lambda: got.extend(client.receive(time.monotonic())) or len(got) == 3)
    assert sorted((c, r.cluster_id) for c, r in got) == [(c, f"t{i}") for i, c in enumerate(ids)]


def test_reply_must_be_the_matching_response(server: RpcServer, client: RpcClient) -> None:
    client.send(build.metadata_request(None))
    (env,) = wait_for(lambda: server.receive(time.monotonic()))
    with pytest.raises(ValueError, match="Metadata v12"):
        server.reply(env, build.list_offsets_response({}))


def test_a_cut_drops_requests(server: RpcServer, client: RpcClient, faults: FaultTable) -> None:
    faults.cut("client-1", "broker-1", one_way=True)
    client.send(build.metadata_request(None))
    wait_for(lambda: server.receive(time.monotonic()) or server.inbox.dropped == 1)
    assert server.inbox.dropped == 1
    faults.heal()
    corr = client.send(build.metadata_request(None))
    assert [e.correlation_id for e in serve_one(server)] == [corr]


def test_a_cut_drops_responses(server: RpcServer, client: RpcClient, faults: FaultTable) -> None:
    faults.cut("broker-1", "client-1", one_way=True)  # requests still get through
    client.send(build.metadata_request(None))
    serve_one(server)
    wait_for(lambda: client.receive(time.monotonic()) or client.inbox.dropped == 1)
    assert client.inbox.dropped == 1 and client.pending == 1
    assert client.expire(time.monotonic(), 0.0) and client.pending == 0


def test_a_symmetric_cut_drops_both_ways(server: RpcServer, client: RpcClient, faults: FaultTable) -> None:
    faults.cut("client-1", "broker-1")
    with pytest.raises(RequestTimeoutError, match="REQUEST_TIMED_OUT.*no response") as e:
        client.call(build.metadata_request(None), timeout_s=0.2)
    assert e.value.retriable and client.pending == 0
    wait_for(lambda: server.receive(time.monotonic()) or server.inbox.dropped == 1)
    assert server.inbox.dropped == 1


def test_late_and_duplicate_responses_are_dropped(server: RpcServer, client: RpcClient) -> None:
    corr = client.send(build.metadata_request(None))
    (env,) = serve_one(server)
    server.reply(env, metadata_for("again"))  # a second reply to the same request
    got: list = []
    wait_for(lambda: got.extend(client.receive(time.monotonic())) or client.unmatched == 1)
    assert [(c, r.cluster_id) for c, r in got] == [(corr, "client-1")]
    late = client.send(build.metadata_request(None))
    client.forget(late)
    serve_one(server)
    wait_for(lambda: client.receive(time.monotonic()) or client.unmatched == 2)


def test_a_delay_holds_then_releases(server: RpcServer, client: RpcClient, faults: FaultTable) -> None:
    faults.delay("client-1", "broker-1", 150, one_way=True)
    sent = time.monotonic()
    client.send(build.metadata_request(None))
    wait_for(lambda: server.receive(time.monotonic()) or server.next_due(time.monotonic()))
    due = server.next_due(time.monotonic())
    assert due is not None and due >= sent + 0.15
    (env,) = wait_for(lambda: server.receive(time.monotonic()))
    assert env.received_at >= sent + 0.15 and server.next_due(time.monotonic()) is None


def test_call_waits_for_a_delayed_response(server: RpcServer, ctx: zmq.Context, faults: FaultTable) -> None:
    faults.delay("broker-1", "client-9", 100, one_way=True)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            for env in server.receive(time.monotonic()):
                server.reply(env, metadata_for(env.sender))
            server.socket.poll(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with RpcClient(ctx, "client-9", "broker-1", server.endpoint, faults) as c:
            start = time.monotonic()
            response = c.call(build.metadata_request(None), timeout_s=5)
            assert response.cluster_id == "client-9" and time.monotonic() - start >= 0.1
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize(
    "frames",
    [
        [os.urandom(37)],
        [struct.pack(">hhi", 3, 12, 1), b"\x00", b"extra"],  # three frames
        [b"\x00\x03", b"\x00\x0c", b"\x00\x00\x00\x01", b"\x00"],  # four: the old split header
        [b"\x00\x03\x00\x0c\x00\x00\x00"],  # shorter than a header
        [b"\x00\x03\x00\x0c\x00\x00\x00", b"\x00"],  # a 7-byte header frame
        [struct.pack(">hhi", 3, 12, 1)],  # a header and no body
        [struct.pack(">hhi", 999, 0, 1) + b"\x00"],  # unknown api key
        [struct.pack(">hhi", 3, 99, 1) + b"\x00"],  # unknown version
        [struct.pack(">hhi", 0, 9, 1) + encode(build.produce_request(-1, 10, {"t": {0: b"x" * 100}}))[:-30]],
        [struct.pack(">hhi", 3, 12, 1), os.urandom(64)],  # garbage in a body frame of its own
    ],
    ids=["random", "3-frames", "4-frames", "short-message", "short-header-frame", "no-body", "unknown-api",
         "unknown-version", "truncated", "garbage-body"],
)  # fmt: skip
def test_malformed_requests_are_dropped_and_the_server_keeps_serving(
    frames: list[bytes], ctx: zmq.Context, server: RpcServer, client: RpcClient
) -> None:
    bad = ctx.socket(zmq.DEALER)
    bad.setsockopt(zmq.LINGER, 0)
    bad.setsockopt(zmq.IDENTITY, b"\xff\xfebad")  # not even UTF-8
    try:
        bad.connect(server.endpoint)
        bad.send_multipart(frames)
        wait_for(lambda: server.receive(time.monotonic()) or server.malformed == 1)
    finally:
        bad.close(linger=0)
    corr = client.send(build.metadata_request(None))
    assert [e.correlation_id for e in serve_one(server)] == [corr]
    assert server.malformed == 1


def test_a_restarted_server_is_picked_up_by_an_existing_client(
    ctx: zmq.Context, faults: FaultTable
) -> None:
    first = RpcServer(ctx, "broker-1", 0, faults)
    port = first.port
    with RpcClient(ctx, "client-1", "broker-1", first.endpoint, faults) as c:
        try:
            c.send(build.metadata_request(None))
            serve_one(first)
            wait_for(lambda: c.receive(time.monotonic()))
        finally:
            first.close()
        with RpcServer(ctx, "broker-1", port, faults) as second:
            corr = c.send(build.metadata_request(None))
            assert corr in [e.correlation_id for e in serve_one(second)]
            got = wait_for(lambda: c.receive(time.monotonic()))
            assert [cid for cid, _ in got] == [corr]


def test_a_restarted_client_with_the_same_name_takes_over(
    ctx: zmq.Context, server: RpcServer, faults: FaultTable
) -> None:
    old = RpcClient(ctx, "broker-2", "broker-1", server.endpoint, faults)
    try:
        old.send(build.metadata_request(None))
        serve_one(server)
        wait_for(lambda: old.receive(time.monotonic()))
        with RpcClient(ctx, "broker-2", "broker-1", server.endpoint, faults) as new:
            corr = new.send(build.metadata_request(None))
            serve_one(server)
            assert [c for c, _ in wait_for(lambda: new.receive(time.monotonic()))] == [corr]
    finally:
        old.close()


def test_node_names_must_be_usable_identities(ctx: zmq.Context, faults: FaultTable) -> None:
    with pytest.raises(ValueError, match="ZeroMQ identity"):
        RpcClient(ctx, "", "broker-1", "tcp://127.0.0.1:1", faults)
    with pytest.raises(ValueError, match="ZeroMQ identity"):
        RpcClient(ctx, "x" * 300, "broker-1", "tcp://127.0.0.1:1", faults)


def test_binding_a_taken_port_is_explained(ctx: zmq.Context, server: RpcServer) -> None:
    with pytest.raises(zmq.ZMQError, match="pick another port"):
        RpcServer(ctx, "broker-2", server.port, FaultTable())


def test_send_rejects_a_response(client: RpcClient) -> None:
    with pytest.raises(TypeError, match="kio request"):
        client.send(build.metadata_response({}, {}))


def test_fault_tables_follow_the_publisher(ctx: zmq.Context) -> None:
    pub = FaultPublisher(ctx)
    table = FaultTable()
    sub = FaultSubscriber(ctx, pub.endpoint, table)
    try:
        authoritative = FaultTable()
        authoritative.partition(["broker-1"], ["broker-2", "controller"])

        def republished() -> bool:  # the slow-joiner: keep publishing until heard
            pub.publish(authoritative)
            sub.socket.poll(20)
            return sub.drain()

        wait_for(republished, what="the subscriber to hear the table")
        assert table == authoritative and table.is_cut("broker-2", "broker-1")
        stale = FaultTable()
        pub.publish(stale)
        pub.socket.send(b"not json")
        authoritative.heal()
        pub.publish(authoritative)
        wait_for(lambda: sub.socket.poll(20) and sub.drain() or not table)
        assert table.version == authoritative.version and not table.is_cut("broker-2", "broker-1")
    finally:
        sub.close()
        pub.close()


@contextlib.contextmanager
def echo_server(ctx: zmq.Context, port: int = 0) -> Iterator[int]:
    """An RpcServer on its own EventLoop thread, answering Metadata with the sender's name."""
    ready: list[int] = []
    loop = EventLoop()

    def run() -> None:
        with RpcServer(ctx, "broker-1", port, FaultTable()) as srv:

            def on_readable() -> None:
                for env in srv.receive(time.monotonic()):
                    srv.reply(env, metadata_for(env.sender))

            loop.add_socket(srv.socket, on_readable)
            loop.add_due_source(srv.next_due, on_readable)
            ready.append(srv.port)
            loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ready, what="the echo server")
        yield ready[0]
    finally:
        loop.stop()
        thread.join(5)


def test_call_against_a_server_on_an_event_loop(ctx: zmq.Context) -> None:
    with echo_server(ctx) as port:
        with RpcClient(ctx, "client-5", "broker-1", f"tcp://127.0.0.1:{port}", FaultTable()) as c:
            for _ in range(20):
                assert c.call(build.metadata_request(None), timeout_s=5).cluster_id == "client-5"


def test_a_version_the_lab_does_not_speak_is_answered_unsupported_and_never_handled(
    ctx: zmq.Context, server: RpcServer, client: RpcClient
) -> None:
    # Handlers are written for one version per API (ZMQ_VERSIONS); ListGroups v4 is valid
    # Kafka but not the lab's v5: the sender hears UNSUPPORTED_VERSION at its own version.
    from kio.schema.errors import ErrorCode
    from kio.schema.list_groups.v4.request import ListGroupsRequest

    from kafkalab.protocol.apis import decode_response
    from kafkalab.transport.rpc import _frames

    old = ctx.socket(zmq.DEALER)
    old.setsockopt(zmq.LINGER, 0)
    old.setsockopt(zmq.IDENTITY, b"client-old")
    try:
        old.connect(server.endpoint)
        old.send_multipart(_frames(ListGroupsRequest(states_filter=()), 7))
        wait_for(lambda: server.receive(time.monotonic()) or server.malformed == 1)
        assert old.poll(5000), "no answer to an unsupported version"
        (message,) = old.recv_multipart()
        assert (struct.unpack_from(">hhi", message)) == (16, 4, 7)
        assert decode_response(16, 4, message[8:]).error_code == ErrorCode.unsupported_version
    finally:
        old.close(linger=0)
    corr = client.send(build.metadata_request(None))
    assert [e.correlation_id for e in serve_one(server)] == [corr]  # the lab's own version is served


def test_a_produce_response_is_read_by_hand_and_a_damaged_one_dropped(
    server: RpcServer, client: RpcClient
) -> None:
    rows = {"orders": {0: {"error_code": 0, "base_offset": 42, "log_append_time_ms": 1_700_000_000_123}}}
    corr = client.send(build.produce_request(1, 30_000, {"orders": {0: b"batch"}}))
    (env,) = wait_for(lambda: server.receive(time.monotonic()))
    assert bytes(env.body.topic_data[0].partition_data[0].records) == b"batch"
    server.reply(env, build.produce_response(rows))
    ((got_corr, resp),) = wait_for(lambda: client.receive(time.monotonic()), what="the response")
    assert got_corr == corr and resp == build.produce_response(rows)
    assert build.produce_results(resp)["orders"][0]["log_append_time_ms"] == 1_700_000_000_123
    # The same response cut short: dropped like any malformed response (its request then times out).
    corr = client.send(build.produce_request(1, 30_000, {"orders": {0: b"batch"}}))
    (env,) = wait_for(lambda: server.receive(time.monotonic()))
    body = encode(build.produce_response(rows))
    server.socket.send_multipart([env.sender.encode(), struct.pack(">hhi", 0, 9, env.correlation_id) + body[:-3]])
    got: list = []
    wait_for(lambda: got.extend(client.receive(time.monotonic())) or client.pending == 0, what="the reply read")
    assert got == []


def test_a_message_is_one_frame_and_a_big_body_a_frame_of_its_own(server: RpcServer, client: RpcClient) -> None:
    """Header and body in one frame (one send and one receive a message); a body of
    BIG_BODY_BYTES or more goes in a second frame instead of being copied behind the header.
    Both arrive whole."""
    from kafkalab.transport.rpc import BIG_BODY_BYTES, _frames

    small = build.produce_request(1, 30_000, {"orders": {0: b"x" * 100}})
    big = build.produce_request(1, 30_000, {"orders": {0: b"y" * BIG_BODY_BYTES}})
    assert [len(f) > 8 for f in _frames(small, 1)] == [True]
    assert [len(f) for f in _frames(big, 1)][0] == 8 and len(_frames(big, 1)) == 2
    for request, records in ((small, b"x" * 100), (big, b"y" * BIG_BODY_BYTES)):
        corr = client.send(request)
        (env,) = wait_for(lambda: server.receive(time.monotonic()))
        assert env.correlation_id == corr and bytes(env.body.topic_data[0].partition_data[0].records) == records


def test_the_fault_channel_carries_a_request_for_metric_rows_beside_the_tables(ctx: zmq.Context) -> None:
    pub = FaultPublisher(ctx)
    table = FaultTable()
    sub = FaultSubscriber(ctx, pub.endpoint, table)
    try:
        def heard() -> bool:  # the slow-joiner: ask until heard
            pub.publish_metrics_now()
            sub.socket.poll(20)
            sub.drain()
            return sub.take_publish_request()

        wait_for(heard, what="the subscriber to hear the request")
        assert not table and table.version == 0  # not a table
        while sub.socket.poll(50):  # the requests that were still on their way
            sub.drain()
        sub.take_publish_request()
        assert not sub.take_publish_request()  # taken once
    finally:
        sub.close()
        pub.close()
