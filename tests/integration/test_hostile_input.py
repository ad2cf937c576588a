"""One hostile frame must never take a broker down: structure-aware fuzzing of both transports.

For every API and version the broker advertises (read from its own ApiVersions answer, so an
API added later is covered without touching this file), a valid request header is followed by
hostile bodies: random bytes, a truncated valid message, and bodies well-formed up to one
length — array, compact array, string, bytes, records or tagged field — that is 2^31-1,
negative, 2^32-2 in a 5-byte varint, an oversized or cut varint, possibly inside nested
compact arrays. They go to the broker's Kafka listener and to its ZeroMQ endpoint (and the
controller's), from two threads, while kafka-python produces and consumes on its own
connection. Seeded, so a failure replays. The broker must stay up, grow by less than
100 MB of RSS, and the good client must read back every record it was acknowledged.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
import uuid
from typing import Any

import pytest
import zmq

from kafkalab import Cluster
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import ZMQ_VERSIONS, decode_response, encode, request_class
from kafkalab.protocol.kafka_framing import (
    encode_request,
    request_header_version,
)
from tests.kio_messages import hostile_body, random_entity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 25
HOSTILE_PER_VERSION = 4  # plus one random and one truncated body per (api, version)
RECORDS = 200
RSS_BUDGET = 100 << 20
CONTROLLER_APIS = (1, 3, 19, 20, 43, 56, 62, 63, 67)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _recv_frame(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            assert chunk, "the broker closed the connection"
            out += chunk
        return out
    (size,) = struct.unpack(">i", exact(4))
    return exact(size)


def advertised(port: int) -> dict[int, tuple[int, int]]:
    """The broker's own ApiVersions table, asked for as a client does."""
    request = request_class(ApiKey.API_VERSIONS, 3)(client_software_name="fuzz", client_software_version="1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_request(request, 7))
        payload = _recv_frame(sock)
    assert struct.unpack_from(">i", payload)[0] == 7
    resp = decode_response(ApiKey.API_VERSIONS, 3, payload[4:])  # ApiVersions answers with header v0
    return {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in resp.api_keys}


def bodies(rng: random.Random, key: int, version: int) -> list[bytes]:
    cls = request_class(key, version)
    valid = encode(random_entity(cls, rng))
    out = [rng.randbytes(rng.randrange(0, 200)), valid[: rng.randrange(0, max(len(valid), 1))]]
    out += [hostile_body(cls, rng) for _ in range(HOSTILE_PER_VERSION)]
    return out


def _header(key: int, version: int, corr: int) -> bytes:
    head = struct.pack(">hhih", key, version, corr, 4) + b"fuzz"
    return head + (b"\x00" if request_header_version(key, version) == 2 else b"")


def blast_listener(port: int, frames: list[bytes], stats: dict[str, int]) -> None:
    """Send each frame and wait for the broker's verdict: an answer, or the connection closed
    (then reconnect). A frame the broker holds (a long-poll Fetch) is left after a moment."""
    sock: socket.socket | None = None
    try:
        for data in frames:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                stats["connections"] += 1
            try:
                sock.sendall(data)
                sock.settimeout(0.3)
                if sock.recv(1 << 16):
                    stats["answered"] += 1
                else:  # b"": the broker closed it
                    stats["closed"] += 1
                    sock.close()
                    sock = None
                if sock is not None:
                    sock.settimeout(10)
            except TimeoutError:
                stats["held"] += 1
                sock.close()
                sock = None
            except OSError:  # reset by the broker
                stats["closed"] += 1
                sock.close()
                sock = None
            stats["sent"] += 1
    finally:
        if sock is not None:
            sock.close()


def blast_zmq(endpoints: list[str], messages: list[tuple[int, int, bytes]], stats: dict[str, int]) -> None:
    ctx = zmq.Context()
    socks = []
    try:
        for endpoint in endpoints:
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IDENTITY, b"client-fuzz")
            s.connect(endpoint)
            socks.append(s)
        for corr, (key, version, body) in enumerate(messages):
            for s in socks:
                s.send(struct.pack(">hhi", key, version, corr) + body)
                while s.poll(0):
                    s.recv_multipart()
            stats["sent"] += 1
            if corr % 50 == 0:
                time.sleep(0.005)  # let the broker's loop take turns with the good client
    finally:
        for s in socks:
            s.close(linger=0)
        ctx.term()


