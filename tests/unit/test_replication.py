"""The replica state machine in the orderings that matter, without processes.

A Controller and three ReplicaManagers (real segment files in a temp dir) are wired by hand:
the test decides when metadata reaches each broker and when each follower fetches, so every
interleaving is deterministic.
"""

from __future__ import annotations

import copy
import datetime
import random

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v9 import request as pr

from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.config import broker_config
from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import MetadataImage
from kafkalab.records import decode_batch, encode_batch
from kafkalab.records.header import parse_header

T = "t"


class Sim:
    def __init__(self, tmp_path, min_isr=2, unclean=False):
        self.now = 1_000
        self.cfg = broker_config("lab", {"replica.fetch.wait.max.ms": 1})
        self.image = MetadataImage()
        self.c = Controller(self.image, self._commit, self.cfg, rng=random.Random(1))
        self.rms = {b: ReplicaManager(b, str(tmp_path / f"b{b}"), self.cfg) for b in (1, 2, 3)}
        for b in self.rms:
            e = self.c.register_broker(b, "tcp://x", "h", b, self.now)
            self.c.heartbeat(b, e, self.image.offset, False, self.now)
        self.c.create_topic(T, 1, 3, {"min.insync.replicas": str(min_isr),
                                      "unclean.leader.election.enable": str(unclean).lower()},
                            assignments={0: [1, 2, 3]})
        self.sync()

    def _commit(self, records):
        for r in records:
            self.image.apply(r, self.image.offset)

    def sync(self, *brokers):
        """Deliver the current metadata to these brokers (all by default)."""
        for b in brokers or self.rms:
            self.rms[b].apply_metadata(copy.deepcopy(self.image), self.now)

    def part(self, b):
        return self.rms[b].partitions[(T, 0)]

    def produce(self, b, values, acks=-1):
        out = []
        batch = encode_batch([(None, v, [], self.now) for v in values])
        req = pr.ProduceRequest(acks=acks, timeout=datetime.timedelta(seconds=30), topic_data=(
            pr.TopicProduceData(name=T, partition_data=(pr.PartitionProduceData(index=0, records=batch),)),))
        self.rms[b].produce(req, self.now, out.append)
        return out

    def fetch_round(self, follower, leader):
        """One follower fetch from `leader`, answered at once."""
        self.now += 10
        req = self.rms[follower].follower_fetch_request({(T, 0)}, self.cfg)
        if req is None:
            return None
        got = []
        self.rms[leader].fetch(req, self.now, got.append)
        self.rms[leader].try_complete(self.now + 10_000)
        assert got, "the leader parked the fetch and never answered"
        self.rms[follower].apply_fetch_response(leader, got[0], self.now)
        return got[0]

    def records(self, b):
        part = self.part(b)
        data = bytes(part.log.read_bytes(part.log_start_offset, 1 << 20)) if part.log_end_offset else b""
        out, pos = [], 0
        while pos < len(data):
            batch = decode_batch(data, pos)
            out += [(r.offset, r.value) for r in batch.records]
            pos += parse_header(data, pos).size
        return out


def acked(responses):
    assert len(responses) == 1
    p = responses[0].responses[0].partition_responses[0]
    return p.error_code, int(p.base_offset)


def test_acks_all_waits_for_the_isr_and_hw_is_the_smallest_isr_leo(tmp_path):
    s = Sim(tmp_path)
    out = s.produce(1, [b"a", b"b"])
    assert out == []  # parked: followers have not fetched yet
    assert s.part(1).high_watermark == 0
    s.fetch_round(2, 1)  # 2 gets the data
    s.fetch_round(3, 1)
    assert out == [] and s.part(1).high_watermark == 0  # the leader learns LEOs on the next fetch
    s.fetch_round(2, 1)
    assert s.part(1).high_watermark == 0  # 3 has not reported yet
    s.fetch_round(3, 1)
    assert s.part(1).high_watermark == 2 and acked(out) == (ErrorCode.none, 0)
    s.fetch_round(2, 1)
    assert s.part(2).high_watermark == 2  # the HW reaches followers in fetch responses


