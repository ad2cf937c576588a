"""Fetch sessions (KIP-227), the broker's rules as Kafka's FetchSession.scala states them."""

from __future__ import annotations

import copy
import datetime
import random

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fr
from kio.schema.fetch.v12 import response as fs
from kio.schema.produce.v9 import request as pr

from kafkalab.broker.fetch_session import (
    EVICTION_MS,
    FINAL_EPOCH,
    INITIAL_EPOCH,
    FetchSessionCache,
    next_epoch,
)
from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.config import broker_config
from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import MetadataImage
from kafkalab.records import encode_batch

WAIT = datetime.timedelta(milliseconds=500)


def request(parts: dict[tuple[str, int], int], session_id: int = 0, epoch: int = INITIAL_EPOCH,
            forget: dict[str, list[int]] | None = None, replica_id: int = -1) -> fr.FetchRequest:
    """parts: (topic, partition) -> fetch offset."""
    by_topic: dict[str, list[fr.FetchPartition]] = {}
    for (t, p), off in parts.items():
        by_topic.setdefault(t, []).append(fr.FetchPartition(partition=p, fetch_offset=off, partition_max_bytes=1 << 20))
    return fr.FetchRequest(replica_id=replica_id, max_wait=WAIT, min_bytes=1, session_id=session_id,
                           session_epoch=epoch,
                           topics=tuple(fr.FetchTopic(topic=t, partitions=tuple(ps)) for t, ps in by_topic.items()),
                           forgotten_topics_data=tuple(fr.ForgottenTopic(topic=t, partitions=tuple(ps))
                                                       for t, ps in (forget or {}).items()))


def served(req: fr.FetchRequest, hw: dict[tuple[str, int], int] | None = None,
           records: dict[tuple[str, int], bytes] | None = None,
           errors: dict[tuple[str, int], ErrorCode] | None = None, log_start: int = 0) -> fs.FetchResponse:
    """What a ReplicaManager would answer for every partition of req."""
    hw, records, errors = hw or {}, records or {}, errors or {}
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            tp = (str(t.topic), int(p.partition))
            parts.append(fs.PartitionData(partition_index=tp[1], error_code=errors.get(tp, ErrorCode.none),
                                          high_watermark=hw.get(tp, 10), last_stable_offset=hw.get(tp, 10),
                                          log_start_offset=log_start, aborted_transactions=None,
                                          records=records.get(tp, b"")))
        topics.append(fs.FetchableTopicResponse(topic=t.topic, partitions=tuple(parts)))
    return fs.FetchResponse(throttle_time=datetime.timedelta(0), error_code=ErrorCode.none, session_id=0,
                            responses=tuple(topics))


def listed(resp: fs.FetchResponse) -> list[tuple[str, int]]:
    return [(str(t.topic), int(p.partition_index)) for t in resp.responses for p in t.partitions]


def offsets(req: fr.FetchRequest) -> dict[tuple[str, int], int]:
    return {(str(t.topic), int(p.partition)): int(p.fetch_offset) for t in req.topics for p in t.partitions}


A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)


def open_session(cache: FetchSessionCache, parts: dict[tuple[str, int], int], now: int = 0,
                 replica_id: int = -1) -> int:
    ctx = cache.new_context(request(parts, replica_id=replica_id), now)
    resp = cache.respond(ctx, served(ctx.request), now)
    return int(resp.session_id)


def test_epochs_count_up_from_one_wrap_to_one_and_final_stays_final() -> None:
    assert next_epoch(INITIAL_EPOCH) == 1 and next_epoch(41) == 42
    assert next_epoch(2**31 - 1) == 1  # 0 would mean "a new session"
    assert next_epoch(FINAL_EPOCH) == FINAL_EPOCH


def test_a_full_request_at_epoch_0_opens_a_session_and_gets_every_partition() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    ctx = cache.new_context(request({A0: 0, A1: 0, B0: 0}), 0)
    assert ctx.kind == "full"
    resp = cache.respond(ctx, served(ctx.request), 0)
    assert resp.session_id > 0 and listed(resp) == [A0, A1, B0]
    session = cache.sessions[resp.session_id]
    assert session.epoch == 1 and list(session.partitions) == [A0, A1, B0]


