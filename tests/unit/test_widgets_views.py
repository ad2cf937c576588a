"""Views driven from hand-built MetricsSnapshots: the figure data says what the charts show."""

from __future__ import annotations

import pytest

from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets import (
    IsrTimeline,
    LagView,
    RebalanceTimeline,
    ReplicaView,
    SegmentView,
    ThroughputView,
    TransactionView,
)
from kafkalab.widgets.base import HIGH_WATERMARK, IN_SYNC, OFFLINE, OUT_OF_SYNC, apply_figure
from kafkalab.widgets.rates import lag_figure_data
from kafkalab.widgets.replicas import classify_replicas, replica_figure_data
from kafkalab.widgets.timelines import (
    ISR_FULL,
    ISR_SHRUNK,
    NO_LEADER,
    isr_figure_data,
    member_names,
    ownership_intervals,
)

T0 = 1_000.0


def replica(t, broker, partition, leo, hw, *, leader, epoch, isr, topic="orders", lso=None,
            segments=1, size=0):
    return {"time": t, "node": f"broker-{broker}", "broker": broker, "topic": topic,
            "partition": partition, "is_leader": broker == leader, "leader": leader,
            "leader_epoch": epoch, "log_start_offset": 0, "log_end_offset": leo,
            "high_watermark": hw, "last_stable_offset": hw if lso is None else lso,
            "isr": list(isr), "segments": segments, "size_bytes": size, "lag_offsets": 0,
            "lag_ms": 0.0}


@pytest.fixture
def cluster_snapshot() -> MetricsSnapshot:
    """orders: P0 led by 1 with broker 3 dropped from the ISR; P1 led by 2, all in sync.

    Broker 3 fell silent after t=T0+2 (killed); the snapshot ends at T0+10.
    """
    snap = MetricsSnapshot(start_time=T0)
    # an old epoch: broker 3 led P0 before it died
    snap.add("replica", replica(T0 + 2, 3, 0, 40, 40, leader=3, epoch=0, isr=[1, 2, 3]))
    snap.add("replica", replica(T0 + 2, 3, 1, 50, 50, leader=2, epoch=0, isr=[1, 2, 3]))
    for t in (T0 + 1, T0 + 10):
        snap.add("replica", replica(t, 1, 0, 120, 110, leader=1, epoch=1, isr=[1, 2],
                                    segments=3, size=9000))
        snap.add("replica", replica(t, 2, 0, 110, 110, leader=1, epoch=1, isr=[1, 2],
                                    segments=2, size=8000))
        snap.add("replica", replica(t, 1, 1, 60, 55, leader=2, epoch=0, isr=[1, 2, 3]))
        snap.add("replica", replica(t, 2, 1, 70, 55, leader=2, epoch=0, isr=[1, 2, 3]))
    snap.add("event", {"time": T0 + 2.5, "node": "notebook", "event": "kill", "detail": "",
                       "broker": 3})
    snap.add("event", {"time": T0 + 4, "node": "controller", "event": "isr_shrink",
                       "topic": "orders", "partition": 0, "broker": 3, "isr": [1, 2]})
    snap.add("event", {"time": T0 + 5, "node": "controller", "event": "isr_shrink",
                       "topic": "other", "partition": 0, "broker": 1})
    snap.add("event", {"time": T0 + 6, "node": "broker-2", "event": "role_change",
                       "topic": "orders", "partition": 1, "broker": 2})
    return snap


def bars_by_replica(data):
    bars = next(t for t in data["data"] if t["type"] == "bar")
    keys = list(zip(*bars["x"], strict=True))
    return {k: i for i, k in enumerate(keys)}, bars


def test_replica_bars_are_leos_and_colours_say_isr_membership(cluster_snapshot):
    data = ReplicaView(cluster_snapshot, "orders").figure_data()
    index, bars = bars_by_replica(data)
    latest = cluster_snapshot.latest_replicas()
    assert len(bars["y"]) == len(latest)
    for _, row in latest.iterrows():
        i = index[(f"P{row['partition']}", str(row["broker"]))]
        assert bars["y"][i] == row["log_end_offset"]
    colors = bars["marker"]["color"]
    assert colors[index[("P0", "1")]] == IN_SYNC
    assert colors[index[("P0", "2")]] == IN_SYNC
    # broker 3 stopped reporting 8 s before the end: offline, whatever it last claimed
    assert colors[index[("P0", "3")]] == OFFLINE
    assert colors[index[("P1", "3")]] == OFFLINE


