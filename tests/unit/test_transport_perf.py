"""Round-trip latency and pipelined throughput of a small request between two processes.

Prints the figures (run with -s to see them); the bounds are loose sanity checks that
catch a broken poll timeout or per-message reconnects, not a benchmark gate.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import zmq

from kafkalab.process import spawner
from kafkalab.protocol import build
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import RpcClient, RpcServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def serve(port_file: str) -> None:  # runs in a spawned child process (dies with this one)
    ctx = zmq.Context()
    loop = EventLoop()
    response = build.metadata_response({1: ("127.0.0.1", 1)}, {})
    with RpcServer(ctx, "broker-1", 0, FaultTable()) as server:

        def on_readable() -> None:
            for env in server.receive(time.monotonic()):
                server.reply(env, response)

        loop.add_socket(server.socket, on_readable)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.port))
        os.replace(port_file + ".tmp", port_file)  # the port appears whole or not at all
        loop.run_forever()


@pytest.fixture(scope="module")
def server_port(tmp_path_factory):
    # kafkalab's own spawner, as every lab process: stdlib multiprocessing would leave its
    # resource-tracker process alive below pytest for the rest of the session.
    port_file = str(tmp_path_factory.mktemp("perf") / "port")
    proc = spawner().spawn(serve, "perf-echo", port_file=port_file)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file):
            assert proc.is_alive() and time.monotonic() < deadline, "echo server did not start"
            time.sleep(0.01)
        with open(port_file) as f:
            yield int(f.read())
    finally:
        proc.kill()
        proc.join(5)


def test_round_trip_latency(server_port: int) -> None:
    ctx = zmq.Context()
    try:
        with RpcClient(ctx, "client-bench", "broker-1", f"tcp://127.0.0.1:{server_port}", FaultTable()) as c:
            request = build.metadata_request(["orders"])
            for _ in range(200):  # warm up: connection, caches
                c.call(request, timeout_s=5)
            samples = []
            for _ in range(2000):
                start = time.perf_counter()
                c.call(request, timeout_s=5)
                samples.append(time.perf_counter() - start)
    finally:
        ctx.destroy(linger=0)
    samples.sort()
    median, p99 = statistics.median(samples), samples[int(len(samples) * 0.99)]
    print(f"\nround trip: median {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
    assert median < 0.02


def test_pipelined_throughput(server_port: int) -> None:
    ctx = zmq.Context()
    try:
        with RpcClient(ctx, "client-pipe", "broker-1", f"tcp://127.0.0.1:{server_port}", FaultTable()) as c:
            request = build.metadata_request(["orders"])
            c.call(request, timeout_s=5)
            window, done, total = 200, 0, 20_000
            start = time.perf_counter()
            sent = 0
            while done < total:
                while sent < total and c.pending < window:
                    c.send(request)
                    sent += 1
                c.socket.poll(1000)
                done += len(c.receive(time.monotonic()))
            elapsed = time.perf_counter() - start
    finally:
        ctx.destroy(linger=0)
    rate = total / elapsed
    print(f"\npipelined: {rate:,.0f} requests/s ({total} in {elapsed:.2f} s, window {window})")
    assert rate > 1000
