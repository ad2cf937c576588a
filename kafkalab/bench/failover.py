"""Failover: from SIGKILL of a partition's leader to the next successful acks=all produce to
that partition. The lab profile's short session timeout against Kafka's own defaults.

controller=True: controller failover in a KRaft quorum (controllers=3): from SIGKILL of the
active controller to (a) another controller reporting itself active (elected, and its epoch's
first record committed) and (b) a create_topic succeeding (the admin found it, and the
brokers follow it: the new topic's leaders serve)."""

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


def _controller_failover(profile: str, kills: int) -> dict[str, Any]:
    from kafkalab import Cluster
    from kafkalab.cluster import wait_until

    elected: list[float] = []
    served: list[float] = []
    with Cluster(brokers=3, controllers=3, profile=profile) as cluster:
        cluster.create_topic("warm-up", partitions=1, replication_factor=3)
        for i in range(kills):
            old = wait_until(lambda: cluster.active_controller, 60, "an active controller")
            q = cluster.metrics.frame("quorum")
            killed_at = time.time()
            cluster.kill_controller(old)
            t0 = time.perf_counter()
            cluster.create_topic(f"after-kill-{i}", partitions=1, replication_factor=3, timeout=120)
            served.append(time.perf_counter() - t0)
            q = cluster.metrics.frame("quorum", since=killed_at)
            claims = q[(q.controller_id != old) & q.active.astype(bool)]
            elected.append(float(claims.time.min()) - killed_at)
            cluster.restart_controller(old)

            def caught_up(old: int = old) -> bool:
                d = cluster.describe_quorum().set_index("controller")
                return d.loc[old, "role"] == "follower" and d.log_end_offset.nunique() == 1
            wait_until(caught_up, 120, f"controller-{old} back in the quorum")
    from kafkalab.controller.quorum import QUORUM_TIMEOUTS
    t = QUORUM_TIMEOUTS[profile]
    return {"profile": profile, "kills": kills,
            "election.timeout.ms": "-".join(map(str, t["election_timeout_ms"])),
            "fetch.timeout.ms": t["fetch_timeout_ms"],
            "elected_median_s": statistics.median(elected), "elected_max_s": max(elected),
            "create_topic_median_s": statistics.median(served), "create_topic_min_s": min(served),
            "create_topic_max_s": max(served)}


def run(kills: int = 10, kafka_kills: int = 3, controller: bool = False) -> list[dict[str, Any]]:
    """`kafkalab bench failover [--param controller=true]`."""
    if controller:
        rows = [_controller_failover("lab", kills)]
        if kafka_kills:
            rows.append(_controller_failover("kafka", kafka_kills))
        return rows
    rows = [_one_profile("lab", kills)]
    if kafka_kills:
        rows.append(_one_profile("kafka", kafka_kills))
    return rows
