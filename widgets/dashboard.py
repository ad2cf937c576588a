"""Dashboard: controls and live views over one cluster, kept current by one updater thread.

Button callbacks (on the kernel's thread) only enqueue actions. The updater thread runs them,
then refreshes every view a few times a second; it is the only code that mutates widgets,
so no two threads ever touch a figure at once. Errors go to the status line, never to stdout.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from typing import Any

import ipywidgets as w

from .base import View
from .controls import Action, BrokerControls, GroupControls, LoadControls, NetworkControls
from .rates import LagView, ThroughputView
from .replicas import ReplicaView, SegmentView
from .timelines import IsrTimeline, RebalanceTimeline

_STOP = object()


class Dashboard:
    """Everything a lab needs on one screen: break the cluster, watch it respond.

    `Dashboard(cluster, topic="orders", group="billing")`; display it as the cell's value.
    """

    def __init__(self, cluster: Any, topic: str | None = None, group: str | None = None,
                 source: Any = None, refresh_hz: float = 3.0, window_s: float = 120.0,
                 start: bool = True) -> None:
        if not 0 < refresh_hz <= 10:
            raise ValueError(f"refresh_hz must be in (0, 10], got {refresh_hz}")
        self.cluster = cluster
        self.source = source if source is not None else cluster.metrics
        self.refresh_interval = 1.0 / refresh_hz
        self.refreshes = 0
        self.actions_done = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self.status = w.HTML(self._status_html("ready", ok=True))
        self.brokers = BrokerControls(cluster, self.source, submit=self.submit)
        self.network = NetworkControls(cluster, submit=self.submit)
        self.load = LoadControls(cluster, submit=self.submit, topic=topic)
        # A group panel when the dashboard watches a group of a topic.
        self.group_controls = (GroupControls(cluster, group, [topic], submit=self.submit)
                               if group is not None and topic is not None else None)
        self.views: dict[str, View] = {
            "replicas": ReplicaView(self.source, topic),
            "isr": IsrTimeline(self.source, topic, window_s=window_s),
            "throughput": ThroughputView(self.source, window_s=window_s),
            "lag": LagView(self.source, group, window_s=window_s),
            "segments": SegmentView(self.source, topic),
        }
        if group is not None:
            self.views["rebalance"] = RebalanceTimeline(self.source, group)
        # Figures have a fixed width (base.FIGURE_WIDTH): two a row on a wide notebook,
        # wrapping to one a row on a narrow one instead of being clipped.
        figures = w.Box([view.widget for view in self.views.values()],
                        layout=w.Layout(display="flex", flex_flow="row wrap"))
        self.widget = w.VBox([
            self.status, self.brokers.widget,
            w.HBox([self.network.widget, self.load.widget,
                    *([self.group_controls.widget] if self.group_controls else [])]),
            figures,
        ])
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
        started = time.monotonic()
        self._set_status(f"{description} …", ok=True)
        try:
            action()
        except Exception as exc:  # shown to the learner, the dashboard keeps going
            self._set_status(f"{description} failed: {type(exc).__name__}: {exc}", ok=False)
        else:
            self._set_status(f"{description}: done in {time.monotonic() - started:.2f} s",
                             ok=True)
        self.actions_done += 1

    def refresh(self) -> None:
        """Redraw every view and tile once (the updater calls this; tests may too)."""
        parts: list[Any] = [*self.views.values(), self.brokers, self.network, self.load,
                            *([self.group_controls] if self.group_controls else [])]
        for part in parts:
            try:
                part.refresh()
            except Exception as exc:
                self._set_status(f"{type(part).__name__} could not refresh: "
                                 f"{type(exc).__name__}: {exc}", ok=False)
        self.refreshes += 1

    @staticmethod
    def _status_html(text: str, ok: bool) -> str:
        color = "#2ca02c" if ok else "#d62728"
        return f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _set_status(self, text: str, ok: bool) -> None:
        self.status.value = self._status_html(text, ok)