def test_out_of_sync_replica_that_still_reports_is_orange(cluster_snapshot):
    cluster_snapshot.add("replica", replica(T0 + 10, 3, 0, 90, 80, leader=1, epoch=1,
                                            isr=[1, 2]))
    index, bars = bars_by_replica(replica_figure_data(cluster_snapshot.latest_replicas(),
                                                      "orders"))
    assert bars["marker"]["color"][index[("P0", "3")]] == OUT_OF_SYNC
    assert bars["y"][index[("P0", "3")]] == 90


def test_leader_is_marked_and_the_deposed_leader_is_not(cluster_snapshot):
    index, bars = bars_by_replica(ReplicaView(cluster_snapshot, "orders").figure_data())
    leaders = {k for k, i in index.items() if bars["text"][i] == "leader"}
    assert leaders == {("P0", "1"), ("P1", "2")}
    widths = bars["marker"]["line"]["width"]
    assert all((widths[i] > 0) == (k in leaders) for k, i in index.items())


def test_high_watermark_marker_is_the_leaders_hw_on_every_replica(cluster_snapshot):
    data = ReplicaView(cluster_snapshot, "orders").figure_data()
    index, _ = bars_by_replica(data)
    hw = next(t for t in data["data"] if t["name"] == "high watermark")
    assert hw["marker"]["line"]["color"] == HIGH_WATERMARK
    assert hw["marker"]["symbol"].startswith("line")
    assert hw["y"][index[("P0", "2")]] == 110
    assert hw["y"][index[("P1", "1")]] == 55  # leader 2's HW, not follower's LEO


def test_replica_view_widget_shows_the_figure_data(cluster_snapshot):
    view = ReplicaView(cluster_snapshot)  # no topic: the first one reported
    data = view.figure_data()
    assert view.figure.data[0].y == tuple(data["data"][0]["y"])
    assert list(view.figure.data[0].marker.color) == data["data"][0]["marker"]["color"]
    assert "orders" in view.figure.layout.title.text
    assert view.refresh() is False  # nothing new: no redraw
    cluster_snapshot.add("replica", replica(T0 + 11, 1, 0, 130, 120, leader=1, epoch=1,
                                            isr=[1, 2]))
    assert view.refresh() is True
    index, _ = bars_by_replica(view.figure_data())
    assert view.figure.data[0].y[index[("P0", "1")]] == 130


def test_classify_uses_the_newest_epoch_leaders_isr(cluster_snapshot):
    classified = classify_replicas(cluster_snapshot.latest_replicas(), "orders")
    p0 = {r["broker"]: r for r in classified if r["partition"] == 0}
    assert p0[1]["is_leader"] and not p0[3]["is_leader"]
    assert {r["partition_hw"] for r in p0.values()} == {110}


def test_empty_sources_render_a_note_not_an_error():
    snap = MetricsSnapshot()
    for view in (ReplicaView(snap, "orders"), SegmentView(snap, "orders"), LagView(snap),
                 IsrTimeline(snap, "orders"), RebalanceTimeline(snap, "g"),
                 TransactionView(snap), ThroughputView(snap)):
        data = view.figure_data()
        assert all(len(t.get("y", [])) == 0 for t in data["data"])
        assert data["layout"]["annotations"], type(view).__name__


def test_segment_view_shows_bytes_and_segment_counts(cluster_snapshot):
    data = SegmentView(cluster_snapshot, "orders").figure_data()
    index, bars = bars_by_replica(data)
    assert bars["y"][index[("P0", "1")]] == 9000
    assert bars["text"][index[("P0", "1")]] == "3 segments"
    assert bars["text"][index[("P1", "1")]] == "1 segment"


def test_isr_lanes_follow_the_current_leader_one_lane_per_partition(cluster_snapshot):
    data = isr_figure_data(cluster_snapshot.replicas(), cluster_snapshot.events(), "orders",
                           T0, now=T0 + 10, window_s=10, step_s=1)
    lanes = next(t for t in data["data"] if t["type"] == "heatmap")
    assert lanes["y"] == ["P0", "P1", "events"]   # a lane each: no partition hides another
    assert lanes["x"][0] == 0.5 and lanes["x"][-1] == 10.5
    p0, p1, events = lanes["z"]
    assert set(events) == {None}
    # P0: broker 1 leads epoch 1 from T0+1 with ISR [1, 2] of 3 replicas: shrunk, orange. The
    # epoch-0 report from broker 3 at T0+2 is a zombie's (older epoch) and left out.
    assert p0[0] is None and set(p0[1:4]) == {ISR_SHRUNK}
    assert "leader 1, ISR [1, 2] (2 of 3)" in lanes["text"][0][2]
    # ... then silent for more than STALE_AFTER_S before the report at T0+10: no leader.
    assert p0[5] == NO_LEADER and p0[-1] == ISR_SHRUNK
    assert set(p1[1:4]) == {ISR_FULL}


