"""The cluster's describe_* frames: a row per partition, broker, config, group member or
controller, built from the controller's metadata and the processes' metric rows. The one place
that turns them into pandas frames; what it reads and decides works on plain rows, so the
Dashboard (active_controller, the fresh-metrics wait) never imports pandas."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.cluster.waiting import wait_until
from kafkalab.lazy_pandas import pd
from kafkalab.metrics import MetricsCollector
from kafkalab.protocol.errors import KafkaError

TOPIC_COLUMNS = ["partition", "leader", "leader_epoch", "replicas", "isr", "high_watermark", "log_end_offsets"]
GROUP_COLUMNS = ["group", "type", "state", "generation", "topic", "partition", "member", "client_id",
                 "member_epoch", "committed_offset", "log_end_offset", "lag"]
QUORUM_COLUMNS = ["controller", "state", "role", "epoch", "leader", "active", "high_watermark", "log_end_offset"]
CONFIG_SOURCES = {1: "topic", 4: "broker", 5: "default"}


def wait_fresh_metrics(metrics: MetricsCollector, running: list[int], since: float, interval_ms: int) -> None:
    """Wait (up to three publish intervals) for a row from every running broker newer than `since`."""
    def fresh() -> bool:
        newest: dict[Any, float] = {}
        for row in metrics.rows("broker"):
            newest[row.get("broker")] = max(newest.get(row.get("broker"), row["time"]), row["time"])
        return all(b in newest and newest[b] >= since for b in running)
    try:
        wait_until(fresh, 3 * interval_ms / 1000 + 1, "fresh metrics")
    except TimeoutError:
        pass  # a cut or paused broker publishes nothing: describe with what we have


def topic_metadata(name: str, metadata: Any) -> Any:
    """The one topic of a Metadata response; an error (no such topic) raised."""
    md = metadata.topics[0]
    if md.error_code != ErrorCode.none:
        raise KafkaError(md.error_code, f"topic {name!r}")
    return md


def topic_frame(name: str, md: Any, metrics: MetricsCollector, running: list[int]) -> pd.DataFrame:
    """A row per partition: the controller's leader, epoch, replicas and ISR; the leader's
    high watermark and every running replica's log end offset from the brokers' rows."""
    rows = metrics.latest_replica_rows()
    out = []
    for p in sorted(md.partitions, key=lambda p: p.partition_index):
        pid = int(p.partition_index)
        mine = [r for r in rows if r.get("topic") == name and r.get("partition") == pid]
        leos = {int(r["broker"]): int(r["log_end_offset"]) for r in mine if int(r["broker"]) in running}
        lead = [r for r in mine if r["broker"] == int(p.leader_id)]
        hw = int(lead[-1]["high_watermark"]) if lead else -1
        out.append({"partition": pid, "leader": int(p.leader_id), "leader_epoch": int(p.leader_epoch),
                    "replicas": [int(b) for b in p.replica_nodes], "isr": [int(b) for b in p.isr_nodes],
                    "high_watermark": hw, "log_end_offsets": leos})
    return pd.DataFrame(out, columns=TOPIC_COLUMNS)


def cluster_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def configs_frame(result: Any) -> pd.DataFrame:
    """A DescribeConfigs result: name, value, source (topic, broker or default), read_only, doc."""
    return pd.DataFrame([{"name": c.name, "value": c.value, "source": CONFIG_SOURCES.get(int(c.config_source), "?"),
                          "read_only": bool(c.read_only), "doc": c.documentation or ""} for c in result.configs])


def group_frame(metrics: MetricsCollector, group: str, timeout: float = 5.0,
                publish_now: Callable[[], None] | None = None) -> pd.DataFrame:
    """A row per member and partition it is assigned or the group has committed: the group's
    type ("classic", "consumer" (KIP-848) or "share" (KIP-932)), state and generation (the
    group epoch of the new protocols), member id, client id, member epoch (consumer and share
    groups), committed offset, log end offset (the leader's high watermark) and lag. A member
    with no partition has one row; share groups commit no offsets (many members may share a
    partition). Built from the coordinator's "group" and "lag" rows and the brokers' replica
    rows (a state row newer than the call is awaited; publish_now asks the coordinators for it)."""
    since = time.time()
    if publish_now is not None:
        publish_now()

    def fresh() -> Any:
        g = [r for r in metrics.rows("group", since) if r.get("group") == group]
        return (g,) if g else None

    try:
        (groups,) = wait_until(fresh, timeout, f"a fresh state row of group {group!r}")
    except TimeoutError:
        return pd.DataFrame(columns=GROUP_COLUMNS)
    row = max(groups, key=lambda r: r["time"])
    kind = {"consumer": "consumer", "share": "share"}.get(str(row.get("protocol")), "classic")
    epochs = row.get("member_epochs") if isinstance(row.get("member_epochs"), dict) else {}
    clients = row.get("client_ids") if isinstance(row.get("client_ids"), dict) else {}
    assignment = row.get("assignment") if isinstance(row.get("assignment"), dict) else {}
    owners: dict[tuple[str, int], list[str]] = {}
    for m, tps in assignment.items():
        for tp in tps:
            t, _, p = tp.rpartition("-")
            owners.setdefault((t, int(p)), []).append(m)
    committed: dict[tuple[str, int], int] = {}
    if isinstance(row.get("committed"), dict):  # the coordinator's offsets as of this row
        for tp, offset in row["committed"].items():
            t, _, p = tp.rpartition("-")
            committed[(t, int(p))] = int(offset)
    else:  # a row without the map: the lag rows' history
        for r in sorted((r for r in metrics.rows("lag") if r.get("group") == group),
                        key=lambda r: r["time"]):
            committed[(r["topic"], int(r["partition"]))] = int(r["committed_offset"])
    ends: dict[tuple[str, int], int] = {}
    for r in metrics.latest_replica_rows():
        if r.get("is_leader"):
            ends[(r["topic"], int(r["partition"]))] = int(r["high_watermark"])

    def member_row(t: str | None, p: int | None, m: str | None) -> dict[str, Any]:
        c = committed.get((t, p)) if t is not None and p is not None else None
        end = ends.get((t, p)) if t is not None and p is not None else None
        return {"group": group, "type": kind, "state": row["state"], "generation": int(row["generation"]),
                "topic": t, "partition": p, "member": m, "client_id": clients.get(m) if m else None,
                "member_epoch": epochs.get(m) if m else None, "committed_offset": c,
                "log_end_offset": end, "lag": None if c is None or end is None else max(0, end - c)}

    rows = [member_row(t, p, m) for t, p in sorted(set(committed) | set(owners))
            for m in (sorted(owners.get((t, p), [])) or [None])]
    idle = set(epochs) | set(clients) | set(assignment)
    rows += [member_row(None, None, m) for m in sorted(idle) if not assignment.get(m)]
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def _newest_quorum_rows(metrics: MetricsCollector | None) -> dict[int, dict[str, Any]]:
    rows = metrics.rows("quorum") if metrics is not None else []
    return {int(row["controller_id"]): row for row in sorted(rows, key=lambda r: r["time"])}


def active_controller(metrics: MetricsCollector | None, controller_ids: list[int],
                      state: Callable[[int], str]) -> int | None:
    """From the controllers' own reports: the running controller that says it is active in the
    newest epoch (a cut-off ex-leader says so until it resigns); None while there is none."""
    best: tuple[int, int] | None = None
    for c, row in _newest_quorum_rows(metrics).items():
        if bool(row.get("active")) and c in controller_ids and state(c) == "running":
            if best is None or int(row["epoch"]) > best[0]:
                best = (int(row["epoch"]), c)
    return None if best is None else best[1]


def quorum_frame(metrics: MetricsCollector | None, controller_ids: list[int],
                 state: Callable[[int], str]) -> pd.DataFrame:
    """A row per controller (its newest report): controller, state, role, epoch, leader,
    active, high_watermark, log_end_offset."""
    newest = _newest_quorum_rows(metrics)
    rows = []
    for c in controller_ids:
        r = newest.get(c)
        rows.append({"controller": c, "state": state(c),
                     "role": r.get("role") if r is not None else None,
                     "epoch": int(r["epoch"]) if r is not None else -1,
                     "leader": int(r["leader"]) if r is not None else -1,
                     "active": bool(r.get("active")) if r is not None else False,
                     "high_watermark": int(r["high_watermark"]) if r is not None else -1,
                     "log_end_offset": int(r["log_end_offset"]) if r is not None else -1})
    return pd.DataFrame(rows, columns=QUORUM_COLUMNS)
