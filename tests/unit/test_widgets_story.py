"""The network picture and the story feed, driven from hand-built moments."""

from __future__ import annotations

import pandas as pd

from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets import NetworkView
from kafkalab.widgets.network import CUT, NODE_COLORS, network_figure_data, node_states
from kafkalab.widgets.replicas import classify_replicas, partition_summary, replica_figure_data
from kafkalab.widgets.story import StoryFeed, observe, story_lines

NODES = ["controller", "broker-1", "broker-2", "broker-3", "client-1", "client-kafka"]


def state(links=(), brokers=None, **extra):
    return {"closed": False, "nodes": list(NODES), "links": list(links),
            "brokers": brokers or {1: "up", 2: "up", 3: "up"}, "controllers": {"controller": "up"},
            "active_controller": "controller", **extra}


def link(src, dst, cut=True, delay_ms=0):
    return {"src": src, "dst": dst, "cut": cut, "delay_ms": delay_ms}


def trace(data, name):
    return next(t for t in data["data"] if t["name"] == name)


def segments(tr):
    """The trace's polylines, split at the None gaps: [[(x, y), ...], ...]."""
    out, current = [], []
    for x, y in zip(tr["x"], tr["y"], strict=True):
        if x is None:
            out.append(current)
            current = []
        else:
            current.append((x, y))
    return out


# -- the network picture


def test_a_healthy_network_has_no_cut_and_no_delayed_link():
    data = network_figure_data(state())
    assert trace(data, "cut")["x"] == [] and trace(data, "delayed")["x"] == []
    nodes = trace(data, "nodes")
    assert nodes["text"][0] == "controller ★"          # the active controller is marked
    assert set(nodes["marker"]["color"]) == {NODE_COLORS["up"]}
    assert len(segments(trace(data, "links"))) > 0


def test_a_cut_is_one_red_dashed_line_between_the_two_nodes():
    data = network_figure_data(state([link("broker-1", "broker-2"), link("broker-2", "broker-1")]))
    cut = trace(data, "cut")
    assert cut["line"]["color"] == CUT and cut["line"]["dash"] == "dash"
    nodes = trace(data, "nodes")
    pos = dict(zip(nodes["text"], zip(nodes["x"], nodes["y"], strict=True), strict=True))
    assert segments(cut) == [[pos["broker-1"], pos["broker-2"]]]
    assert set(cut["marker"]["size"]) == {0}           # both ways: no arrowhead
    # the healthy links no longer include that pair
    assert [pos["broker-1"], pos["broker-2"]] not in segments(trace(data, "links"))


def test_a_one_way_cut_carries_an_arrowhead_toward_the_side_that_no_longer_hears():
    data = network_figure_data(state([link("broker-2", "broker-1")]))
    cut = trace(data, "cut")
    (start, arrow, end), = segments(cut)
    nodes = trace(data, "nodes")
    pos = dict(zip(nodes["text"], zip(nodes["x"], nodes["y"], strict=True), strict=True))
    assert start == pos["broker-2"] and end == pos["broker-1"]
    assert cut["marker"]["size"][:3] == [0, 16, 0] and cut["marker"]["angleref"] == "previous"
    assert "broker-1 hears nothing from broker-2" in cut["text"][0]


def test_a_delayed_link_is_orange_with_its_milliseconds_written_on_it():
    data = network_figure_data(state([link("broker-1", "broker-3", False, 200),
                                      link("broker-3", "broker-1", False, 200)]))
    delayed = trace(data, "delayed")
    assert len(segments(delayed)) == 1 and "200 ms" in delayed["text"]
    assert trace(data, "cut")["x"] == []


def test_an_isolated_broker_is_marked_isolated_and_healing_clears_everything():
    others = [n for n in NODES if n != "broker-3"]
    cuts = [link(a, b) for o in others for a, b in (("broker-3", o), (o, "broker-3"))]
    isolated = state(cuts)
    assert node_states(isolated)["broker-3"] == "isolated"
    assert node_states(isolated)["broker-1"] == "up"
    data = network_figure_data(isolated)
    assert len(segments(trace(data, "cut"))) == len(others)
    healed = network_figure_data(state())
    assert trace(healed, "cut")["x"] == [] and "isolated" not in str(trace(healed, "nodes")["text"])


def test_killed_and_paused_brokers_and_hover_says_what_a_broker_leads():
    data = network_figure_data(state(brokers={1: "up", 2: "killed", 3: "paused"}),
                               leads={1: ["orders-0", "orders-1"]})
    nodes = trace(data, "nodes")
    colors = dict(zip(nodes["text"], nodes["marker"]["color"], strict=True))
    assert colors["broker-2<br><b>killed</b>"] == NODE_COLORS["killed"]
    assert colors["broker-3<br><b>paused</b>"] == NODE_COLORS["paused"]
    hover = nodes["customdata"][NODES.index("broker-1")]
    assert "leads orders-0, orders-1" in hover
    assert "Kafka TCP listeners" in nodes["customdata"][NODES.index("client-kafka")]


