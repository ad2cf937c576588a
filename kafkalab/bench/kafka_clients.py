"""Real Kafka clients against a lab broker's Kafka listener: how fast do records move?

consume(): a librdkafka (confluent-kafka) consumer reads `mb` MB of 1 KB records from one
partition, with the broker's `fetch.sendfile.enable` on and off, next to a raw loopback
transfer of the same segment files with os.sendfile measured in the same run: the physical
limit of this machine for "file -> socket -> a reader that drops the bytes".

produce(): records/s and MB/s of 1 KB records to one partition (RF 1, acks=1 by default).

Each returns rows (dicts): one per run and setting, then medians and ratios.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
import uuid
from typing import Any

RECORD_BYTES = 1000
LOOPBACK = "loopback sendfile (limit)"


def _payload(record_bytes: int) -> bytes:
    return os.urandom(record_bytes // 2).hex().encode()[:record_bytes].ljust(record_bytes, b"x")


def _fill(bootstrap: str, topic: str, count: int, record_bytes: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                  "acks": 1, "queue.buffering.max.kbytes": 1 << 20})
    _produce_all(p, topic, _payload(record_bytes), count)
    if p.flush(120) != 0:
        raise RuntimeError("the bench's producer could not deliver its records")


def _produce_all(p: Any, topic: str, value: bytes, count: int) -> None:
    """count records to partition 0 through a confluent-kafka producer, waiting when its
    queue is full."""
    for _ in range(count):
        while True:
            try:
                p.produce(topic, value=value, partition=0)
                break
            except BufferError:
                p.poll(0.001)


def _consume_once(bootstrap: str, topic: str, count: int) -> float:
    """Seconds for a fresh librdkafka consumer to receive `count` records from offset 0."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                  "max.partition.fetch.bytes": 16 << 20, "fetch.wait.max.ms": 100,
                  "queued.max.messages.kbytes": 256 << 10, "check.crcs": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got, t0 = 0, time.perf_counter()
        deadline = t0 + 300
        while got < count:
            msgs = c.consume(10000, 1.0)
            for m in msgs:
                if m.error() is not None:
                    raise RuntimeError(f"consumer error: {m.error()}")
            got += len(msgs)
            if time.perf_counter() > deadline:
                raise RuntimeError(f"consumer got {got} of {count} records in 300 s")
        return time.perf_counter() - t0
    finally:
        c.close()


def loopback_sendfile(paths: list[str]) -> tuple[int, float]:
    """(bytes, seconds) to sendfile the files over a TCP loopback connection to a reader that
    discards them: the ceiling for any fetch path on this machine."""
    server = socket.create_server(("127.0.0.1", 0))
    total = sum(os.path.getsize(p) for p in paths)
    received = [0]

    def reader(conn: socket.socket) -> None:
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        with conn:
            while received[0] < total:
                n = conn.recv_into(view)
                if not n:
                    break
                received[0] += n

    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    thread = threading.Thread(target=reader, args=(conn,), daemon=True)
    t0 = time.perf_counter()
    thread.start()
    with client:
        for path in paths:
            with open(path, "rb") as f:
                size, pos = os.path.getsize(path), 0
                while pos < size:
                    pos += os.sendfile(client.fileno(), f.fileno(), pos, size - pos)
        thread.join(120)
    elapsed = time.perf_counter() - t0
    server.close()
    if received[0] != total:
        raise RuntimeError(f"loopback reader got {received[0]} of {total} bytes")
    return total, elapsed


def _segments(cluster: Any, topic: str) -> list[str]:
    directory = os.path.join(cluster.data_dir, "broker-1", f"{topic}-0")
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".log"))


