"""Buttons that break the cluster on purpose: brokers, network links, load.

Every button hands an action to `submit(description, action)`. Alone, a control runs it at
once; inside a Dashboard, `submit` queues it for the updater thread, so a slow restart never
blocks the kernel and every widget mutation stays on one thread.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from kafkalab.metrics import as_rows

from .base import IN_SYNC, OFFLINE, OUT_OF_SYNC, current_leaders
from .probe import ClusterProbe, node_label
from .replicas import STALE_AFTER_S

Action = Callable[[], object]
Submit = Callable[[str, Action], None]


def run_now(description: str, action: Action) -> None:
    action()


STATE_COLORS = {
    "running": IN_SYNC, "fenced": OUT_OF_SYNC, "starting": OUT_OF_SYNC,
    "paused": "#bcbd22", "killed": "#d62728", "stopped": OFFLINE,
}
# What the learner did last, when the cluster cannot say (event -> state).
EVENT_STATES = {"kill": "killed", "pause": "paused", "resume": "running", "restart": "running",
                "stop": "stopped"}


@dataclass(frozen=True)
class TileState:
    broker: int
    state: str
    leader_of: int
    label: str
    color: str


def broker_tile_states(broker_ids: list[int], cluster_rows: Any, latest: Any, events: Any,
                       now: float | None = None) -> dict[int, TileState]:
    """Each broker's state and label: "up · leader of 3 partitions", "killed", "paused" ...

    The cluster's own description (its describe_cluster rows, or frame) wins; the latest
    fault event fills in for a broker it does not describe. Only fresh reports from a
    running broker count towards leadership.
    """
    states: dict[int, str] = {}
    faults = [e for e in as_rows(events)
              if e.get("event") in EVENT_STATES and e.get("broker") is not None]
    for event in sorted(faults, key=lambda e: e["time"]):
        states[int(event["broker"])] = EVENT_STATES[event["event"]]
    for row in as_rows(cluster_rows):
        states[int(row["broker"])] = str(row["state"])
    leaders = current_leaders(latest)
    if now is not None:
        leaders = [r for r in leaders if now - r["time"] <= STALE_AFTER_S]
    tiles = {}
    for broker in broker_ids:
        state = states.get(broker, "running")
        count = sum(1 for r in leaders if r["broker"] == broker)
        if state != "running":
            count = 0
        if state == "running":
            label = "up" + (f" · leader of {count} partition{'s' if count != 1 else ''}"
                            if count else "")
        else:
            label = state
        tiles[broker] = TileState(broker, state, count, label,
                                  STATE_COLORS.get(state, OFFLINE))
    return tiles


def tile_html(tile: TileState) -> str:
    return (f"<div style='border-left:6px solid {tile.color};padding:2px 8px'>"
            f"<b>broker {tile.broker}</b> · "
            f"<span style='color:{tile.color}'>{html.escape(tile.label)}</span></div>")


class BrokerControls:
    """A tile per broker: its state, and Kill / Restart / Pause / Resume buttons."""

    ACTIONS = (("Kill", "kill_broker", "danger"), ("Restart", "restart_broker", "success"),
               ("Pause", "pause_broker", "warning"), ("Resume", "resume_broker", "info"))

    def __init__(self, cluster: Any, source: Any = None, submit: Submit = run_now,
                 probe: ClusterProbe | None = None) -> None:
        self.cluster = cluster
        self.source = source if source is not None else getattr(cluster, "metrics", None)
        self.submit = submit
        self.probe = probe if probe is not None else ClusterProbe(cluster)
        self.broker_ids = [int(b) for b in cluster.broker_ids]
        self.labels: dict[int, w.HTML] = {}
        self.buttons: dict[tuple[int, str], w.Button] = {}
        tiles = []
        for broker in self.broker_ids:
            label = self.labels[broker] = w.HTML(tile_html(
                TileState(broker, "running", 0, "up", STATE_COLORS["running"])))
            row = []
            for verb, method, style in self.ACTIONS:
                # Short words and a tooltip: three tiles fit in one row beside the file browser.
                button = w.Button(description=verb, button_style=style,
                                  tooltip=f"{verb.lower()} broker {broker}",
                                  layout=w.Layout(width="auto", height="28px"))
                button.on_click(self._handler(verb, method, broker))
                self.buttons[(broker, verb.lower())] = button
                row.append(button)
            tiles.append(w.VBox([label, w.HBox(row)],
                                layout=w.Layout(border="1px solid #ddd", padding="2px 4px",
                                                margin="2px", width="310px")))
        self.widget = w.HBox(tiles, layout=w.Layout(flex_flow="row wrap"))

    def _handler(self, verb: str, method: str, broker: int) -> Callable[[w.Button], None]:
        def on_click(_: w.Button) -> None:
            self.submit(f"{verb.lower()} broker {broker}",
                        lambda: getattr(self.cluster, method)(broker))
        return on_click

    def tile_states(self) -> dict[int, TileState]:
        source = self.source
        return broker_tile_states(
            self.broker_ids, self.probe.read()["cluster_rows"],
            source.latest_replica_rows() if source is not None else [],
            source.rows("event") if source is not None else [],
            source.now() if source is not None else None)

    def refresh(self) -> None:
        for broker, tile in self.tile_states().items():
            value = tile_html(tile)
            if self.labels[broker].value != value:
                self.labels[broker].value = value


class NetworkControls:
    """Pick two nodes and cut the link between them (both ways or one), isolate, heal."""

    def __init__(self, cluster: Any, submit: Submit = run_now) -> None:
        self.cluster = cluster
        self.submit = submit
        options = self._options()
        names = [value for _, value in options]
        narrow = {"description_width": "34px"}
        self.a = w.Dropdown(options=options, value=names[0] if names else None,
                            description="from", style=narrow, layout=w.Layout(width="230px"))
        self.b = w.Dropdown(options=options, value=names[1] if len(names) > 1 else None,
                            description="to", style=narrow, layout=w.Layout(width="230px"))
        self.delay_ms = w.BoundedIntText(value=200, min=0, max=60_000, description="delay ms",
                                         style={"description_width": "60px"},
                                         layout=w.Layout(width="150px"))
        self.buttons = {
            "cut": w.Button(description="Cut", button_style="danger",
                            tooltip="drop every message between the two nodes"),
            "cut_one_way": w.Button(description="Cut one-way", button_style="warning",
                                    tooltip="drop messages from the first node to the second"),
            "isolate": w.Button(description="Isolate", button_style="danger",
                                tooltip="cut the first node off from every other node"),
            "delay": w.Button(description="Delay", tooltip="add latency between the two nodes"),
            "heal": w.Button(description="Heal", button_style="success",
                             tooltip="restore every link"),
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _, name=name: self.press(name))
        self.help = w.HTML(
            "<small>client-N: a Producer/Consumer made in this notebook · client-kafka: every "
            "client on the Kafka port (kafka-python, confluent-kafka, kcat) · load-N: a load "
            "producer process</small>", layout=w.Layout(max_width="470px"))
        self.widget = w.VBox([
            w.HTML("<b>Break the network</b> <small>(pick two nodes)</small>"),
            w.HBox([self.a, self.b]),
            w.HBox([self.buttons["cut"], self.buttons["cut_one_way"], self.buttons["isolate"]]),
            w.HBox([self.delay_ms, self.buttons["delay"], self.buttons["heal"]]),
            self.help,
        ])

    def _options(self) -> list[tuple[str, str]]:
        """(label, node) pairs: the label says what a node is ("client-1 (Producer in this
        notebook)"), the value stays the node name the Cluster methods take."""
        details = dict(getattr(self.cluster, "node_details", {}) or {})
        return [(node_label(str(n), details.get(str(n))), str(n)) for n in self.cluster.node_names]

    def press(self, name: str) -> None:
        """What clicking the button `name` does (also handy from code)."""
        cluster, a, b = self.cluster, self.a.value, self.b.value
        if name == "heal":
            self.submit("heal the network", cluster.heal)
        elif name == "isolate":
            rest = [n for _, n in self.a.options if n != a]
            self.submit(f"isolate {a}", lambda: cluster.partition([a], rest))
        elif name in ("cut", "cut_one_way"):
            one_way = name == "cut_one_way"
            arrow = "→" if one_way else "↔"
            self.submit(f"cut {a} {arrow} {b}",
                        lambda: cluster.cut(*self._checked(a, b), one_way=one_way))
        elif name == "delay":
            ms = int(self.delay_ms.value)
            self.submit(f"delay {a} ↔ {b} by {ms} ms",
                        lambda: cluster.delay(*self._checked(a, b), ms))
        else:
            raise ValueError(f"unknown network action {name!r}")

    @staticmethod
    def _checked(a: str | None, b: str | None) -> tuple[str, str]:
        if a is None or b is None or a == b:
            raise ValueError(f"pick two different nodes (got {a!r} and {b!r})")
        return a, b

    def refresh(self) -> None:
        """New clients and load workers appear in the dropdowns as they are made."""
        if getattr(self.cluster, "closed", False):
            return
        options = tuple(self._options())
        if options != tuple(self.a.options):
            for dropdown in (self.a, self.b):
                value = dropdown.value
                dropdown.options = options
                if value in [v for _, v in options]:
                    dropdown.value = value


