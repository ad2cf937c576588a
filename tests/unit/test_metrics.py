"""MetricsCollector / MetricsSnapshot: bounds, named views and derived frames on recorded rows."""

from __future__ import annotations

import json
import threading
import time

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalab.metrics import (
    KIND_COLUMNS,
    MetricsCollector,
    MetricsPublisher,
    MetricsSnapshot,
    NullPublisher,
    as_rows,
    dumps,
    throughput_from_frames,
)


@pytest.fixture
def collector():
    c = MetricsCollector()
    yield c
    c.close()


def replica_row(t, broker, partition, leo, *, topic="orders", leader=1, epoch=0, isr=(1, 2, 3)):
    return {
        "time": t, "node": f"broker-{broker}", "broker": broker, "topic": topic,
        "partition": partition, "is_leader": broker == leader, "leader": leader,
        "leader_epoch": epoch, "log_start_offset": 0, "log_end_offset": leo,
        "high_watermark": leo, "last_stable_offset": leo, "isr": list(isr), "segments": 1,
        "size_bytes": leo * 100, "lag_offsets": 0, "lag_ms": 0.0,
    }


VIEWS = {
    "replica": "replicas", "broker": "brokers", "event": "events", "client": "clients",
    "group": "groups", "lag": "lag", "txn": "transactions", "controller": "controller",
}


@pytest.mark.parametrize("kind,view", sorted(VIEWS.items()))
def test_missing_kinds_give_empty_frames_with_the_right_columns(collector, kind, view):
    for source in (collector, MetricsSnapshot()):
        frame = getattr(source, view)()
        assert frame.empty
        assert list(frame.columns) == KIND_COLUMNS[kind]
    assert list(collector.latest_replicas().columns) == KIND_COLUMNS["replica"]
    assert collector.throughput().empty


def test_record_fills_time_and_node_and_keeps_extra_keys(collector):
    before = time.time()
    collector.record("event", {"event": "kill", "detail": "broker 2", "broker": 2, "why": "lab"})
    frame = collector.events()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["event"] == "kill" and row["broker"] == 2 and row["why"] == "lab"
    assert before <= row["time"] <= time.time()
    assert row["node"] == "notebook"
    assert list(frame.columns[: len(KIND_COLUMNS["event"])]) == KIND_COLUMNS["event"]


def test_frames_are_copies(collector):
    collector.record("broker", {"broker": 1, "state": "running", "bytes_in": 10})
    frame = collector.brokers()
    frame.loc[0, "bytes_in"] = 999
    assert collector.brokers().loc[0, "bytes_in"] == 10


def test_max_rows_per_kind_is_respected():
    with MetricsCollector(max_rows_per_kind=50) as c:
        for i in range(120):
            c.record("client", {"time": 1000.0 + i, "records_sent": i})
        c.record("event", {"time": 1000.0, "event": "kill"})
        frame = c.clients()
        assert len(frame) == 50
        assert list(frame["records_sent"]) == list(range(70, 120))  # newest kept
        assert len(c.events()) == 1  # bounds are per kind


def test_history_seconds_drops_old_rows():
    with MetricsCollector(history_seconds=10.0) as c:
        for i in range(30):
            c.record("broker", {"time": 1000.0 + i, "broker": 1, "state": "running"})
        times = c.brokers()["time"]
        assert times.max() == 1029.0
        assert times.min() >= 1029.0 - 10.0
        assert len(times) == 11


def test_since_filters_rows(collector):
    for i in range(10):
        collector.record("lag", {"time": 100.0 + i, "group": "g", "topic": "t", "partition": 0,
                                 "lag": i})
    assert list(collector.lag(since=105.0)["lag"]) == [5, 6, 7, 8, 9]


