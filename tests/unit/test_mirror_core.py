"""MirrorMaker's rules, without processes: remote names and loops, the offset-sync rule,
offset translation, checkpoints and the group-offset sync, the record layouts."""

import os

import pytest

from kafkalab.mirror import formats
from kafkalab.mirror.core import (
    Checkpoint,
    CheckpointRule,
    Intervals,
    OffsetSync,
    OffsetSyncRule,
    OffsetSyncStore,
)
from kafkalab.mirror.policy import (
    checkpoints_topic,
    offset_syncs_topic,
    remote_topic,
    topic_source,
    topics_to_replicate,
)

TP = ("orders", 0)


def test_remote_topics_are_named_after_their_source_cluster():
    assert remote_topic("west", "orders") == "west.orders"
    assert topic_source("west.orders") == "west"
    assert topic_source("orders") is None
    assert offset_syncs_topic("east") == "mm2-offset-syncs.east.internal"
    assert checkpoints_topic("west") == "west.checkpoints.internal"


def test_a_topic_that_came_from_the_target_is_never_mirrored_back():
    with pytest.raises(ValueError, match="loop.*'orders'"):
        topics_to_replicate("east", "west", ["west.orders"], {"west.orders", "orders"})
    # a topic from a third cluster may travel on
    assert topics_to_replicate("east", "west", ["north.orders"], {"north.orders"}) == ["north.orders"]


@pytest.mark.parametrize("source,target,topics,existing,match", [
    ("west", "west", ["orders"], {"orders"}, "same cluster"),
    ("west", "east", ["nope"], {"orders"}, "does not exist.*create_topic"),
    ("west", "east", ["__consumer_offsets"], {"__consumer_offsets"}, "internal"),
    ("west", "east", [], {"orders"}, "copies nothing"),
])
def test_bad_flows_name_the_fix(source, target, topics, existing, match):
    with pytest.raises(ValueError, match=match):
        topics_to_replicate(source, target, topics, existing)


def test_the_first_record_copied_emits_a_sync_then_one_every_offset_lag_max():
    rule = OffsetSyncRule(offset_lag_max=100)
    due = [u for u in range(350) if rule.update(TP, u, u)]
    # a group at u + 1 translates to one past the last sync: the sync is due once the
    # translation would fall offset.lag.max behind
    assert due == [0, 101, 202, 303]


def test_offset_lag_max_zero_syncs_every_record():
    rule = OffsetSyncRule(offset_lag_max=0)
    assert all(rule.update(TP, u, u + 5) for u in range(20))


def test_a_gap_upstream_or_a_downstream_going_back_emits_a_sync_at_once():
    rule = OffsetSyncRule(offset_lag_max=100)
    assert rule.update(TP, 0, 0)
    assert not rule.update(TP, 1, 1)
    assert rule.update(TP, 5, 2)        # offsets 2..4 compacted away upstream
    assert not rule.update(TP, 6, 3)
    assert rule.update(TP, 7, 0)        # the remote topic was recreated
    assert rule.update(("orders", 1), 40, 0)  # partitions are independent


def test_translation_uses_the_newest_sync_at_or_below_and_never_skips():
    store = OffsetSyncStore()
    store.add(OffsetSync("orders", 0, 0, 0))
    store.add(OffsetSync("orders", 0, 101, 51))   # upstream and downstream differ (say, a gap)
    assert store.translate(TP, 101) == 51          # exactly at a sync: nothing read twice
    assert store.translate(TP, 150) == 52          # past it: one past the sync, re-reads up to 48
    assert store.translate(TP, 100) == 1           # the older sync applies
    assert store.translate(("orders", 1), 10) is None  # no sync for that partition yet
    assert store.translate(TP, -1) is None


def test_a_resync_after_a_restart_replaces_newer_pairs():
    store = OffsetSyncStore()
    for u in (0, 101, 202):
        store.add(OffsetSync("orders", 0, u, u))
    store.add(OffsetSync("orders", 0, 150, 160))  # copied again after a restart: new downstream
    assert store.translate(TP, 210) == 161


def test_checkpoints_only_when_the_translation_changes_and_never_backwards():
    store = OffsetSyncStore()
    store.add(OffsetSync("orders", 0, 0, 0))
    store.add(OffsetSync("orders", 0, 101, 101))
    rule = CheckpointRule("west")
    first = rule.checkpoints("billing", {TP: 120}, store)
    assert first == [Checkpoint("billing", "west.orders", 0, 120, 102)]
    assert rule.checkpoints("billing", {TP: 120}, store) == []     # unchanged: nothing new
    assert rule.checkpoints("billing", {TP: 50}, store) == []      # reset back on the source
    assert rule.latest("billing") == first
    assert rule.checkpoints("billing", {("other", 0): 5}, store) == []  # no sync: no checkpoint


def test_group_offsets_sync_never_rewinds_a_target_consumer():
    cps = [Checkpoint("billing", "west.orders", 0, 120, 102), Checkpoint("billing", "west.orders", 1, 9, 9)]
    assert CheckpointRule.offsets_to_sync(cps, {}) == {("west.orders", 0): 102, ("west.orders", 1): 9}
    assert CheckpointRule.offsets_to_sync(cps, {("west.orders", 0): 200, ("west.orders", 1): 3}) == {
        ("west.orders", 1): 9}


def test_intervals_with_an_injected_clock():
    timers = Intervals({"checkpoints": 500, "off": -1})
    assert timers.due("checkpoints", 1_000)
    assert not timers.due("checkpoints", 1_499)
    assert timers.due("checkpoints", 1_500)
    assert not timers.due("off", 1_000)


def test_record_layouts_round_trip_in_kafkas_struct_encoding():
    key, value = formats.encode_offset_sync(OffsetSync("orders", 3, 101, 99))
    assert key == b"\x00\x06orders\x00\x00\x00\x03"
    assert value == (101).to_bytes(8, "big") + (99).to_bytes(8, "big")
    assert formats.decode_offset_sync(key, value) == OffsetSync("orders", 3, 101, 99)
    cp = Checkpoint("billing", "west.orders", 1, 70, 1, "m")
    assert formats.decode_checkpoint(*formats.encode_checkpoint(cp)) == cp
    assert formats.decode_heartbeat(*formats.encode_heartbeat("west", "east", 123)) == ("west", "east", 123)


def test_a_cluster_name_cannot_hold_the_remote_topic_separator():
    from kafkalab import Cluster
    with pytest.raises(ValueError, match="no '.'"):
        Cluster(brokers=1, name="us.west", start=False)
    c = Cluster(brokers=1, name="us-west", start=False)
    try:
        assert c.name == "us-west" and c.node_label("broker-1") == "us-west/broker-1"
        assert os.path.basename(c.data_dir).startswith("kafkalab-us-west-")
    finally:
        c.close()
    assert not os.path.exists(c.data_dir)
