"""Lines over time: throughput in and out, and consumer lag per partition."""

from __future__ import annotations

from typing import Any

from kafkalab.metrics import as_rows

from .base import (
    TIME_AXIS_TITLE,
    FigureData,
    Source,
    View,
    base_layout,
    empty_note,
    plain,
)

IN_COLOR = "#1f77b4"
OUT_COLOR = "#9467bd"

# (column, trace name, axis, colour, dash)
THROUGHPUT_TRACES = [
    ("records_in_per_s", "produced records/s", "y", IN_COLOR, "solid"),
    ("records_out_per_s", "consumed records/s", "y", OUT_COLOR, "solid"),
    ("mb_in_per_s", "produced MB/s", "y2", IN_COLOR, "solid"),
    ("mb_out_per_s", "consumed MB/s", "y2", OUT_COLOR, "solid"),
    ("broker_mb_in_per_s", "brokers' MB/s in", "y2", IN_COLOR, "dot"),
    ("broker_mb_out_per_s", "brokers' MB/s out (+ replicas)", "y2", OUT_COLOR, "dot"),
]


def throughput_figure_data(rates: Any, start_time: float, window_s: float = 1.0,
                           now: float | None = None) -> FigureData:
    """Records/s (top) and MB/s (bottom), in and out, per window.

    The window still filling at `now` is left out: half a window would look like a dip.
    """
    layout = base_layout(
        "Throughput",
        xaxis={"anchor": "y", "matches": "x2", "showticklabels": False},
        yaxis={"domain": [0.55, 1.0], "title": {"text": "records/s"}, "rangemode": "tozero"},
        xaxis2={"anchor": "y2", "title": {"text": TIME_AXIS_TITLE}},
        yaxis2={"domain": [0.0, 0.45], "title": {"text": "MB/s"}, "rangemode": "tozero"},
        # Six entries: two a row, below the time axis's title (one a row ran over it).
        legend={"orientation": "h", "x": -0.1, "y": -0.3, "yanchor": "top", "entrywidth": 0.5,
                "entrywidthmode": "fraction", "font": {"size": 10}},
    )
    rates = as_rows(rates)
    if now is not None:
        rates = [r for r in rates if r["time"] + window_s <= now]
    if not rates:
        layout["annotations"] = [empty_note("no client or broker counters yet")]
    x = plain(r["time"] - start_time for r in rates)
    traces = []
    for column, name, axis, color, dash in THROUGHPUT_TRACES:
        traces.append({
            "type": "scatter", "mode": "lines", "name": name,
            "x": x, "y": plain(r.get(column) for r in rates),
            "xaxis": "x" if axis == "y" else "x2", "yaxis": axis,
            "line": {"color": color, "dash": dash, "shape": "hv"},
        })
    return {"data": traces, "layout": layout}


def lag_figure_data(lag: Any, start_time: float, group: str | None = None) -> FigureData:
    """A line per (group,) topic and partition: log end offset minus committed offset."""
    title = f"Consumer lag of group {group!r}" if group else "Consumer lag"
    layout = base_layout(title, xaxis={"title": {"text": TIME_AXIS_TITLE}},
                         yaxis={"title": {"text": "records behind"}, "rangemode": "tozero"})
    lag = as_rows(lag)
    if group is not None:
        lag = [r for r in lag if r.get("group") == group]
    if not lag:
        layout["annotations"] = [empty_note("no committed offsets yet")]
        return {"data": [], "layout": layout}
    several_groups = len({r.get("group") for r in lag} - {None}) > 1
    lines: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for row in sorted(lag, key=lambda r: r["time"]):
        key = (row.get("group"), row.get("topic"), row.get("partition"))
        if None not in key:  # as pandas' groupby, which leaves out a missing key
            lines.setdefault(key, []).append(row)
    traces = []
    for (g, topic, partition) in sorted(lines):
        rows = lines[(g, topic, partition)]
        name = f"{topic}-{partition}"
        traces.append({
            "type": "scatter", "mode": "lines", "name": f"{g}: {name}" if several_groups else name,
            "x": plain(r["time"] - start_time for r in rows), "y": plain(r.get("lag") for r in rows),
        })
    return {"data": traces, "layout": layout}


class ThroughputView(View):
    """Records/s and MB/s produced and consumed over the last `window_s` seconds."""

    def __init__(self, source: Source, rate_window_s: float = 1.0, window_s: float = 120.0) -> None:
        self.rate_window_s = rate_window_s
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        now = self.source.now()
        rates = self.source.throughput_rows(self.rate_window_s, since=self.since(now))
        return throughput_figure_data(rates, self.source.start_time, self.rate_window_s, now)


class LagView(View):
    """Lag per partition over time, for one group or all."""

    def __init__(self, source: Source, group: str | None = None, window_s: float = 120.0) -> None:
        self.group = group
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        lag = self.source.rows("lag", since=self.since(self.source.now()))
        return lag_figure_data(lag, self.source.start_time, self.group)
