"""Dashboard: controls and live views over one cluster, kept current by one updater thread.

Button callbacks (on the kernel's thread) only enqueue actions. The updater thread runs them
and redraws; it is the only code that mutates widgets, so no two threads ever touch a figure
at once. Errors go to the status line, never to stdout.

It redraws when there is something new, never on a fixed beat: the collector tells it when a
row that says something new arrives (its heartbeats repeating a state do not count), and it
redraws then, at most `refresh_hz` times a second. The panels drawn from the cluster's latest
state are redrawn only when their inputs changed. While nothing arrives it looks once every
QUIET_CHECK_S at what the clock alone changes (a replica silent for STALE_AFTER_S turns grey,
a process the notebook killed) and costs nothing else. The scrolling charts stop scrolling
once the cluster has been quiet for QUIET_AFTER_S and say since when on their time axis, then
move on with the next change. A source that cannot tell (a saved snapshot) is redrawn at
`refresh_hz`.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from typing import Any

import ipywidgets as w

from .base import OFFLINE, SharedReads, View, quiet_axis_note
from .controls import Action, BrokerControls, GroupControls, LoadControls, NetworkControls
from .network import NetworkView
from .probe import ClusterProbe
from .rates import LagView, ThroughputView
from .replicas import STALE_AFTER_S, ReplicaView, SegmentView
from .story import StoryFeed, observe
from .timelines import IsrTimeline, RebalanceTimeline

_STOP = object()
_CHANGED = object()  # the collector has new rows
FEED_LINES = 40          # the story feed keeps this many lines (it scrolls)
SLOW_VIEW_INTERVAL_S = 1.0
EFFECT_WINDOW_S = 20.0   # story lines this soon after an action are reported as its effect
QUIET_CHECK_S = 1.0      # while nothing new arrives: how often to look at what the clock changes
QUIET_AFTER_S = 2.0      # nothing new this long: the scrolling charts stop and say since when
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
        self.latest_redraws = 0  # how often the latest-state panels were recomputed
        self._collector = getattr(self.source.source, "add_listener", None) and self.source.source
        self._change_queued = threading.Event()  # a _CHANGED is in the queue: one is enough
        self._last_change = time.time()  # wall time of the newest change seen
        self.quiet_since: float | None = None  # wall time the scrolling charts froze at
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

    def _on_change(self) -> None:
        """The collector's thread: new rows. Only wakes the updater (once per batch)."""
        if not self._change_queued.is_set():
            self._change_queued.set()
            self._queue.put(_CHANGED)

    def _run(self) -> None:
        if self._collector is not None:
            self._collector.add_listener(self._on_change)
        try:
            self._update_until_stopped()
        finally:
            if self._collector is not None:
                self._collector.remove_listener(self._on_change)

    def _update_until_stopped(self) -> None:
        pending, drawn_at, next_look = True, -float("inf"), 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if pending or self._collector is None:  # a snapshot cannot say: redraw at the cap
                wait = max(0.0, drawn_at + self.refresh_interval - now)
            else:
                wait = max(0.0, next_look - now)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP or self._stop.is_set():
                break
            if item is _CHANGED:
                self._change_queued.clear()
                self._last_change = time.time()
                pending = True
                continue
            if item is not None:
                self._perform(*item)
                pending = True
                continue  # drain queued clicks before drawing
            now = time.monotonic()
            if pending or self._collector is None:
                if now < drawn_at + self.refresh_interval:
                    continue
                self.refresh()
                pending, drawn_at = False, now
            elif now >= next_look:
                self._look()
            next_look = time.monotonic() + QUIET_CHECK_S

    def _look(self) -> None:
        """Nothing new arrived: see that every chart's browser model still hears (base.py,
        EchoWatch), redraw only what the clock alone changed (a report turned stale, a process
        changed state, an action's effect window closed), and freeze the scrolling charts
        once the cluster has been quiet for QUIET_AFTER_S."""
        if getattr(self.cluster, "closed", False):
            self._mark_closed()
            return
        for view in self.views.values():  # cheap: no figure is computed
            try:
                view.check_browser_model()
            except Exception as exc:
                self._set_status(f"{type(view).__name__} could not check its chart: "
                                 f"{type(exc).__name__}: {exc}", ok=False)
        quiet = time.time() - self._last_change >= QUIET_AFTER_S
        if quiet and self.quiet_since is None:
            self.quiet_since = self._last_change
            self.refresh()
            return
        self.source.clear()  # the clock has moved since the last refresh's reads
        try:
            inputs = self._latest_inputs()
        except Exception:
            inputs = None
        action_over = self._action is not None and time.time() - self._action[1] > EFFECT_WINDOW_S
        if inputs is None or inputs != self._inputs or action_over:
            self.refresh()

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
        """Redraw what may have changed (the updater calls this; tests may too): the
        latest-state panels when their inputs changed, the scrolling charts at their own
        pace (frozen with a note while the cluster is quiet)."""
        if getattr(self.cluster, "closed", False):
            self._mark_closed()
            return
        self.source.clear()
        try:
            inputs = self._latest_inputs()
        except Exception:  # the panels' own refresh then reports what is wrong
            inputs = None
        latest_due = inputs is None or inputs != self._inputs
        if self.quiet_since is not None and time.time() - self._last_change < QUIET_AFTER_S:
            self.quiet_since = None  # news: the charts scroll again
        note = None if self.quiet_since is None else quiet_axis_note(
            self.quiet_since - getattr(self.source, "start_time", 0.0))
        parts: list[Any] = []
        for name, view in self.views.items():
            if name in _LATEST_STATE_VIEWS:
                continue
            if view.axis_note != note:
                view.axis_note = note
                view.recompute()  # the last moves before the quiet are drawn too
            parts.append(view)
        if latest_due:
            self._inputs = inputs
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
            if latest_due or self._action is not None:
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
        if not hasattr(self.source.source, "add_listener"):
            return None  # a saved snapshot
        state = self.probe.read()
        rows, now = self.source.latest_replica_rows(), self.source.now()
        replicas = sorted(repr(sorted((k, v) for k, v in row.items() if k not in _VOLATILE))
                          for row in rows)
        silent = sorted((str(row.get("topic")), row.get("partition", -1), row.get("broker", -1))
                        for row in rows if now - row["time"] > STALE_AFTER_S)
        return (repr({k: v for k, v in state.items() if k != "cluster_rows"}), replicas, silent,
                self._action, self.actions_done)

    def _tell_story(self) -> None:
        moment = observe(self.probe.read(), self.source.latest_replica_rows(), self.source.rows("group"),
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
