"""The KIP-848 rebalance timeline and the share-group view, driven from hand-built metric rows;
the share-partition counters those rows are built from."""

from __future__ import annotations

from kafkalab.broker.share_partition import ACCEPT, REJECT, RELEASE, SharePartition
from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets import RebalanceTimeline, ShareGroupView
from kafkalab.widgets.share_groups import share_figure_data
from kafkalab.widgets.timelines import member_epoch_marks, ownership_intervals

T0 = 1_000.0
A = "client-1-11111111-2222-3333-4444-555555555555"
B = "client-2-99999999-2222-3333-4444-555555555555"


def consumer_row(t, group_epoch, assignment, epochs, revoking=None):
    return {"time": t, "group": "pay", "state": "Stable" if not revoking else "Reconciling",
            "generation": group_epoch, "members": len(epochs), "protocol": "consumer",
            "assignment": assignment, "member_epochs": epochs, "revoking": revoking or {}}


def trace(data, name):
    return next(t for t in data["data"] if t["name"] == name)


def test_consumer_protocol_timeline_shows_member_epochs_group_epochs_and_revocation():
    rows = [consumer_row(T0, 1, {A: ["orders-0", "orders-1"]}, {A: 1}),
            # B joins: group epoch 2; A keeps orders-0 at epoch 2, still revoking orders-1
            consumer_row(T0 + 10, 2, {A: ["orders-0"], B: []}, {A: 2, B: 1}, {A: ["orders-1"]}),
            # A let go: B gets orders-1 and reaches the group epoch; A never stopped on orders-0
            consumer_row(T0 + 12, 2, {A: ["orders-0"], B: ["orders-1"]}, {A: 2, B: 2}),
            consumer_row(T0 + 20, 2, {A: ["orders-0"], B: ["orders-1"]}, {A: 2, B: 2})]
    snap = MetricsSnapshot({"group": rows}, start_time=T0)
    data = RebalanceTimeline(snap, "pay").figure_data()
    assert trace(data, "client-1")["x"] == [0.0, 20.0, None, 0.0, 10.0, None]
    assert trace(data, "client-1")["y"] == ["orders-0", "orders-0", None, "orders-1", "orders-1", None]
    assert trace(data, "client-2")["x"] == [12.0, 20.0, None]
    revoking = trace(data, "revoking")
    assert revoking["x"] == [10.0, 12.0, None] and revoking["y"] == ["orders-1", "orders-1", None]
    assert revoking["customdata"][0] == "client-1 revoking orders-1"
    epochs = trace(data, "member epochs")
    assert list(zip(epochs["x"], epochs["y"], epochs["text"], strict=True)) == [
        (0.0, "orders-0", "e1"), (0.0, "orders-1", "e1"), (10.0, "orders-0", "e2"), (12.0, "orders-1", "e2")]
    marks = trace(data, "rebalances")
    assert marks["customdata"] == ["group epoch 1: 1 member", "group epoch 2: 2 members"]
    assert data["data"][-1]["name"] == "rebalances"
    assert "revoking" in data["layout"]["annotations"][0]["text"]


def test_member_epoch_marks_only_where_the_epoch_moved_and_none_for_classic_groups():
    rows = [consumer_row(T0, 3, {A: ["orders-0"]}, {A: 3}), consumer_row(T0 + 1, 3, {A: ["orders-0"]}, {A: 3})]
    snap = MetricsSnapshot({"group": rows}, start_time=T0)
    assert [list(m.values()) for m in member_epoch_marks(snap.groups(), "pay")] == [[T0, A, "orders-0", 3]]
    assert ownership_intervals(snap.groups(), "pay", column="revoking") == []
    classic = [{"time": T0, "group": "pay", "state": "Stable", "generation": 1, "members": 1,
                "protocol": "range", "assignment": {A: ["orders-0"]}}]
    data = RebalanceTimeline(MetricsSnapshot({"group": classic}, start_time=T0), "pay").figure_data()
    assert [t["name"] for t in data["data"]] == ["client-1", "rebalances"]
    assert trace(data, "rebalances")["customdata"] == ["generation 1: 1 member"]


