"""The controller quorum: each controller's copy of `__cluster_metadata`, who leads, what is committed."""

from __future__ import annotations

from typing import Any

from kafkalab.metrics import as_rows, latest_rows

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
    empty_note,
)

LEADER_COLOR = "#1f77b4"
# A controller that has not reported for this long is drawn as offline (killed, paused, cut
# off from the notebook): its last report would otherwise look current.
STALE_S = 2.0


def quorum_figure_data(rows: Any, now: float | None = None, stale_s: float = STALE_S) -> FigureData:
    """Bars: each controller's log end offset, coloured by Raft role (blue: the leader, green:
    a follower, orange: electing, grey: silent); red diamonds: the high watermark each one
    knows. The title names the epoch and the active controller."""
    layout = base_layout("Controller quorum (__cluster_metadata)", yaxis={"title": {"text": "offset"}})
    rows = as_rows(rows)
    if not rows:
        layout["annotations"] = [empty_note("no controller quorum has reported (controllers=3)")]
        return {"data": [], "layout": layout}
    names, leos, hws, colors, texts, outlines = [], [], [], [], [], []
    active: tuple[int, str] | None = None
    for row in latest_rows(rows, ["controller_id"]):
        role = str(row.get("role"))
        silent = now is not None and now - float(row["time"]) > stale_s
        names.append(str(row.get("node")))  # "controller" for a single controller (a quorum of one)
        leos.append(int(row["log_end_offset"]))
        hws.append(int(row["high_watermark"]))
        if silent:
            colors.append(OFFLINE)
        elif role == "leader":
            colors.append(LEADER_COLOR)
        elif role == "follower":
            colors.append(IN_SYNC)
        else:
            colors.append(OUT_OF_SYNC)
        is_active = bool(row.get("active")) and not silent
        outlines.append(3 if is_active else 0)
        epoch = int(row["epoch"])
        texts.append(f"{role}, epoch {epoch}" + (" (active)" if is_active else "")
                     + (" (silent)" if silent else ""))
        if is_active and (active is None or epoch > active[0]):
            active = (epoch, str(row.get("node")))
    title = (f"Controller quorum: epoch {active[0]}, active {active[1]}" if active
             else "Controller quorum: no active controller")
    layout["title"] = {"text": title}
    return {"data": [
        {"type": "bar", "name": "log end offset", "x": names, "y": leos, "text": texts,
         "marker": {"color": colors, "line": {"color": LEADER_OUTLINE, "width": outlines}}},
        {"type": "scatter", "mode": "markers", "name": "high watermark", "x": names, "y": hws,
         "marker": {"color": HIGH_WATERMARK, "symbol": "diamond", "size": 12}},
    ], "layout": layout}


class QuorumView(View):
    """Live view of the KRaft controller quorum (a Cluster started with controllers=3)."""

    def __init__(self, source: Source, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        super().__init__(source)

    def figure_data(self) -> FigureData:
        return quorum_figure_data(self.source.rows("quorum"), self.source.now(), self.stale_s)
