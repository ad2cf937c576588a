"""The controller quorum: each controller's copy of `__cluster_metadata`, who leads, what is committed."""

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
    empty_note,
)

LEADER_COLOR = "#1f77b4"
# A controller that has not reported for this long is drawn as offline (killed, paused, cut
# off from the notebook): its last report would otherwise look current.
STALE_S = 2.0


def quorum_figure_data(frame: pd.DataFrame, now: float | None = None, stale_s: float = STALE_S) -> FigureData:
    """Bars: each controller's log end offset, coloured by Raft role (blue: the leader, green:
    a follower, orange: electing, grey: silent); red diamonds: the high watermark each one
    knows. The title names the epoch and the active controller."""
    layout = base_layout("Controller quorum (__cluster_metadata)", yaxis={"title": {"text": "offset"}})
    if frame.empty:
        layout["annotations"] = [empty_note("no controller quorum has reported (controllers=3)")]
        return {"data": [], "layout": layout}
    newest = frame.sort_values("time", kind="stable").drop_duplicates("controller_id", keep="last")
    newest = newest.sort_values("controller_id", kind="stable")
    names, leos, hws, colors, texts, outlines = [], [], [], [], [], []
    active: tuple[int, str] | None = None
    for row in newest.itertuples():
        role = str(row.role)
        silent = now is not None and now - float(row.time) > stale_s
        names.append(str(row.node))  # "controller" for a single controller (a quorum of one)
        leos.append(int(row.log_end_offset))
        hws.append(int(row.high_watermark))
        if silent:
            colors.append(OFFLINE)
        elif role == "leader":
            colors.append(LEADER_COLOR)
        elif role == "follower":
            colors.append(IN_SYNC)
        else:
            colors.append(OUT_OF_SYNC)
        is_active = bool(row.active) and not silent
        outlines.append(3 if is_active else 0)
        texts.append(f"{role}, epoch {int(row.epoch)}" + (" (active)" if is_active else "")
                     + (" (silent)" if silent else ""))
        if is_active and (active is None or int(row.epoch) > active[0]):
            active = (int(row.epoch), str(row.node))
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
        frame = self.source.frame("quorum")  # type: ignore[attr-defined]
        return quorum_figure_data(frame, self.source.now(), self.stale_s)