def share_row(t, partition, broker, **kw):
    row = {"time": t, "broker": broker, "group": "q", "topic": "jobs", "partition": partition,
           "start_offset": 0, "end_offset": 0, "high_watermark": 0, "available": 0, "acquired": 0,
           "acknowledged": 0, "archived": 0, "not_yet_acquired": 0, "acknowledged_total": 0,
           "archived_total": 0, "lock_expiries": 0, "redeliveries": 0, "next_lock_expiry_ms": None,
           "acquired_by": {}, "accepted_by": {}}
    row.update(kw)
    return row


def test_share_group_view_counts_records_per_state_per_partition_and_per_consumer():
    rows = [share_row(T0, 0, 1, available=9),  # replaced by the newer report of the new leader
            share_row(T0 + 5, 0, 2, start_offset=10, end_offset=16, high_watermark=20, available=1,
                      acquired=3, not_yet_acquired=4, acknowledged_total=10, archived_total=2,
                      lock_expiries=3, redeliveries=4, acquired_by={A: 2, B: 1}, accepted_by={A: 6, B: 4}),
            share_row(T0 + 5, 1, 3, end_offset=2, high_watermark=2, acquired=2, acquired_by={B: 2},
                      accepted_by={B: 1}, acknowledged_total=1),
            {**share_row(T0 + 5, 0, 1, available=50), "group": "other"}]
    snap = MetricsSnapshot({"share_partition": rows}, start_time=T0)
    data = ShareGroupView(snap, "q").figure_data()
    assert trace(data, "available")["x"] == ["jobs-0", "jobs-1"]
    assert {s: trace(data, s)["y"] for s in ("available", "acquired", "acknowledged", "archived")} == {
        "available": [5, 0], "acquired": [3, 2], "acknowledged": [10, 1], "archived": [2, 0]}
    held, accepted = trace(data, "held now"), trace(data, "accepted")
    assert held["x"] == ["client-1", "client-2"] and held["y"] == [2, 3] and accepted["y"] == [6, 5]
    assert held["xaxis"] == "x2" and accepted["yaxis"] == "y2"
    assert trace(data, "acquired")["customdata"][0] == "SPSO 10, SPEO 16; lock expiries 3, redeliveries 4"
    assert data["layout"]["annotations"][0]["text"] == "lock expiries 3 · redeliveries 4"
    assert data["layout"]["barmode"] == "stack"
    assert ShareGroupView(snap, "q").snapshot().data[0].name == "available"


def test_share_group_view_says_when_nothing_reported():
    data = share_figure_data(MetricsSnapshot({}, start_time=T0).frame("share_partition"), "q")
    assert data["data"] == [] and "no share-partition" in data["layout"]["annotations"][0]["text"]


def test_share_partition_counts_what_the_view_shows():
    sp = SharePartition(0, lock_duration_ms=1000, delivery_limit=2, max_in_flight=100)
    assert sp.acquire("a", 6, 3, now_ms=0) == [(0, 2, 1)]
    assert sp.acquire("b", 6, 3, now_ms=0) == [(3, 5, 1)]
    assert sp.acquired_by() == {"a": 3, "b": 3}
    sp.acknowledge("a", 0, 1, [ACCEPT])
    sp.acknowledge("a", 2, 2, [REJECT])
    sp.acknowledge("b", 3, 3, [RELEASE])
    assert sp.expire_locks(1000) == 2  # b's offsets 4 and 5
    assert (sp.acknowledged_total, sp.archived_total, sp.accepted_by) == (2, 1, {"a": 2})
    sp.acquire("a", 6, 3, now_ms=1000)  # 3, 4, 5 again: redeliveries
    assert sp.redelivered == 3 and sp.acquired_by() == {"a": 3}
    sp.expire_locks(2000)  # second delivery ran out: the limit archives them
    assert sp.archived_total == 4 and sp.counts()["acquired"] == 0