def test_follower_truncates_to_its_own_end_of_the_epoch_the_leader_names(tmp_path):
    # Found by the simulator (kafkalab sim --seeds 8 --brokers 4): the follower's last epoch (5,
    # one batch at offset 3) is unknown to the leader, which answers DivergingEpoch(epoch 4, end
    # 10). Epoch 4 ends at 3 here, so the follower must cut there (Kafka's fetcher takes the
    # smaller of the two ends), not at min(10, its LEO), which kept the batch the leader never had.
    from kio.schema.fetch.v12 import response as fr

    s = Sim(tmp_path)
    f = s.part(2)
    f.log.append(encode_batch([(None, v, [], s.now) for v in (b"a", b"b", b"c")]), leader_epoch=4, now_ms=s.now)
    f.log.append(encode_batch([(None, b"d", [], s.now)]), leader_epoch=5, now_ms=s.now)
    resp = fr.FetchResponse(throttle_time=datetime.timedelta(0), error_code=ErrorCode.none, responses=(
        fr.FetchableTopicResponse(topic=T, partitions=(fr.PartitionData(
            partition_index=0, error_code=ErrorCode.none, high_watermark=0, log_start_offset=0,
            diverging_epoch=fr.EpochEndOffset(epoch=4, end_offset=10), aborted_transactions=None,
            records=b""),)),))
    s.rms[2].apply_fetch_response(1, resp, s.now)
    assert f.log_end_offset == 3 and f.latest_epoch == 4


def test_a_new_leader_tells_a_follower_where_an_epoch_it_never_had_ends(tmp_path):
    # Found by the simulator (kafkalab sim --seeds 8 --brokers 4): a leader elected in epoch 6
    # that has not appended yet knew only epoch 4; a follower whose last batch is from epoch 5
    # got DivergingEpoch(-1, -1), read as "no divergence", and took the leader's HW over its
    # epoch-5 batch. Kafka's makeLeader starts the new epoch in the epoch cache at once.
    from kafkalab.metadata.image import PartitionRegistration

    s = Sim(tmp_path)
    leader, follower = s.part(2), s.part(3)
    batch = encode_batch([(None, v, [], s.now) for v in (b"a", b"b", b"c")])
    leader.log.append(batch, leader_epoch=4, now_ms=s.now)
    follower.log.append(batch, leader_epoch=4, now_ms=s.now)
    follower.log.append(encode_batch([(None, b"zombie", [], s.now)]), leader_epoch=5, now_ms=s.now)
    reg = PartitionRegistration(replicas=[1, 2, 3], isr=[2, 3], leader=2, leader_epoch=6, partition_epoch=9)
    leader.apply_registration(reg, s.now)
    follower.apply_registration(reg, s.now)
    s.fetch_round(3, 2)
    assert follower.log_end_offset == 3 and follower.high_watermark <= 3


def test_an_epoch_led_without_appending_is_forgotten_when_truncating_as_a_follower(tmp_path):
    # Found by the simulator (kafkalab sim --seeds 184): broker 1 led epoch 1 without appending,
    # so its epoch cache ended with 1@35; as a follower it kept naming epoch 1 in its fetches,
    # the leader kept answering DivergingEpoch(0, ...) and its "truncate to 35" changed nothing.
    s = Sim(tmp_path)
    p = s.part(2)
    p.log.append(encode_batch([(None, b"a", [], s.now)]), leader_epoch=0, now_ms=s.now)
    p.log.epoch_cache.assign(1, 1)  # became leader of epoch 1 at its log end, then lost it
    assert p.latest_epoch == 1
    assert p.truncate_to(1) == 0
    assert p.latest_epoch == 0


def test_not_enough_replicas_before_append(tmp_path):
    s = Sim(tmp_path, min_isr=2)
    for b in (2, 3):
        s.c.fence_broker(b, "test")
    s.sync()
    assert s.part(1).isr == [1]
    err, _ = acked(s.produce(1, [b"x"]))
    assert err == ErrorCode.not_enough_replicas
    assert s.part(1).log_end_offset == 0  # rejected before the append
    err, _ = acked(s.produce(1, [b"x"], acks=1))
    assert err == ErrorCode.none  # acks=1 does not care about the ISR


