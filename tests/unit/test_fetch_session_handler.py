"""Follower fetch sessions (KIP-227): the handler's rules as Kafka's FetchSessionHandler states them,
then a follower ReplicaManager fetching from a leader ReplicaManager through them."""

from __future__ import annotations

import copy
import datetime
import random

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fr
from kio.schema.fetch.v12 import response as fs
from kio.schema.produce.v9 import request as pr

from kafkalab.broker.fetch_session import INITIAL_EPOCH, INVALID_SESSION_ID
from kafkalab.broker.fetch_session_handler import FetchSessionHandler
from kafkalab.broker.replica_fetcher import FetcherState
from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.config import broker_config
from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import MetadataImage
from kafkalab.protocol.apis import encode
from kafkalab.records import encode_batch

A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)


def part(tp: tuple[str, int], offset: int, **kw: int) -> fr.FetchPartition:
    return fr.FetchPartition(partition=tp[1], fetch_offset=offset, partition_max_bytes=kw.pop("max_bytes", 1 << 20),
                             **kw)


def answer(tps: list[tuple[str, int]], session_id: int = 0, error: ErrorCode = ErrorCode.none) -> fs.FetchResponse:
    by_topic: dict[str, list[fs.PartitionData]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(fs.PartitionData(
            partition_index=p, error_code=ErrorCode.none, high_watermark=0, aborted_transactions=None, records=b""))
    return fs.FetchResponse(throttle_time=datetime.timedelta(0), error_code=error, session_id=session_id,
                            responses=tuple(fs.FetchableTopicResponse(topic=t, partitions=tuple(ps))
                                            for t, ps in by_topic.items()))


def opened(parts: dict[tuple[str, int], fr.FetchPartition], session_id: int = 7) -> FetchSessionHandler:
    h = FetchSessionHandler(node=1)
    h.build(parts)
    assert h.handle_response(answer(list(parts), session_id))
    return h


# -- the handler's rules -----------------------------------------------------------------------

def test_the_first_request_is_full_then_each_lists_only_what_changed_with_the_next_epoch() -> None:
    h = FetchSessionHandler(node=1)
    first = h.build({A0: part(A0, 5), A1: part(A1, 9)})
    assert first.full and (first.session_id, first.epoch) == (INVALID_SESSION_ID, INITIAL_EPOCH)
    assert list(first.to_send) == [A0, A1]
    assert h.handle_response(answer([A0, A1], session_id=7))
    idle = h.build({A0: part(A0, 5), A1: part(A1, 9)})
    assert (idle.session_id, idle.epoch, idle.to_send, idle.to_forget) == (7, 1, {}, ())
    assert list(idle.session_partitions) == [A0, A1]
    assert h.handle_response(answer([], session_id=7))  # nothing new: an empty answer is fine
    moved = h.build({A0: part(A0, 6), A1: part(A1, 9)})
    assert (moved.epoch, list(moved.to_send)) == (2, [A0])
    req = moved.request(replica_id=2, max_wait=datetime.timedelta(milliseconds=500), min_bytes=1)
    assert (req.session_id, req.session_epoch, req.forgotten_topics_data) == (7, 2, ())
    assert [(t.topic, [int(p.fetch_offset) for p in t.partitions]) for t in req.topics] == [("a", [6])]


def test_any_field_of_a_partitions_fetch_state_makes_it_changed() -> None:
    base = {"current_leader_epoch": 3, "last_fetched_epoch": 3, "log_start_offset": 0, "max_bytes": 100}
    for field, value in [("current_leader_epoch", 4), ("last_fetched_epoch", 2), ("log_start_offset", 1),
                         ("max_bytes", 200)]:
        h = opened({A0: part(A0, 5, **base), A1: part(A1, 5, **base)})
        data = h.build({A0: part(A0, 5, **base), A1: part(A1, 5, **{**base, field: value})})
        assert list(data.to_send) == [A1], field


def test_added_partitions_join_the_session_and_removed_ones_are_forgotten() -> None:
    h = opened({A0: part(A0, 0), A1: part(A1, 0)})
    data = h.build({A0: part(A0, 1), B0: part(B0, 0)})  # a1 moved away, b0 moved here, a0 changed
    assert list(data.to_send) == [B0, A0]  # added first, then altered (Kafka's order)
    assert data.to_forget == (A1,) and list(data.session_partitions) == [A0, B0]
    req = data.request(max_wait=datetime.timedelta(0), min_bytes=1)
    assert [(t.topic, tuple(t.partitions)) for t in req.forgotten_topics_data] == [("a", (1,))]
    assert h.handle_response(answer([], session_id=7))
    gone = h.build({})  # nothing followed here any more: one request forgets it all
    assert gone.to_send == {} and gone.to_forget == (A0, B0) and not gone.empty
    assert h.handle_response(answer([], session_id=INVALID_SESSION_ID))  # the leader ended the session
    assert h.build({}).empty


def test_the_epoch_wraps_from_the_largest_int32_to_1() -> None:
    h = opened({A0: part(A0, 0)})
    h.epoch = 2**31 - 1
    assert h.build({A0: part(A0, 0)}).epoch == 2**31 - 1
    assert h.handle_response(answer([], session_id=7)) and h.epoch == 1


def test_each_error_and_a_loss_start_the_session_over_with_a_full_request() -> None:
    parts = {A0: part(A0, 0), A1: part(A1, 0)}
    cases = {
        "unknown session": (answer([], 7, ErrorCode.fetch_session_id_not_found), INVALID_SESSION_ID),
        "wrong epoch": (answer([], 7, ErrorCode.invalid_fetch_session_epoch), 7),  # closes 7, opens anew
        "a partition never asked for": (answer([B0], 7), 7),
        "lost": (None, 7),
    }
    for name, (resp, session_id) in cases.items():
        h = opened(parts)
        h.build(parts)
        if resp is None:
            h.start_over()
        else:
            assert not h.handle_response(resp), name  # refused: not applied
        again = h.build(parts)
        assert again.full and (again.session_id, again.epoch) == (session_id, INITIAL_EPOCH), name
        assert list(again.to_send) == [A0, A1], name


def test_a_full_answer_leaving_a_partition_out_or_opening_no_session_keeps_requests_full() -> None:
    h = FetchSessionHandler(node=1)
    h.build({A0: part(A0, 0), A1: part(A1, 0)})
    assert not h.handle_response(answer([A0], session_id=7))  # a1 left out
    assert h.build({A0: part(A0, 0), A1: part(A1, 0)}).full
    assert h.handle_response(answer([A0, A1], session_id=INVALID_SESSION_ID))  # the leader's cache is full
    assert h.build({A0: part(A0, 0), A1: part(A1, 0)}).full


def test_a_fetcher_starts_its_session_over_after_a_loss_a_restart_or_a_new_leader_registration() -> None:
    s = FetcherState(leader=1, backoff_s=0.1, partitions={A0})
    s.session = opened({A0: part(A0, 0)})
    s.leader_registered(4)
    assert not s.session.full
    s.sent(1)
    s.lost(10.0)
    assert s.session.full and s.session.session_id == 7
    s.session = opened({A0: part(A0, 0)})
    s.forget_in_flight()  # nothing was in flight: the session is as the leader has it
    assert not s.session.full
    s.sent(2)
    s.forget_in_flight()
    assert s.session.full
    s.session = opened({A0: part(A0, 0)})
    s.leader_registered(5)  # the leader restarted: its sessions are gone
    assert s.session.full
    s.partitions = set()
    assert s.may_send(20.0)  # one more request, to forget the session's partitions


# -- a follower and its leader -----------------------------------------------------------------

class Pair:
    """Broker 1 leads six partitions (two topics), broker 2 follows them, through a session."""

    def __init__(self, tmp_path, **cfg: int) -> None:
        self.now = 1_000
        self.cfg = broker_config("lab", cfg)
        self.image = MetadataImage()
        self.ctl = Controller(self.image, lambda rs: [self.image.apply(r, self.image.offset) for r in rs],
                              self.cfg, rng=random.Random(1))
        self.dirs = {b: str(tmp_path / f"b{b}") for b in (1, 2)}
        self.rms = {b: ReplicaManager(b, self.dirs[b], self.cfg) for b in (1, 2)}
        for b in self.rms:
            self.ctl.heartbeat(b, self.ctl.register_broker(b, "tcp://x", "h", b, self.now), self.image.offset,
                               False, self.now)
        for t in ("a", "b"):
            self.ctl.create_topic(t, 3, 2, {}, assignments={p: [1, 2] for p in range(3)})
        self.sync()
        self.session = FetchSessionHandler(node=1)
        self.sent: list[fr.FetchRequest] = []

    def sync(self) -> None:
        for rm in self.rms.values():
            rm.apply_metadata(copy.deepcopy(self.image), self.now)

    @property
    def followed(self) -> set[tuple[str, int]]:
        return {tp for tp, p in self.rms[2].partitions.items() if not p.is_leader}

    def fetch(self, tps: set[tuple[str, int]] | None = None, sessionless: bool = False) -> fs.FetchResponse:
        """One follower fetch (of tps, default all), answered at its deadline if nothing arrives before."""
        self.now += 500
        session = None if sessionless else self.session
        req = self.rms[2].follower_fetch_request(self.followed if tps is None else tps, self.cfg, session)
        assert req is not None
        self.sent.append(req)
        got: list[fs.FetchResponse] = []
        self.rms[1].fetch(req, self.now, got.append)
        self.rms[1].try_complete(self.now + 500)
        assert got, "the leader never answered"
        self.rms[2].apply_fetch_response(1, got[0], self.now, session)
        return got[0]

    def produce(self, tp: tuple[str, int], value: bytes) -> None:
        batch = encode_batch([(None, value, [], self.now)])
        self.rms[1].produce(pr.ProduceRequest(acks=1, timeout=datetime.timedelta(seconds=5), topic_data=(
            pr.TopicProduceData(name=tp[0], partition_data=(pr.PartitionProduceData(index=tp[1], records=batch),)),
        )), self.now, lambda r: None)


def listed(msg: fr.FetchRequest | fs.FetchResponse) -> list[tuple[str, int]]:
    if isinstance(msg, fr.FetchRequest):
        return [(str(t.topic), int(p.partition)) for t in msg.topics for p in t.partitions]
    return [(str(t.topic), int(p.partition_index)) for t in msg.responses for p in t.partitions]


def test_an_idle_follower_asks_for_no_partition_and_gets_none(tmp_path) -> None:
    s = Pair(tmp_path)
    full = s.fetch()
    assert len(listed(s.sent[-1])) == 6 and len(listed(full)) == 6 and full.session_id != 0
    idle = s.fetch()
    assert listed(s.sent[-1]) == [] and listed(idle) == [] and s.sent[-1].session_epoch == 1
    # Idling for over 3 x replica.lag.time.max.ms, the follower stays in the ISR: each request,
    # empty as it is, counts as a fetch of every partition of the session (the leader fills them in).
    assert s.cfg["replica.lag.time.max.ms"] * 3 < 10 * 500
    for _ in range(10):
        s.fetch()
    assert s.sent[-1].session_epoch == 11 and s.rms[1].counters["fetch_sessions"] == 1
    assert all(p.isr_change_to_propose(s.now) is None for p in s.rms[1].partitions.values())

    # What a session saves per idle round trip (Fetch v12 bodies, as kio encodes them).
    sessionless = s.fetch(sessionless=True)
    before = (len(encode(s.sent[-1])), len(encode(sessionless)))
    after = (len(encode(s.sent[1])), len(encode(idle)))
    assert len(listed(sessionless)) == 6 and after[0] * 4 < before[0] and after[1] * 10 < before[1], (before, after)


def test_records_and_the_high_watermark_still_reach_the_follower(tmp_path) -> None:
    s = Pair(tmp_path)
    s.fetch()
    s.produce(B0, b"v")
    got = s.fetch()
    assert listed(got) == [B0] and s.rms[2].partitions[B0].log_end_offset == 1
    assert s.rms[2].partitions[B0].high_watermark == 0  # the leader learns the follower's LEO next
    # Its new fetch offset is news to the leader, whose HW moves: news to the follower.
    got = s.fetch()
    assert listed(s.sent[-1]) == [B0] and s.rms[1].partitions[B0].high_watermark == 1
    assert listed(got) == [B0] and s.rms[2].partitions[B0].high_watermark == 1
    assert listed(s.fetch()) == [] and listed(s.sent[-1]) == []
    assert s.rms[2].partitions[B0].high_watermark == 1  # left out of a response: left as it is


def test_a_restarted_leader_or_an_evicted_session_makes_the_follower_start_over(tmp_path) -> None:
    s = Pair(tmp_path)
    s.fetch()
    s.fetch()
    s.rms[1].fetch_sessions.sessions.clear()  # evicted (or the leader restarted: a new, empty cache)
    refused = s.fetch()
    assert refused.error_code == ErrorCode.fetch_session_id_not_found
    s.produce(A1, b"v")
    s.fetch()
    assert len(listed(s.sent[-1])) == 6 and s.sent[-1].session_epoch == 0  # full again
    assert s.rms[2].partitions[A1].log_end_offset == 1
    s.fetch()
    assert listed(s.sent[-1]) == [A1] and s.sent[-1].session_epoch == 1


def test_a_lost_response_is_fetched_again_by_a_full_request(tmp_path) -> None:
    s = Pair(tmp_path)
    s.fetch()
    s.produce(A0, b"v")
    req = s.rms[2].follower_fetch_request(s.followed, s.cfg, s.session)
    s.rms[1].fetch(req, s.now, lambda _r: None)  # served, its answer lost on the way back
    s.session.start_over()
    got = s.fetch()
    assert len(listed(s.sent[-1])) == 6 and s.sent[-1].session_id == req.session_id  # closes it, opens anew
    assert got.session_id not in (0, req.session_id) and len(s.rms[1].fetch_sessions.sessions) == 1
    assert s.rms[2].partitions[A0].log_end_offset == 1


def test_a_partition_leaving_and_rejoining_the_followed_set_is_forgotten_then_added(tmp_path) -> None:
    s = Pair(tmp_path)
    s.fetch()
    session = s.rms[1].fetch_sessions.sessions[s.session.session_id]
    s.fetch(s.followed - {B0})  # b-0 is followed from another leader now
    assert [(t.topic, tuple(t.partitions)) for t in s.sent[-1].forgotten_topics_data] == [("b", (0,))]
    assert B0 not in session.partitions and listed(s.sent[-1]) == []
    s.fetch()
    assert listed(s.sent[-1]) == [B0] and B0 in session.partitions
