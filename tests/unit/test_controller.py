"""The controller's logic, driven with an injected clock: no processes, no sockets."""

from __future__ import annotations

import random

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.config import broker_config
from kafkalab.controller.controller import Controller, assign_replicas
from kafkalab.metadata.image import NO_LEADER, MetadataImage


def make(brokers=(1, 2, 3), **overrides):
    image = MetadataImage()
    log: list[dict] = []

    def commit(records):
        for r in records:
            image.apply(r, len(log))
            log.append(r)
    events: list[tuple[str, dict]] = []
    c = Controller(image, commit, broker_config("lab", overrides), rng=random.Random(7),
                   on_event=lambda e, d: events.append((e, d)))
    for b in brokers:
        epoch = c.register_broker(b, f"tcp://127.0.0.1:{9000 + b}", "127.0.0.1", 19000 + b, now_ms=0)
        c.heartbeat(b, epoch, image.offset, False, now_ms=0)
    return c, image, log, events


def beat(c, now, *brokers):
    for b in brokers:
        reg = c.image.brokers[b]
        c.heartbeat(b, reg.epoch, c.image.offset, False, now)


def test_registered_brokers_are_unfenced_once_caught_up():
    c, image, _, _ = make()
    assert image.live_brokers() == [1, 2, 3]
    epoch = c.register_broker(4, "tcp://x:1", "h", 1, now_ms=10)
    assert image.brokers[4].fenced
    r = c.heartbeat(4, epoch, metadata_offset=0, want_shut_down=False, now_ms=20)
    assert r.is_fenced and not r.is_caught_up  # behind on metadata: stays fenced
    r = c.heartbeat(4, epoch, metadata_offset=image.offset, want_shut_down=False, now_ms=30)
    assert not r.is_fenced and image.live_brokers() == [1, 2, 3, 4]


def test_stale_epoch_heartbeat_is_rejected():
    c, image, _, _ = make()
    old = image.brokers[1].epoch
    c.register_broker(1, "tcp://x:1", "h", 1, now_ms=5)  # a restart: new epoch
    assert c.heartbeat(1, old, image.offset, False, 6).error == ErrorCode.stale_broker_epoch


def test_a_broker_registering_again_within_its_session_loses_leadership_and_isr():
    # A crashed leader restarted before its session expired may have lost its unflushed tail:
    # it must not lead again in the same epoch (its followers would truncate acked records).
    c, image, _, _ = make()
    c.create_topic("t", 1, 3, {"min.insync.replicas": "2"}, assignments={0: [1, 2, 3]})
    before = image.partition("t", 0)
    assert before.leader == 1 and before.leader_epoch == 0
    c.register_broker(1, "tcp://x:1", "h", 1, now_ms=100)  # well within broker.session.timeout.ms
    p = image.partition("t", 0)
    assert p.leader == 2 and p.leader_epoch == 1 and p.isr == [2, 3]
    assert image.brokers[1].fenced


def test_create_topic_places_replicas_over_live_brokers():
    c, image, _, _ = make()
    code, _ = c.create_topic("t", 6, 3, {"min.insync.replicas": "2"})
    assert code == ErrorCode.none
    parts = image.topics["t"].partitions
    assert len(parts) == 6
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3] and p.isr == p.replicas and p.leader == p.replicas[0]
    # Leaders spread evenly: each broker leads two of six.
    leaders = [p.leader for p in parts.values()]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [2, 2, 2]


@pytest.mark.parametrize("name,parts,rf,code", [
    ("bad name!", 1, 1, ErrorCode.invalid_topic_exception),
    ("t", 0, 1, ErrorCode.invalid_partitions),
    ("t", 1, 4, ErrorCode.invalid_replication_factor),
])
def test_create_topic_rejects_bad_input(name, parts, rf, code):
    c, _, _, _ = make()
    assert c.create_topic(name, parts, rf)[0] == code


def test_bad_topic_config_names_closest_key():
    c, _, _, _ = make()
    code, msg = c.create_topic("t", 1, 1, {"retention.msec": "5"})
    assert code == ErrorCode.invalid_config and "retention.ms" in msg


def test_min_compaction_lag_above_max_is_rejected_with_both_values():
    c, _, _, _ = make()
    code, msg = c.create_topic("t", 1, 1, {"min.compaction.lag.ms": 5000, "max.compaction.lag.ms": 1000})
    assert code == ErrorCode.invalid_config
    assert "min.compaction.lag.ms=5000" in msg and "max.compaction.lag.ms=1000" in msg
    assert c.create_topic("t", 1, 1, {"min.compaction.lag.ms": 1000, "max.compaction.lag.ms": 1000})[0] == 0


