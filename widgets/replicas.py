"""Per-replica bars: log end offsets against the high watermark, and segment files on disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafkalab.metrics import as_rows

from .base import (
    HIGH_WATERMARK,
    IN_SYNC,
    LEADER_OUTLINE,
    OFFLINE,
    OUT_OF_SYNC,
    FigureData,
    Source,
    View,
    base_layout,
    current_leaders,
    empty_note,
    is_true,
    pick_topic,
    plain,
)

STATUS_COLORS = {"in-sync": IN_SYNC, "out-of-sync": OUT_OF_SYNC, "offline": OFFLINE}
STALE_AFTER_S = 3.0  # processes report several times a second; 3 s of silence means trouble


# Process states (ClusterProbe's words) in which a broker serves its replicas.
SERVING = frozenset({"up", "fenced", "running"})


CLASSIFIED_COLUMNS = ["partition", "broker", "log_end_offset", "high_watermark", "log_start_offset",
                      "segments", "size_bytes", "status", "is_leader", "partition_hw", "lag_offsets",
                      "partition_isr"]


def classify_replicas(latest: Any, topic: str, now: float | None = None,
                      stale_after_s: float = STALE_AFTER_S,
                      broker_states: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """One row (a dict of CLASSIFIED_COLUMNS) per replica of `topic`, by partition and broker,
    with its status, whether it leads, and the partition HW.

    The ISR is the one the current leader (newest epoch) reports; a replica that has not
    reported for `stale_after_s` is offline whatever it last said, and so is one on a broker
    the cluster knows it killed, paused or stopped (`broker_states`), at once, as its tile.
    """
    broker_states = broker_states or {}
    rows = sorted((r for r in as_rows(latest) if r.get("topic") == topic),
                  key=lambda r: (r["partition"], r["broker"]))
    if not rows:
        return []
    if now is None:
        now = float(max(r["time"] for r in rows))
    leaders = {r["partition"]: r for r in current_leaders(rows)
               if broker_states.get(int(r["broker"]), "up") in SERVING}
    out = []
    for row in rows:
        partition = row["partition"]
        leader = leaders.get(partition)
        isr_list = list(leader["isr"] if leader is not None else row.get("isr") or [])
        isr = set(isr_list)
        if (now - row["time"] > stale_after_s
                or broker_states.get(int(row["broker"]), "up") not in SERVING):
            status = "offline"
        else:
            status = "in-sync" if row["broker"] in isr else "out-of-sync"
        leads = leader is not None and leader["broker"] == row["broker"] and status != "offline"
        if leader is not None:
            hw = leader.get("high_watermark")
        else:
            marks = [r.get("high_watermark") for r in rows if r["partition"] == partition]
            hw = max((m for m in marks if m is not None), default=None)
        out.append({**{c: row.get(c) for c in CLASSIFIED_COLUMNS}, "status": status,
                    "is_leader": leads, "partition_hw": hw, "partition_isr": isr_list})
    return out


PARTITION_OFFLINE = "#d62728"


def partition_summary(classified: list[dict[str, Any]]) -> list[dict[str, object]]:
    """Per partition: leader (None if none), ISR, how many replicas, and a verdict:
    "OFFLINE" (no live replica in the ISR), "under-replicated" (ISR smaller than the
    replicas) or "ok"."""
    by_partition: dict[Any, list[dict[str, Any]]] = {}
    for row in classified:
        by_partition.setdefault(row["partition"], []).append(row)
    out = []
    for partition in sorted(by_partition):
        rows = by_partition[partition]
        leaders = [r for r in rows if is_true(r["is_leader"])]
        leader = int(leaders[0]["broker"]) if leaders else None
        isr = [int(b) for b in rows[0]["partition_isr"]]
        live = {int(r["broker"]) for r in rows if r["status"] != "offline"}
        if leader is None and not live & set(isr):
            verdict = "OFFLINE"
        elif leader is not None and len(isr) < len(rows):
            verdict = "under-replicated"
        else:
            verdict = "ok"
        out.append({"partition": int(partition), "leader": leader, "isr": isr,
                    "replicas": len(rows), "verdict": verdict})
    return out


def _summary_annotations(classified: list[dict[str, Any]]) -> list[dict[str, object]]:
    """A label over each partition's group of bars: its leader and ISR, OFFLINE in red,
    under-replicated in orange. Bars sit one per category, so a partition's centre is the
    mean of its categories' positions on the paper."""
    total = len(classified)
    notes, first = [], 0
    for summary in partition_summary(classified):
        count = summary["replicas"]
        centre = (first + count / 2) / total
        first += count
        isr = f"ISR {summary['isr']}"
        if summary["verdict"] == "OFFLINE":
            # The ISR last reported names dead brokers; what matters is that none is alive.
            text = f"<b style='color:{PARTITION_OFFLINE}'>OFFLINE</b><br>no live ISR replica"
        elif summary["verdict"] == "under-replicated":
            text = (f"leader {summary['leader']}<br>"
                    f"<span style='color:{OUT_OF_SYNC}'>{isr}</span>")
        else:
            text = f"leader {summary['leader']}<br>{isr}"
        notes.append({"text": text, "xref": "paper", "yref": "paper", "x": centre, "y": 1.0,
                      "yanchor": "bottom", "showarrow": False, "font": {"size": 10}})
    return notes