def test_latest_replicas_is_newest_row_per_replica(collector):
    rows = []
    for t in range(5):
        for broker in (1, 2, 3):
            for partition in (0, 1):
                rows.append(replica_row(100.0 + t, broker, partition, leo=10 * t + broker))
    for row in reversed(rows):  # arrival order must not matter: the time does
        collector.record("replica", row)
    latest = collector.latest_replicas()
    assert len(latest) == 6
    assert set(latest["time"]) == {104.0}
    assert list(latest["log_end_offset"]) == [41, 41, 42, 42, 43, 43]
    assert latest[["broker", "partition"]].values.tolist() == [
        [b, p] for b in (1, 2, 3) for p in (0, 1)]
    snap = collector.snapshot()
    assert snap.latest_replicas()[["broker", "partition", "log_end_offset"]].equals(
        latest[["broker", "partition", "log_end_offset"]])


def test_snapshot_roundtrip_through_json(collector, tmp_path):
    collector.record("replica", replica_row(100.0, 1, 0, 5))
    collector.record("controller", {"time": 100.0, "controller_id": 0, "active": True,
                                    "metadata_offset": 7, "brokers": {1: "unfenced", 2: "fenced"}})
    collector.record("group", {"time": 101.0, "group": "g", "state": "Stable", "generation": 3,
                               "members": ["m1"], "protocol": "range",
                               "assignment": {"m1": ["orders-0", "orders-1"]}})
    path = collector.snapshot().save(tmp_path / "metrics.json")
    loaded = MetricsSnapshot.load(path)
    assert loaded.start_time == collector.start_time
    assert loaded.replicas()["isr"].iloc[0] == [1, 2, 3]
    assert loaded.controller()["brokers"].iloc[0] == {1: "unfenced", 2: "fenced"}
    assert loaded.groups()["assignment"].iloc[0] == {"m1": ["orders-0", "orders-1"]}
    assert sorted(loaded.kinds()) == ["controller", "group", "replica"]