def test_assign_replicas_is_balanced_and_distinct():
    for n in range(1, 6):
        brokers = list(range(1, n + 1))
        for rf in range(1, n + 1):
            a = assign_replicas(brokers, 12, rf, random.Random(n * 10 + rf))
            for replicas in a.values():
                assert len(set(replicas)) == rf


SESSION_MS = broker_config("lab")["broker.session.timeout.ms"]


def test_session_timeout_fences_and_reelects_from_isr():
    c, image, _, events = make()
    c.create_topic("t", 1, 3)
    p = image.topics["t"].partitions[0]
    leader, epoch = p.leader, p.leader_epoch
    others = [b for b in (1, 2, 3) if b != leader]
    beat(c, SESSION_MS - 100, *others)
    c.tick(now_ms=SESSION_MS + 100)  # the leader's last heartbeat was at 0
    assert image.brokers[leader].fenced
    p = image.topics["t"].partitions[0]
    assert p.leader in others and p.leader_epoch == epoch + 1
    assert leader not in p.isr
    assert ("broker_fenced", {"broker": leader, "detail": "session timed out"}) in events


def test_next_tick_is_the_first_session_to_end_so_an_idle_controller_sleeps_until_then():
    c, image, _, _ = make()
    beat(c, SESSION_MS - 100, 2, 3)
    assert c.next_tick_ms() == SESSION_MS + 1  # broker 1, last heard at 0
    c.tick(now_ms=SESSION_MS)
    assert not image.brokers[1].fenced  # not a moment too early
    c.tick(now_ms=c.next_tick_ms())
    # the fenced broker's wait no longer counts: brokers 2 and 3's sessions do
    assert image.brokers[1].fenced and c.next_tick_ms() == 2 * SESSION_MS - 100 + 1
    c.last_heartbeat_ms.pop(2)  # known from the log, not heard since this controller started
    assert c.next_tick_ms() == 0


def test_last_isr_member_is_kept_and_partition_goes_offline():
    c, image, _, _ = make()
    c.create_topic("t", 1, 3)
    p = image.topics["t"].partitions[0]
    survivor = p.replicas[0]
    for b in p.replicas[1:]:
        c.fence_broker(b, "test")
    assert image.topics["t"].partitions[0].isr == [survivor]
    c.fence_broker(survivor, "test")
    p = image.topics["t"].partitions[0]
    assert p.leader == NO_LEADER and p.isr == [survivor]  # KRaft keeps the last ISR member
    # It comes back: clean election of the only in-sync replica.
    reg = image.brokers[survivor]
    c.heartbeat(survivor, reg.epoch, image.offset, False, 1000)
    assert image.topics["t"].partitions[0].leader == survivor


def test_unclean_election_only_when_enabled():
    for unclean, expect_leader in ((False, False), (True, True)):
        c, image, _, _ = make()
        c.create_topic("t", 1, 3, {"unclean.leader.election.enable": str(unclean).lower()})
        p = image.topics["t"].partitions[0]
        last, stale = p.replicas[0], p.replicas[1]
        # Shrink the ISR to the leader alone, then lose it.
        c.alter_partition(last, image.brokers[last].epoch, "t", 0, p.leader_epoch, p.partition_epoch, [last])
        c.fence_broker(last, "test")
        p = image.topics["t"].partitions[0]
        assert (p.leader != NO_LEADER) == expect_leader
        if expect_leader:
            assert p.leader in (stale, p.replicas[2]) and p.isr == [p.leader]


def test_alter_partition_checks_leader_epoch_and_partition_epoch():
    c, image, _, _ = make()
    c.create_topic("t", 1, 3)
    p = image.topics["t"].partitions[0]
    leader = p.leader
    follower = [b for b in p.replicas if b != leader][0]
    bepoch = image.brokers[leader].epoch
    assert c.alter_partition(follower, image.brokers[follower].epoch, "t", 0, p.leader_epoch,
                             p.partition_epoch, p.isr)[0] == ErrorCode.not_leader_or_follower
    assert c.alter_partition(leader, bepoch, "t", 0, p.leader_epoch - 1, p.partition_epoch,
                             [leader])[0] == ErrorCode.fenced_leader_epoch
    assert c.alter_partition(leader, bepoch, "t", 0, p.leader_epoch, p.partition_epoch + 5,
                             [leader])[0] == ErrorCode.invalid_update_version
    before = p.partition_epoch
    code, reg = c.alter_partition(leader, bepoch, "t", 0, p.leader_epoch, before, [leader])
    assert code == ErrorCode.none and reg.isr == [leader] and reg.partition_epoch == before + 1
    # A fenced broker may not be added back.
    c.fence_broker(follower, "test")
    reg = image.topics["t"].partitions[0]
    assert c.alter_partition(leader, bepoch, "t", 0, reg.leader_epoch, reg.partition_epoch,
                             [leader, follower])[0] == ErrorCode.ineligible_replica