def _replica_axis(classified: list[dict[str, Any]]) -> list[list[str]]:
    """Two-level categories: partition, then broker id (short, so labels never turn sideways)."""
    return [[f"P{r['partition']}" for r in classified], [str(r["broker"]) for r in classified]]


def _replica_names(classified: list[dict[str, Any]]) -> list[str]:
    return [f"P{r['partition']}, broker {r['broker']}" for r in classified]


def _column(rows: list[dict[str, Any]], name: str) -> list[Any]:
    return plain(r.get(name) for r in rows)


def replica_figure_data(latest: Any, topic: str | None, now: float | None = None,
                        stale_after_s: float = STALE_AFTER_S,
                        broker_states: dict[int, str] | None = None) -> FigureData:
    """Bars: each replica's LEO, coloured by ISR status, the leader outlined and labelled;
    markers: the partition's high watermark (what consumers may read up to) on each bar;
    over each partition, its leader and ISR (OFFLINE in red, a shrunk ISR in orange)."""
    latest = as_rows(latest)
    topic = pick_topic(latest, topic)
    title = f"Replicas of {topic!r}: log end offset, high watermark (red)"
    layout = base_layout(title, barmode="group", yaxis={"title": {"text": "offset"}},
                         showlegend=False)
    layout["margin"] = {"l": 55, "r": 10, "t": 72, "b": 70}
    layout["title"] = {"text": title, "x": 0.01, "y": 0.98, "font": {"size": 14}}
    classified = (classify_replicas(latest, topic, now, stale_after_s, broker_states)
                  if topic else None)
    if not classified:
        layout["annotations"] = [empty_note("no replica has reported yet")]
        return {"data": [], "layout": layout}
    x = _replica_axis(classified)
    leader = [r["is_leader"] for r in classified]
    bars = {
        "type": "bar",
        "name": "log end offset",
        "x": x,
        "y": _column(classified, "log_end_offset"),
        "marker": {
            "color": [STATUS_COLORS[r["status"]] for r in classified],
            "line": {"color": LEADER_OUTLINE, "width": [3 if lead else 0 for lead in leader]},
        },
        "text": ["leader" if lead else "" for lead in leader],
        "textposition": "outside",
        "customdata": [[name, status] for name, status in zip(
            _replica_names(classified), _column(classified, "status"), strict=True)],
        "hovertemplate": "%{customdata[0]}<br>LEO %{y}<br>%{customdata[1]}<extra></extra>",
        "showlegend": False,
    }
    hw = {
        "type": "scatter",
        "name": "high watermark",
        "mode": "markers",
        "x": x,
        "y": _column(classified, "partition_hw"),
        "marker": {"symbol": "line-ew", "size": 36,
                   "line": {"width": 3, "color": HIGH_WATERMARK}},
        "customdata": _replica_names(classified),
        "hovertemplate": "%{customdata}<br>HW %{y}<extra></extra>",
    }
    layout["annotations"] = [*_summary_annotations(classified), {
        "text": (f"<span style='color:{IN_SYNC}'>■</span> in ISR  "
                 f"<span style='color:{OUT_OF_SYNC}'>■</span> out of sync  "
                 f"<span style='color:{OFFLINE}'>■</span> offline  ▭ leader  "
                 f"<span style='color:{HIGH_WATERMARK}'>—</span> high watermark"),
        "xref": "paper", "yref": "paper", "x": 0, "y": 0, "yanchor": "top", "yshift": -40,
        "xanchor": "left", "showarrow": False, "font": {"size": 10}}]
    return {"data": [bars, hw], "layout": layout}


