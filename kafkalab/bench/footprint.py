"""`kafkalab bench footprint`: what one learner costs this machine.

A cluster is started from this process (the notebook's stand-in), records are produced and
consumed, then every process's resident memory (RSS, and PSS: shared pages split among their
sharers) is read and its CPU time counted over
`idle_s` seconds while nothing happens. With dashboard=True a Dashboard is bound to the
cluster in this process, as a learner's notebook would have it. What an idle learner still
costs is the lab profile's protocol traffic (broker heartbeats every 500 ms, the replicas' and
the metadata's long polls, incremental fetch sessions) and the metrics keep-alives (the
coordinators wake only when a deadline is due); state rows go out on change, a tick's rows as
one message, and the Dashboard sleeps until the collector has news. Periodic timers fire when
the wall clock is at a multiple of their interval and the internal long polls end on the same
grid, so a process's work shares its wake-ups, every process wakes at the same instants, and the
controller gets the brokers' heartbeats together; a broker reads a heartbeat's answer at its
next wake-up rather than waking for it. Rows: one per process, the
learner's total, and every lab's peak (kernel + cluster) as the labs' own run last measured
it, if KAFKALAB_LAB_PEAKS names the JSON file that run wrote (labs/conftest.py).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

LAB_PEAKS_ENV = "KAFKALAB_LAB_PEAKS"


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    """Every live process below root (children first found, then theirs)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(int(_stat(int(name))[1]), []).append(int(name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    out, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += children.get(pid, [])
    return sorted(out)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pss_mb(pid: int) -> float | None:
    """Proportional set size: each shared page counted once across the processes sharing it
    (the interpreter, numpy, zmq, libcrypto ... are shared by every process of every learner on a
    server), so the sum over a server's processes is its memory. None where the kernel has no
    smaps_rollup (Linux < 4.14)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def lab_peaks(path: str | None = None) -> dict[str, float]:
    """lab file name -> peak MB, from the file the labs' run wrote ({} if none)."""
    path = path or os.environ.get(LAB_PEAKS_ENV)
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return {str(k): float(v) for k, v in json.load(f).items()}


def _traffic(cluster: Any, records: int) -> None:
    cluster.create_topic("footprint", partitions=3, replication_factor=3, config={"min.insync.replicas": 2})
    producer = cluster.producer({"acks": "all", "linger.ms": 5})
    value = b"x" * 100
    for i in range(records):
        producer.produce("footprint", key=str(i % 100).encode(), value=value)
    if producer.flush(60):
        raise RuntimeError("the footprint bench's producer could not deliver its records")
    producer.close()
    consumer = cluster.consumer({"group.id": "footprint", "auto.offset.reset": "earliest"})
    consumer.subscribe(["footprint"])
    got, deadline = 0, time.monotonic() + 60
    while got < records and time.monotonic() < deadline:
        got += sum(1 for m in consumer.consume(1000, 0.5) if m.error() is None)
    consumer.close()
    if got < records:
        raise RuntimeError(f"the footprint bench's consumer got {got} of {records} records")


def run(brokers: int = 3, records: int = 20_000, idle_s: float = 20.0, dashboard: bool = True) -> list[dict[str, Any]]:
    from kafkalab import Cluster

    rows: list[dict[str, Any]] = []
    me = os.getpid()
    with Cluster(brokers=brokers) as cluster:
        _traffic(cluster, records)
        board = None
        if dashboard:
            from kafkalab.widgets import Dashboard

            board = Dashboard(cluster, topic="footprint")
        try:
            # Process names from the cluster itself: describe_cluster() would import pandas here.
            names = {proc.pid: node for node, proc in cluster.processes.items()}
            # Let the traffic's tail settle (commits, replica fetches) and the Dashboard see
            # that the cluster went quiet.
            time.sleep(3.0)
            pids = [me, *descendants(me)]
            before = {pid: cpu_s(pid) for pid in pids}
            t0 = time.monotonic()
            time.sleep(idle_s)
            elapsed = time.monotonic() - t0
            for pid in pids:
                try:
                    cpu = 100 * (cpu_s(pid) - before[pid]) / elapsed
                    mb = rss_mb(pid)
                    pss = pss_mb(pid)
                except OSError:
                    continue
                name = "notebook (this process)" + (" + dashboard" if board else "") if pid == me \
                    else names.get(pid, f"other child process (pid {pid})")
                rows.append({"process": name, "rss_mb": mb, "pss_mb": pss, "idle_cpu_pct": cpu})
        finally:
            if board is not None:
                board.close()
    rows.sort(key=lambda r: r["process"])
    pss = [r["pss_mb"] for r in rows]
    rows.append({"process": "one learner (total)", "rss_mb": sum(r["rss_mb"] for r in rows),
                 "pss_mb": None if None in pss else sum(pss),  # type: ignore[arg-type]
                 "idle_cpu_pct": sum(r["idle_cpu_pct"] for r in rows)})
    for lab, mb in sorted(lab_peaks().items()):
        rows.append({"process": f"lab {lab} peak (kernel + cluster)", "rss_mb": mb, "pss_mb": None,
                     "idle_cpu_pct": None})
    return rows