class LoadControls:
    """Producer load: rate, acks, compression; start and stop."""

    ACKS = ["all", "1", "0"]
    COMPRESSION = ["none", "gzip", "snappy", "lz4", "zstd"]

    def __init__(self, cluster: Any, submit: Submit = run_now, topic: str | None = None) -> None:
        self.cluster = cluster
        self.submit = submit
        self.topic = topic
        self.available = callable(getattr(cluster, "start_load", None)) and callable(
            getattr(cluster, "stop_load", None))
        self.rate = w.IntSlider(value=1000, min=0, max=50_000, step=100,
                                description="records/s", continuous_update=False)
        self.acks = w.Dropdown(options=self.ACKS, value="all", description="acks")
        self.compression = w.Dropdown(options=self.COMPRESSION, value="none",
                                      description="compression")
        self.start = w.Button(description="Start load", button_style="primary")
        self.stop = w.Button(description="Stop load")
        self.start.on_click(lambda _: self.press("start"))
        self.stop.on_click(lambda _: self.press("stop"))
        note = "" if self.available else (
            "<i>This cluster cannot generate load (no start_load/stop_load).</i>")
        self.note = w.HTML(note)
        for control in (self.rate, self.acks, self.compression, self.start, self.stop):
            control.disabled = not self.available
        self.widget = w.VBox([w.HTML("<b>Load</b>"), self.rate,
                              w.HBox([self.acks, self.compression]),
                              w.HBox([self.start, self.stop]), self.note])

    def press(self, name: str) -> None:
        if not self.available:
            return
        if name == "start":
            rate, acks, compression = int(self.rate.value), self.acks.value, self.compression.value
            self.submit(f"start load: {rate} records/s, acks={acks}, compression={compression}",
                        lambda: self.cluster.start_load(rate=rate, acks=acks, compression=compression,
                                                        **({"topic": self.topic} if self.topic else {})))
        elif name == "stop":
            self.submit("stop load", self.cluster.stop_load)
        else:
            raise ValueError(f"unknown load action {name!r}")

    def refresh(self) -> None:
        pass


