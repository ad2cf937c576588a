"""What every view shares: the figure-data shape, applying it to a FigureWidget, colours.

A view's pure function returns `FigureData`: {"data": [trace dicts], "layout": {...}}, plain
Python values only, so tests compare numbers and colours without a kernel or a browser.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import pandas as pd
import plotly.graph_objects as go

FigureData = dict[str, Any]

IN_SYNC = "#2ca02c"       # green: a member of the ISR
OUT_OF_SYNC = "#ff7f0e"   # orange: a replica the leader has dropped from the ISR
OFFLINE = "#9e9e9e"       # grey: no report lately (killed, paused, cut off from the notebook)
HIGH_WATERMARK = "#d62728"
LEADER_OUTLINE = "#222222"
EVENT_LINE = "#7f7f7f"

FIGURE_HEIGHT = 320
# Plotly's FigureWidget (anywidget) draws before it is attached and never autosizes to its
# container, so it would stay 700 px wide whatever the box around it: give it a width.
FIGURE_WIDTH = 460  # two a row beside the file browser at 1400 px
TIME_AXIS_TITLE = "seconds since start"
FIGURE_CONFIG = {"displayModeBar": False}


class Source(Protocol):
    """A MetricsCollector or MetricsSnapshot (kafkalab.metrics); views only read it."""

    start_time: float

    def now(self) -> float: ...
    def latest_replicas(self) -> pd.DataFrame: ...
    def replicas(self, since: float | None = None) -> pd.DataFrame: ...
    def events(self, since: float | None = None) -> pd.DataFrame: ...
    def groups(self, since: float | None = None) -> pd.DataFrame: ...
    def lag(self, since: float | None = None) -> pd.DataFrame: ...
    def transactions(self, since: float | None = None) -> pd.DataFrame: ...
    def throughput(self, window_s: float = 1.0, since: float | None = None) -> pd.DataFrame: ...


def plain(values: Any) -> list[Any]:
    """A column as a JSON-friendly list (None for NaN), for traces and comparisons."""
    out = []
    for v in list(values):
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        out.append(v)
    return out


def base_layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title},
        "height": FIGURE_HEIGHT,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.25, "font": {"size": 10}},
        "shapes": [],
        "annotations": [],
    }
    layout.update(extra)
    return layout


def empty_note(text: str) -> dict[str, Any]:
    return {"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
            "showarrow": False, "font": {"color": EVENT_LINE}}


def pick_topic(frame: pd.DataFrame, topic: str | None) -> str | None:
    """The topic asked for, or the first one the data knows when none was."""
    if topic is not None:
        return topic
    if frame.empty:
        return None
    return str(sorted(frame["topic"].dropna().unique())[0]) if frame["topic"].notna().any() else None


def current_leaders(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of replicas that lead with the newest epoch; a deposed zombie leader is dropped."""
    leaders = frame[frame["is_leader"].fillna(False).astype(bool)]
    if leaders.empty:
        return leaders
    newest = leaders.sort_values(["leader_epoch", "time"], kind="stable")
    return newest.drop_duplicates(["topic", "partition"], keep="last")


def apply_figure(fig: go.FigureWidget, data: FigureData) -> None:
    """Make `fig` show `data`, in one batch; traces are updated in place when they line up."""
    traces = data.get("data", [])
    layout = dict(data.get("layout", {}))
    arrays = {k: layout.pop(k) for k in ("shapes", "annotations") if k in layout}
    with fig.batch_update():
        same_shape = [(t.type, t.name) for t in fig.data] == [
            (t.get("type", "scatter"), t.get("name")) for t in traces]
        if same_shape:
            for trace, new in zip(fig.data, traces, strict=True):
                trace.update({k: v for k, v in new.items() if k != "type"}, overwrite=True)
        else:
            fig.data = []
            if traces:
                fig.add_traces([dict(t) for t in traces])
        fig.layout.update(layout)
        for key, value in arrays.items():
            setattr(fig.layout, key, value)


class SharedReads:
    """A metrics source whose reads are shared within one refresh: five views asking for the
    latest replicas build one frame, and every view sees the same `now`. `clear()` starts
    the next refresh."""

    SHARED = frozenset({"now", "latest_replicas", "replicas", "events", "groups", "lag",
                        "transactions", "throughput", "brokers", "clients"})

    def __init__(self, source: Any) -> None:
        self.source = source
        self._memo: dict[Any, Any] = {}

    def clear(self) -> None:
        self._memo = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.source, name)
        if name not in self.SHARED:
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            key = (name, args, tuple(sorted(kwargs.items())))
            if key not in self._memo:
                self._memo[key] = attr(*args, **kwargs)
            value = self._memo[key]
            # A shallow copy: a view that adds a column does not change what the next sees.
            return value.copy(deep=False) if isinstance(value, pd.DataFrame) else value
        return read


class View:
    """A live figure over a metrics source: `.widget`, `refresh()`, `figure_data()`.

    Subclasses implement `figure_data()` by reading the source and calling their pure
    function; `refresh()` only touches the widget when the figure data changed.
    """

    def __init__(self, source: Source, window_s: float = 120.0) -> None:
        self.source = source
        self.window_s = float(window_s)
        # A Dashboard recomputes slow-moving views (1 s lanes, 1 s rates) at most this often.
        self.min_interval_s = 0.0
        self._computed_at = -math.inf
        # The first figure goes into the constructor: a FigureWidget shown later starts from
        # its constructor's data, and changes made before the browser drew it are lost.
        data = self.figure_data()
        self._computed_at = time.monotonic()
        self.figure = go.FigureWidget(
            data=data["data"],
            layout={"width": FIGURE_WIDTH, "height": FIGURE_HEIGHT, **data["layout"]})
        # Plotly's mode bar would sit over the titles; these charts are read, not zoomed.
        self.figure._config = {**self.figure._config, **FIGURE_CONFIG}
        self._shown: FigureData | None = data
        self.refresh()  # what a subclass shows beside the figure (a table) fills in too

    @property
    def widget(self) -> Any:
        return self.figure

    def since(self, now: float) -> float:
        return now - self.window_s

    def figure_data(self) -> FigureData:
        raise NotImplementedError

    def to_figure(self) -> go.Figure:
        """A static Plotly figure of the current data (docs, nbval, saving to HTML)."""
        data = self.figure_data()
        return go.Figure(data=data["data"], layout=data["layout"])

    def snapshot(self) -> go.Figure:
        """This moment as a static figure: later refreshes of the live view leave it alone,
        so a lab can keep the shrunk ISR on screen next to the text that describes it."""
        figure = self.to_figure()
        figure.update_layout(width=self.figure.layout.width, height=self.figure.layout.height)
        return figure

    def refresh(self) -> bool:
        """Recompute from the source; returns whether the figure changed."""
        now = time.monotonic()
        if now - self._computed_at < self.min_interval_s:
            return False
        self._computed_at = now
        data = self.figure_data()
        if data == self._shown:
            return False
        apply_figure(self.figure, data)
        self._shown = data
        return True
