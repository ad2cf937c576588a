"""The leader's AlterPartition round trip, as rules on the ReplicaManager and Partition: what is
proposed, when the next check falls due with nothing happening, and what a committed answer
changes. The process only sends and delivers."""

from __future__ import annotations

import datetime
import uuid

from kio.schema.alter_partition.v2 import response as ap_resp
from kio.schema.errors import ErrorCode

from tests.unit.test_replication import Sim, T, acked


def answer(isr, leader_epoch, partition_epoch, code=ErrorCode.none):
    """The controller's AlterPartitionResponse for partition 0."""
    return ap_resp.AlterPartitionResponse(
        throttle_time=datetime.timedelta(0), error_code=ErrorCode.none,
        topics=(ap_resp.TopicData(topic_id=uuid.uuid4(), partitions=(ap_resp.PartitionData(
            partition_index=0, error_code=code, leader_id=1, leader_epoch=leader_epoch, isr=tuple(isr),
            leader_recovery_state=0, partition_epoch=partition_epoch),)),))


def shrink_3(s):
    """2 keeps fetching, 3 falls silent for longer than replica.lag.time.max.ms."""
    s.produce(1, [b"a"])
    s.fetch_round(2, 1)
    s.fetch_round(3, 1)
    s.now += s.cfg["replica.lag.time.max.ms"] + 100
    s.fetch_round(2, 1)


def test_the_next_check_falls_due_when_an_isr_follower_has_lagged_too_long(tmp_path):
    s = Sim(tmp_path)
    s.produce(1, [b"a"])
    for follower in (2, 2, 3, 3):  # the second fetch of each shows it caught up
        s.fetch_round(follower, 1)
    rm, lag = s.rms[1], s.cfg["replica.lag.time.max.ms"]
    due = rm.next_check_ms()
    caught_up = min(st.last_caught_up_ms for st in s.part(1).followers.values())
    assert due == caught_up + lag + 1
    assert rm.alter_partition_requests(1, due - 1) == []  # not a millisecond early
    ((part, req),) = rm.alter_partition_requests(1, due)
    # 2 fetched first, so it is the first to have lagged too long.
    assert part is s.part(1) and list(req.topics[0].partitions[0].new_isr) == [1, 3]
    # With the proposal in flight, the next check is when it would count as lost.
    assert rm.next_check_ms() == due + s.cfg["request.timeout.ms"]
    assert s.rms[2].next_check_ms() is None  # a follower proposes nothing


def test_a_committed_answer_is_adopted_and_completes_waiting_produces(tmp_path):
    s = Sim(tmp_path)
    shrink_3(s)
    ((part, req),) = s.rms[1].alter_partition_requests(7, s.now, [(T, 0)])
    p = req.topics[0].partitions[0]
    assert (req.broker_epoch, list(p.new_isr), p.leader_epoch) == (7, [1, 2], part.leader_epoch)
    waiting = s.produce(1, [b"b"])  # acks=all: 3 is still in the ISR, so this waits
    s.fetch_round(2, 1)
    s.fetch_round(2, 1)  # the leader learns 2 has it from 2's next fetch offset
    assert waiting == []
    s.rms[1].alter_partition_answered(part, answer([1, 2], part.leader_epoch, part.partition_epoch + 1), s.now)
    assert part.isr == [1, 2] and part.pending_isr is None
    assert acked(waiting)  # the smaller ISR has it all: the HW moved and the produce completed


def test_an_answer_for_an_older_leader_epoch_is_ignored(tmp_path):
    s = Sim(tmp_path)
    shrink_3(s)
    ((part, _req),) = s.rms[1].alter_partition_requests(1, s.now)
    before = list(part.isr)
    assert not part.isr_change_committed(part.leader_epoch - 1, [1], part.partition_epoch + 5)
    assert part.isr == before and part.pending_isr is not None