def test_isr_events_are_markers_with_plain_words_and_other_topics_left_out(cluster_snapshot):
    data = isr_figure_data(cluster_snapshot.replicas(), cluster_snapshot.events(), "orders",
                           T0, now=T0 + 10, window_s=10, step_s=1)
    events = next(t for t in data["data"] if t["name"] == "events")
    assert events["x"] == [2.5, 4.0]
    assert events["y"] == ["events", "P0"]     # a partition's event sits on its lane
    assert events["customdata"] == ["broker 3 killed", "orders-0: ISR shrank to [1, 2]"]
    assert data["layout"]["shapes"] == []      # no text labels to pile up


def test_isr_window_is_fixed_it_scrolls_and_never_stretches(cluster_snapshot):
    view = IsrTimeline(cluster_snapshot, "orders", window_s=5.0)
    layout = view.figure_data()["layout"]
    assert layout["xaxis"]["range"] == [5.0, 10.0] and layout["xaxis"]["autorange"] is False
    events = next(t for t in view.figure_data()["data"] if t["name"] == "events")
    assert events["x"] == []                   # both events are older than the window


def lag_rows(group, partition, values, start=T0):
    return [{"time": start + i, "group": group, "topic": "orders", "partition": partition,
             "committed_offset": 100 - v, "log_end_offset": 100, "lag": v}
            for i, v in enumerate(values)]


def test_lag_view_draws_lag_per_partition_over_time():
    snap = MetricsSnapshot({"lag": lag_rows("billing", 0, [5, 9, 3]) + lag_rows("billing", 1,
                           [0, 1, 0]) + lag_rows("audit", 0, [50, 60, 70])}, start_time=T0)
    data = LagView(snap, "billing").figure_data()
    by_name = {t["name"]: t for t in data["data"]}
    assert set(by_name) == {"orders-0", "orders-1"}
    assert by_name["orders-0"]["y"] == [5, 9, 3]
    assert by_name["orders-0"]["x"] == [0.0, 1.0, 2.0]
    everyone = lag_figure_data(snap.lag(), T0)
    assert {t["name"] for t in everyone["data"]} == {
        "audit: orders-0", "billing: orders-0", "billing: orders-1"}


