"""What every view shares: the figure-data shape, applying it to a FigureWidget, colours.

A view's pure function returns `FigureData`: {"data": [trace dicts], "layout": {...}}, plain
Python values only, so tests compare numbers and colours without a kernel or a browser.
Views compute on the metrics' rows (plain dicts; a pure function also takes a DataFrame), so
a Dashboard never imports pandas.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any, Protocol

import ipywidgets as w

from kafkalab.metrics import as_rows

from .plotly_import import go

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
# A browser model that has drawn its figure but not answered an update sent this long ago
# never will (see EchoWatch): the view gets a new FigureWidget.
DEAF_AFTER_S = 5.0
LIVE_CLASS = "kafkalab-chart-live"  # on a view's box while its browser model hears updates


class Source(Protocol):
    """A MetricsCollector or MetricsSnapshot (kafkalab.metrics); views only read its rows."""

    start_time: float

    def now(self) -> float: ...
    def rows(self, kind: str, since: float | None = None) -> list[dict[str, Any]]: ...
    def latest_replica_rows(self) -> list[dict[str, Any]]: ...
    def throughput_rows(self, window_s: float = 1.0, since: float | None = None
                        ) -> list[dict[str, float]]: ...


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


def quiet_axis_note(since_s: float) -> str:
    """What a frozen scrolling chart says under its time axis."""
    return f"{TIME_AXIS_TITLE} · quiet since {since_s:.0f} s: nothing new"


def with_axis_note(data: FigureData, note: str | None) -> FigureData:
    """`data` with its time axis titled `note` instead (None: unchanged)."""
    if note is None:
        return data
    layout = dict(data.get("layout", {}))
    for key, axis in layout.items():
        if key.startswith("xaxis") and isinstance(axis, dict):
            title = axis.get("title")
            if isinstance(title, dict) and title.get("text") == TIME_AXIS_TITLE:
                layout[key] = {**axis, "title": {**title, "text": note}}
    return {**data, "layout": layout}


def empty_note(text: str) -> dict[str, Any]:
    return {"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
            "showarrow": False, "font": {"color": EVENT_LINE}}


def is_true(value: Any) -> bool:
    """A flag of a row: missing is False."""
    return bool(value) if value is not None else False


def pick_topic(rows: Any, topic: str | None) -> str | None:
    """The topic asked for, or the first one the data knows when none was."""
    if topic is not None:
        return topic
    topics = {r.get("topic") for r in as_rows(rows)} - {None}
    return str(sorted(topics)[0]) if topics else None


def _epoch_order(value: Any) -> tuple[bool, Any]:
    return (True, 0) if value is None else (False, value)  # missing last, as pandas sorts


def current_leaders(rows: Any) -> list[dict[str, Any]]:
    """Rows of replicas that lead with the newest epoch; a deposed zombie leader is dropped.
    In order of (leader_epoch, time), one per topic and partition."""
    leaders = sorted((r for r in as_rows(rows) if is_true(r.get("is_leader"))),
                     key=lambda r: (_epoch_order(r.get("leader_epoch")), r["time"]))
    last = {(r.get("topic"), r.get("partition")): i for i, r in enumerate(leaders)}
    return [leaders[i] for i in sorted(last.values())]


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


class LiveFigure(go.FigureWidget):
    """A FigureWidget whose browser model starts from its first figure, not from nothing.

    ipywidgets opens a widget's comm (the browser model's starting state) inside the
    constructor, before Plotly sets the figure, so the figure would travel as a separate
    update message; a model that drops its updates (EchoWatch) then draws an empty grid.
    Here the comm opens only once data, layout and config are set.
    """

    def __init__(self, data: list[dict[str, Any]], layout: dict[str, Any],
                 config: dict[str, Any]) -> None:
        self._opening = True
        super().__init__(data=data, layout=layout)
        self._config = {**self._config, **config}
        self._opening = False
        self.open()
        # JupyterLab handles kernel messages one at a time and holds a message for a model
        # until the model is ready: this one makes the next widget's model start loading only
        # once this one has, so the 5 MB loads do not overlap and miss the 2 s limit together.
        self.send_state("_config")

    def open(self) -> None:
        if not getattr(self, "_opening", False):
            super().open()


class FigureFrame(w.Box):
    """The box a view's live figure sits in. Closing it closes the figure too: a lab that
    is done with a view closes `view.widget`."""

    def close(self) -> None:
        for child in self.children:
            child.close()
        super().close()


class EchoWatch:
    """Whether the browser's model of a FigureWidget still hears the kernel's updates.

    Plotly's front-end answers every update it applies, and every first drawing of a view,
    with the newest edit id it knows. anywidget gives a model 2 s to load its JavaScript
    (Plotly's is 5 MB, parsed per widget); a model that took longer drops every message
    from the kernel from then on, without an error, while its views still draw the
    starting state. So: once a view has answered, an edit left unanswered for `deaf_after_s`
    means that model is deaf, and only a new widget (a new model) can show the figure.
    """

    def __init__(self, deaf_after_s: float = DEAF_AFTER_S, opened_at_edit: int = 0) -> None:
        self.deaf_after_s = deaf_after_s
        self.opened_at_edit = opened_at_edit  # the edit id in the model's starting state
        self.answered = False          # a view of this model has drawn or answered
        self.newest_echo = -1
        self._unanswered: deque[tuple[int, float]] = deque()  # (edit id, sent at)

    def sent(self, edit_id: int, now: float) -> None:
        """The kernel sent the edit `edit_id` (Plotly's _last_trace_edit_id) at `now`."""
        if edit_id > self.newest_echo and (not self._unanswered
                                           or edit_id > self._unanswered[-1][0]):
            self._unanswered.append((edit_id, now))

    def echoed(self, edit_id: int) -> None:
        """A view answered: its model has applied every edit up to `edit_id`."""
        self.answered = True
        self.newest_echo = max(self.newest_echo, edit_id)
        while self._unanswered and self._unanswered[0][0] <= self.newest_echo:
            self._unanswered.popleft()

    def deaf(self, now: float) -> bool:
        """An edit has waited `deaf_after_s` for an answer although a view answered before.
        Before any view answered, nobody knows (nothing displayed it yet, or it is closed)."""
        return (self.answered and bool(self._unanswered)
                and now - self._unanswered[0][1] >= self.deaf_after_s)

    @property
    def hearing(self) -> bool:
        """A view answered an edit sent after the model opened: the model hears updates."""
        return self.newest_echo > self.opened_at_edit

    def needs_probe(self) -> bool:
        """A view drew the starting state, and no edit is on its way to show whether its
        model hears: a still chart would otherwise look fine until its first change is lost."""
        return self.answered and not self.hearing and not self._unanswered


class SharedReads:
    """A metrics source whose reads are shared within one refresh: five views asking for the
    latest replicas decode them once, and every view sees the same `now`. `clear()` starts
    the next refresh."""

    SHARED = frozenset({"now", "rows", "latest_replica_rows", "throughput_rows"})

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
            # A new list: a view that filters or sorts it does not change what the next sees.
            return list(value) if isinstance(value, list) else value
        return read


class View:
    """A live figure over a metrics source: `.widget`, `refresh()`, `figure_data()`.

    Subclasses implement `figure_data()` by reading the source and calling their pure
    function; `refresh()` only touches the widget when the figure data changed. `.widget`
    is a box around the FigureWidget, so a figure whose browser model went deaf
    (EchoWatch) can be swapped for a new one showing the whole current figure.
    """

    deaf_after_s = DEAF_AFTER_S

    def __init__(self, source: Source, window_s: float = 120.0) -> None:
        self.source = source
        self.window_s = float(window_s)
        # A Dashboard recomputes slow-moving views (1 s lanes, 1 s rates) at most this often.
        self.min_interval_s = 0.0
        self._computed_at = -math.inf
        # Said under the time axis instead of its title (a Dashboard: "quiet since 84 s").
        self.axis_note: str | None = None
        self.replaced = 0  # figures swapped out because their browser model went deaf
        self._echo_lock = threading.Lock()  # echoes arrive on the kernel's thread
        data = self.figure_data()
        self._computed_at = time.monotonic()
        self.figure = self._new_figure(data)
        self.frame = FigureFrame([self.figure])
        self._shown: FigureData | None = data
        self.refresh()  # what a subclass shows beside the figure (a table) fills in too

    @property
    def widget(self) -> Any:
        return self.frame

    def _new_figure(self, data: FigureData) -> LiveFigure:
        # The whole figure is in the new model's starting state (LiveFigure).
        figure = LiveFigure(
            data=data["data"],
            layout={"width": FIGURE_WIDTH, "height": FIGURE_HEIGHT, **data["layout"]},
            # Plotly's mode bar would sit over the titles; these charts are read, not zoomed.
            config=FIGURE_CONFIG)
        self._watch = EchoWatch(self.deaf_after_s, figure._last_trace_edit_id)
        figure.observe(self._on_echo, names="_js2py_traceDeltas")
        return figure

    def _on_echo(self, change: dict[str, Any]) -> None:
        message = change.get("new")
        if message and change.get("owner") is self.figure:
            with self._echo_lock:
                self._watch.echoed(int(message.get("trace_edit_id", -1)))

    def check_browser_model(self) -> bool:
        """What refresh() does first, for a caller that has nothing new to draw: probe,
        mark live or replace the chart (see _check_browser_model); True if replaced."""
        return self._check_browser_model()

    def _check_browser_model(self) -> bool:
        """Probe a model that drew but has not yet shown that it hears; mark the box live
        once it has (tests wait on the class); replace it when it is deaf."""
        with self._echo_lock:
            deaf, hearing, probe = (self._watch.deaf(time.monotonic()), self._watch.hearing,
                                    self._watch.needs_probe())
        if hearing != (LIVE_CLASS in self.frame._dom_classes):
            (self.frame.add_class if hearing else self.frame.remove_class)(LIVE_CLASS)
        if probe:
            # Invisible (layout.meta), and sent as an update, which the front-end answers.
            with self.figure.batch_update():
                self.figure.layout.meta = {"probe": self.figure._last_trace_edit_id + 1}
            with self._echo_lock:
                self._watch.sent(self.figure._last_trace_edit_id, time.monotonic())
        if not deaf:
            return False
        if LIVE_CLASS in self.frame._dom_classes:
            self.frame.remove_class(LIVE_CLASS)
        old, data = self.figure, self._shown or self.figure_data()
        old.unobserve(self._on_echo, names="_js2py_traceDeltas")  # its late echoes are moot
        self.figure = self._new_figure(data)
        self.frame.children = (self.figure,)
        old.close()
        self.replaced += 1
        return True

    def since(self, now: float) -> float:
        return now - self.window_s

    def recompute(self) -> None:
        """Let the next refresh() recompute, however soon after the last one."""
        self._computed_at = -math.inf

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
        replaced = self._check_browser_model()
        now = time.monotonic()
        if now - self._computed_at < self.min_interval_s:
            return replaced
        self._computed_at = now
        data = with_axis_note(self.figure_data(), self.axis_note)
        if data == self._shown:
            return replaced
        apply_figure(self.figure, data)
        self._shown = data
        with self._echo_lock:
            self._watch.sent(self.figure._last_trace_edit_id, time.monotonic())
        return True