def test_epoch_final_is_sessionless_and_a_full_request_closes_the_session_it_names() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    ctx = cache.new_context(request({A0: 0}, epoch=FINAL_EPOCH), 0)  # librdkafka, v4-v6 clients, followers
    assert ctx.kind == "sessionless" and cache.respond(ctx, served(ctx.request), 0).session_id == 0
    assert not cache.sessions
    sid = open_session(cache, {A0: 0})
    cache.new_context(request({A0: 5}, session_id=sid, epoch=INITIAL_EPOCH), 1)
    assert sid not in cache.sessions  # closed; the response may open a new one


def test_an_incremental_request_serves_the_whole_session_and_answers_only_the_news() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    sid = open_session(cache, {A0: 0, A1: 0, B0: 0})
    # The fetcher names only a0, whose position moved; a1 and b0 keep their cached offsets.
    ctx = cache.new_context(request({A0: 7}, session_id=sid, epoch=1), 10)
    assert ctx.kind == "incremental" and offsets(ctx.request) == {A0: 7, A1: 0, B0: 0}
    resp = cache.respond(ctx, served(ctx.request, hw={A0: 10, A1: 12, B0: 10}, records={A0: b"x" * 70}), 10)
    assert resp.session_id == sid and resp.error_code == ErrorCode.none
    assert listed(resp) == [A0, A1]  # a0: records; a1: a new high watermark; b0: nothing new
    # Nothing changed since: an empty answer.
    ctx = cache.new_context(request({}, session_id=sid, epoch=2), 20)
    assert listed(cache.respond(ctx, served(ctx.request, hw={A1: 12}), 20)) == []
    # A new log start offset (retention, DeleteRecords) is news too.
    ctx = cache.new_context(request({}, session_id=sid, epoch=3), 30)
    # (a0 sent records at epoch 1, so it now comes last.)
    assert listed(cache.respond(ctx, served(ctx.request, hw={A1: 12}, log_start=4), 30)) == [A1, B0, A0]


def test_a_partition_in_error_is_always_sent_and_sent_again_when_the_error_clears() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    sid = open_session(cache, {A0: 0, B0: 0})
    for epoch in (1, 2):
        ctx = cache.new_context(request({}, session_id=sid, epoch=epoch), epoch)
        resp = cache.respond(ctx, served(ctx.request, errors={B0: ErrorCode.not_leader_or_follower}), epoch)
        assert listed(resp) == [B0]
    ctx = cache.new_context(request({}, session_id=sid, epoch=3), 3)
    assert listed(cache.respond(ctx, served(ctx.request), 3)) == [B0]  # same HW as before the error


def test_a_partition_that_returned_records_goes_to_the_back_of_the_session() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    sid = open_session(cache, {A0: 0, A1: 0, B0: 0})
    ctx = cache.new_context(request({}, session_id=sid, epoch=1), 1)
    cache.respond(ctx, served(ctx.request, records={A0: b"x" * 70}), 1)
    ctx = cache.new_context(request({A0: 3}, session_id=sid, epoch=2), 2)
    assert list(offsets(ctx.request)) == [A1, B0, A0]  # a1 and b0 come first under fetch.max.bytes


def test_forgotten_partitions_leave_the_session_and_forgetting_all_ends_it() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    sid = open_session(cache, {A0: 0, A1: 0, B0: 0})
    ctx = cache.new_context(request({}, session_id=sid, epoch=1, forget={"a": [0, 1]}), 1)
    assert offsets(ctx.request) == {B0: 0}
    cache.respond(ctx, served(ctx.request), 1)
    ctx = cache.new_context(request({}, session_id=sid, epoch=2, forget={"b": [0]}), 2)
    assert ctx.kind == "sessionless" and sid not in cache.sessions
    assert cache.respond(ctx, served(ctx.request), 2).session_id == 0


def test_a_wrong_epoch_or_an_unknown_session_is_refused_with_no_partitions() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    sid = open_session(cache, {A0: 0})
    for req, code in ((request({A0: 1}, session_id=sid, epoch=5), ErrorCode.invalid_fetch_session_epoch),
                      (request({A0: 1}, session_id=sid + 1, epoch=1), ErrorCode.fetch_session_id_not_found)):
        ctx = cache.new_context(req, 1)
        assert ctx.request.topics == ()
        resp = cache.respond(ctx, served(ctx.request), 1)
        assert resp.error_code == code and resp.session_id == 0 and listed(resp) == []
    assert cache.sessions[sid].epoch == 1  # the refused requests did not move the session on