def segment_figure_data(latest: Any, topic: str | None, now: float | None = None,
                        stale_after_s: float = STALE_AFTER_S,
                        broker_states: dict[int, str] | None = None) -> FigureData:
    """Bars: bytes on disk per replica, labelled with the number of segment files."""
    latest = as_rows(latest)
    topic = pick_topic(latest, topic)
    layout = base_layout(f"Segments of {topic!r} on disk", barmode="group",
                         yaxis={"title": {"text": "bytes"}},
                         xaxis={"title": {"text": "partition / replica"}})
    classified = (classify_replicas(latest, topic, now, stale_after_s, broker_states)
                  if topic else None)
    if not classified:
        layout["annotations"] = [empty_note("no replica has reported yet")]
        return {"data": [], "layout": layout}
    segments = _column(classified, "segments")
    bars = {
        "type": "bar",
        "name": "size on disk",
        "x": _replica_axis(classified),
        "y": _column(classified, "size_bytes"),
        "marker": {"color": [STATUS_COLORS[r["status"]] for r in classified]},
        "text": [f"{n} segment{'s' if n != 1 else ''}" if n is not None else ""
                 for n in segments],
        "textposition": "outside",
        "customdata": [[s, lso, name] for s, lso, name in zip(
            segments, _column(classified, "log_start_offset"), _replica_names(classified),
            strict=True)],
        "hovertemplate": ("%{customdata[2]}<br>%{y} bytes in %{customdata[0]} segments"
                          "<br>log start offset %{customdata[1]}<extra></extra>"),
    }
    return {"data": [bars], "layout": layout}


def _cluster_or_metrics(source: Any, broker_states: Callable[[], dict[int, str]] | None
                        ) -> tuple[Any, Callable[[], dict[int, str]] | None]:
    """`ReplicaView(cluster, ...)` reads the cluster's metrics and takes its word on which
    brokers run; `ReplicaView(cluster.metrics, ...)` only has the metrics."""
    if hasattr(source, "metrics") and hasattr(source, "broker_state"):
        cluster = source
        if broker_states is None:
            def broker_states() -> dict[int, str]:
                return {} if cluster.closed else {b: cluster.broker_state(b)
                                                  for b in cluster.broker_ids}
        return cluster.metrics, broker_states
    return source, broker_states


class ReplicaView(View):
    """Each replica's LEO and the partition's HW, ISR members coloured, leader marked."""

    def __init__(self, source: Source, topic: str | None = None,
                 stale_after_s: float = STALE_AFTER_S,
                 broker_states: Callable[[], dict[int, str]] | None = None) -> None:
        source, broker_states = _cluster_or_metrics(source, broker_states)
        self.topic = topic
        self.stale_after_s = stale_after_s
        self.broker_states = broker_states  # the cluster's own word on its processes
        super().__init__(source)

    def figure_data(self) -> FigureData:
        return replica_figure_data(self.source.latest_replica_rows(), self.topic,
                                   self.source.now(), self.stale_after_s,
                                   self.broker_states() if self.broker_states else None)


class SegmentView(View):
    """Segment files per replica with their total size."""

    def __init__(self, source: Source, topic: str | None = None,
                 stale_after_s: float = STALE_AFTER_S,
                 broker_states: Callable[[], dict[int, str]] | None = None) -> None:
        source, broker_states = _cluster_or_metrics(source, broker_states)
        self.topic = topic
        self.stale_after_s = stale_after_s
        self.broker_states = broker_states  # the cluster's own word on its processes
        super().__init__(source)

    def figure_data(self) -> FigureData:
        return segment_figure_data(self.source.latest_replica_rows(), self.topic,
                                   self.source.now(), self.stale_after_s,
                                   self.broker_states() if self.broker_states else None)
