"""The KRaft controller quorum (Cluster(controllers=3)): controller failover with real processes.

Killing the active controller mid-flight must lose no acknowledged metadata change, and the
cluster must keep electing partition leaders under the new active controller.
"""

from __future__ import annotations

import threading
import time

import pytest

from kafkalab import Cluster
from kafkalab.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _leadership_settled(cluster: Cluster, topic: str, dead: int) -> bool:
    """Every partition led by a live ISR member that knows it leads, the dead broker out of the ISR."""
    desc = cluster.describe_topic(topic, fresh=False)
    latest = cluster.metrics.latest_replicas()
    for p in desc.itertuples():
        if p.leader < 0 or p.leader == dead or dead in p.isr or p.leader not in p.isr:
            return False
        mine = latest[(latest.topic == topic) & (latest.partition == p.partition) & (latest.broker == p.leader)]
        if mine.empty or not bool(mine.iloc[-1].is_leader) or int(mine.iloc[-1].leader_epoch) != p.leader_epoch:
            return False
    return True


def _claimed_at(cluster: Cluster, controller: int, since: float) -> float | None:
    """When `controller` first reported itself active after `since` (its own clock)."""
    q = cluster.metrics.frame("quorum", since=since)
    mine = q[(q.controller_id == controller) & q.active.astype(bool)] if not q.empty else q
    return float(mine.time.min()) if not mine.empty else None


def test_killing_the_active_controller_loses_no_acknowledged_metadata() -> None:
    cluster = Cluster(brokers=3, controllers=3)
    stop = threading.Event()
    creator: threading.Thread | None = None
    try:
        cluster.create_topic("orders", partitions=3, replication_factor=3)
        old = wait_until(lambda: cluster.active_controller, 5, "an active controller")
        acked: list[str] = []
        failed: list[tuple[str, str]] = []

        def create_topics() -> None:
            i = 0
            while not stop.is_set():
                name = f"topic-{i}"
                i += 1
                try:
                    # RF 2: still placeable once the killed broker is fenced.
                    cluster.create_topic(name, partitions=1, replication_factor=2, timeout=15)
                    acked.append(name)
                except Exception as e:  # noqa: BLE001 - an unacknowledged create may fail
                    failed.append((name, repr(e)))

        creator = threading.Thread(target=create_topics, name="creator", daemon=True)
        creator.start()
        wait_until(lambda: len(acked) >= 2, 20, "topics being created")
        leader = int(cluster.describe_topic("orders", fresh=False).iloc[0].leader)
        killed_at = time.time()
        cluster.kill_controller(old)
        cluster.kill_broker(leader)
        new = wait_until(lambda: (a := cluster.active_controller) not in (None, old) and a, 5,
                         "a new active controller")
        claimed = _claimed_at(cluster, new, killed_at)
        assert claimed is not None and claimed - killed_at < 1.0, (claimed, killed_at)
        before = len(acked)
        try:
            wait_until(lambda: len(acked) >= before + 2, 20, "topic creation through the new controller")
        except TimeoutError as e:
            raise AssertionError(f"creates failed: {failed[-3:]}") from e
        stop.set()
        creator.join(30)
        assert not creator.is_alive()

        # Every acknowledged create is committed: the new active controller has it.
        assert set(acked) <= set(cluster.list_topics()), (set(acked) - set(cluster.list_topics()), failed)
        # The new controller fenced the dead broker and moved its leaderships to the ISR.
        wait_until(lambda: _leadership_settled(cluster, "orders", leader), 15,
                   f"leaders of orders away from the killed broker {leader}")
        q = cluster.describe_quorum().set_index("controller")
        assert q.loc[new, "epoch"] > q.loc[old, "epoch"]

        # The old controller rejoins as a follower and catches up; the broker re-registers.
        cluster.restart_controller(old)
        cluster.restart_broker(leader)

        def caught_up() -> bool:
            q = cluster.describe_quorum().set_index("controller")
            return q.loc[old, "role"] == "follower" and q.log_end_offset.nunique() == 1
        wait_until(caught_up, 15, f"controller-{old} to catch up")
        cluster.create_topic("after-restart", partitions=3, replication_factor=3)
    finally:
        stop.set()
        if creator is not None:
            creator.join(30)
        cluster.close()


def test_an_active_controller_cut_off_from_the_quorum_resigns() -> None:
    cluster = Cluster(brokers=1, controllers=3)
    try:
        old = wait_until(lambda: cluster.active_controller, 5, "an active controller")
        others = [c for c in cluster.controller_ids if c != old]
        cluster.partition([f"controller-{old}"], [f"controller-{c}" for c in others])
        new = wait_until(lambda: (a := cluster.active_controller) not in (None, old) and a, 5,
                         "a new active controller")
        assert new in others

        def resigned() -> bool:
            q = cluster.describe_quorum().set_index("controller")
            return q.loc[old, "role"] != "leader" and not q.loc[old, "active"]
        wait_until(resigned, 5, f"controller-{old} to resign (no fetches from a majority)")
        # The broker still reaches the old controller, yet follows the new one.
        cluster.create_topic("while-cut", partitions=1, replication_factor=1)
        cluster.heal()
        wait_until(lambda: cluster.describe_quorum().log_end_offset.nunique() == 1
                   and (cluster.describe_quorum().role == "leader").sum() == 1, 10, "the quorum to converge")
        cluster.create_topic("after-heal", partitions=1, replication_factor=1)
        assert {"while-cut", "after-heal"} <= set(cluster.list_topics())
    finally:
        cluster.close()


def test_a_paused_active_controller_is_replaced_and_a_stopped_one_hands_over() -> None:
    cluster = Cluster(brokers=2, controllers=3)
    try:
        old = wait_until(lambda: cluster.active_controller, 5, "an active controller")
        cluster.pause_controller(old)  # a frozen leader: its followers time out and elect
        new = wait_until(lambda: (a := cluster.active_controller) not in (None, old) and a, 5,
                         "a new active controller")
        cluster.create_topic("while-paused", partitions=2, replication_factor=2)
        cluster.resume_controller(old)  # the zombie learns of the newer epoch and follows

        def converged() -> bool:
            q = cluster.describe_quorum()
            return q.log_end_offset.nunique() == 1 and int(q.active.sum()) == 1 and (q.role == "leader").sum() == 1
        wait_until(converged, 10, "the quorum to converge after resume")
        # Controlled shutdown: EndQuorumEpoch lets a successor stand at once.
        active = cluster.active_controller
        cluster.stop_controller(active)
        cluster.create_topic("after-stop", partitions=2, replication_factor=2)
        assert cluster.active_controller not in (None, active)
        assert {"while-paused", "after-stop"} <= set(cluster.list_topics())
        assert new != old
    finally:
        cluster.close()
