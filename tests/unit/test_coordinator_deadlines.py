"""The coordinators' next_deadline(): the broker sleeps until it instead of ticking every 100 ms,
so it must name exactly the time tick() next has something to do — no earlier (a wasted wake-up,
or a busy loop when tick() leaves it in the past) and never later (a timeout that fires late)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode
from kio.schema.share_group_heartbeat.v1.request import ShareGroupHeartbeatRequest

from kafkalab.broker.consumer_group import ConsumerGroupCoordinator
from kafkalab.broker.group_coordinator import PREPARING, GroupCoordinator
from kafkalab.broker.share_group import ShareGroupCoordinator, Topic
from kafkalab.broker.txn_coordinator import TxnState
from kafkalab.broker.txn_markers import MarkerJob
from tests.unit.test_consumer_group import Client, T, settle
from tests.unit.test_consumer_group import hb as cg_hb
from tests.unit.test_group_coordinator import SESSION, Log, first_join, hb, join, sync
from tests.unit.test_txn_coordinator import TID, Harness

REBALANCE = 3000  # the rebalance timeout test_group_coordinator's join() asks for


# -- the classic group coordinator ----------------------------------------------------------------
def stable_group(c: GroupCoordinator) -> str:
    (_r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    return a


def test_classic_idle_coordinator_has_nothing_due():
    c = GroupCoordinator(num_partitions=6, append=Log().append, owns=lambda p: "yes")
    assert c.next_deadline(0) is None


def test_classic_session_is_due_exactly_when_it_expires_and_a_heartbeat_moves_it():
    c = GroupCoordinator(num_partitions=6, append=Log().append, owns=lambda p: "yes")
    a = stable_group(c)
    assert c.next_deadline(1) == 1 + SESSION  # the SyncGroup at 1 restarted the session
    assert hb(c, 400, a, 1) == ErrorCode.none
    due = c.next_deadline(400)
    assert due == 400 + SESSION
    c.tick(due - 1)
    assert a in c.groups["g"].members
    c.tick(due)
    assert a not in c.groups["g"].members
    assert c.next_deadline(due) is None  # nothing left in the past: no busy loop


def test_classic_pending_member_id_expires_when_due():
    c = GroupCoordinator(num_partitions=6, append=Log().append, owns=lambda p: "yes")
    r = join(c, 0)  # a member id handed out, never used
    assert r[0]["error_code"] == ErrorCode.member_id_required
    assert c.next_deadline(0) == SESSION
    c.tick(SESSION - 1)
    assert c.groups["g"].pending
    c.tick(SESSION)
    assert not c.groups["g"].pending and c.next_deadline(SESSION) is None


def test_classic_rebalance_timeout_is_due_while_a_member_only_heartbeats():
    c = GroupCoordinator(num_partitions=6, append=Log().append, owns=lambda p: "yes")
    a = stable_group(c)
    hb(c, 900, a, 1)
    rb, b = first_join(c, 1000)  # a second member: a rebalance that `a` never rejoins
    assert c.groups["g"].state == PREPARING and not rb  # b waits in its JoinGroup
    assert c.next_deadline(1000) == 1900  # a's session, as it is not waiting in a JoinGroup
    for t in (1500, 2400, 3300):
        assert hb(c, t, a, 1) == ErrorCode.rebalance_in_progress
    assert c.next_deadline(3300) == 1000 + REBALANCE  # the round completes without a at its timeout
    c.tick(1000 + REBALANCE - 1)
    assert c.groups["g"].state == PREPARING
    c.tick(1000 + REBALANCE)
    assert a not in c.groups["g"].members and rb[0]["leader"] == b


def test_classic_initial_rebalance_delay_is_due_when_it_ends():
    c = GroupCoordinator(num_partitions=6, append=Log().append, owns=lambda p: "yes",
                         initial_rebalance_delay_ms=300)
    r = join(c, 0)
    join(c, 0, member_id=r[0]["member_id"])
    assert c.groups["g"].state == PREPARING
    assert c.next_deadline(10) == 300  # everyone has joined; the delay holds the round
    c.tick(299)
    assert c.groups["g"].state == PREPARING
    c.tick(300)
    assert c.groups["g"].state != PREPARING


# -- KIP-848 consumer groups ----------------------------------------------------------------------
def test_consumer_group_session_is_due_just_after_it_and_moves_with_heartbeats():
    c = ConsumerGroupCoordinator(topics=lambda: {}, owns=lambda g: "yes", new_member_id=lambda: "a",
                                 session_timeout_ms=1000, heartbeat_interval_ms=100)
    assert c.next_deadline(0) is None
    r, _ = cg_hb(c, "", 0, 0, topics=("orders",))
    epoch = r["member_epoch"]
    assert c.next_deadline(0) == 1001  # tick() fences strictly after the session timeout
    cg_hb(c, "a", epoch, 500, topics=None)
    assert c.next_deadline(500) == 1501
    assert not c.tick(1500) and "a" in c.groups["g"].members
    c.tick(1501)
    assert "a" not in c.groups["g"].members and c.next_deadline(1501) is None


def test_consumer_group_revocation_deadline_is_due():
    from tests.unit.test_consumer_group import coordinator
    c = coordinator()
    a = Client(c, "a")
    settle([a], 10)
    b = Client(c, "b", now=20)
    cg_hb(c, "a", a.epoch, 30, owned=a.owned)  # told to revoke; never does
    for t in (100, 1000, 2000, 3000, 4000, 5000):
        cg_hb(c, "a", a.epoch, t, owned=a.owned)
        b.beat(t)
    due = c.next_deadline(5000)
    assert due == c.groups["g"].members["a"].revocation_deadline_ms + 1
    c.tick(due - 1)
    assert "a" in c.groups["g"].members
    c.tick(due)
    assert "a" not in c.groups["g"].members


def test_consumer_group_of_a_partition_this_broker_does_not_own_is_never_due():
    owned = {"g": "yes"}
    c = ConsumerGroupCoordinator(topics=lambda: {}, owns=lambda g: owned[g], new_member_id=lambda: "a",
                                 session_timeout_ms=1000, heartbeat_interval_ms=100)
    cg_hb(c, "", 0, 0, topics=("orders",))
    owned["g"] = "loading"
    assert c.next_deadline(0) is None  # tick() skips it too: it must not look due


# -- KIP-932 share groups -------------------------------------------------------------------------
def test_share_group_session_is_due_just_after_it():
    c = ShareGroupCoordinator(topics=lambda: {"jobs": Topic(T, "jobs", 1)}, owns=lambda g: "yes",
                              other_group=lambda g: None, session_timeout_ms=1000, heartbeat_interval_ms=100)
    assert c.next_deadline(0) is None
    c.heartbeat(ShareGroupHeartbeatRequest(group_id="q", member_id="a", member_epoch=0, rack_id=None,
                                           subscribed_topic_names=("jobs",)), 0)
    epoch = c.groups["q"].members["a"].member_epoch
    c.heartbeat(ShareGroupHeartbeatRequest(group_id="q", member_id="a", member_epoch=epoch, rack_id=None,
                                           subscribed_topic_names=None), 700)
    assert c.next_deadline(700) == 1701
    assert c.tick(1700) == []
    assert c.tick(1701) == [("q", "a")] and c.next_deadline(1701) is None


# -- transactions ---------------------------------------------------------------------------------
def test_transaction_timeout_is_due_just_after_it_and_the_abort_clears_it():
    h = Harness()
    _, pid, epoch = h.init(timeout=1000)
    due = h.coord.next_deadline(0)
    assert due == 100_001  # an idle (Empty) id expires after transactional.id.expiration.ms
    h.add(pid, epoch, [("a", 0)], now=100)
    assert h.coord.next_deadline(100) == 1101
    h.coord.tick(1100)
    assert h.state() == TxnState.ONGOING
    h.coord.tick(1101)
    assert h.state() == TxnState.PREPARE_ABORT
    assert h.coord.next_deadline(1101) is None  # waiting for its markers, not for time
    h.deliver_markers()
    assert h.state() == TxnState.COMPLETE_ABORT
    m = h.coord.txns[TID]
    assert h.coord.next_deadline(1200) == m.last_update_ms + 100_001


def test_a_transaction_whose_write_is_in_flight_or_not_owned_is_not_due():
    h = Harness(auto=False)
    h.coord.init_producer_id(TID, 1000, -1, -1, 0, lambda *a: None)
    assert h.coord.next_deadline(0) is None  # its log write is in flight
    h.finish_appends()
    assert h.coord.next_deadline(0) == 100_001
    for p in h.owned:
        h.owned[p] = "no"
    assert h.coord.next_deadline(0) is None


def test_a_failed_complete_write_is_retried_after_the_retry_interval():
    h = Harness(auto=False)
    h.coord.init_producer_id(TID, 10_000, -1, -1, 0, lambda *a: None)
    h.finish_appends()
    m = h.coord.txns[TID]
    h.coord.add_partitions(TID, m.producer_id, m.producer_epoch, [("a", 0)], 10, lambda code: None)
    h.finish_appends()
    h.coord.end_txn(TID, m.producer_id, m.producer_epoch, True, 20, lambda code: None)
    h.finish_appends()  # PrepareCommit logged
    h.deliver_markers()  # markers written at 20: the CompleteCommit write starts
    h.finish_appends(ErrorCode.not_enough_replicas)
    assert m.complete_failed and m.state == TxnState.PREPARE_COMMIT
    assert h.coord.next_deadline(30) == 20 + 500
    h.coord.tick(520)
    h.finish_appends()
    assert m.state == TxnState.COMPLETE_COMMIT


def test_marker_job_is_due_after_its_backoff_and_waits_for_a_leader():
    leaders = {("a", 0): 1, ("b", 0): -1}
    job = MarkerJob(0, 0, 7, 0, True, {("a", 0), ("b", 0)}, on_done=None)
    assert job.next_send(leaders.get) == 0.0  # never sent: at once
    assert job.to_send(0.0, leaders.get) == {1: [("a", 0)]}
    assert job.next_send(leaders.get) is None  # one in flight, the other has no leader
    job.answered([("a", 0)], {}, 5.0)  # no answer: retry after the backoff
    assert job.next_send(leaders.get) == job.retry_at > 5.0
    assert job.to_send(job.retry_at - 0.01, leaders.get) == {}
    leaders[("b", 0)] = 2
    assert job.to_send(job.retry_at, leaders.get) == {1: [("a", 0)], 2: [("b", 0)]}
    job.answered([("a", 0), ("b", 0)], {("a", 0): ErrorCode.none, ("b", 0): ErrorCode.none}, 6.0)
    assert job.done and job.next_send(leaders.get) is None