def test_controlled_shutdown_moves_leadership_then_allows_exit():
    c, image, _, _ = make()
    c.create_topic("t", 3, 3)
    led = [pid for pid, p in image.topics["t"].partitions.items() if p.leader == 1]
    assert led
    reg = image.brokers[1]
    r = c.heartbeat(1, reg.epoch, image.offset, True, 100)
    assert r.should_shut_down
    assert all(image.topics["t"].partitions[pid].leader != 1 for pid in led)


def test_replaying_the_metadata_log_rebuilds_the_same_image():
    c, image, log, _ = make()
    c.create_topic("a", 3, 2)
    c.create_topic("b", 1, 3)
    c.fence_broker(2, "test")
    c.delete_topic("a")
    replayed = MetadataImage()
    for i, r in enumerate(log):
        replayed.apply(r, i)
    assert replayed == image


def test_preferred_leader_election_restores_first_replica():
    c, image, _, _ = make()
    c.create_topic("t", 1, 3)
    first = image.topics["t"].partitions[0].replicas[0]
    c.fence_broker(first, "test")
    assert image.topics["t"].partitions[0].leader != first
    reg = image.brokers[first]
    c.heartbeat(first, reg.epoch, image.offset, False, 50)
    p = image.topics["t"].partitions[0]
    c.alter_partition(p.leader, image.brokers[p.leader].epoch, "t", 0, p.leader_epoch,
                      p.partition_epoch, sorted(set(p.isr) | {first}))
    assert c.elect_preferred_leaders() == 1
    assert image.topics["t"].partitions[0].leader == first


def test_metadata_records_carry_kafkas_names():
    # Metadata version 3.3-IV2+: fencing and unfencing are a BrokerRegistrationChangeRecord with
    # a fenced flag (FenceBrokerRecord/UnfenceBrokerRecord are gone); topic configs are one
    # ConfigRecord per key between the TopicRecord and the PartitionRecords.
    c, image, log, _ = make()
    kinds = [r["type"] for r in log]
    assert kinds == ["RegisterBrokerRecord", "BrokerRegistrationChangeRecord"] * 3
    assert [r["fenced"] for r in log[1::2]] == [-1, -1, -1]  # UNFENCE
    start = len(log)
    c.create_topic("t", 2, 3, {"min.insync.replicas": "2", "retention.ms": "1000"})
    assert [r["type"] for r in log[start:]] == [
        "TopicRecord", "ConfigRecord", "ConfigRecord", "PartitionRecord", "PartitionRecord"]
    assert {r["name"]: r["value"] for r in log[start + 1:start + 3]} == {
        "min.insync.replicas": "2", "retention.ms": "1000"}
    assert image.topics["t"].configs == {"min.insync.replicas": "2", "retention.ms": "1000"}
    start = len(log)
    c.fence_broker(2, "test")
    fence = log[start]
    assert fence["type"] == "BrokerRegistrationChangeRecord" and fence["fenced"] == 1
    assert fence["broker_epoch"] == image.brokers[2].epoch and image.brokers[2].fenced
    assert {r["type"] for r in log[start + 1:]} == {"PartitionChangeRecord"}
    start = len(log)
    c.heartbeat(1, image.brokers[1].epoch, image.offset, True, now_ms=1)  # controlled shutdown
    assert log[start]["type"] == "BrokerRegistrationChangeRecord"
    assert log[start]["in_controlled_shutdown"] == 1 and image.brokers[1].in_controlled_shutdown


def test_kafka_profile_refuses_segments_below_1_mib_as_kafka_4_does():
    # KIP-1030: Kafka 4.0 refuses log.segment.bytes below 1 MiB, 4.1 topic segment.bytes too.
    from kafkalab.config import broker_config
    from kafkalab.errors import ConfigError
    image = MetadataImage()
    c = Controller(image, lambda rs: [image.apply(r) for r in rs], broker_config("kafka"),
                   rng=random.Random(1))
    e = c.register_broker(1, "tcp://x", "h", 1, now_ms=0)
    c.heartbeat(1, e, image.offset, False, now_ms=0)
    code, msg = c.create_topic("t", 1, 1, {"segment.bytes": 1024})
    assert code == ErrorCode.invalid_config and "1048576" in msg and "KIP-1030" in msg
    assert c.create_topic("t", 1, 1, {"segment.bytes": 1_048_576})[0] == ErrorCode.none
    # The lab profile keeps tiny segments: they are what makes segments visible.
    lab, _, _, _ = make(brokers=(1,))
    assert lab.create_topic("t", 1, 1, {"segment.bytes": 1024})[0] == ErrorCode.none
    with pytest.raises(ConfigError, match="segment.bytes.min"):
        broker_config("kafka", {"segment.bytes.min": 10})  # the floor itself is checked