def test_the_high_watermark_stands_still_while_the_isr_is_under_min_isr(tmp_path):
    # Kafka 3.7+ (KAFKA-15583): acks=1 writes are taken, but nobody can read them until the
    # ISR is back to min(min.insync.replicas, replication factor).
    s = Sim(tmp_path, min_isr=2)
    for b in (2, 3):
        s.c.fence_broker(b, "test")
    s.sync()
    assert s.part(1).isr == [1] and s.part(1).is_under_min_isr
    for v in (b"a", b"b", b"c"):
        assert acked(s.produce(1, [v], acks=1))[0] == ErrorCode.none
    assert s.part(1).log_end_offset == 3 and s.part(1).high_watermark == 0
    # Broker 2 comes back, catches up and rejoins: only then does the HW move.
    e = s.c.register_broker(2, "tcp://x", "h", 2, s.now)
    s.c.heartbeat(2, e, s.image.offset, False, s.now)
    s.sync()
    s.fetch_round(2, 1)
    s.fetch_round(2, 1)
    assert s.part(1).high_watermark == 0  # caught up, but not yet in the ISR
    proposal = s.part(1).isr_change_to_propose(s.now)
    assert proposal == [1, 2]
    code, _ = s.c.alter_partition(1, s.image.brokers[1].epoch, T, 0, s.part(1).leader_epoch,
                                  s.part(1).partition_epoch, proposal)
    assert code == ErrorCode.none
    s.sync()
    assert s.part(1).high_watermark == 3


def test_min_isr_above_the_replication_factor_counts_as_the_replication_factor(tmp_path):
    s = Sim(tmp_path, min_isr=5)  # 3 replicas: Kafka uses min(5, 3)
    out = s.produce(1, [b"a"])
    for _ in range(2):
        s.fetch_round(2, 1)
        s.fetch_round(3, 1)
    assert acked(out) == (ErrorCode.none, 0) and s.part(1).high_watermark == 1


def test_consumers_never_read_past_the_high_watermark(tmp_path):
    from kio.schema.fetch.v12 import request as fr
    s = Sim(tmp_path)
    s.produce(1, [b"a", b"b", b"c"])
    req = fr.FetchRequest(replica_id=-1, max_wait=datetime.timedelta(0), min_bytes=1, topics=(
        fr.FetchTopic(topic=T, partitions=(fr.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),)),),
        forgotten_topics_data=())
    got = []
    s.rms[1].fetch(req, s.now, got.append)
    p = got[0].responses[0].partitions[0]
    assert int(p.high_watermark) == 0 and not p.records


def test_leader_dies_between_append_and_hw_advance(tmp_path):
    """The old leader appended records no follower fetched, and never acknowledged them. The
    new leader writes other records at those offsets; the old leader, returning, truncates its
    unacknowledged tail to the divergence point: no replica ends up with a divergent log, and
    nothing acknowledged is lost."""
    s = Sim(tmp_path)
    first = s.produce(1, [b"a1", b"a2"])
    for _ in range(2):
        s.fetch_round(2, 1)
        s.fetch_round(3, 1)
    assert acked(first) == (ErrorCode.none, 0)
    lost = s.produce(1, [b"x1", b"x2", b"x3"])  # appended on 1 only
    assert s.part(1).log_end_offset == 5 and s.part(1).high_watermark == 2 and lost == []
    s.c.fence_broker(1, "killed")
    s.sync(2, 3)
    new_leader = s.image.topics[T].partitions[0].leader
    assert new_leader == 2 and s.part(2).is_leader
    later = s.produce(2, [b"b1"])
    s.fetch_round(3, 2)
    s.fetch_round(3, 2)
    assert acked(later) == (ErrorCode.none, 2)
    # Broker 1 comes back as a follower of the new epoch.
    reg = s.image.brokers[1]
    s.c.heartbeat(1, reg.epoch, s.image.offset, False, s.now)
    s.sync()
    assert not s.part(1).is_leader
    s.fetch_round(1, 2)  # divergence found: truncate
    assert s.part(1).log_end_offset == 2
    s.fetch_round(1, 2)  # then catch up
    assert s.records(1) == s.records(2) == s.records(3) == [(0, b"a1"), (1, b"a2"), (2, b"b1")]


