"""Dashboard: controls and live views over one cluster, kept current by one updater thread.

Button callbacks (on the kernel's thread) only enqueue actions. The updater thread runs them,
then refreshes the views up to `refresh_hz` times a second; it is the only code that mutates
widgets, so no two threads ever touch a figure at once. Errors go to the status line, never to
stdout. The panels drawn from the cluster's latest state are redrawn when that state changed:
an action, a process state, what a replica reports, or which replicas have been silent for
STALE_AFTER_S (so a node that stops reporting still turns grey), and at least every
QUIET_INTERVAL_S; the scrolling charts move once a second.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from typing import Any

import ipywidgets as w

from .base import OFFLINE, SharedReads, View
from .controls import Action, BrokerControls, GroupControls, LoadControls, NetworkControls
from .network import NetworkView
from .probe import ClusterProbe
from .rates import LagView, ThroughputView
from .replicas import STALE_AFTER_S, ReplicaView, SegmentView
from .story import StoryFeed, observe
from .timelines import IsrTimeline, RebalanceTimeline

_STOP = object()
FEED_LINES = 40          # the story feed keeps this many lines (it scrolls)
SLOW_VIEW_INTERVAL_S = 1.0
EFFECT_WINDOW_S = 20.0   # story lines this soon after an action are reported as its effect
QUIET_INTERVAL_S = 5.0   # latest-state panels are redrawn at least this often
# Replica report fields that move while nothing happens (ms since a follower caught up).
_VOLATILE = frozenset({"time", "lag_ms", "follower_lag_ms"})
_LATEST_STATE_VIEWS = ("network", "replicas", "segments")


class Dashboard:
    """Everything a lab needs on one screen: break the cluster, watch it respond.

    `Dashboard(cluster, topic="orders", group="billing")`; display it as the cell's value.
    """

    def __init__(self, cluster: Any, topic: str | None = None, group: str | None = None,
                 source: Any = None, refresh_hz: float = 3.0, window_s: float = 60.0,
                 start: bool = True) -> None:
        if not 0 < refresh_hz <= 10:
            raise ValueError(f"refresh_hz must be in (0, 10], got {refresh_hz}")
        self.cluster = cluster
        self.source = SharedReads(source if source is not None else cluster.metrics)
        self.refresh_interval = 1.0 / refresh_hz
        self.refreshes = 0
        self.actions_done = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self.status = w.HTML(self._status_html("ready", ok=True))
        self.probe = ClusterProbe(cluster)
        self.story = StoryFeed()
        self.feed = w.HTML(self._feed_html(), layout=w.Layout(
            height="118px", overflow="auto", border="1px solid #ddd", padding="2px 6px",
            width="466px"))
        self.status.add_class("kafkalab-status")
        self.feed.add_class("kafkalab-story")
        self._action: tuple[str, float, float] | None = None  # description, started, done
        self._effects: list[str] = []
        self._closed_shown = False
        self._inputs: Any = None
        self._latest_drawn_at = -float("inf")
        self.latest_redraws = 0  # how often the latest-state panels were recomputed
        self.brokers = BrokerControls(cluster, self.source, submit=self.submit, probe=self.probe)
        self.network = NetworkControls(cluster, submit=self.submit)
        self.load = LoadControls(cluster, submit=self.submit, topic=topic)
        # A group panel when the dashboard watches a group of a topic.
        self.group_controls = (GroupControls(cluster, group, [topic], submit=self.submit)
                               if group is not None and topic is not None else None)

        def broker_states() -> dict[int, str]:
            return self.probe.read()["brokers"]
        self.views: dict[str, View] = {
            "network": NetworkView(self.probe, metrics=self.source),
            "replicas": ReplicaView(self.source, topic, broker_states=broker_states),
            "isr": IsrTimeline(self.source, topic, window_s=window_s),
            "throughput": ThroughputView(self.source, window_s=window_s),
            "lag": LagView(self.source, group, window_s=window_s),
            "segments": SegmentView(self.source, topic, broker_states=broker_states),
        }
        if group is not None:
            self.views["rebalance"] = RebalanceTimeline(self.source, group)
        # Lanes are 1 s cells and rates 1 s windows: recomputing them faster shows nothing new.
        for name in ("isr", "throughput", "lag", "segments", "rebalance"):
            if name in self.views:
                self.views[name].min_interval_s = SLOW_VIEW_INTERVAL_S
        # Each figure sits in a box the dashboard can hide while its view has nothing to show
        # (lag before any group commits). Figures have a fixed width (base.FIGURE_WIDTH): two a
        # row beside JupyterLab's file browser at 1400 px, one a row when narrower.
        self.boxes = {name: w.Box([view.widget]) for name, view in self.views.items()}
        row = w.Layout(display="flex", flex_flow="row wrap", align_items="flex-start")
        story = w.VBox([w.HTML("<b>What happened</b> <small>(newest first)</small>"), self.feed])
        self.widget = w.VBox([
            self.status, self.brokers.widget,
            w.Box([self.boxes["network"], w.VBox([self.network.widget, story])], layout=row),
            w.Box([self.boxes["replicas"], self.boxes["isr"]], layout=row),
            w.Box([self.load.widget,
                   *([self.group_controls.widget] if self.group_controls else [])], layout=row),
            w.Box([self.boxes[name] for name in self.views
                   if name not in ("network", "replicas", "isr")], layout=row),
        ])
        self._hide_empty()
        if start:
            self.start()

    # -- the kernel's side

    def submit(self, description: str, action: Action) -> None:
        """Queue an action for the updater thread (what every button does)."""
        self._queue.put((description, action))

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kafkalab-dashboard", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the updater; the widgets stay on screen, frozen."""
        self._stop.set()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the updater thread

    def _run(self) -> None:
        next_refresh = 0.0
        while not self._stop.is_set():
            wait = max(0.0, next_refresh - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP or self._stop.is_set():
                break
            if item is not None:
                self._perform(*item)
                continue  # drain queued clicks before drawing
            self.refresh()
            next_refresh = time.monotonic() + self.refresh_interval

    def _perform(self, description: str, action: Action) -> None:
        if getattr(self.cluster, "closed", False):
            self._set_status(f"{description}: not done, the cluster is closed", ok=False)
            return
        started = time.monotonic()
        self._set_status(f"{description} …", ok=True)
        try:
            action()
        except Exception as exc:  # shown to the learner, the dashboard keeps going
            self._action = None
            self._set_status(f"{description} failed: {type(exc).__name__}: {exc}", ok=False)
        else:
            # The status line then reports what the action did, once the story sees it.
            self._action = (description, time.time(), time.monotonic() - started)
            self._effects = []
            self._set_status(f"{description}: done in {self._action[2]:.2f} s, "
                             "watching for its effect …", ok=True)
        self.actions_done += 1

    def refresh(self) -> None:
        """Redraw what may have changed (the updater calls this; tests may too): the scrolling
        charts at their own pace, the latest-state panels when their inputs changed or
        QUIET_INTERVAL_S passed."""
        if getattr(self.cluster, "closed", False):
            self._mark_closed()
            return
        self.source.clear()
        now = time.monotonic()
        try:
            inputs = self._latest_inputs()
        except Exception:  # the panels' own refresh then reports what is wrong
            inputs = None
        latest_due = (inputs is None or inputs != self._inputs
                      or now - self._latest_drawn_at >= QUIET_INTERVAL_S)
        parts: list[Any] = [view for name, view in self.views.items() if name not in _LATEST_STATE_VIEWS]
        if latest_due:
            self._inputs, self._latest_drawn_at = inputs, now
            self.latest_redraws += 1
            parts += [*(self.views[name] for name in _LATEST_STATE_VIEWS), self.brokers]
        parts += [self.network, self.load,
                  *([self.group_controls] if self.group_controls else [])]
        for part in parts:
            try:
                part.refresh()
            except Exception as exc:
                self._set_status(f"{type(part).__name__} could not refresh: "
                                 f"{type(exc).__name__}: {exc}", ok=False)
        try:
            if latest_due:
                self._tell_story()
        except Exception as exc:
            self._set_status(f"the story feed could not refresh: {type(exc).__name__}: {exc}",
                             ok=False)
        self._hide_empty()
        self.refreshes += 1

    def _latest_inputs(self) -> Any:
        """What the latest-state panels are drawn from: the cluster's process states and links,
        every replica's newest report without its time, and which reports are older than
        STALE_AFTER_S (the views' staleness rule). None when the source cannot say (a saved
        snapshot): then they are redrawn every time."""
        read = getattr(self.source.source, "latest_replica_rows", None)
        if read is None:
            return None
        state = self.probe.read()
        rows, now = read(), self.source.now()
        replicas = sorted(repr(sorted((k, v) for k, v in row.items() if k not in _VOLATILE))
                          for row in rows)
        silent = sorted((str(row.get("topic")), row.get("partition", -1), row.get("broker", -1))
                        for row in rows if now - row["time"] > STALE_AFTER_S)
        return (repr({k: v for k, v in state.items() if k != "cluster_frame"}), replicas, silent,
                self._action, self.actions_done)

    def _tell_story(self) -> None:
        moment = observe(self.probe.read(), self.source.latest_replicas(), self.source.groups(),
                         self.story.moment)
        now = time.time()
        new = self.story.update(moment, now)
        if new:
            self.feed.value = self._feed_html()
        if self._action is None:
            return
        description, done_at, took = self._action
        if now - done_at > EFFECT_WINDOW_S:
            if not self._effects:
                self._set_status(f"{description}: done in {took:.2f} s, no visible effect "
                                 f"within {EFFECT_WINDOW_S:.0f} s", ok=True)
            self._action = None
            return
        if new:
            self._effects += new
            shown = self._effects[:4] + (["…"] if len(self._effects) > 4 else [])
            self._set_status(f"{description}: done → " + "; ".join(shown), ok=True)

    def _feed_html(self) -> str:
        if not self.story.lines:
            return "<i style='color:#7f7f7f'>nothing has happened yet: break something</i>"
        start = getattr(self.source, "start_time", 0.0)
        rows = [f"<div><span style='color:#7f7f7f'>{t - start:6.1f} s</span> "
                f"{html.escape(line)}</div>" for t, line in self.story.lines[:FEED_LINES]]
        return "<div style='font-family:monospace;font-size:12px'>" + "".join(rows) + "</div>"

    def _hide_empty(self) -> None:
        """Hide a panel with nothing to show: the lag chart before any group commits."""
        lag = self.views["lag"]
        empty = not any(len(t.x or ()) for t in lag.figure.data)
        display = "none" if empty else None
        if self.boxes["lag"].layout.display != display:
            self.boxes["lag"].layout.display = display

    def _mark_closed(self) -> None:
        """A closed cluster: say so, grey the buttons, stop redrawing (nothing will change)."""
        if self._closed_shown:
            return
        self._closed_shown = True
        for button in [*self.brokers.buttons.values(), *self.network.buttons.values(),
                       self.load.start, self.load.stop,
                       *(self.group_controls.buttons.values() if self.group_controls else [])]:
            button.disabled = True
        self._set_status("cluster closed: these buttons no longer act on it; "
                         "run the cell that makes a new Cluster and Dashboard", ok=False)
        self.feed.value = (f"<b style='color:{OFFLINE}'>cluster closed</b>" + self.feed.value)
        self._stop.set()

    @staticmethod
    def _status_html(text: str, ok: bool) -> str:
        color = "#2ca02c" if ok else "#d62728"
        return f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _set_status(self, text: str, ok: bool) -> None:
        self.status.value = self._status_html(text, ok)
