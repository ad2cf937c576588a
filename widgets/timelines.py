"""Timelines: ISR size per partition with fault events, and partition ownership in a group."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .base import (
    EVENT_LINE,
    TIME_AXIS_TITLE,
    FigureData,
    Source,
    View,
    base_layout,
    empty_note,
    pick_topic,
    plain,
)

MAX_EVENT_MARKS = 30  # more than this and the labels become a smear
# Events that explain an ISR change; chatter such as role_change would bury them.
ISR_EVENTS = frozenset({
    "kill", "restart", "pause", "resume", "stop", "cut", "heal", "partition", "delay",
    "isr_shrink", "isr_expand", "isr_change", "leader_election", "broker_fenced",
    "broker_unfenced",
})


def _event_label(event: pd.Series) -> str:
    label = str(event.get("event"))
    broker = event.get("broker")
    if broker is not None and not pd.isna(broker):
        label += f" {int(broker)}"
    elif isinstance(event.get("detail"), str) and event.get("detail"):
        label += f" {event['detail']}"
    return label


def event_marks(events: pd.DataFrame, start_time: float, topic: str | None = None,
                kinds: frozenset[str] | None = ISR_EVENTS
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Vertical lines and labels for events of `kinds` (all when None); events about another
    topic are left out."""
    if kinds is not None and not events.empty:
        events = events[events["event"].isin(list(kinds))]
    if events.empty:
        return [], []
    if topic is not None and "topic" in events:
        events = events[events["topic"].isna() | (events["topic"] == topic)]
    events = events.sort_values("time", kind="stable").tail(MAX_EVENT_MARKS)
    shapes, labels = [], []
    for i, (_, event) in enumerate(events.iterrows()):
        x = float(event["time"] - start_time)
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x,
                       "y0": 0, "y1": 1, "line": {"color": EVENT_LINE, "dash": "dot", "width": 1}})
        labels.append({"text": _event_label(event), "xref": "x", "yref": "paper", "x": x,
                       "y": 1.0 - 0.08 * (i % 4), "showarrow": False, "xanchor": "left",
                       "font": {"size": 10, "color": EVENT_LINE}})
    return shapes, labels


def isr_figure_data(replicas: pd.DataFrame, events: pd.DataFrame, topic: str | None,
                    start_time: float) -> FigureData:
    """A step line per partition: how many replicas the leader counts in sync, over time.

    Only reports from the leader of the newest epoch count, so a deposed leader that keeps
    talking (a zombie behind a network cut) does not draw a false ISR.
    """
    topic = pick_topic(replicas, topic)
    layout = base_layout(f"ISR size of {topic!r} over time",
                         xaxis={"title": {"text": TIME_AXIS_TITLE}},
                         yaxis={"title": {"text": "replicas in sync"}, "dtick": 1,
                                "rangemode": "tozero"})
    rows = replicas[(replicas["topic"] == topic)
                    & replicas["is_leader"].fillna(False).astype(bool)] if topic else replicas[:0]
    traces = []
    for partition, part in rows.sort_values("time", kind="stable").groupby("partition", sort=True):
        epochs = part["leader_epoch"].astype(float)
        part = part[epochs >= epochs.cummax()]
        traces.append({
            "type": "scatter", "mode": "lines", "name": f"P{partition}",
            "x": plain(part["time"] - start_time),
            "y": [len(isr) if isinstance(isr, list) else None for isr in part["isr"]],
            "line": {"shape": "hv"},
            "customdata": [", ".join(map(str, isr)) if isinstance(isr, list) else ""
                           for isr in part["isr"]],
            "hovertemplate": "P" + str(partition) + " ISR [%{customdata}]<extra></extra>",
        })
    shapes, labels = event_marks(events, start_time, topic)
    layout["shapes"], layout["annotations"] = shapes, labels
    if not traces:
        layout["annotations"] = labels + [empty_note("no leader has reported yet")]
    return {"data": traces, "layout": layout}


def ownership_intervals(groups: pd.DataFrame, group: str, end_time: float | None = None
                        ) -> pd.DataFrame:
    """(member, topic_partition, start, end) spans from a group's assignment reports.

    Each report's assignment holds until the next report; the last holds until `end_time`
    (default: the last report).
    """
    columns = ["member", "topic_partition", "start", "end"]
    rows = groups[groups["group"] == group].sort_values("time", kind="stable")
    if rows.empty:
        return pd.DataFrame(columns=columns)
    times = rows["time"].astype(float).tolist()
    ends = times[1:] + [max(end_time if end_time is not None else times[-1], times[-1])]
    open_spans: dict[tuple[str, str], float] = {}
    spans = []
    for t, end, assignment in zip(times, ends, rows["assignment"], strict=True):
        owned = {(m, tp) for m, tps in (assignment or {}).items() for tp in tps}
        for key in list(open_spans):
            if key not in owned:
                spans.append((*key, open_spans.pop(key), t))
        for key in owned:
            open_spans.setdefault(key, t)
        last_end = end
    spans.extend((*key, start, last_end) for key, start in open_spans.items())
    return pd.DataFrame(sorted(spans), columns=columns)


def rebalance_figure_data(groups: pd.DataFrame, group: str, start_time: float,
                          now: float | None = None) -> FigureData:
    """A bar of colour per member along each partition's row; a mark at each new generation."""
    layout = base_layout(f"Who owns which partition in group {group!r}",
                         xaxis={"title": {"text": TIME_AXIS_TITLE}},
                         yaxis={"title": {"text": "partition"}, "type": "category",
                                "categoryorder": "category descending"})
    spans = ownership_intervals(groups, group, now)
    traces = []
    for member, rows in spans.groupby("member", sort=True):
        x: list[float | None] = []
        y: list[str | None] = []
        for _, span in rows.iterrows():
            x += [span["start"] - start_time, span["end"] - start_time, None]
            y += [span["topic_partition"], span["topic_partition"], None]
        traces.append({"type": "scatter", "mode": "lines", "name": str(member),
                       "x": x, "y": y, "line": {"width": 12}, "connectgaps": False})
    rows = groups[groups["group"] == group].sort_values("time", kind="stable")
    shapes, labels = [], []
    if not rows.empty:
        firsts = rows.drop_duplicates("generation", keep="first")
        for _, row in firsts.iterrows():
            x = float(row["time"] - start_time)
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x,
                           "y0": 0, "y1": 1, "line": {"color": EVENT_LINE, "dash": "dash"}})
            labels.append({"text": f"gen {row['generation']}", "xref": "x", "yref": "paper",
                           "x": x, "y": 1.02, "showarrow": False, "xanchor": "left",
                           "font": {"size": 10, "color": EVENT_LINE}})
    layout["shapes"], layout["annotations"] = shapes, labels
    if not traces:
        layout["annotations"] = labels + [empty_note("no assignment reported yet")]
    return {"data": traces, "layout": layout}


class IsrTimeline(View):
    """ISR size per partition over time, with kills, cuts and elections marked."""

    def __init__(self, source: Source, topic: str | None = None, window_s: float = 120.0) -> None:
        self.topic = topic
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        since = self.since(self.source.now())
        return isr_figure_data(self.source.replicas(since), self.source.events(since),
                               self.topic, self.source.start_time)


class RebalanceTimeline(View):
    """Which member owned which partition when, generations marked."""

    def __init__(self, source: Source, group: str, window_s: float = 300.0) -> None:
        self.group = group
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        now = self.source.now()
        return rebalance_figure_data(self.source.groups(self.since(now)), self.group,
                                     self.source.start_time, now)