def test_throughput_view_plots_rates_from_counters():
    rows = [{"time": T0 + i / 2, "node": "producer-1", "client_type": "producer",
             "records_sent": 300 * i, "bytes_sent": 300_000 * i} for i in range(12)]
    snap = MetricsSnapshot({"client": rows}, start_time=T0)
    view = ThroughputView(snap, rate_window_s=1.0)
    data = view.figure_data()
    records = next(t for t in data["data"] if t["name"] == "produced records/s")
    mb = next(t for t in data["data"] if t["name"] == "produced MB/s")
    # full windows only: the last one (still filling at the snapshot's end) is left out
    assert records["x"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert records["y"][1:] == [600.0] * 4
    assert mb["y"][1:] == pytest.approx([0.6] * 4)
    assert records["yaxis"] == "y" and mb["yaxis"] == "y2"
    assert view.figure.data[0].name == "produced records/s"


def group_row(t, generation, assignment, state="Stable"):
    return {"time": t, "group": "billing", "state": state, "generation": generation,
            "members": sorted(assignment), "protocol": "range", "assignment": assignment}


def test_rebalance_timeline_shows_who_owned_what_and_generations():
    rows = [group_row(T0, 1, {"a": ["orders-0", "orders-1"]}),
            group_row(T0 + 5, 1, {"a": ["orders-0", "orders-1"]}),
            group_row(T0 + 10, 2, {"a": ["orders-0"], "b": ["orders-1"]}),
            group_row(T0 + 20, 2, {"a": ["orders-0"], "b": ["orders-1"]})]
    snap = MetricsSnapshot({"group": rows}, start_time=T0)
    spans = ownership_intervals(snap.groups(), "billing")
    assert [list(span.values()) for span in spans] == [
        ["a", "orders-0", T0, T0 + 20], ["a", "orders-1", T0, T0 + 10],
        ["b", "orders-1", T0 + 10, T0 + 20]]
    data = RebalanceTimeline(snap, "billing").figure_data()
    b = next(t for t in data["data"] if t["name"] == "b")
    assert b["x"] == [10.0, 20.0, None] and b["y"] == ["orders-1", "orders-1", None]
    marks = next(t for t in data["data"] if t["name"] == "rebalances")
    # generations are markers on their own row, words in the hover: no labels to overlap
    assert marks["x"] == [0.0, 10.0] and set(marks["y"]) == {"group"}
    assert marks["customdata"] == ["generation 1: 1 member", "generation 2: 2 members"]


def test_rebalance_members_have_readable_names_and_bars_end_when_killed():
    worker = "billing-worker-2-4242-17"
    a, b = f"{worker}-0dd7e53f-dbe3-4c1e-9a55-0123456789ab", "client-3-11111111-2222-3333-4444-555555555555"
    assert member_names([a, b]) == {a: "billing-worker-2", b: "client-3"}
    twins = ["consumer-11111111-2222-3333-4444-555555555555",
             "consumer-99999999-2222-3333-4444-555555555555"]
    assert sorted(member_names(twins).values()) == ["consumer", "consumer #2"]
    rows = [group_row(T0, 1, {a: ["orders-0"], b: ["orders-1"]}),
            group_row(T0 + 20, 2, {b: ["orders-0", "orders-1"]})]
    events = [{"time": T0 + 8, "node": "notebook", "event": "member_kill", "group": "billing",
               "detail": worker}]
    snap = MetricsSnapshot({"group": rows, "event": events}, start_time=T0)
    data = RebalanceTimeline(snap, "billing").figure_data()
    killed = next(t for t in data["data"] if t["name"] == "billing-worker-2")
    assert killed["x"] == [0.0, 8.0, None]     # not until the group noticed at T0+20
    marks = next(t for t in data["data"] if t["name"] == "rebalances")
    assert "billing-worker-2 killed" in marks["customdata"]


def test_transaction_view_shows_hw_vs_lso_and_txn_states(cluster_snapshot):
    cluster_snapshot.add("replica", replica(T0 + 10, 1, 0, 120, 110, leader=1, epoch=1,
                                            isr=[1, 2], lso=95))
    cluster_snapshot.add("txn", {"time": T0 + 9, "transactional_id": "tx-1", "state": "Ongoing",
                                 "producer_id": 7, "producer_epoch": 0,
                                 "partitions": ["orders-0"]})
    cluster_snapshot.add("txn", {"time": T0 + 10, "transactional_id": "tx-1",
                                 "state": "PrepareCommit", "producer_id": 7, "producer_epoch": 0,
                                 "partitions": ["orders-0"]})
    view = TransactionView(cluster_snapshot, "orders")
    data = view.figure_data()
    hw, lso = data["data"]
    assert hw["x"] == ["orders-0", "orders-1"]
    assert hw["y"] == [110, 55] and lso["y"] == [95, 55]
    assert "PrepareCommit" in view.table.value and "Ongoing" not in view.table.value


def test_apply_figure_replaces_traces_when_their_shape_changes():
    import plotly.graph_objects as go

    fig = go.FigureWidget()
    apply_figure(fig, {"data": [{"type": "bar", "name": "a", "y": [1]}], "layout": {}})
    apply_figure(fig, {"data": [{"type": "bar", "name": "a", "y": [2, 3]}],
                       "layout": {"shapes": [{"type": "line", "x0": 0, "x1": 0}]}})
    assert fig.data[0].y == (2, 3) and len(fig.layout.shapes) == 1
    apply_figure(fig, {"data": [{"type": "scatter", "name": "b", "y": [4]}],
                       "layout": {"shapes": []}})
    assert [t.type for t in fig.data] == ["scatter"] and fig.layout.shapes == ()


def test_a_saved_snapshot_renders_the_same_static_figure(cluster_snapshot, tmp_path):
    loaded = MetricsSnapshot.load(cluster_snapshot.save(tmp_path / "lab.json"))
    for make in (lambda s: ReplicaView(s, "orders"), lambda s: IsrTimeline(s, "orders")):
        before, after = make(cluster_snapshot), make(loaded)
        assert after.figure_data() == before.figure_data()
        static = after.to_figure()
        assert [t.name for t in static.data] == [t["name"] for t in before.figure_data()["data"]]