def test_two_brokers_that_both_think_they_lead(tmp_path):
    """Broker 1 was paused: it still believes it leads epoch 0 while broker 2 leads epoch 1. It
    can append, but it cannot acknowledge acks=all writes — nobody in the new epoch fetches from
    it, and the controller refuses its ISR shrink with FENCED_LEADER_EPOCH."""
    s = Sim(tmp_path)
    s.c.fence_broker(1, "paused")
    s.sync(2, 3)  # broker 1 hears nothing
    assert s.part(1).is_leader and s.part(2).is_leader
    assert s.part(2).leader_epoch == s.part(1).leader_epoch + 1
    zombie = s.produce(1, [b"z"])
    assert zombie == []  # parked, waiting for followers that will never come
    # A follower of the new epoch that reaches the old leader is told it is ahead.
    req = s.rms[3].follower_fetch_request({(T, 0)}, s.cfg)
    resp = []
    s.rms[1].fetch(req, s.now, resp.append)
    assert resp[0].responses[0].partitions[0].error_code == ErrorCode.unknown_leader_epoch
    # The old leader's proposal to shrink the ISR to itself is rejected.
    p1 = s.part(1)
    code, _ = s.c.alter_partition(1, s.image.brokers[1].epoch, T, 0, p1.leader_epoch, p1.partition_epoch, [1])
    assert code in (ErrorCode.not_leader_or_follower, ErrorCode.fenced_leader_epoch)
    s.now += 31_000
    s.rms[1].try_complete(s.now)
    assert acked(zombie)[0] == ErrorCode.request_timed_out
    # Once the metadata reaches it, it steps down and drops the zombie write.
    reg = s.image.brokers[1]
    s.c.heartbeat(1, reg.epoch, s.image.offset, False, s.now)
    s.sync()
    s.produce(2, [b"real"])
    s.fetch_round(1, 2)
    s.fetch_round(1, 2)
    assert s.records(1) == s.records(2) == [(0, b"real")]


def test_isr_shrinks_when_a_follower_stops_fetching_and_expands_when_it_returns(tmp_path):
    s = Sim(tmp_path)
    s.produce(1, [b"a"])
    s.fetch_round(2, 1)
    s.fetch_round(3, 1)
    lag = s.cfg["replica.lag.time.max.ms"]
    s.now += lag + 100
    s.fetch_round(2, 1)  # only 2 keeps fetching
    proposal = s.part(1).isr_change_to_propose(s.now)
    assert proposal == [1, 2]
    code, _ = s.c.alter_partition(1, s.image.brokers[1].epoch, T, 0, s.part(1).leader_epoch,
                                  s.part(1).partition_epoch, proposal)
    assert code == ErrorCode.none
    s.sync()
    assert s.part(1).isr == [1, 2]
    s.fetch_round(3, 1)
    s.fetch_round(3, 1)
    proposal = s.part(1).isr_change_to_propose(s.now)
    assert proposal == [1, 2, 3]


@pytest.mark.parametrize("seed", range(5))
def test_random_interleavings_never_diverge(tmp_path, seed):
    """Random produce/fetch/fail-over orderings: committed prefixes agree on every replica."""
    rng = random.Random(seed)
    s = Sim(tmp_path, min_isr=2)
    acknowledged: dict[bytes, int] = {}
    pending: list[tuple[list, list[bytes]]] = []
    for step in range(60):
        leader = s.image.topics[T].partitions[0].leader
        live = [b for b in s.rms if not s.image.brokers[b].fenced]
        action = rng.random()
        if action < 0.4 and leader in live:
            vals = [f"{seed}-{step}-{i}".encode() for i in range(rng.randint(1, 3))]
            pending.append((s.produce(leader, vals), vals))
        elif action < 0.85:
            f = rng.choice(live)
            if f != leader and leader in live:
                s.fetch_round(f, leader)
        elif len(live) == 3:
            victim = rng.choice(live)
            s.c.fence_broker(victim, "chaos")
            s.sync(*[b for b in s.rms if b != victim])
        else:
            back = [b for b in s.rms if s.image.brokers[b].fenced]
            for b in back:
                reg = s.image.brokers[b]
                s.c.heartbeat(b, reg.epoch, s.image.offset, False, s.now)
            s.sync()
        for out, vals in pending:
            if out and out[0].responses[0].partition_responses[0].error_code == ErrorCode.none:
                base = int(out[0].responses[0].partition_responses[0].base_offset)
                for i, v in enumerate(vals):
                    acknowledged[v] = base + i
        pending = [(o, v) for o, v in pending if not o]
    # Heal: everyone back, catch up.
    for b in s.rms:
        reg = s.image.brokers[b]
        s.c.heartbeat(b, reg.epoch, s.image.offset, False, s.now)
    s.sync()
    leader = s.image.topics[T].partitions[0].leader
    for _ in range(4):
        for f in s.rms:
            if f != leader:
                s.fetch_round(f, leader)
    logs = {b: s.records(b) for b in s.rms}
    assert logs[1] == logs[2] == logs[3]
    final = dict((v, o) for o, v in logs[leader])
    for v, off in acknowledged.items():
        assert final.get(v) == off, f"acknowledged {v!r} at {off} lost or moved"