def _raw_fetch_once(bootstrap: str, topic: str, end_offset: int, max_bytes: int = 32 << 20) -> tuple[int, float]:
    """A consumer that does not decode records: Kafka's Fetch (v12) over TCP, batches counted
    by their headers. What the broker's fetch path serves when the client is not the limit: like
    the loopback reader, it receives into one buffer it keeps, and reads only the response's
    fields and the batch headers in place (copying 32 MB responses around in Python took
    longer than receiving them)."""
    import datetime
    import socket

    from kio.schema.fetch.v12 import request as fr

    from kafkalab.protocol.kafka_framing import encode_request
    from kafkalab.records.scan import iter_batches

    host, port = bootstrap.split(",")[0].split(":")
    sock = socket.create_connection((host, int(port)))
    buf = bytearray(max_bytes + (1 << 16))  # a response is max_bytes of records and a few fields
    view = memoryview(buf)
    received, offset, corr = 0, 0, 0
    t0 = time.perf_counter()
    try:
        while offset < end_offset:
            corr += 1
            req = fr.FetchRequest(replica_id=-1, max_wait=datetime.timedelta(milliseconds=100), min_bytes=1,
                                  max_bytes=max_bytes, topics=(fr.FetchTopic(topic=topic, partitions=(
                                      fr.FetchPartition(partition=0, fetch_offset=offset,
                                                        partition_max_bytes=max_bytes),)),),
                                  forgotten_topics_data=())
            sock.sendall(encode_request(req, corr))
            _recv_into(sock, view[:4])
            size = int.from_bytes(view[:4], "big")
            if size > len(buf):
                raise RuntimeError(f"a {size}-byte response is larger than fetch.max.bytes allows")
            _recv_into(sock, view[:size])
            received += size + 4
            error, start, length = _records_span(view[:size])
            if error:
                raise RuntimeError(f"fetch at offset {offset} failed with error code {error}")
            last = None
            for _pos, h in iter_batches(view, start, start + length):
                last = h
            if last is None:
                raise RuntimeError(f"no records at offset {offset}")
            offset = last.next_offset
    finally:
        sock.close()
    return received, time.perf_counter() - t0


def _recv_into(sock: Any, view: memoryview) -> None:
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError("broker closed the connection")
        got += k


def _records_span(body: memoryview) -> tuple[int, int, int]:
    """(error code, start, length) of the records of the first partition in a framed Fetch v12
    response body (correlation id onwards); the error is the partition's, or the response's."""
    def uvarint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            b = body[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos
            shift += 7

    pos = 4                                  # correlation id
    _tags, pos = uvarint(pos)                # header tagged fields (none)
    pos += 4                                 # throttle_time_ms
    error = int.from_bytes(body[pos:pos + 2], "big", signed=True)
    pos += 2 + 4                             # error_code, session_id
    if error:
        return error, 0, 0
    topics, pos = uvarint(pos)
    if topics < 2:
        raise RuntimeError("a Fetch response without topics")
    name_len, pos = uvarint(pos)
    pos += name_len - 1
    _partitions, pos = uvarint(pos)
    pos += 4                                 # partition_index
    error = int.from_bytes(body[pos:pos + 2], "big", signed=True)
    pos += 2 + 8 + 8 + 8                     # error_code, high_watermark, last_stable_offset, log_start_offset
    aborted, pos = uvarint(pos)
    for _ in range(max(0, aborted - 1)):     # producer_id, first_offset, tagged fields
        pos += 16
        _tags, pos = uvarint(pos)
    pos += 4                                 # preferred_read_replica
    length, pos = uvarint(pos)
    return error, pos, max(0, length - 1)


def consume(mb: int = 200, runs: int = 3, record_bytes: int = RECORD_BYTES) -> list[dict[str, Any]]:
    """librdkafka consumer MB/s with sendfile on and off, against raw loopback sendfile."""
    from kafkalab import Cluster

    count = mb * 1_000_000 // record_bytes
    rows: list[dict[str, Any]] = []
    for sendfile in (True, False):
        with Cluster(brokers=1, config={"fetch.sendfile.enable": sendfile}) as cluster:
            topic = "bench-consume"
            cluster.create_topic(topic, partitions=1, replication_factor=1)
            _fill(cluster.bootstrap_servers, topic, count, record_bytes)
            for i in range(runs):
                seconds = _consume_once(cluster.bootstrap_servers, topic, count)
                rows.append({"path": "sendfile" if sendfile else "copy", "run": i + 1,
                             "records": count, "mb_per_s": count * record_bytes / seconds / 1e6,
                             "records_per_s": count / seconds})
            for i in range(runs):
                nbytes, seconds = _raw_fetch_once(cluster.bootstrap_servers, topic, count)
                rows.append({"path": "raw fetch, " + ("sendfile" if sendfile else "copy"), "run": i + 1,
                             "records": count, "mb_per_s": nbytes / seconds / 1e6,
                             "records_per_s": count / seconds})
            if sendfile:
                for i in range(runs):
                    nbytes, seconds = loopback_sendfile(_segments(cluster, topic))
                    rows.append({"path": "loopback sendfile (limit)", "run": i + 1, "records": count,
                                 "mb_per_s": nbytes / seconds / 1e6, "records_per_s": None})
    med = {path: statistics.median(r["mb_per_s"] for r in rows if r["path"] == path)
           for path in ("sendfile", "copy", "raw fetch, sendfile", "raw fetch, copy", "loopback sendfile (limit)")}
    for path, value in med.items():
        rows.append({"path": path, "run": "median", "records": count, "mb_per_s": value,
                     "records_per_s": None})
    rows.append({"path": "sendfile / loopback limit", "run": "ratio", "records": count,
                 "mb_per_s": med["sendfile"] / med["loopback sendfile (limit)"], "records_per_s": None})
    rows.append({"path": "sendfile / copy", "run": "ratio", "records": count,
                 "mb_per_s": med["sendfile"] / med["copy"], "records_per_s": None})
    rows.append({"path": "raw fetch sendfile / loopback limit", "run": "ratio", "records": count,
                 "mb_per_s": med["raw fetch, sendfile"] / med["loopback sendfile (limit)"], "records_per_s": None})
    rows.append({"path": "raw fetch sendfile / copy", "run": "ratio", "records": count,
                 "mb_per_s": med["raw fetch, sendfile"] / med["raw fetch, copy"], "records_per_s": None})
    return rows


def _produce_confluent(bootstrap: str, topic: str, count: int, record_bytes: int, acks: str) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1 << 20, "acks": acks,
                  "queue.buffering.max.kbytes": 1 << 20, "queue.buffering.max.messages": 1_000_000})
    value = _payload(record_bytes)
    p.produce(topic, value=value, partition=0)  # connections and metadata are not the subject
    p.flush(30)
    t0 = time.perf_counter()
    _produce_all(p, topic, value, count)
    if p.flush(120) != 0:
        raise RuntimeError("confluent-kafka producer could not deliver its records")
    return time.perf_counter() - t0


