"""The active controller's rules (kafkalab.controller.active): claim, hold, release, fail.

Driven by hand through the listener seam (handle_commit, handle_leader_change), with a fake
Raft append or a real one-voter RaftNode over an in-memory log: no processes, no clock."""

from __future__ import annotations

import random

from kafkalab.config import broker_config
from kafkalab.controller.active import (
    Activated,
    ActiveController,
    AnswerFetch,
    Deactivated,
    Event,
    Fail,
    LeaderAndEpoch,
    Reply,
)
from kafkalab.controller.raft import Committed, HighWatermarkMoved, Output, RaftNode, Role
from kafkalab.controller.raft_log import CommittedBatch, InMemoryRaftLog
from kafkalab.metadata.image import decode_record, encode_record

CONFIG = broker_config("lab", {})
ME = 1


class FakeAppend:
    """Raft's append as the leader sees it: the next offsets, nothing committed yet."""

    def __init__(self, log_end: int) -> None:
        self.log_end = log_end
        self.batches: list[tuple[int, list[bytes]]] = []

    def __call__(self, values: list[bytes]) -> int:
        self.batches.append((self.log_end, values))
        self.log_end += len(values)
        return self.log_end - 1

    def committed(self, upto: int) -> list[CommittedBatch]:
        return [CommittedBatch(base, base + len(v) - 1, 2, tuple(v)) for base, v in self.batches
                if base + len(v) <= upto]


def register(broker_id: int, epoch: int) -> CommittedBatch:
    value = encode_record({"type": "RegisterBrokerRecord", "broker_id": broker_id, "broker_epoch": epoch,
                           "endpoint": "tcp://x", "host": "h", "port": 1})[1]
    return CommittedBatch(epoch, epoch, 1, (value,))


def active_in_epoch_2(append: FakeAppend) -> ActiveController:
    """Node 1 leads epoch 2 from offset 3 (its LEADER_CHANGE); brokers 1 and 2 registered before."""
    ac = ActiveController(ME, CONFIG, append, rng=random.Random(1))
    assert ac.handle_commit([register(1, 1), register(2, 2)], 3) == []
    assert ac.handle_leader_change(LeaderAndEpoch(ME, 2, epoch_start_offset=3)) == []
    assert ac.handle_commit([], 4) == [Activated(2)]
    return ac


def test_a_leader_claims_only_once_its_epochs_leader_change_is_committed() -> None:
    ac = ActiveController(ME, CONFIG, FakeAppend(4), rng=random.Random(1))
    ac.handle_commit([register(1, 1)], 2)
    # Leader of epoch 2 from offset 3: offset 2 (an earlier leader's) may still be uncommitted.
    assert ac.handle_leader_change(LeaderAndEpoch(ME, 2, epoch_start_offset=3)) == []
    assert not ac.active and ac.controller is None
    assert ac.handle_commit([register(2, 2)], 3) == []  # the earlier record, not yet our own
    assert not ac.active
    assert ac.handle_commit([], 4) == [Activated(2)]
    assert ac.controller is not None and ac.image is not ac.committed
    assert sorted(ac.image.brokers) == [1, 2]  # everything committed before the claim
    assert ac.image.offset == 4  # the next record lands after the LEADER_CHANGE


def test_a_follower_or_a_leader_of_another_node_never_claims() -> None:
    ac = ActiveController(ME, CONFIG, FakeAppend(0), rng=random.Random(1))
    assert ac.handle_leader_change(LeaderAndEpoch(2, 5)) == []
    assert ac.handle_commit([register(1, 1)], 100) == []
    assert ac.handle_leader_change(LeaderAndEpoch(-1, 6)) == []
    assert not ac.active and sorted(ac.committed.brokers) == [1]


def test_an_answer_waits_until_what_it_depends_on_is_committed() -> None:
    append = FakeAppend(4)
    ac = active_in_epoch_2(append)
    epoch = ac.controller.register_broker(3, "tcp://x", "h", 1, now_ms=0)
    assert epoch == 4 and ac.appended == 4 and 3 in ac.image.brokers  # reads its own write
    assert 3 not in ac.committed.brokers
    assert ac.respond("req-3", "epoch 4") == []  # held: offset 4 is not committed
    assert ac.handle_commit([], 4) == []
    assert ac.handle_commit(append.committed(5), 5) == [Reply("req-3", "epoch 4")]
    assert 3 in ac.committed.brokers


def test_an_answer_that_changed_nothing_leaves_at_once() -> None:
    ac = active_in_epoch_2(FakeAppend(4))
    assert ac.respond("metadata?", "answer") == [Reply("metadata?", "answer")]


def test_losing_leadership_fails_held_answers_and_drops_the_working_image() -> None:
    append = FakeAppend(4)
    ac = active_in_epoch_2(append)
    ac.controller.register_broker(3, "tcp://x", "h", 1, now_ms=0)
    ac.respond("req-3", "registered")
    effects = ac.handle_leader_change(LeaderAndEpoch(2, 3))
    assert effects == [Fail("req-3"), Deactivated(2)]
    assert not ac.active and ac.image is ac.committed
    assert 3 not in ac.image.brokers  # a new leader may truncate that record
    assert ac.handle_commit(append.committed(5), 5) == []  # nothing is answered twice