def test_a_request_overtaken_by_the_next_epoch_is_answered_as_a_duplicate() -> None:
    cache = FetchSessionCache(rng=random.Random(1))
    sid = open_session(cache, {A0: 0})
    parked = cache.new_context(request({}, session_id=sid, epoch=1), 1)  # waits in the purgatory
    cache.new_context(request({}, session_id=sid, epoch=2), 2)
    resp = cache.respond(parked, served(parked.request, records={A0: b"x"}), 3)
    assert resp.error_code == ErrorCode.invalid_fetch_session_epoch and resp.session_id == sid
    assert listed(resp) == []


def test_a_full_cache_keeps_a_fresh_session_from_a_consumer_but_not_from_a_follower() -> None:
    cache = FetchSessionCache(max_slots=1, rng=random.Random(1))
    first = open_session(cache, {A0: 0}, now=0)
    assert open_session(cache, {A0: 0, A1: 0, B0: 0}, now=1) == 0  # more partitions, but first is fresh
    assert list(cache.sessions) == [first]
    follower = open_session(cache, {A0: 0}, now=2, replica_id=2)
    assert follower != 0 and list(cache.sessions) == [follower] and cache.evictions == 1


def test_an_idle_session_is_evicted_and_an_old_busy_one_only_by_a_larger_session() -> None:
    cache = FetchSessionCache(max_slots=1, rng=random.Random(1))
    first = open_session(cache, {A0: 0, A1: 0}, now=0)
    later = EVICTION_MS + 1
    ctx = cache.new_context(request({}, session_id=first, epoch=1), later)  # used: not stale
    cache.respond(ctx, served(ctx.request), later)
    assert open_session(cache, {B0: 0}, now=later + 1) == 0  # old and busy: a smaller one cannot
    assert open_session(cache, {A0: 0, A1: 0}, now=later + 1) == 0  # nor one of the same size
    bigger = open_session(cache, {A0: 0, A1: 0, B0: 0}, now=later + 1)
    assert bigger != 0 and list(cache.sessions) == [bigger]
    # Left idle for longer than EVICTION_MS, any newcomer takes its place.
    idle = open_session(cache, {B0: 0}, now=later + 2 + EVICTION_MS)
    assert idle != 0 and list(cache.sessions) == [idle]


def test_no_slots_means_no_sessions() -> None:
    cache = FetchSessionCache(max_slots=0, rng=random.Random(1))
    assert open_session(cache, {A0: 0}) == 0 and not cache.sessions


# -- through the ReplicaManager --------------------------------------------------------------

def test_the_replica_manager_serves_sessions_and_sends_only_partitions_with_news(tmp_path) -> None:
    cfg = broker_config("lab")
    image = MetadataImage()
    ctl = Controller(image, lambda records: [image.apply(r, image.offset) for r in records], cfg,
                     rng=random.Random(1))
    rm = ReplicaManager(1, str(tmp_path), cfg)
    ctl.heartbeat(1, ctl.register_broker(1, "tcp://x", "h", 1, 0), image.offset, False, 0)
    ctl.create_topic("a", 2, 1, {}, assignments={0: [1], 1: [1]})
    rm.apply_metadata(copy.deepcopy(image), 0)
    out: list[fs.FetchResponse] = []
    rm.fetch(request({A0: 0, A1: 0}), 0, out.append)  # nothing there yet: parked until max_wait
    rm.try_complete(1_000)
    sid = int(out[-1].session_id)
    assert sid > 0 and listed(out[-1]) == [A0, A1] and rm.counters["fetch_sessions"] == 1

    rm.fetch(request({}, session_id=sid, epoch=1), 1_000, out.append)  # parked again
    rm.produce(pr.ProduceRequest(acks=1, timeout=WAIT, topic_data=(pr.TopicProduceData(name="a", partition_data=(
        pr.PartitionProduceData(index=1, records=encode_batch([(None, b"v", [], 1_000)])),)),)), 1_000, lambda r: None)
    resp = out[-1]
    assert resp.session_id == sid and listed(resp) == [A1]  # a1 has a record, a0 has nothing new
    assert len(resp.responses[0].partitions[0].records) > 0
    assert rm.counters["incremental_fetch_requests"] == 1
