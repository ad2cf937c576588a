"""Start-up: from Cluster(brokers=3) to the first acks=all acknowledgement on a new RF=3 topic,
and the idle memory of every process the cluster added below this one (controller, brokers,
and any helper process: there should be none)."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # it ended meanwhile
        pass
    return 0.0


def run(runs: int = 5, brokers: int = 3) -> list[dict[str, Any]]:
    from kafkalab import Cluster
    from kafkalab.bench.footprint import descendants

    rows = []
    for i in range(runs):
        before = set(descendants(os.getpid()))
        t0 = time.perf_counter()
        with Cluster(brokers=brokers) as cluster:
            t_up = time.perf_counter()
            cluster.create_topic("startup", partitions=1, replication_factor=min(3, brokers))
            t_topic = time.perf_counter()
            producer = cluster.producer({"acks": "all", "linger.ms": 0})
            acked: list[Any] = []
            producer.produce("startup", value=b"first", on_delivery=lambda err, msg, acked=acked: acked.append(err))
            producer.flush(10)
            t_ack = time.perf_counter()
            if acked != [None]:
                raise RuntimeError(f"first produce failed: {acked}")
            time.sleep(0.5)  # let the processes settle before reading idle memory
            added = set(descendants(os.getpid())) - before
            rss = sum(_rss_mb(pid) for pid in added)
            rows.append({"run": i + 1, "cluster_up_s": t_up - t0, "topic_ready_s": t_topic - t_up,
                         "first_ack_s": t_ack - t0, "processes": len(added), "idle_rss_mb": rss})
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("cluster_up_s", "topic_ready_s", "first_ack_s", "processes", "idle_rss_mb")}
    rows.append({"run": "median", **med})
    return rows