def test_load_rejects_a_file_that_is_not_a_snapshot(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a kafkalab metrics snapshot"):
        MetricsSnapshot.load(path)


def test_close_is_idempotent_and_stops_the_thread():
    c = MetricsCollector()
    c.close()
    c.close()
    assert not c._thread.is_alive()


def test_port_in_use_raises():
    with MetricsCollector() as a:
        with pytest.raises(zmq.ZMQError):
            MetricsCollector(port=a.port)


def test_publisher_in_process_reaches_collector_and_garbage_is_ignored(collector):
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.connect(collector.endpoint)
    pub = MetricsPublisher(ctx, collector.endpoint, node="broker-7")
    try:
        def arrived(c):
            raw.send_multipart([b"broker", b"{not json"])
            raw.send_multipart([b"lonely"])
            pub.publish("broker", {"broker": 7, "state": "running", "bytes_in": 1})
            return not c.brokers().empty and c.malformed >= 2
        assert collector.wait_for(arrived, timeout=10.0)
        row = collector.brokers().iloc[0]
        assert row["node"] == "broker-7" and row["broker"] == 7
        assert abs(row["time"] - time.time()) < 10
    finally:
        pub.close()
        pub.close()
        pub.publish("broker", {"broker": 7})  # after close: silently nothing
        raw.close(linger=0)
        ctx.term()


def test_publisher_never_blocks_without_a_collector():
    ctx = zmq.Context()
    pub = MetricsPublisher(ctx, "tcp://127.0.0.1:9", node="x")  # nobody listens there
    try:
        start = time.monotonic()
        for i in range(5000):
            pub.publish("replica", {"i": i})
        assert time.monotonic() - start < 2.0
    finally:
        pub.close()
        ctx.term()


def test_null_publisher_has_the_same_methods():
    with NullPublisher(None, "tcp://x", "n") as pub:
        pub.publish("replica", {"a": 1})
    for name in ("publish", "close"):
        assert callable(getattr(NullPublisher, name)) and callable(getattr(MetricsPublisher, name))


def test_reads_while_writing_from_another_thread(collector):
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            collector.record("replica", replica_row(1000.0 + i, 1 + i % 3, i % 4, i))
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(30):
            assert list(collector.replicas().columns[:3]) == ["time", "node", "broker"]
            assert len(collector.latest_replicas()) <= 12
    finally:
        stop.set()
        thread.join()


# -- throughput


def client_rows(node, client_type, points, field="records_sent", bytes_field="bytes_sent"):
    return [{"time": t, "node": node, "client_type": client_type, field: n, bytes_field: n * 100}
            for t, n in points]


def test_throughput_rates_from_client_counters():
    snap = MetricsSnapshot({"client": (
        # a producer sending 50 records every 0.5 s, a consumer reading 20 every 0.5 s
        client_rows("producer-1", "producer", [(100.0 + i / 2, 50 * i) for i in range(10)])
        + client_rows("consumer-1", "consumer", [(100.0 + i / 2, 20 * i) for i in range(10)],
                      "records_received", "bytes_received"))})
    rates = snap.throughput(window_s=1.0)
    assert list(rates["time"]) == [100.0, 101.0, 102.0, 103.0, 104.0]
    # the first row of each series is only a baseline, so the first window holds one step
    assert list(rates["records_in_per_s"]) == [50, 100, 100, 100, 100]
    assert list(rates["records_out_per_s"]) == [20, 40, 40, 40, 40]
    assert rates["mb_in_per_s"].iloc[1] == pytest.approx(100 * 100 / 1e6)


def test_throughput_handles_a_counter_reset_on_restart():
    # counts 0,100,200, restart, then 30,130: increments 100,100,30,100
    points = [(10.0, 0), (11.0, 100), (12.0, 200), (13.0, 30), (14.0, 130)]
    rates = throughput_from_frames(
        MetricsSnapshot({"client": client_rows("p", "producer", points)}).clients(),
        MetricsSnapshot().brokers(), window_s=1.0)
    assert list(rates["records_in_per_s"]) == [0, 100, 100, 30, 100]


def test_throughput_fills_silent_windows_with_zero_and_reports_broker_bytes():
    brokers = [{"time": t, "broker": 1, "state": "running", "bytes_in": b, "bytes_out": 2 * b}
               for t, b in [(0.0, 0), (1.0, 1_000_000), (4.0, 3_000_000)]]
    brokers.insert(2, {"time": 2.0, "broker": 1, "state": "killed"})  # Cluster's fault row
    rates = MetricsSnapshot({"broker": brokers}).throughput(window_s=1.0)
    assert list(rates["time"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert list(rates["broker_mb_in_per_s"]) == [0, 1, 0, 0, 2]
    assert list(rates["broker_mb_out_per_s"]) == [0, 2, 0, 0, 4]
    with pytest.raises(ValueError):
        MetricsSnapshot().throughput(window_s=0)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 500), st.booleans()), min_size=1, max_size=40),
       window=st.sampled_from([0.5, 1.0, 2.0]))
def test_throughput_conserves_records(steps, window):
    """Whatever the resets, rate x window summed over windows = records actually sent.

    A restart shows as a counter going down (a restart that counts past the old value
    before the next report cannot be told from counters alone).
    """
    count, points, sent = 0, [(0.0, 0)], 0
    for i, (n, restart) in enumerate(steps, start=1):
        if restart and count > 0:
            n %= count
            count = n
        else:
            count += n
        sent += n
        points.append((i * 0.3, count))
    rates = MetricsSnapshot({"client": client_rows("p", "producer", points)}).throughput(window)
    assert (rates["records_in_per_s"] * window).sum() == pytest.approx(sent)


def test_now_is_the_clock_when_live_and_the_last_row_when_saved(collector):
    collector.record("event", {"time": 50.0, "event": "kill"})
    collector.record("broker", {"time": 70.0, "broker": 1})
    assert abs(collector.now() - time.time()) < 5
    snap = collector.snapshot()
    assert snap.now() == 70.0 and snap.latest_time() == 70.0
    assert MetricsSnapshot(start_time=3.0).now() == 3.0


