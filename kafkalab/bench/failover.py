"""Failover: from SIGKILL of a partition's leader to the next successful acks=all produce to
that partition. The lab profile's short session timeout against Kafka's own defaults."""

from __future__ import annotations

import statistics
import time
from typing import Any


def _one_profile(profile: str, kills: int) -> dict[str, Any]:
    from kafkalab import Cluster
    from kafkalab.cluster import wait_until

    times: list[float] = []
    with Cluster(brokers=3, profile=profile) as cluster:
        cluster.create_topic("failover", partitions=1, replication_factor=3,
                             config={"min.insync.replicas": 2})
        producer = cluster.producer({"acks": "all", "linger.ms": 0, "retry.backoff.ms": 20})
        for _ in range(kills):
            leader = int(cluster.describe_topic("failover").iloc[0].leader)
            acked: list[Any] = []
            cluster.kill_broker(leader)
            t0 = time.perf_counter()
            producer.produce("failover", value=b"after-kill", partition=0,
                             on_delivery=lambda err, msg, acked=acked: acked.append(err))
            producer.flush(120)
            elapsed = time.perf_counter() - t0
            if acked != [None]:
                raise RuntimeError(f"produce after the kill failed: {acked}")
            times.append(elapsed)
            cluster.restart_broker(leader, timeout=120)
            wait_until(lambda: len(cluster.describe_topic("failover").iloc[0].isr) == 3, 120,
                       "the restarted broker back in the ISR")
        producer.close()
        session = cluster.config["broker.session.timeout.ms"]
    return {"profile": profile, "kills": kills, "broker.session.timeout.ms": session,
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def run(kills: int = 10, kafka_kills: int = 3) -> list[dict[str, Any]]:
    rows = [_one_profile("lab", kills)]
    if kafka_kills:
        rows.append(_one_profile("kafka", kafka_kills))
    return rows
