"""`kafkalab bench produce`: the lab producer's throughput by value size, acks and codec.

With --client kafka-python (or confluent-kafka, or both comma-separated) that client also
produces 1 KB and 100 B records through the brokers' Kafka listener in the same run, as the
reference: rows "kafkalab / CLIENT" give the lab producer's 100 B records/s over the client's,
and "CLIENT / loopback limit" the 1 KB MB/s over a loopback sendfile of the same segments.

The lab producer runs with the reference clients' settings (linger.ms 5, batch.size 1 MiB:
`batch_size` changes it; 64 KiB was this bench's setting before) and, as they do, sends one
record before the clock starts: connections and metadata are not the subject."""

from __future__ import annotations

import statistics
import time
from typing import Any


def _lab_producer(cluster: Any, topic: str, n: int, size: int, acks: str, codec: str, batch_size: int) -> float:
    producer = cluster.producer({"acks": acks, "linger.ms": 5, "batch.size": batch_size,
                                 "max.request.size": max(batch_size, 1_048_576),
                                 "compression.type": codec, "enable.idempotence": acks == "all"})
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    producer.produce(topic, value=value)
    if producer.flush(30):
        raise RuntimeError("the lab producer could not deliver its first record")
    produce, poll = producer.produce, producer.poll
    t0 = time.perf_counter()
    for start in range(0, n, 10_000):
        for _ in range(min(10_000, n - start)):
            try:
                produce(topic, value=value)
            except BufferError:  # buffer.memory is full: serve deliveries until it takes the record
                while True:
                    poll(0.01)
                    try:
                        produce(topic, value=value)
                        break
                    except BufferError:
                        pass
        poll(0)  # delivery reports, as an application serves them
    left = producer.flush(120)
    elapsed = time.perf_counter() - t0
    producer.close()
    if left:
        raise RuntimeError(f"{left} records still queued after flush")
    return n / elapsed


def run(records: int = 200_000, repeats: int = 3, codecs: str = "none,gzip,snappy,lz4,zstd",
        client: str | None = None, batch_size: int = 1 << 20) -> list[dict[str, Any]]:
    from kafkalab import Cluster

    rows: list[dict[str, Any]] = []
    with Cluster(brokers=3) as cluster:
        cluster.create_topic("bench-rf1", partitions=1, replication_factor=1)
        cluster.create_topic("bench-rf3", partitions=1, replication_factor=3, config={"min.insync.replicas": 2})
        cases = [(100, "1", "none", "bench-rf1"), (1024, "1", "none", "bench-rf1"),
                 (100, "all", "none", "bench-rf3"), (1024, "all", "none", "bench-rf3")]
        cases += [(1024, "1", c, "bench-rf1") for c in codecs.split(",") if c != "none"]
        for size, acks, codec, topic in cases:
            n = records if size <= 100 else records // 4
            rates = [_lab_producer(cluster, topic, n, size, acks, codec, batch_size) for _ in range(repeats)]
            med = statistics.median(rates)
            rows.append({"client": "kafkalab", "value_bytes": size, "acks": acks, "compression": codec,
                         "topic_rf": int(topic[-1]), "records_per_s": med, "MB_per_s": med * size / 1e6})
    if client:
        # The same broker code behind the Kafka listener, driven by clients nobody here wrote
        # (a comma-separated list): 1 KB records (with the loopback limit measured in the same
        # run), and 100 B records as the lab producer's first row, for the same-size ratio.
        from kafkalab.bench.kafka_clients import produce as produce_with
        lab_100 = rows[0]["records_per_s"]
        for name in client.split(","):
            for size, mb in ((1000, 200), (100, max(1, records * 100 // 1_000_000))):
                got = produce_with(client=name, mb=mb, runs=repeats, record_bytes=size)
                rows += [{**row, "value_bytes": size} for row in got]
                if size == 100:
                    ref = next(r["records_per_s"] for r in got if r["client"] == name and r["run"] == "median")
                    rows.append({"client": f"kafkalab / {name}", "value_bytes": 100, "acks": "1",
                                 "run": "ratio", "records_per_s": lab_100 / ref})
    return rows
