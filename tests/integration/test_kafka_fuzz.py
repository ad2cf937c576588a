"""Malformed frames on several connections do not disturb a well-behaved client.

Seeded, so a failure replays: thousands of frames built from valid requests with flipped
bytes, truncations, wrong sizes, random api keys and versions, and pure noise, sent on
several connections to one broker while kafka-python keeps producing and consuming on its
own connection. The broker process must stay alive and the good client must see every record.
"""

from __future__ import annotations

import random
import socket
import struct
import time
import uuid
from typing import Any

import pytest

from kafkalab import Cluster
from kafkalab.protocol.apis import ZMQ_VERSIONS, request_class
from kafkalab.protocol.kafka_framing import encode_request
from kafkalab.protocol.versions import convert_default

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20240611
FRAMES = 3000
CONNECTIONS = 4


def _templates() -> list[bytes]:
    """Valid framed requests (every api the listener may see, lab versions and some older)."""
    out = []
    for key, lab in ZMQ_VERSIONS.items():
        for version in {lab, max(lab - 3, 0)}:
            try:
                out.append(encode_request(convert_default(request_class(key, version)), 1))
            except Exception:  # kio has no such version, or the default does not encode
                pass
    return out


def _mutate(rng: random.Random, templates: list[bytes]) -> bytes:
    frame = bytearray(rng.choice(templates))
    kind = rng.randrange(7)
    if kind == 0:  # flip bytes anywhere after the size
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(4, len(frame))
            frame[i] ^= rng.randrange(1, 256)
    elif kind == 1:  # truncate the body, size still honest
        body = frame[4:4 + rng.randrange(0, len(frame) - 4)]
        frame = bytearray(struct.pack(">i", len(body)) + body)
    elif kind == 2:  # random api key and version
        struct.pack_into(">hh", frame, 4, rng.randrange(-5, 100), rng.randrange(-2, 30))
    elif kind == 3:  # pure noise with an honest size
        body = rng.randbytes(rng.randrange(0, 300))
        frame = bytearray(struct.pack(">i", len(body)) + body)
    elif kind == 4:  # trailing garbage inside the frame
        frame += rng.randbytes(rng.randrange(1, 50))
        struct.pack_into(">i", frame, 0, len(frame) - 4)
    elif kind == 5:  # a lying size (negative or huge)
        struct.pack_into(">i", frame, 0, rng.choice([-1, -(2**31), 2**31 - 1, 200 * 2**20]))
    # kind 6: the valid request itself
    return bytes(frame)


def _blast(port: int, rng: random.Random, templates: list[bytes], frames: int) -> int:
    """Send frames on CONNECTIONS connections, reconnecting when the broker closes one."""
    socks: list[socket.socket | None] = [None] * CONNECTIONS
    reconnects = 0
    try:
        for _ in range(frames):
            i = rng.randrange(CONNECTIONS)
            if socks[i] is None:
                socks[i] = socket.create_connection(("127.0.0.1", port), timeout=5)
                socks[i].setblocking(False)
                reconnects += 1
            sock = socks[i]
            assert sock is not None
            try:
                sock.send(_mutate(rng, templates))
                while sock.recv(1 << 16):  # drain answers so the broker's writes never block
                    pass
                sock.close()  # recv returned b"": the broker closed it
                socks[i] = None
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # reset by the broker
                sock.close()
                socks[i] = None
    finally:
        for s in socks:
            if s is not None:
                s.close()
    return reconnects


def test_malformed_frames_do_not_disturb_a_good_client() -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    rng = random.Random(SEED)
    templates = _templates()
    with Cluster(brokers=1) as cluster:
        topic = f"fuzz-{uuid.uuid4().hex[:6]}"
        cluster.create_topic(topic, partitions=1, replication_factor=1)
        port = int(cluster.bootstrap_servers.split(":")[1])
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", linger_ms=0)
        sent: list[Any] = []
        try:
            for round_ in range(10):
                reconnects = _blast(port, rng, templates, FRAMES // 10)
                assert reconnects >= 1
                for i in range(20):
                    sent.append(producer.send(topic, value=b"%d-%d" % (round_, i)))
                producer.flush(10)
            offsets = [f.get(10).offset for f in sent]
        finally:
            producer.close(5)
        assert offsets == list(range(200))
        assert all(p.is_alive() for p in cluster.processes.values()), "a lab process died"
        consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            consumer.assign([TopicPartition(topic, 0)])
            got: list[Any] = []
            deadline = time.monotonic() + 20
            while len(got) < 200 and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    got.extend(records)
        finally:
            consumer.close()
        assert [m.value for m in got] == [b"%d-%d" % (r, i) for r in range(10) for i in range(20)]
