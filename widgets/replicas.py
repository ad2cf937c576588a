"""Per-replica bars: log end offsets against the high watermark, and segment files on disk."""

from __future__ import annotations

import pandas as pd

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
    pick_topic,
    plain,
)

STATUS_COLORS = {"in-sync": IN_SYNC, "out-of-sync": OUT_OF_SYNC, "offline": OFFLINE}
STALE_AFTER_S = 3.0  # processes report several times a second; 3 s of silence means trouble


def classify_replicas(latest: pd.DataFrame, topic: str, now: float | None = None,
                      stale_after_s: float = STALE_AFTER_S) -> pd.DataFrame:
    """One row per replica of `topic` with its status, whether it leads, and the partition HW.

    The ISR is the one the current leader (newest epoch) reports; a replica that has not
    reported for `stale_after_s` is offline whatever it last said.
    """
    rows = latest[latest["topic"] == topic].sort_values(["partition", "broker"], kind="stable")
    columns = ["partition", "broker", "log_end_offset", "high_watermark", "log_start_offset",
               "segments", "size_bytes", "status", "is_leader", "partition_hw", "lag_offsets"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    if now is None:
        now = float(rows["time"].max())
    leaders = current_leaders(rows).set_index("partition")
    out = []
    for _, row in rows.iterrows():
        partition = row["partition"]
        leader = leaders.loc[partition] if partition in leaders.index else None
        isr = set(leader["isr"] if leader is not None else row["isr"] or [])
        if now - row["time"] > stale_after_s:
            status = "offline"
        else:
            status = "in-sync" if row["broker"] in isr else "out-of-sync"
        leads = leader is not None and leader["broker"] == row["broker"] and status != "offline"
        hw = leader["high_watermark"] if leader is not None else rows.loc[
            rows["partition"] == partition, "high_watermark"].max()
        out.append({**{c: row.get(c) for c in columns if c in row}, "status": status,
                    "is_leader": leads, "partition_hw": hw})
    return pd.DataFrame(out, columns=columns)


def _replica_axis(classified: pd.DataFrame) -> list[list[str]]:
    return [[f"P{p}" for p in classified["partition"]],
            [f"broker {b}" for b in classified["broker"]]]


def replica_figure_data(latest: pd.DataFrame, topic: str | None, now: float | None = None,
                        stale_after_s: float = STALE_AFTER_S) -> FigureData:
    """Bars: each replica's LEO, coloured by ISR status, the leader outlined and labelled;
    markers: the partition's high watermark (what consumers may read up to) on each bar."""
    topic = pick_topic(latest, topic)
    title = f"Replicas of {topic!r}: log end offset (bars), high watermark (red)"
    layout = base_layout(title, barmode="group", yaxis={"title": {"text": "offset"}},
                         xaxis={"title": {"text": "partition / replica"}})
    classified = classify_replicas(latest, topic, now, stale_after_s) if topic else None
    if classified is None or classified.empty:
        layout["annotations"] = [empty_note("no replica has reported yet")]
        return {"data": [], "layout": layout}
    x = _replica_axis(classified)
    leader = classified["is_leader"].tolist()
    bars = {
        "type": "bar",
        "name": "log end offset",
        "x": x,
        "y": plain(classified["log_end_offset"]),
        "marker": {
            "color": [STATUS_COLORS[s] for s in classified["status"]],
            "line": {"color": LEADER_OUTLINE, "width": [3 if lead else 0 for lead in leader]},
        },
        "text": ["leader" if lead else "" for lead in leader],
        "textposition": "outside",
        "customdata": plain(classified["status"]),
        "hovertemplate": "%{x}<br>LEO %{y}<br>%{customdata}<extra></extra>",
        "showlegend": False,
    }
    hw = {
        "type": "scatter",
        "name": "high watermark",
        "mode": "markers",
        "x": x,
        "y": plain(classified["partition_hw"]),
        "marker": {"symbol": "line-ew", "size": 36,
                   "line": {"width": 3, "color": HIGH_WATERMARK}},
        "hovertemplate": "%{x}<br>HW %{y}<extra></extra>",
    }
    layout["annotations"] = [{
        "text": (f"<span style='color:{IN_SYNC}'>■</span> in ISR  "
                 f"<span style='color:{OUT_OF_SYNC}'>■</span> out of sync  "
                 f"<span style='color:{OFFLINE}'>■</span> offline  ▭ leader"),
        "xref": "paper", "yref": "paper", "x": 1, "y": 1.08, "xanchor": "right",
        "showarrow": False}]
    return {"data": [bars, hw], "layout": layout}


def segment_figure_data(latest: pd.DataFrame, topic: str | None, now: float | None = None,
                        stale_after_s: float = STALE_AFTER_S) -> FigureData:
    """Bars: bytes on disk per replica, labelled with the number of segment files."""
    topic = pick_topic(latest, topic)
    layout = base_layout(f"Segments of {topic!r} on disk", barmode="group",
                         yaxis={"title": {"text": "bytes"}},
                         xaxis={"title": {"text": "partition / replica"}})
    classified = classify_replicas(latest, topic, now, stale_after_s) if topic else None
    if classified is None or classified.empty:
        layout["annotations"] = [empty_note("no replica has reported yet")]
        return {"data": [], "layout": layout}
    segments = plain(classified["segments"])
    bars = {
        "type": "bar",
        "name": "size on disk",
        "x": _replica_axis(classified),
        "y": plain(classified["size_bytes"]),
        "marker": {"color": [STATUS_COLORS[s] for s in classified["status"]]},
        "text": [f"{n} segment{'s' if n != 1 else ''}" if n is not None else ""
                 for n in segments],
        "textposition": "outside",
        "customdata": [[s, lso] for s, lso in zip(
            segments, plain(classified["log_start_offset"]), strict=True)],
        "hovertemplate": ("%{x}<br>%{y} bytes in %{customdata[0]} segments"
                          "<br>log start offset %{customdata[1]}<extra></extra>"),
    }
    return {"data": [bars], "layout": layout}


class ReplicaView(View):
    """Each replica's LEO and the partition's HW, ISR members coloured, leader marked."""

    def __init__(self, source: Source, topic: str | None = None,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.topic = topic
        self.stale_after_s = stale_after_s
        super().__init__(source)

    def figure_data(self) -> FigureData:
        return replica_figure_data(self.source.latest_replicas(), self.topic,
                                   self.source.now(), self.stale_after_s)


class SegmentView(View):
    """Segment files per replica with their total size."""

    def __init__(self, source: Source, topic: str | None = None,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.topic = topic
        self.stale_after_s = stale_after_s
        super().__init__(source)

    def figure_data(self) -> FigureData:
        return segment_figure_data(self.source.latest_replicas(), self.topic,
                                   self.source.now(), self.stale_after_s)
