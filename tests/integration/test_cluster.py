"""The running cluster: real controller and broker processes, real sockets and files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kafkalab import Cluster, TopicPartition
from kafkalab.cluster import wait_until
from kafkalab.errors import ConfigError, KafkaLabError
from kafkalab.protocol.errors import KafkaError

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _produce(cluster: Cluster, topic: str, n: int, acks: str = "all", **kw) -> dict[bytes, tuple[int, int]]:
    producer = cluster.producer({"acks": acks, "linger.ms": 2, **kw})
    acked: dict[bytes, tuple[int, int]] = {}
    errors: list = []

    def cb(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            errors.append(err)
    for i in range(n):
        producer.produce(topic, key=f"k{i % 7}".encode(), value=f"{topic}-{time.monotonic_ns()}-{i}".encode(),
                         on_delivery=cb)
    assert producer.flush(30) == 0
    producer.close()
    assert not errors, errors[:3]
    return acked


def _read_all(cluster: Cluster, topic: str, partitions: int, expect: int, timeout: float = 20.0) -> dict[bytes, tuple[int, int]]:
    consumer = cluster.consumer({"auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: dict[bytes, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < expect and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.2):
            if m.error() is None:
                seen[m.value()] = (m.partition(), m.offset())
    consumer.close()
    return seen


def test_start_create_produce_consume_and_describe(cluster):
    cluster.create_topic("orders", partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})
    acked = _produce(cluster, "orders", 300)
    assert len(acked) == 300
    seen = _read_all(cluster, "orders", 3, 300)
    assert seen == acked
    topic = cluster.describe_topic("orders")
    assert list(topic.partition) == [0, 1, 2]
    assert all(sorted(r) == [1, 2, 3] for r in topic.replicas)
    per_partition = {p: sum(1 for po in acked.values() if po[0] == p) for p in range(3)}
    for row in topic.itertuples():
        assert row.high_watermark == per_partition[row.partition]
        assert set(row.log_end_offsets) == {1, 2, 3}
    files = os.listdir(os.path.join(cluster.data_dir, f"broker-{topic.iloc[0].leader}", "orders-0"))
    assert "00000000000000000000.log" in files and "leader-epoch-checkpoint" in files
    c = cluster.describe_cluster()
    assert list(c.broker) == [1, 2, 3] and set(c.state) == {"running"} and not c.fenced.any()

    # Each broker reports how far it has applied __cluster_metadata; all reach the controller's log end.
    def metadata_applied() -> bool:
        ctl, rows = cluster.metrics.controller(), cluster.metrics.brokers()
        if ctl.empty or "metadata_offset" not in rows:
            return False
        newest = rows.dropna(subset=["metadata_offset"]).sort_values("time").groupby("broker").metadata_offset.last()
        return sorted(newest.index) == [1, 2, 3] and set(newest) == {int(ctl.metadata_offset.iloc[-1])}
    wait_until(metadata_applied, 10, "every broker to apply the whole metadata log")


def test_kill_leader_elects_new_leader_and_loses_nothing_acked(cluster):
    cluster.create_topic("t", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    acked = _produce(cluster, "t", 200)
    before = cluster.describe_topic("t").iloc[0]
    cluster.kill_broker(int(before.leader))
    assert cluster.broker_state(int(before.leader)) == "killed"
    after = wait_until(lambda: (r := cluster.describe_topic("t").iloc[0].to_dict())["leader"] not in (-1, before.leader) and r,
                       10, "a new leader")
    assert after["leader_epoch"] > before.leader_epoch
    assert int(before.leader) not in after["isr"]
    acked.update(_produce(cluster, "t", 100))
    assert _read_all(cluster, "t", 1, len(acked)) == acked
    fenced = cluster.describe_cluster().set_index("broker").loc[int(before.leader)]
    assert fenced.state == "killed" and bool(fenced.fenced)


def test_restart_recovers_log_and_rejoins_isr(cluster):
    cluster.create_topic("r", partitions=1, replication_factor=3)
    acked = _produce(cluster, "r", 100)
    victim = int(cluster.describe_topic("r").iloc[0].replicas[-1])
    cluster.kill_broker(victim)
    acked.update(_produce(cluster, "r", 50))
    cluster.restart_broker(victim)
    assert cluster.broker_state(victim) == "running"
    wait_until(lambda: victim in cluster.describe_topic("r").iloc[0].isr, 15, f"broker {victim} back in the ISR")
    wait_until(lambda: cluster.describe_topic("r").iloc[0].log_end_offsets.get(victim) == 150, 10,
               "the restarted follower to catch up")


def test_pause_and_resume(cluster):
    cluster.create_topic("p", partitions=1, replication_factor=3)
    leader = int(cluster.describe_topic("p").iloc[0].leader)
    cluster.pause_broker(leader)
    assert cluster.broker_state(leader) == "paused"
    # A frozen broker stops heartbeating: the controller fences it and moves leadership.
    wait_until(lambda: cluster.describe_topic("p", fresh=False).iloc[0].leader not in (-1, leader), 10,
               "leadership to move off the paused broker")
    cluster.resume_broker(leader)
    assert cluster.broker_state(leader) == "running"
    wait_until(lambda: leader in cluster.describe_topic("p").iloc[0].isr, 15, "the resumed broker back in the ISR")
    with pytest.raises(KafkaLabError, match="not paused"):
        cluster.resume_broker(leader)


def test_network_partition_isolates_leader_and_heal_restores(cluster):
    cluster.create_topic("n", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    _produce(cluster, "n", 20)
    leader = int(cluster.describe_topic("n").iloc[0].leader)
    others = [b for b in cluster.broker_ids if b != leader]
    # Cut the leader off from everyone, the controller included.
    cluster.partition([leader], [*others, "controller"])
    wait_until(lambda: cluster.describe_topic("n", fresh=False).iloc[0].leader in others, 10,
               "a leader on the majority side")
    assert cluster.faults.is_cut(f"broker-{leader}", "controller")
    cluster.heal()
    assert not cluster.faults.is_cut(f"broker-{leader}", "controller")
    wait_until(lambda: leader in cluster.describe_topic("n").iloc[0].isr, 15, "the old leader back in the ISR")
    ev = cluster.metrics.events()
    assert {"cut", "heal"} <= set(ev.event)


def test_cut_one_way_and_delay_show_in_faults(cluster):
    cluster.cut(1, 2, one_way=True)
    assert cluster.faults.is_cut("broker-1", "broker-2") and not cluster.faults.is_cut("broker-2", "broker-1")
    # cut() returns once every broker applies the new table
    applied = cluster.metrics.brokers().groupby("broker")["faults_version"].max()
    assert all(applied[b] >= cluster.faults.version for b in cluster.broker_ids)
    cluster.delay(2, 3, 50)
    assert cluster.faults.delay_ms("broker-2", "broker-3") == 50
    cluster.heal()
    assert not cluster.faults.is_cut("broker-1", "broker-2") and cluster.faults.delay_ms("broker-2", "broker-3") == 0


def test_stop_broker_moves_leadership_first(cluster):
    cluster.create_topic("s", partitions=3, replication_factor=3)
    led = [int(r.partition) for r in cluster.describe_topic("s").itertuples() if r.leader == 1]
    cluster.stop_broker(1)
    assert cluster.broker_state(1) == "stopped"
    topic = cluster.describe_topic("s", fresh=False)
    assert 1 not in set(topic.leader)
    assert all(r.leader != -1 for r in topic.itertuples() if r.partition in led)


def test_bad_input_gets_clear_errors(cluster):
    with pytest.raises(ConfigError, match="min.insync.replicas"):
        cluster.create_topic("bad", config={"min.insync.replica": 2})
    with pytest.raises(KafkaError, match="INVALID_REPLICATION_FACTOR"):
        cluster.create_topic("bad", partitions=1, replication_factor=5)
    with pytest.raises(KafkaLabError, match="no broker 7"):
        cluster.kill_broker(7)
    cluster.kill_broker(2)
    with pytest.raises(KafkaLabError, match="not running"):
        cluster.kill_broker(2)
    with pytest.raises(KafkaLabError, match="not running"):
        cluster.pause_broker(2)
    with pytest.raises(KafkaError, match="UNKNOWN_TOPIC_OR_PARTITION"):
        cluster.describe_topic("nope")


def test_unusable_data_dir_is_reported(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(KafkaLabError, match="cannot be used"):
        Cluster(brokers=1, data_dir=str(not_a_dir / "sub"))


def test_close_is_idempotent_and_removes_data():
    c = Cluster(brokers=1)
    pids = [p.pid for p in c.processes.values()]
    data = c.data_dir
    c.close()
    c.close()
    assert not os.path.exists(data)
    assert not any(_alive(p) for p in pids)


def test_processes_die_with_a_sigkilled_kernel(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, time
        from kafkalab import Cluster
        c = Cluster(brokers=2, data_dir={str(tmp_path / 'd')!r})
        print(" ".join(str(p.pid) for p in c.processes.values()), flush=True)
        time.sleep(60)
    """)
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = kernel.stdout.readline()
        pids = [int(x) for x in line.split()]
        assert len(pids) == 3
        assert all(_alive(p) for p in pids)
        kernel.send_signal(signal.SIGKILL)
        kernel.wait(5)
        t0 = time.monotonic()
        wait_until(lambda: not any(_alive(p) for p in pids), 2.0, "children to exit after the kernel died")
        assert time.monotonic() - t0 <= 2.0
    finally:
        if kernel.poll() is None:
            kernel.kill()
        for p in locals().get("pids", []):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_crashed_broker_is_reported_not_hidden(cluster):
    pid = int(cluster.describe_cluster().set_index("broker").loc[3].pid)
    os.kill(pid, signal.SIGKILL)  # not through the Cluster: a crash it did not cause
    wait_until(lambda: cluster.broker_state(3) == "crashed", 5, "the crash to be noticed")
    row = wait_until(lambda: (r := cluster.describe_cluster().set_index("broker").loc[3].to_dict())["fenced"] and r,
                     5, "the controller to fence the crashed broker")
    assert row["state"] == "crashed"
    cluster.restart_broker(3)
    assert cluster.broker_state(3) == "running"