def test_a_refused_or_lost_proposal_is_made_again_at_the_next_check(tmp_path):
    s = Sim(tmp_path)
    shrink_3(s)
    rm = s.rms[1]
    ((part, _req),) = rm.alter_partition_requests(1, s.now)
    assert rm.alter_partition_requests(1, s.now) == []  # one change in flight at a time
    rm.alter_partition_answered(part, answer([], 0, 0, ErrorCode.fenced_leader_epoch), s.now)
    assert part.pending_isr is None
    assert len(rm.alter_partition_requests(1, s.now)) == 1
    rm.alter_partition_answered(part, None, s.now)  # no answer (timed out)
    assert len(rm.alter_partition_requests(1, s.now)) == 1


def test_only_the_partitions_asked_about_are_looked_at(tmp_path):
    s = Sim(tmp_path)
    shrink_3(s)
    assert s.rms[1].alter_partition_requests(1, s.now, [("other", 0)]) == []
    assert len(s.rms[1].alter_partition_requests(1, s.now, [(T, 0)])) == 1


def test_the_replica_row_shows_each_followers_lag_at_the_leader_and_the_hw_gap_at_a_follower(tmp_path):
    from kafkalab.broker.metrics_rows import broker_row, replica_row

    s = Sim(tmp_path)
    s.produce(1, [b"a", b"b"])
    s.fetch_round(2, 1)
    s.fetch_round(2, 1)  # 2 has both records and the leader knows it
    leader = replica_row(1, s.part(1), s.now)
    assert (leader["is_leader"], leader["log_end_offset"], leader["isr"]) == (True, 2, [1, 2, 3])
    assert leader["follower_lag"] == {2: 0, 3: 2}  # 3 never fetched
    assert leader["follower_lag_ms"][3] > leader["follower_lag_ms"][2] == 0
    s.produce(1, [b"c"])
    s.fetch_round(3, 1)  # 3 gets a, b, c; the HW it heard of is still 0 (2 is behind)
    follower = replica_row(3, s.part(3), s.now)
    assert (follower["is_leader"], follower["lag_offsets"], follower["lag_ms"]) == (False, 0, None)
    row = broker_row(1, fenced=False, counters={"bytes_in": 5}, latencies_ms=[3.0, 1.0, 2.0], faults_version=4)
    assert (row["state"], row["bytes_in"], row["faults_version"], row["request_latency_ms_p50"]) == (
        "running", 5, 4, 2.0)


def test_a_parked_follower_fetch_completes_as_soon_as_an_acks_1_produce_appends(tmp_path):
    # No periodic purgatory sweep: the append itself must wake the waiting fetch.
    s = Sim(tmp_path)
    s.produce(1, [b"a"], acks=1)
    s.fetch_round(2, 1)  # 2 is at the log end now
    req = s.rms[2].follower_fetch_request({(T, 0)}, {**s.cfg, "replica.fetch.wait.max.ms": 60_000})
    got = []
    s.rms[1].fetch(req, s.now, got.append)
    assert got == []  # nothing new: parked for up to a minute
    s.produce(1, [b"b"], acks=1)
    assert len(got) == 1 and got[0].responses[0].partitions[0].records


def test_a_replica_signature_moves_exactly_when_its_row_says_something_new(tmp_path):
    """The broker builds a replica row only when the signature moved (or a keep-alive is due):
    equal signatures must mean equal rows but for the ms-since fields (a signature may move
    for a row that did not: one row too many, never one too few)."""
    from kafkalab.broker.metrics_rows import replica_row, replica_signature
    from kafkalab.metrics_publisher import content

    s = Sim(tmp_path)
    seen: list[tuple[tuple, dict]] = []

    def look(broker: int) -> None:
        part = s.part(broker)
        seen.append((replica_signature(part), content(replica_row(broker, part, s.now))))

    look(1)
    s.now += 700  # only time passes
    look(1)
    s.produce(1, [b"a"])  # the log end moves
    look(1)
    s.fetch_round(2, 1)  # a follower's progress (its lag at the leader)
    look(1)
    s.fetch_round(2, 1)  # the high watermark
    look(1)
    shrink_3(s)
    s.rms[1].alter_partition_requests(0, s.now)
    look(1)
    for (sig_a, row_a), (sig_b, row_b) in zip(seen, seen[1:], strict=False):
        assert sig_a != sig_b or row_a == row_b  # a new row always has a new signature
    assert seen[0][0] == seen[1][0]  # time alone moves nothing