def test_event_ids_stay_integers_where_some_rows_lack_them():
    from kafkalab.metrics import MetricsSnapshot
    snap = MetricsSnapshot(start_time=0.0)
    snap.add("event", {"time": 1.0, "node": "controller", "event": "broker_fenced", "broker": 2})
    snap.add("event", {"time": 2.0, "node": "controller", "event": "leader_election",
                       "topic": "orders", "partition": 0, "leader": 1, "leader_epoch": 3})
    events = snap.events()
    assert str(events["broker"].dtype) == "Int64" and str(events["partition"].dtype) == "Int64"
    assert f"broker {events.broker.iloc[0]}" == "broker 2"
    ids = events[["partition", "broker", "leader", "leader_epoch"]].to_string()
    assert ".0" not in ids and "NaN" not in ids
    assert len(events[events.broker == 2]) == 1     # masks with missing values still select


def test_state_rows_go_out_on_change_and_otherwise_once_a_heartbeat():
    from kafkalab.metrics_publisher import ChangeFilter

    f = ChangeFilter(heartbeat_s=1.0)
    row = {"node": "broker-1", "broker": 1, "topic": "t", "partition": 0, "log_end_offset": 5, "isr": [1, 2]}
    assert f.due("replica", row, now=0.0)
    # The same state a tick later, even with the clock-only fields moved: held back.
    assert not f.due("replica", {**row, "time": 0.25, "lag_ms": 250, "follower_lag_ms": {"2": 250}}, now=0.25)
    assert f.due("replica", {**row, "partition": 1}, now=0.3)  # another replica: its own state
    assert f.due("replica", {**row, "isr": [1]}, now=0.5)  # a change: at once
    assert f.due("replica", row, now=0.6)  # and back again: also a change
    assert not f.due("replica", row, now=1.5)
    assert f.due("replica", row, now=1.6)  # a heartbeat: a second since the last copy went out
    assert all(f.due("event", {"event": "isr_shrink"}, now=2.0) for _ in range(3))  # always
    assert all(f.due("broker", {"broker": 1}, now=2.0) for _ in range(3))  # the keep-alive
    assert f.suppressed == 2


def test_the_collector_tells_listeners_about_news_not_about_heartbeats(collector):
    told: list[int] = []
    collector.add_listener(lambda: told.append(collector.changes))
    replica = {"broker": 1, "topic": "t", "partition": 0, "log_end_offset": 5, "node": "broker-1"}
    broker = {"broker": 1, "bytes_in": 10, "fetch_requests": 3, "incremental_fetch_requests": 2,
              "request_latency_ms_p50": 200.1, "node": "broker-1"}
    collector.record("replica", replica)
    collector.record("broker", broker)
    assert told == [1, 2]
    collector.record("replica", {**replica, "time": time.time() + 1})  # a heartbeat
    # The followers' own long polls move these while nothing happens.
    collector.record("broker", {**broker, "fetch_requests": 5, "incremental_fetch_requests": 4,
                                "request_latency_ms_p50": 200.3})
    assert told == [1, 2] and collector.version == 4
    collector.record("broker", {**broker, "bytes_in": 20})
    collector.record("event", {"event": "kill"})
    assert told == [1, 2, 3, 4]


# -- rows (what the views read) and frames (what learners read) are the same rows


def test_frames_are_built_from_the_same_rows_the_views_read():
    rows = [replica_row(1.0, b, p, 10 * b) for b in (1, 2, 3) for p in (0, 1)]
    rows += [replica_row(2.0, 2, 0, 25), {**replica_row(3.0, 3, 1, 31), "segments": None}]
    del rows[0]["size_bytes"]  # an older broker that does not report it
    snap = MetricsSnapshot({"replica": rows, "client": client_rows(
        "p", "producer", [(100.0 + i / 3, 7 * i * i) for i in range(12)])})
    latest = snap.latest_replica_rows()
    assert [(r["broker"], r["partition"]) for r in latest] == [(b, p) for b in (1, 2, 3) for p in (0, 1)]
    assert [r["log_end_offset"] for r in latest] == [10, 10, 25, 20, 30, 31]
    blank = dict.fromkeys(KIND_COLUMNS["replica"])
    assert as_rows(snap.latest_replicas()) == [{**blank, **r} for r in latest]
    assert as_rows(snap.throughput(0.5)) == snap.throughput_rows(0.5)
    assert snap.rows("replica", since=2.0) == [rows[-2], rows[-1]]