def test_hostile_frames_on_both_transports_leave_the_broker_up_and_the_good_client_whole() -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    rng = random.Random(SEED)
    with Cluster(brokers=1) as cluster:
        topic = f"hostile-{uuid.uuid4().hex[:6]}"
        cluster.create_topic(topic, partitions=1, replication_factor=1)
        port = int(cluster.bootstrap_servers.split(":")[1])
        broker = cluster.processes["broker-1"]
        controller = cluster.processes["controller"]

        table = advertised(port)
        assert {0, 1, 2, 3, ApiKey.API_VERSIONS} <= set(table)
        pairs = [(k, v) for k, (lo, hi) in table.items() for v in range(lo, hi + 1)]
        tcp: list[bytes] = []
        zmq_messages: list[tuple[int, int, bytes]] = []
        for key, version in pairs:
            for body in bodies(rng, key, version):
                payload = _header(key, version, len(tcp)) + body
                tcp.append(struct.pack(">i", len(payload)) + payload)
                zmq_messages.append((key, version, body))
        # The controller's inputs: its APIs at the version the lab processes speak.
        ctl_messages = [(k, ZMQ_VERSIONS[k], b) for k in CONTROLLER_APIS
                        for b in bodies(rng, k, ZMQ_VERSIONS[k])]
        # Frames that lie about their size, and the issue's own frame.
        tcp += [struct.pack(">i", size) + b"\x00" * 16 for size in (-1, -(2**31), 2**31 - 1, 200 << 20)]
        issue = _header(2, 7, 1) + bytes.fromhex("ffffffff0f") * 20
        tcp.append(struct.pack(">i", len(issue)) + issue)
        rng.shuffle(tcp)

        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", linger_ms=0)
        consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            producer.send(topic, value=b"warm-up").get(10)  # the good client's connection is up
            rss_before = _rss(broker.pid)
            tcp_stats = {"sent": 0, "connections": 0, "answered": 0, "closed": 0, "held": 0}
            zmq_stats = {"sent": 0}
            ctl_stats = {"sent": 0}
            threads = [
                threading.Thread(target=blast_listener, args=(port, tcp, tcp_stats)),
                threading.Thread(target=blast_zmq, args=([cluster.broker_endpoints[1]], zmq_messages, zmq_stats)),
                threading.Thread(target=blast_zmq, args=([f"tcp://127.0.0.1:{cluster.controller_port}"],
                                                         ctl_messages, ctl_stats)),
            ]
            for t in threads:
                t.start()
            # The good client produces and consumes for as long as the fuzzing lasts.
            consumer.assign([TopicPartition(topic, 0)])
            sent: list[Any] = []
            got: list[Any] = []
            during = 0
            deadline = time.monotonic() + 120
            while (any(t.is_alive() for t in threads) or len(sent) < RECORDS) and time.monotonic() < deadline:
                sent.append(producer.send(topic, value=b"good-%d" % len(sent)))
                if len(sent) % 10 == 0:
                    assert broker.is_alive(), f"the broker process died (exit code {broker.exitcode})"
                    producer.flush(30)
                    during += any(t.is_alive() for t in threads)
                for records in consumer.poll(timeout_ms=10).values():
                    got.extend(records)
            producer.flush(30)
            offsets = [f.get(30).offset for f in sent]
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads), "the fuzzing threads did not finish"
            assert during >= 3, "the good client's batches did not overlap the fuzzing"
            assert tcp_stats["sent"] == len(tcp), tcp_stats
            assert zmq_stats["sent"] == len(zmq_messages) and ctl_stats["sent"] == len(ctl_messages)
            # Each hostile frame was judged by the broker: almost all closed their connection.
            assert tcp_stats["closed"] > len(pairs) * HOSTILE_PER_VERSION, tcp_stats
            while len(got) < len(sent) + 1 and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=200).values():
                    got.extend(records)
            assert broker.is_alive() and controller.is_alive(), "a lab process died"
            growth = _rss(broker.pid) - rss_before
        finally:
            producer.close(5)
            consumer.close()
        assert offsets == list(range(1, len(sent) + 1))
        assert [m.value for m in got] == [b"warm-up", *(b"good-%d" % i for i in range(len(sent)))]
        assert growth < RSS_BUDGET, f"the broker grew by {growth >> 20} MB of RSS"

        # The metrics count what was refused, per transport, on the broker and the controller.
        def counted(m: Any) -> bool:
            b, c = m.brokers(), m.controller()
            return (not b.empty and not c.empty and b["kafka_malformed_requests"].max() > 0
                    and b["rpc_malformed_requests"].max() > 0 and c["rpc_malformed_requests"].max() > 0)
        assert cluster.metrics.wait_for(counted, timeout=30), "no malformed requests in the metrics"