class _FakeCluster:
    def __init__(self, metrics):
        from kafkalab.transport.faults import FaultTable
        self.metrics, self.faults, self.closed = metrics, FaultTable(), False
        self.node_names = list(NODES)

    def describe_cluster(self):
        return pd.DataFrame({"broker": [1, 2, 3], "state": ["running"] * 3,
                             "fenced": [False] * 3})


def test_network_view_reads_the_fault_table_and_its_snapshot_keeps_the_moment():
    cluster = _FakeCluster(MetricsSnapshot(start_time=0.0))
    view = NetworkView(cluster)
    cluster.faults.cut("broker-1", "broker-2")
    view.probe.max_age_s = 0
    assert view.refresh()
    assert len(segments(view.figure.data[1])) == 1 and view.figure.data[1].name == "cut"
    frozen = view.snapshot()
    cluster.faults.heal()
    view.refresh()
    assert view.figure.data[1].x == ()
    nodes = view.figure.data[3]
    assert [t for t in frozen.data if t.name == "cut"][0].x == (nodes.x[1], nodes.x[2], None)
    assert not view.refresh()                          # nothing changed: the widget is left alone


# -- the story in words


def moment(partitions, brokers=None, links=(), groups=None):
    return {"brokers": brokers or {1: "up", 2: "up", 3: "up"}, "partitions": partitions,
            "links": list(links), "groups": groups or {}, "nodes": list(NODES),
            "active_controller": "controller"}


def part(leader, epoch, isr, offline=False):
    return {"leader": leader, "epoch": epoch, "isr": list(isr), "offline": offline}


def test_a_kill_then_an_election_then_an_isr_change_in_words():
    before = moment({"orders-0": part(2, 2, [2, 1, 3])})
    killed = moment({"orders-0": part(2, 2, [2, 1, 3])}, brokers={1: "up", 2: "killed", 3: "up"})
    elected = moment({"orders-0": part(1, 3, [1, 3])}, brokers={1: "up", 2: "killed", 3: "up"})
    assert story_lines(before, killed) == ["broker 2 killed"]
    assert story_lines(killed, elected) == ["orders-0: leader 2 → 1 (epoch 3)",
                                            "orders-0: ISR [2, 1, 3] → [1, 3]"]
    assert story_lines(None, before) == []             # the first moment is the baseline


def test_an_offline_partition_is_said_once():
    dead = {1: "killed", 2: "killed", 3: "up"}
    before = moment({"orders-1": part(1, 4, [1, 2])}, brokers={1: "killed", 2: "up", 3: "up"})
    after = moment({"orders-1": part(None, 4, [1, 2], offline=True)}, brokers=dead)
    assert story_lines(before, after) == ["broker 2 killed",
                                          "orders-1: OFFLINE (no live replica in the ISR)"]
    assert story_lines(after, after) == []
    back = moment({"orders-1": part(2, 5, [2])}, brokers={1: "killed", 2: "up", 3: "up"})
    assert story_lines(after, back) == ["broker 2 restarted", "orders-1: leader none → 2 (epoch 5)",
                                        "orders-1: ISR [1, 2] → [2]"]


def test_cuts_isolation_delays_healing_and_rebalances_in_words():
    healthy = moment({})
    cut = moment({}, links=[link("broker-1", "broker-2"), link("broker-2", "broker-1")])
    assert story_lines(healthy, cut) == ["cut broker-1 ↔ broker-2"]
    one_way = moment({}, links=[link("broker-2", "broker-1")])
    assert story_lines(healthy, one_way) == ["cut broker-2 → broker-1 (one way: broker-1 no "
                                             "longer hears broker-2)"]
    others = [n for n in NODES if n != "broker-3"]
    isolated = moment({}, links=[link(a, b) for o in others
                                 for a, b in (("broker-3", o), (o, "broker-3"))])
    assert story_lines(healthy, isolated) == ["broker-3 isolated (cut from every other node)"]
    delayed = moment({}, links=[link("broker-1", "broker-3", False, 200),
                                link("broker-3", "broker-1", False, 200)])
    assert story_lines(healthy, delayed) == ["delay broker-1 ↔ broker-3: 200 ms"]
    assert story_lines(cut, healthy) == ["network healed: every link restored"]
    g3 = moment({}, groups={"billing": {"generation": 3, "members": 2}})
    g4 = moment({}, groups={"billing": {"generation": 4, "members": 3}})
    assert story_lines(g3, g4) == ["group billing: generation 4, 3 members"]