def test_load_worker_produces_and_obeys_network_cuts(cluster):
    cluster.create_topic("load", partitions=3, replication_factor=3)
    node = cluster.start_load("load", rate=500, acks="all")
    assert node in cluster.node_names

    def sent() -> int:
        rows = cluster.metrics.clients()
        rows = rows[rows.node == node] if not rows.empty else rows
        return 0 if rows.empty else int(rows.records_sent.max())
    wait_until(lambda: sent() >= 200, 15, "the load worker to get records acknowledged")
    cluster.isolate(node)  # the worker is a node of the lab network like any other
    # Acknowledgements already on their way may still land; then the count must stop.
    last = [sent(), time.monotonic()]

    def stalled() -> bool:
        now_sent = sent()
        if now_sent != last[0]:
            last[:] = [now_sent, time.monotonic()]
        return time.monotonic() - last[1] > 1.5
    wait_until(stalled, 10, "acknowledgements to stop while the worker is isolated")
    frozen = sent()
    cluster.heal()
    wait_until(lambda: sent() > frozen + 100, 15, "the load to resume after heal")
    cluster.stop_load(node)
    assert node not in cluster.node_names
    with pytest.raises(KafkaLabError, match="no load worker"):
        cluster.stop_load(node)


def test_a_port_taken_is_named(monkeypatch):
    import socket

    from kafkalab import ports

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    real = ports.free_port
    calls = iter(range(1_000_000))
    monkeypatch.setattr(ports, "free_port", lambda: port if next(calls) == 0 else real())
    try:
        with pytest.raises(KafkaLabError, match="in use"):
            Cluster(brokers=1)
    finally:
        taken.close()