class GroupControls:
    """A consumer group of worker processes: add or remove members (each change is a
    rebalance), kill one (its partitions move after session.timeout.ms), pick the assignor."""

    ASSIGNORS = ["range", "roundrobin", "sticky", "cooperative-sticky"]

    def __init__(self, cluster: Any, group: str, topics: list[str], submit: Submit = run_now) -> None:
        self.cluster = cluster
        self.group = group
        self.topics = list(topics)
        self.submit = submit
        self.members: list[Any] = []
        self.available = callable(getattr(cluster, "spawn_consumers", None))
        self.assignor = w.Dropdown(options=self.ASSIGNORS, value="cooperative-sticky",
                                   description="assignor")
        self.buttons = {name: w.Button(description=label, button_style=style)
                        for name, label, style in (("add", "Add consumer", "primary"),
                                                   ("remove", "Remove consumer", ""),
                                                   ("kill", "Kill a consumer", "danger"))}
        for name, button in self.buttons.items():
            button.on_click(lambda _, name=name: self.press(name))
            button.disabled = not self.available
        self.assignor.disabled = not self.available
        self.label = w.HTML(self._label())
        self.widget = w.VBox([w.HTML(f"<b>Group {group!r}</b>"), self.assignor,
                              w.HBox(list(self.buttons.values())), self.label])

    def _label(self) -> str:
        if not self.available:
            return "<i>This cluster cannot start consumer workers (no spawn_consumers).</i>"
        return f"{len(self._alive())} consumer process(es)"

    def _alive(self) -> list[Any]:
        return [m for m in self.members if m.alive()]

    def press(self, name: str) -> None:
        if not self.available:
            return
        if name == "add":
            strategy = self.assignor.value

            def add() -> None:
                self.members += self.cluster.spawn_consumers(
                    self.group, 1, self.topics, config={"partition.assignment.strategy": strategy})
            self.submit(f"add a consumer to {self.group!r} ({strategy})", add)
        elif name in ("remove", "kill"):
            def remove() -> None:
                alive = self._alive()
                if not alive:
                    raise ValueError(f"group {self.group!r} has no consumer process to {name}")
                member = alive[-1]
                member.stop() if name == "remove" else member.kill()
                self.members.remove(member)
                # The timeline ends the member's bars here, not when the group notices.
                metrics = getattr(self.cluster, "metrics", None)
                if metrics is not None and hasattr(metrics, "record"):
                    metrics.record("event", {
                        "event": "member_leave" if name == "remove" else "member_kill",
                        "group": self.group, "detail": getattr(member, "node", "")})
            verb = "remove (LeaveGroup)" if name == "remove" else "kill (SIGKILL)"
            self.submit(f"{verb} a consumer of {self.group!r}", remove)
        else:
            raise ValueError(f"unknown group action {name!r}")

    def refresh(self) -> None:
        self.label.value = self._label()