def _produce_kafka_python(bootstrap: str, topic: str, count: int, record_bytes: int, acks: str) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=1 << 20,
                      acks=int(acks) if acks != "all" else "all")
    value = _payload(record_bytes)
    try:
        p.send(topic, value=value, partition=0).get(30)
        t0 = time.perf_counter()
        for _ in range(count):
            p.send(topic, value=value, partition=0)
        p.flush(120)
        return time.perf_counter() - t0
    finally:
        p.close(10)


def produce(client: str = "confluent-kafka", mb: int = 200, runs: int = 3,
            record_bytes: int = RECORD_BYTES, acks: str = "1") -> list[dict[str, Any]]:
    """records/s and MB/s of record_bytes records to one partition (RF 1), next to the
    loopback limit measured in the same run: the segment files just written, sent with
    os.sendfile over TCP loopback to a reader that drops them (as in consume())."""
    from kafkalab import Cluster

    clients = {"confluent-kafka": _produce_confluent, "kafka-python": _produce_kafka_python}
    if client not in clients:
        raise ValueError(f"client must be one of {sorted(clients)}, not {client!r}")
    count = mb * 1_000_000 // record_bytes
    rows: list[dict[str, Any]] = []
    with Cluster(brokers=1) as cluster:
        for i in range(runs):
            topic = f"bench-produce-{i}"
            cluster.create_topic(topic, partitions=1, replication_factor=1)
            seconds = clients[client](cluster.bootstrap_servers, topic, count, record_bytes, str(acks))
            rows.append({"client": client, "acks": str(acks), "run": i + 1, "records": count,
                         "records_per_s": count / seconds, "mb_per_s": count * record_bytes / seconds / 1e6})
            nbytes, seconds = loopback_sendfile(_segments(cluster, topic))
            rows.append({"client": LOOPBACK, "acks": None, "run": i + 1, "records": count,
                         "records_per_s": None, "mb_per_s": nbytes / seconds / 1e6})
    med = {name: statistics.median(r["mb_per_s"] for r in rows if r["client"] == name) for name in (client, LOOPBACK)}
    rows.append({"client": client, "acks": str(acks), "run": "median", "records": count,
                 "records_per_s": statistics.median(r["records_per_s"] for r in rows if r["client"] == client),
                 "mb_per_s": med[client]})
    rows.append({"client": LOOPBACK, "acks": None, "run": "median", "records": count, "records_per_s": None,
                 "mb_per_s": med[LOOPBACK]})
    rows.append({"client": f"{client} / loopback limit", "acks": str(acks), "run": "ratio", "records": count,
                 "records_per_s": None, "mb_per_s": med[client] / med[LOOPBACK]})
    return rows