def _idempotent_produce(s, b, values, pid, seq, acks=-1):
    out = []
    batch = encode_batch([(None, v, [], s.now) for v in values], producer_id=pid, producer_epoch=0,
                         base_sequence=seq)
    req = pr.ProduceRequest(acks=acks, timeout=datetime.timedelta(seconds=30), topic_data=(
        pr.TopicProduceData(name=T, partition_data=(pr.PartitionProduceData(index=0, records=batch),)),))
    s.rms[b].produce(req, s.now, out.append)
    return out


def test_a_retried_batch_is_answered_with_its_original_offsets_even_after_failover(tmp_path):
    """The acknowledgement was lost, the producer retries — to a new leader. The new leader
    rebuilt the producer's state from the replicated batches, so it recognises the retry."""
    s = Sim(tmp_path, min_isr=1)
    first = _idempotent_produce(s, 1, [b"a", b"b"], pid=42, seq=0, acks=1)
    assert acked(first) == (ErrorCode.none, 0)
    again = _idempotent_produce(s, 1, [b"a", b"b"], pid=42, seq=0, acks=1)
    assert acked(again) == (ErrorCode.none, 0) and s.part(1).log_end_offset == 2
    s.fetch_round(2, 1)
    s.fetch_round(3, 1)
    s.c.fence_broker(1, "killed")
    s.sync(2, 3)
    retry = _idempotent_produce(s, 2, [b"a", b"b"], pid=42, seq=0, acks=1)
    assert acked(retry) == (ErrorCode.none, 0)
    assert s.part(2).log_end_offset == 2  # no duplicate appended
    gap = _idempotent_produce(s, 2, [b"d"], pid=42, seq=5, acks=1)
    assert acked(gap)[0] == ErrorCode.out_of_order_sequence_number


def test_a_lost_alter_partition_is_proposed_again(tmp_path):
    s = Sim(tmp_path)
    s.produce(1, [b"a"])
    s.fetch_round(2, 1)
    s.now += s.cfg["replica.lag.time.max.ms"] + 100
    s.fetch_round(2, 1)
    assert s.part(1).isr_change_to_propose(s.now) == [1, 2]  # sent, and lost on the way
    assert s.part(1).isr_change_to_propose(s.now + 10) is None  # still waiting for an answer
    s.now += s.cfg["request.timeout.ms"]
    s.fetch_round(2, 1)  # 2 keeps up; 3 is still silent
    assert s.part(1).isr_change_to_propose(s.now) == [1, 2]


def _latest_offset(s, b):
    from kio.schema.list_offsets.v7 import request as lo

    req = lo.ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=(lo.ListOffsetsTopic(
        name=T, partitions=(lo.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1,
                                                    timestamp=-1),)),))
    p = s.rms[b].list_offsets(req).topics[0].partitions[0]
    return p.error_code, int(p.offset)


def test_a_new_leader_answers_retry_until_its_hw_covers_what_it_inherited(tmp_path):
    # Broker 2 has all 3 records, but the leader died before telling it that HW reached 3.
    # Elected, broker 2's own HW is behind the offsets it leads from; asked for the latest offset it says OFFSET_NOT_AVAILABLE (retriable)
    # instead of a too-low answer, until its followers' fetches move the HW up.
    s = Sim(tmp_path)
    first = s.produce(1, [b"a", b"b", b"c"])
    for _ in range(2):  # copy, then report LEO 3: broker 2's second answer still says HW 0
        s.fetch_round(2, 1)
        s.fetch_round(3, 1)
    assert acked(first) == (ErrorCode.none, 0)           # HW 3 on the leader ...
    assert s.part(2).high_watermark < 3                   # ... not yet on the followers
    s.c.fence_broker(1, "killed")
    s.sync(2, 3)
    assert s.part(2).is_leader and s.part(2).leader_epoch_start_offset == 3
    assert _latest_offset(s, 2) == (ErrorCode.offset_not_available, -1)
    s.fetch_round(3, 2)
    s.fetch_round(3, 2)
    assert s.part(2).high_watermark == 3
    assert _latest_offset(s, 2) == (ErrorCode.none, 3)
