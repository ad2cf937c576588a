"""Controls call the right Cluster methods; Dashboard's updater applies actions and stops."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets import BrokerControls, Dashboard, LoadControls, NetworkControls
from kafkalab.widgets.controls import STATE_COLORS, broker_tile_states

T0 = 5_000.0


class FakeCluster:
    """Records every call; describes brokers from a settable state table."""

    def __init__(self, broker_ids=(1, 2, 3), metrics=None, load=True):
        self.broker_ids = list(broker_ids)
        self.node_names = ["controller"] + [f"broker-{b}" for b in broker_ids] + ["producer-1"]
        self.metrics = metrics if metrics is not None else MetricsSnapshot(start_time=T0)
        self.states = {b: "running" for b in broker_ids}
        self.calls: list[tuple] = []
        self.called = threading.Condition()
        self.threads: set[str] = set()
        if load:
            self.start_load = self._recorder("start_load")
            self.stop_load = self._recorder("stop_load")

    def _record(self, name, *args, **kwargs):
        with self.called:
            self.calls.append((name, args, kwargs))
            self.threads.add(threading.current_thread().name)
            self.called.notify_all()

    def _recorder(self, name):
        return lambda *a, **k: self._record(name, *a, **k)

    def kill_broker(self, broker):
        self._record("kill_broker", broker)
        self.states[broker] = "killed"

    def restart_broker(self, broker):
        self._record("restart_broker", broker)
        self.states[broker] = "running"

    def pause_broker(self, broker):
        self._record("pause_broker", broker)
        self.states[broker] = "paused"

    def resume_broker(self, broker):
        self._record("resume_broker", broker)
        self.states[broker] = "running"

    def cut(self, a, b, one_way=False):
        self._record("cut", a, b, one_way=one_way)

    def delay(self, a, b, ms):
        self._record("delay", a, b, ms)

    def partition(self, *groups):
        self._record("partition", *groups)

    def heal(self):
        self._record("heal")

    def describe_cluster(self):
        return pd.DataFrame({"broker": list(self.states), "state": list(self.states.values())})

    closed = False

    def wait_calls(self, n, timeout=5.0):
        with self.called:
            return self.called.wait_for(lambda: len(self.calls) >= n, timeout)


def leader_row(t, broker, partition, epoch=0, topic="orders"):
    return {"time": t, "broker": broker, "topic": topic, "partition": partition,
            "is_leader": True, "leader": broker, "leader_epoch": epoch, "isr": [1, 2, 3],
            "log_end_offset": 1, "high_watermark": 1}


def test_broker_buttons_name_the_broker_and_call_the_cluster():
    cluster = FakeCluster()
    controls = BrokerControls(cluster)
    assert controls.buttons[(2, "kill")].description == "Kill"
    assert controls.buttons[(2, "kill")].tooltip == "kill broker 2"
    expected = []
    for verb, method in (("kill", "kill_broker"), ("restart", "restart_broker"),
                         ("pause", "pause_broker"), ("resume", "resume_broker")):
        for broker in (1, 3):
            controls.buttons[(broker, verb)].click()
            expected.append((method, (broker,), {}))
    assert cluster.calls == expected


def test_tiles_show_state_and_leadership_from_describe_cluster_and_metrics():
    snap = MetricsSnapshot(start_time=T0)
    for p in range(3):
        snap.add("replica", leader_row(T0 + 10, 1, p))
    snap.add("replica", leader_row(T0 + 10, 2, 3))
    snap.add("replica", leader_row(T0 + 1, 3, 4))  # stale: broker 3 is gone
    cluster = FakeCluster(metrics=snap)
    controls = BrokerControls(cluster)
    controls.buttons[(3, "kill")].click()
    controls.buttons[(2, "pause")].click()
    controls.refresh()
    assert "leader of 3 partitions" in controls.labels[1].value
    assert STATE_COLORS["running"] in controls.labels[1].value
    assert "paused" in controls.labels[2].value and "leader" not in controls.labels[2].value
    assert "killed" in controls.labels[3].value
    assert STATE_COLORS["killed"] in controls.labels[3].value


def test_tile_state_falls_back_on_fault_events():
    events = pd.DataFrame([
        {"time": 1.0, "event": "kill", "broker": 2}, {"time": 2.0, "event": "restart", "broker": 2},
        {"time": 3.0, "event": "pause", "broker": 3}])
    empty = MetricsSnapshot().latest_replicas()
    tiles = broker_tile_states([1, 2, 3], None, empty, events)
    assert [tiles[b].state for b in (1, 2, 3)] == ["running", "running", "paused"]
    tiles = broker_tile_states([1, 2, 3], pd.DataFrame({"broker": [3], "state": ["fenced"]}),
                               empty, events)
    assert tiles[3].label == "fenced"


def test_network_buttons_call_cut_heal_partition_and_delay():
    cluster = FakeCluster()
    net = NetworkControls(cluster)
    assert [value for _, value in net.a.options] == cluster.node_names  # clients too
    net.a.value, net.b.value = "broker-1", "producer-1"
    net.buttons["cut"].click()
    net.buttons["cut_one_way"].click()
    net.delay_ms.value = 250
    net.buttons["delay"].click()
    net.buttons["isolate"].click()
    net.buttons["heal"].click()
    rest = [n for n in cluster.node_names if n != "broker-1"]
    assert cluster.calls == [
        ("cut", ("broker-1", "producer-1"), {"one_way": False}),
        ("cut", ("broker-1", "producer-1"), {"one_way": True}),
        ("delay", ("broker-1", "producer-1", 250), {}),
        ("partition", (["broker-1"], rest), {}),
        ("heal", (), {}),
    ]


def test_cutting_a_node_from_itself_is_refused():
    cluster = FakeCluster()
    net = NetworkControls(cluster)
    net.a.value = net.b.value = "broker-2"
    with pytest.raises(ValueError, match="two different nodes"):
        net.press("cut")
    assert cluster.calls == []


def test_load_controls_start_and_stop_load():
    cluster = FakeCluster()
    load = LoadControls(cluster)
    load.rate.value, load.acks.value, load.compression.value = 5000, "1", "zstd"
    load.start.click()
    load.stop.click()
    assert cluster.calls == [("start_load", (), {"rate": 5000, "acks": "1",
                                                 "compression": "zstd"}),
                             ("stop_load", (), {})]


def test_load_controls_are_disabled_with_a_note_without_load_support():
    cluster = FakeCluster(load=False)
    load = LoadControls(cluster)
    assert load.start.disabled and load.rate.disabled
    assert "cannot generate load" in load.note.value
    load.start.click()
    assert cluster.calls == []


# -- Dashboard


@pytest.fixture
def dashboard_and_cluster():
    snap = MetricsSnapshot(start_time=T0)
    snap.add("replica", leader_row(T0 + 1, 1, 0))
    cluster = FakeCluster(metrics=snap)
    dash = Dashboard(cluster, topic="orders", group="billing", refresh_hz=10)
    yield dash, cluster
    dash.close()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_dashboard_clicks_only_enqueue_and_the_updater_runs_them(dashboard_and_cluster):
    dash, cluster = dashboard_and_cluster
    dash.brokers.buttons[(2, "kill")].click()
    dash.network.buttons["heal"].click()
    assert cluster.wait_calls(2)
    assert [c[0] for c in cluster.calls] == ["kill_broker", "heal"]
    assert cluster.threads == {"kafkalab-dashboard"}  # not the clicking thread
    assert wait_until(lambda: "heal the network: done" in dash.status.value)
    assert wait_until(lambda: "killed" in dash.brokers.labels[2].value)


def test_dashboard_refreshes_views_and_stops_cleanly(dashboard_and_cluster):
    dash, cluster = dashboard_and_cluster
    assert wait_until(lambda: dash.refreshes >= 2)
    assert dash.views["replicas"].figure.data[0].y == (1,)
    cluster.metrics.add("replica", {**leader_row(T0 + 2, 1, 0), "log_end_offset": 42})
    assert wait_until(lambda: dash.views["replicas"].figure.data[0].y == (42,))
    dash.close()
    assert not dash.running
    seen = dash.refreshes
    dash.brokers.buttons[(1, "kill")].click()  # queued, but nobody runs it any more
    assert cluster.calls == [] and dash.refreshes == seen


def test_dashboard_reports_a_failing_action_and_keeps_going(dashboard_and_cluster):
    dash, cluster = dashboard_and_cluster

    def boom():
        raise RuntimeError("broker 9 does not exist")

    dash.submit("kill broker 9", boom)
    assert wait_until(lambda: "broker 9 does not exist" in dash.status.value)
    assert "failed" in dash.status.value
    dash.load.start.click()
    assert cluster.wait_calls(1)
    assert dash.running


def test_dashboard_rejects_silly_refresh_rates():
    with pytest.raises(ValueError, match="refresh_hz"):
        Dashboard(FakeCluster(), refresh_hz=0, start=False)


class _FakeMember:
    def __init__(self) -> None:
        self.state = "running"

    def alive(self) -> bool:
        return self.state == "running"

    def stop(self) -> None:
        self.state = "stopped"

    def kill(self) -> None:
        self.state = "killed"


class _GroupCluster:
    def __init__(self) -> None:
        self.spawned: list[tuple[str, int, list[str], dict]] = []

    def spawn_consumers(self, group, n, topics, config=None, handler=None):
        self.spawned.append((group, n, topics, config))
        return [_FakeMember() for _ in range(n)]


def test_group_controls_add_remove_and_kill_consumers() -> None:
    from kafkalab.widgets.controls import GroupControls

    cluster = _GroupCluster()
    g = GroupControls(cluster, "billing", ["orders"])
    g.assignor.value = "range"
    g.press("add")
    g.press("add")
    assert cluster.spawned[0] == ("billing", 1, ["orders"], {"partition.assignment.strategy": "range"})
    g.refresh()
    assert "2 consumer" in g.label.value
    first, second = g.members
    g.press("remove")
    assert second.state == "stopped" and g.members == [first]
    g.press("kill")
    assert first.state == "killed" and g.members == []
    with pytest.raises(ValueError, match="no consumer process"):
        g.press("kill")


def test_group_controls_are_disabled_without_workers() -> None:
    from kafkalab.widgets.controls import GroupControls

    g = GroupControls(object(), "g", ["t"])
    assert all(b.disabled for b in g.buttons.values()) and "cannot start" in g.label.value


def test_dropdowns_say_what_each_client_node_is():
    cluster = FakeCluster()
    cluster.node_names = ["controller", "broker-1", "client-1", "load-2", "client-kafka"]
    cluster.node_details = {"client-1": "Producer"}
    net = NetworkControls(cluster)
    assert dict((v, k) for k, v in net.a.options) == {
        "controller": "controller", "broker-1": "broker-1",
        "client-1": "client-1 (Producer in this notebook)",
        "load-2": "load-2 (load producer process)",
        "client-kafka": "client-kafka (clients on the Kafka port)"}
    cluster.node_names.append("client-3")      # a consumer made later shows up on refresh
    net.refresh()
    assert net.a.value == "controller" and "client-3" in [v for _, v in net.a.options]


def test_dashboard_reports_the_effect_of_an_action_once_seen(dashboard_and_cluster):
    dash, cluster = dashboard_and_cluster
    assert wait_until(lambda: dash.refreshes >= 1)
    dash.brokers.buttons[(2, "kill")].click()
    assert wait_until(lambda: "broker 2 killed" in dash.status.value)
    assert "kill broker 2: done" in dash.status.value
    assert "broker 2 killed" in dash.feed.value


def test_a_dashboard_whose_cluster_closed_says_so_and_disables_its_buttons(dashboard_and_cluster):
    dash, cluster = dashboard_and_cluster
    assert wait_until(lambda: dash.refreshes >= 1)
    cluster.closed = True
    assert wait_until(lambda: not dash.running)
    assert "cluster closed" in dash.status.value and "cluster closed" in dash.feed.value
    assert all(b.disabled for b in dash.brokers.buttons.values())
    assert all(b.disabled for b in dash.network.buttons.values())
    dash.submit("kill broker 1", lambda: cluster.kill_broker(1))
    dash._perform("kill broker 1", lambda: cluster.kill_broker(1))
    assert cluster.calls == []


def test_dashboard_hides_the_lag_panel_while_it_is_empty(dashboard_and_cluster):
    dash, _ = dashboard_and_cluster
    assert dash.boxes["lag"].layout.display == "none"
    assert dash.boxes["network"].layout.display is None


def test_dashboard_redraws_latest_state_on_change_and_still_marks_a_silent_replica_stale(monkeypatch):
    import widgets.dashboard as dashboard_module
    from kafkalab.metrics import MetricsCollector
    from widgets.base import IN_SYNC, OFFLINE

    with MetricsCollector() as metrics:
        metrics.record("replica", {**leader_row(time.time(), 1, 0), "isr": [1]})
        dash = Dashboard(FakeCluster(broker_ids=(1,), metrics=metrics), topic="orders", start=False)
        replicas = dash.views["replicas"]
        dash.refresh()
        drawn = dash.latest_redraws
        # The same report again (a heartbeat): nothing to redraw.
        metrics.record("replica", {**leader_row(time.time(), 1, 0), "isr": [1]})
        dash.refresh()
        assert dash.latest_redraws == drawn
        # A report that says something new is drawn at once.
        metrics.record("replica", {**leader_row(time.time(), 1, 0), "isr": [1], "log_end_offset": 42})
        dash.refresh()
        assert dash.latest_redraws == drawn + 1 and replicas.figure.data[0].y == (42,)
        assert replicas.figure.data[0].marker.color == (IN_SYNC,)
        # The broker falls silent: only the clock moves, and the replica turns stale when its
        # report is STALE_AFTER_S old, not at some later periodic redraw.
        silent_since = time.time()

        def stale() -> bool:
            dash.refresh()
            return replicas.figure.data[0].marker.color == (OFFLINE,)
        assert wait_until(stale, timeout=10.0)
        assert time.time() - silent_since < dashboard_module.STALE_AFTER_S + 1.0
        assert dash.latest_redraws == drawn + 2
        dash.close()


def test_a_quiet_cluster_costs_the_dashboard_no_redraws_and_news_wakes_it(monkeypatch):
    """Driven by the collector: heartbeats that repeat a state redraw nothing, the scrolling
    charts freeze and say since when, the next change is drawn at once, and a replica that
    falls silent still turns grey."""
    import widgets.dashboard as dashboard_module
    from kafkalab.metrics import MetricsCollector
    from widgets.base import OFFLINE

    monkeypatch.setattr(dashboard_module, "QUIET_AFTER_S", 0.3)
    monkeypatch.setattr(dashboard_module, "QUIET_CHECK_S", 0.1)
    with MetricsCollector() as metrics:
        metrics.record("replica", {**leader_row(time.time(), 1, 0), "isr": [1]})
        dash = Dashboard(FakeCluster(broker_ids=(1,), metrics=metrics), topic="orders", refresh_hz=10)
        try:
            axis = lambda: dash.views["isr"].figure.layout.xaxis.title.text  # noqa: E731
            assert wait_until(lambda: "quiet since" in (axis() or ""))
            time.sleep(0.3)  # that redraw's end
            refreshes = dash.refreshes
            for _ in range(5):  # heartbeats: the same state again
                metrics.record("replica", {**leader_row(time.time(), 1, 0), "isr": [1]})
                time.sleep(0.1)
            assert dash.refreshes == refreshes
            metrics.record("replica", {**leader_row(time.time(), 1, 0), "isr": [1], "log_end_offset": 42})
            assert wait_until(lambda: dash.views["replicas"].figure.data[0].y == (42,), timeout=2.0)
            assert wait_until(lambda: "quiet" not in axis(), timeout=2.0)  # scrolling again
            # Silence: the replica turns grey with no news at all, from the updater's own look.
            silent_since = time.time()
            assert wait_until(lambda: dash.views["replicas"].figure.data[0].marker.color == (OFFLINE,),
                              timeout=10.0)
            assert time.time() - silent_since < dashboard_module.STALE_AFTER_S + 2.0
        finally:
            dash.close()