def replica_row(t, broker, partition, leader, epoch, isr, leo=10):
    return {"time": t, "node": f"broker-{broker}", "broker": broker, "topic": "orders",
            "partition": partition, "is_leader": broker == leader, "leader": leader,
            "leader_epoch": epoch, "log_start_offset": 0, "log_end_offset": leo,
            "high_watermark": leo, "last_stable_offset": leo, "isr": list(isr), "segments": 1,
            "size_bytes": 0, "lag_offsets": 0, "lag_ms": 0.0}


def test_observe_and_feed_from_metrics_rows_newest_first():
    rows = pd.DataFrame([replica_row(1.0, b, 0, 2, 2, [2, 1, 3]) for b in (1, 2, 3)])
    probe = state()
    feed = StoryFeed()
    feed.update(observe(probe, rows, pd.DataFrame(columns=["group"])), 1.0)
    killed = state(brokers={1: "up", 2: "killed", 3: "up"})
    # broker 2 is dead but 1 and 3 are in the ISR: an election is under way, no line yet
    assert feed.update(observe(killed, rows, pd.DataFrame(columns=["group"]), feed.moment),
                       2.0) == ["broker 2 killed"]
    rows = pd.concat([rows, pd.DataFrame([replica_row(3.0, b, 0, 1, 3, [1, 3]) for b in (1, 3)])])
    latest = rows.sort_values("time").drop_duplicates(["broker", "partition"], keep="last")
    feed.update(observe(killed, latest, pd.DataFrame(columns=["group"]), feed.moment), 3.0)
    assert [line for _, line in feed.lines] == ["orders-0: ISR [2, 1, 3] → [1, 3]",
                                               "orders-0: leader 2 → 1 (epoch 3)",
                                               "broker 2 killed"]


# -- the replica view agrees with the tiles


def test_a_killed_broker_is_grey_at_once_and_an_offline_partition_is_red():
    rows = pd.DataFrame([replica_row(10.0, b, 0, 2, 2, [2, 1, 3]) for b in (1, 2, 3)]
                        + [replica_row(10.0, b, 1, 1, 1, [1, 2]) for b in (1, 2)])
    states = {1: "killed", 2: "killed", 3: "up"}
    classified = classify_replicas(rows, "orders", now=10.0, broker_states=states)
    assert [r["status"] for r in classified if r["broker"] == 2] == ["offline", "offline"]
    summary = {s["partition"]: s for s in partition_summary(classified)}
    assert summary[0]["leader"] is None and summary[0]["verdict"] == "ok"   # 3 is in the ISR
    assert summary[1]["verdict"] == "OFFLINE"
    notes = [a["text"] for a in replica_figure_data(rows, "orders", 10.0,
                                                     broker_states=states)["layout"]["annotations"]]
    assert any("OFFLINE" in n for n in notes)
    shrunk = pd.DataFrame([replica_row(10.0, b, 0, 1, 3, [1, 3]) for b in (1, 3)]
                          + [replica_row(10.0, 2, 0, 1, 3, [1, 3])])
    summary = partition_summary(classify_replicas(shrunk, "orders", now=10.0,
                                                  broker_states={2: "killed"}))
    assert summary[0]["verdict"] == "under-replicated" and summary[0]["leader"] == 1


def test_every_leader_killed_leaves_every_partition_offline_and_the_chart_drawn():
    rows = pd.DataFrame([replica_row(10.0, b, p, -1, 3, [2]) for b in (1, 2) for p in (0, 1)])  # no leader
    states = {1: "killed", 2: "killed"}
    classified = classify_replicas(rows, "orders", now=10.0, broker_states=states)
    assert {r["status"] for r in classified} == {"offline"}
    assert {s["verdict"] for s in partition_summary(classified)} == {"OFFLINE"}
    assert replica_figure_data(rows, "orders", 10.0, broker_states=states)["data"]


def test_a_replica_view_of_a_cluster_takes_its_word_on_which_brokers_run():
    from kafkalab.widgets import ReplicaView

    class Cluster:
        broker_ids, closed = [1, 2], False

        def __init__(self):
            self.metrics = MetricsSnapshot(start_time=0.0)
            for b in (1, 2):
                self.metrics.add("replica", replica_row(5.0, b, 0, 1, 0, [1, 2]))

        def broker_state(self, b):
            return "killed" if b == 2 else "running"

    bars = ReplicaView(Cluster(), "orders").figure_data()["data"][0]
    assert [status for _, status in bars["customdata"]] == ["in-sync", "offline"]


def test_network_figure_is_a_static_picture_of_this_moment():
    from kafkalab.widgets import network_figure
    cluster = _FakeCluster(MetricsSnapshot(start_time=0.0))
    cluster.faults.cut("broker-1", "broker-3", one_way=True)
    figure = network_figure(cluster)
    cut = next(t for t in figure.data if t.name == "cut")
    assert list(cut.marker.size[:3]) == [0, 16, 0]     # one way: an arrowhead
