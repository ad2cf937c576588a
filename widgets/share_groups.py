"""Share groups (KIP-932): records per state on each share-partition and per consumer, with the
lock expiries and redeliveries behind them.

Reads the "share_partition" rows each share-partition's leader publishes: in-flight records by
state (available / acquired), acknowledged and archived ones counted since that leader loaded the
share-partition, records below the high watermark no consumer has acquired yet, and per member
what it holds now and what it has accepted.
"""

from __future__ import annotations

import math
from typing import Any

from kafkalab.metrics import as_rows, latest_rows

from .base import EVENT_LINE, FigureData, Source, View, base_layout, empty_note

SHARE_KIND = "share_partition"
STATE_COLORS = {"available": "#1f77b4", "acquired": "#ff7f0e", "acknowledged": "#2ca02c",
                "archived": "#9e9e9e"}


def short_member(member_id: str) -> str:
    """A share consumer's member id is a UUID: its first eight characters name it well enough."""
    return str(member_id)[:8]


def share_partition_rows(rows: Any, group: str, topic: str | None = None) -> list[dict[str, Any]]:
    """The newest report per share-partition of `group` (a new leader's report replaces the
    old one), by topic and partition."""
    rows = [r for r in as_rows(rows) if r.get("group") == group
            and (topic is None or r.get("topic") == topic)]
    return latest_rows(rows, ["topic", "partition"])


def _count(value: Any) -> int:
    return 0 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def _per_member(latest: list[dict[str, Any]], column: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in latest:
        counts = row.get(column)
        for member, n in (counts if isinstance(counts, dict) else {}).items():
            out[member] = out.get(member, 0) + int(n)
    return out


def share_figure_data(rows: Any, group: str, topic: str | None = None) -> FigureData:
    """Left: per share-partition, records available (in flight, or not yet acquired below the
    high watermark), acquired (under a lock now), acknowledged and archived (since the leader
    loaded it), stacked; lock expiries and redeliveries in the hover and above the chart.
    Right: per consumer, what it holds now and what it has accepted."""
    layout = base_layout(f"Share group {group!r}: records per state", barmode="stack",
                         xaxis={"domain": [0, 0.55], "title": {"text": "share-partition"}},
                         xaxis2={"domain": [0.65, 1], "anchor": "y2", "title": {"text": "consumer: held | accepted"}},
                         yaxis={"title": {"text": "records"}},
                         yaxis2={"anchor": "x2", "rangemode": "tozero"})
    latest = share_partition_rows(rows, group, topic)
    if not latest:
        layout["annotations"] = [empty_note("no share-partition has reported yet")]
        return {"data": [], "layout": layout}
    x = [f"{r['topic']}-{int(r['partition'])}" for r in latest]
    counts = {
        "available": [_count(r.get("available")) + _count(r.get("not_yet_acquired")) for r in latest],
        "acquired": [_count(r.get("acquired")) for r in latest],
        "acknowledged": [_count(r.get("acknowledged_total")) for r in latest],
        "archived": [_count(r.get("archived_total")) for r in latest],
    }
    expiries = [_count(r.get("lock_expiries")) for r in latest]
    redeliveries = [_count(r.get("redeliveries")) for r in latest]
    words = [f"SPSO {_count(r.get('start_offset'))}, SPEO {_count(r.get('end_offset'))}; "
             f"lock expiries {le}, redeliveries {rd}"
             for r, le, rd in zip(latest, expiries, redeliveries, strict=True)]
    traces: list[dict[str, Any]] = [
        {"type": "bar", "name": state, "x": x, "y": ys, "marker": {"color": STATE_COLORS[state]},
         "customdata": words, "hovertemplate": f"%{{x}}: %{{y}} {state}<br>%{{customdata}}<extra></extra>"}
        for state, ys in counts.items()]
    held, accepted = _per_member(latest, "acquired_by"), _per_member(latest, "accepted_by")
    members = sorted(set(held) | set(accepted))
    names = [short_member(m) for m in members]
    traces.append({"type": "bar", "name": "held now", "x": names, "y": [held.get(m, 0) for m in members],
                   "xaxis": "x2", "yaxis": "y2", "marker": {"color": STATE_COLORS["acquired"]},
                   "showlegend": False, "offsetgroup": "held",
                   "hovertemplate": "%{x} holds %{y} (acquired)<extra></extra>"})
    traces.append({"type": "bar", "name": "accepted", "x": names, "y": [accepted.get(m, 0) for m in members],
                   "xaxis": "x2", "yaxis": "y2", "marker": {"color": STATE_COLORS["acknowledged"]},
                   "showlegend": False, "offsetgroup": "accepted",
                   "hovertemplate": "%{x} accepted %{y}<extra></extra>"})
    layout["annotations"] = [{
        "text": f"lock expiries {sum(expiries)} · redeliveries {sum(redeliveries)}", "xref": "paper",
        "yref": "paper", "x": 1, "y": 1.0, "xanchor": "right", "yanchor": "bottom", "showarrow": False,
        "font": {"size": 10, "color": EVENT_LINE}}]
    if not members:
        layout["annotations"].append({**empty_note("no consumer holds or accepted records"), "x": 0.82})
    return {"data": traces, "layout": layout}


class ShareGroupView(View):
    """A share group's records per state per share-partition and per consumer, live."""

    def __init__(self, source: Source, group: str, topic: str | None = None, window_s: float = 120.0) -> None:
        self.group, self.topic = group, topic
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        now = self.source.now()
        rows = self.source.rows(SHARE_KIND, self.since(now))
        return share_figure_data(rows, self.group, self.topic)