def test_rows_of_a_frame_have_none_for_missing_values_and_python_ints():
    snap = MetricsSnapshot({"event": [{"time": 1.0, "event": "kill", "broker": 2},
                                      {"time": 2.0, "event": "heal"}]})
    first, second = as_rows(snap.events())
    assert first["broker"] == 2 and type(first["broker"]) is int
    assert second["broker"] is None and second["topic"] is None


@settings(max_examples=30, deadline=None)
@given(points=st.lists(st.tuples(st.floats(0, 20), st.integers(0, 10**7)), min_size=1, max_size=30),
       window=st.sampled_from([0.3, 1.0, 2.5]))
def test_throughput_is_what_pandas_groupby_computed(points, window):
    """Steps, restarts and windows as the pandas code the rates were computed with before."""
    import pandas as pd

    rows = [{"time": t, "node": "p", "client_type": "producer", "bytes_sent": n} for t, n in points]
    frame = pd.DataFrame(rows).sort_values("time", kind="stable")
    step = frame["bytes_sent"] - frame["bytes_sent"].shift(1)
    step = step.where(step >= 0, frame["bytes_sent"]).where(frame["bytes_sent"].shift(1).notna(), 0.0)
    expected = (step / 1e6).groupby((frame["time"] // window).astype("int64")).sum() / window
    got = {round(r["time"] / window): r["mb_in_per_s"]
           for r in MetricsSnapshot({"client": rows}).throughput_rows(window)}
    assert {b: got[b] for b in expected.index} == pytest.approx(expected.to_dict(), rel=1e-12, abs=1e-15)
    assert set(got) == set(range(min(expected.index), max(expected.index) + 1))  # silent windows: 0


def test_a_batch_is_one_message_of_kind_row_pairs_and_force_sends_unchanged_rows():
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    pub = MetricsPublisher(ctx, f"tcp://127.0.0.1:{port}", node="broker-1")
    try:
        deadline = time.monotonic() + 10
        while not sub.poll(20):  # the slow joiner: events are always sent
            assert time.monotonic() < deadline, "the publisher never connected"
            pub.publish("event", {"event": "hello"})
        while sub.poll(50):
            sub.recv_multipart()
        replica = {"broker": 1, "topic": "t", "partition": 0, "log_end_offset": 5}
        with pub.batch():
            pub.publish("replica", replica)
            pub.publish("broker", {"broker": 1})
            pub.publish("replica", replica)  # says nothing new: held back
        frames = sub.recv_multipart()
        assert frames[::2] == [b"replica", b"broker"] and json.loads(frames[1])["log_end_offset"] == 5
        with pub.batch():
            pub.publish("replica", replica)  # unchanged within its keep-alive: no message at all
        with pub.batch(force=True):
            pub.publish("replica", replica)
        assert sub.recv_multipart()[::2] == [b"replica"]
        assert not sub.poll(100)
    finally:
        pub.close()
        sub.close(linger=0)
        ctx.term()


def test_the_collector_takes_every_pair_of_a_message_and_counts_a_broken_pair(collector):
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.connect(collector.endpoint)
    try:
        def arrived(c):
            raw.send_multipart([b"broker", dumps({"broker": 3, "node": "broker-3"}),
                                b"replica", dumps({"broker": 3, "topic": "t", "partition": 1, "node": "broker-3"}),
                                b"replica", b"{not json"])
            return c.row_count("replica") > 0 and c.row_count("broker") > 0 and c.malformed > 0
        assert collector.wait_for(arrived, timeout=10.0)
        assert collector.rows("replica")[0]["partition"] == 1
    finally:
        raw.close(linger=0)
        ctx.term()