def test_re_elected_in_a_new_epoch_it_serves_again_only_after_that_epochs_leader_change() -> None:
    ac = active_in_epoch_2(FakeAppend(4))
    assert ac.handle_leader_change(LeaderAndEpoch(ME, 3, epoch_start_offset=4)) == [Deactivated(2)]
    assert ac.handle_commit([], 5) == [Activated(3)]


def test_a_metadata_fetch_waits_for_a_commit_or_its_max_wait() -> None:
    append = FakeAppend(4)
    ac = active_in_epoch_2(append)
    assert ac.fetch("behind", 2, 500, now_ms=0) == [AnswerFetch("behind", 2, 4)]  # news already
    assert ac.fetch("caught-up", 4, 500, now_ms=0) == []  # parked: nothing past offset 4 yet
    assert ac.fetch("idle", 4, 100, now_ms=0) == []
    assert ac.next_tick_ms() == 0  # a broker in the log not heard from yet: look at once
    assert ac.tick(now_ms=0) == []
    assert ac.next_tick_ms() == 100  # then the loop sleeps until the shortest wait ends
    assert ac.tick(now_ms=99) == []
    assert ac.tick(now_ms=100) == [AnswerFetch("idle", 4, 4)]  # its wait ended: empty
    assert ac.next_tick_ms() == 500
    ac.controller.register_broker(3, "tcp://x", "h", 1, now_ms=100)
    ac.respond("req-3", "registered")
    assert ac.handle_commit([], 4) == []  # appended but not committed: brokers see nothing yet
    assert ac.handle_commit(append.committed(5), 5) == [Reply("req-3", "registered"),
                                                         AnswerFetch("caught-up", 4, 5)]


def test_parked_fetches_and_a_follower_fetch_learn_that_this_node_no_longer_leads() -> None:
    ac = active_in_epoch_2(FakeAppend(4))
    ac.fetch("parked", 4, 500, now_ms=0)
    assert ac.handle_leader_change(LeaderAndEpoch(3, 3)) == [Fail("parked"), Deactivated(2)]
    assert ac.fetch("late", 4, 500, now_ms=1) == [Fail("late")]
    assert ac.tick(now_ms=10_000) == []  # nothing left parked to answer twice


def test_the_controllers_events_and_timers_run_on_the_time_passed_in() -> None:
    append = FakeAppend(4)
    ac = active_in_epoch_2(append)
    epoch = ac.controller.register_broker(3, "tcp://x", "h", 1, now_ms=0)
    ac.controller.heartbeat(3, epoch, ac.image.offset, False, now_ms=0)  # caught up: unfenced
    assert [e.name for e in ac.take() if isinstance(e, Event)] == ["broker_unfenced"]
    session = CONFIG["broker.session.timeout.ms"]
    assert ac.tick(now_ms=session) == []
    effects = ac.tick(now_ms=session + 1)
    assert [(e.name, e.detail.get("broker")) for e in effects if isinstance(e, Event)][:1] == [("broker_fenced", 3)]
    changes = [decode_record(v) for _, vs in append.batches for v in vs]
    assert [r.get("fenced") for r in changes if r["type"] == "BrokerRegistrationChangeRecord"] == [-1, 1]


# -- a one-voter quorum: the single controller ------------------------------------------------


class OneVoter:
    """The process wiring in miniature: a RaftNode of one voter and its ActiveController."""

    def __init__(self, log: InMemoryRaftLog | None = None, state=None) -> None:
        self.log = log or InMemoryRaftLog()
        self.raft = RaftNode(0, [0], self.log, rng=random.Random(0), quorum_state=state)
        self.outputs: list[Output] = []
        self.ac = ActiveController(0, CONFIG, self.append, rng=random.Random(0))
        self.effects = self.run(self.raft.start(0))

    def append(self, values: list[bytes]) -> int:
        last, out = self.raft.append(values, 10)
        self.outputs.append(out)
        assert isinstance(last, int)
        return last

    def run(self, out: Output | None = None) -> list:
        outs, self.outputs = [*self.outputs, *([out] if out else [])], []
        r = self.raft
        effects = self.ac.handle_leader_change(LeaderAndEpoch(
            r.leader_id, r.epoch, r.epoch_start_offset if r.role is Role.LEADER else -1))
        for o in outs:
            hw = max((e.high_watermark for e in o.effects if isinstance(e, HighWatermarkMoved)),
                     default=self.ac.high_watermark)
            effects += self.ac.handle_commit([b for e in o.effects if isinstance(e, Committed) for b in e.batches], hw)
        return effects


def test_a_single_controller_is_active_right_after_it_starts() -> None:
    one = OneVoter()
    assert one.raft.role is Role.LEADER and one.effects == [Activated(1)]
    epoch = one.ac.controller.register_broker(1, "tcp://x", "h", 1, now_ms=0)
    assert epoch == 1  # offset 0 holds the LEADER_CHANGE control record
    held = one.ac.respond("req", "ok")
    assert held == []  # appended, committed by the one voter's own flush ...
    assert one.run() == [Reply("req", "ok")]  # ... and answered when the wiring hears of it


def test_a_restarted_single_controller_replays_its_log_and_claims_in_a_new_epoch() -> None:
    first = OneVoter()
    first.ac.controller.register_broker(1, "tcp://x", "h", 1, now_ms=0)
    first.run()
    again = OneVoter(first.log, first.raft.quorum_state)
    assert again.effects == [Activated(2)]
    assert sorted(again.ac.image.brokers) == [1]
    assert again.ac.image.offset == again.log.log_end_offset == 3  # LC(1), the broker, LC(2)
