"""Fetch sessions (KIP-227): the broker remembers what a fetcher asked for, so it need not repeat it.

Kafka's FetchSession.scala and FetchMetadata, as rules over Fetch v12 messages. Pure: requests
and the time in, the request to serve and the response to send out; session ids come from the
`random.Random` it is given.

A Fetch request names its session and epoch (v7+; older versions mean "no session"):
- session 0, epoch -1 (FINAL_EPOCH): sessionless, the request lists every partition (librdkafka,
  v4-v6 clients; followers open sessions, see fetch_session_handler.py);
- epoch 0 (INITIAL_EPOCH) or -1 with a session id: a *full* request; the named session is closed,
  and with epoch 0 the broker tries to open a new one and answers its id (0 when the cache is
  full and nothing may be evicted);
- any other epoch: *incremental*: the request lists only partitions added or changed (a new
  fetch offset) and forgets some (`forgotten_topics_data`); the broker serves every partition of
  the session and answers only those with news: records, a new high watermark or log start
  offset, an error, a diverging epoch or a preferred read replica. A wrong epoch gets
  INVALID_FETCH_SESSION_EPOCH, an unknown id FETCH_SESSION_ID_NOT_FOUND; the fetcher then starts
  over with a full request. A partition that returned records moves to the end of the session,
  so that under fetch.max.bytes the others get their turn.

The cache holds `max.incremental.fetch.session.cache.slots` sessions (Kafka's default 1000). A new
session may evict one that has been idle for EVICTION_MS, else the least valuable evictable one
if the newcomer is worth more: a follower's session beats a consumer's, then more partitions
beat fewer; a session younger than EVICTION_MS can only be evicted by a follower's, and only if
it is a consumer's. Kafka splits its cache into shards that evict separately, for lock
contention between its request threads; one broker thread here has none, so there is one cache.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.protocol.apis import lazy_schema

fetch_req = lazy_schema("kio.schema.fetch.v12.request")
fetch_resp = lazy_schema("kio.schema.fetch.v12.response")

__all__ = [
    "DEFAULT_CACHE_SLOTS",
    "EVICTION_MS",
    "FINAL_EPOCH",
    "INITIAL_EPOCH",
    "INVALID_SESSION_ID",
    "FetchContext",
    "FetchSession",
    "FetchSessionCache",
    "next_epoch",
]

INVALID_SESSION_ID = 0  # "no session"
INITIAL_EPOCH = 0  # a full request that asks for a new session
FINAL_EPOCH = -1  # a full request that wants no session
DEFAULT_CACHE_SLOTS = 1000  # max.incremental.fetch.session.cache.slots
EVICTION_MS = 120_000  # Kafka's MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS
_MAX_EPOCH = 2**31 - 1
_MAX_SESSION_ID = 2**31 - 1

TP = tuple[str, int]


def next_epoch(epoch: int) -> int:
    """The epoch after `epoch`: FINAL stays FINAL; after 2^31-1 comes 1 (0 means "new")."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == _MAX_EPOCH else epoch + 1


def records_size(records: Any) -> int:
    """Bytes of a partition's records: bytes, or a storage FileRegion (its length)."""
    if records is None:
        return 0
    length = getattr(records, "length", None)
    return int(length) if length is not None else len(records)


@dataclass(slots=True)
class CachedPartition:
    """What the session remembers of one partition: the fetcher's last request for it, and
    what it was last told (so an unchanged partition can be left out)."""

    request: fetch_req.FetchPartition
    high_watermark: int = -1
    log_start_offset: int = -1  # this broker's, as last sent

    def must_respond(self, pd: fetch_resp.PartitionData, update: bool) -> bool:
        """Does the response carry news for this partition? (Kafka's maybeUpdateResponseData)."""
        news = records_size(pd.records) > 0
        if self.high_watermark != int(pd.high_watermark):
            news = True
            if update:
                self.high_watermark = int(pd.high_watermark)
        if self.log_start_offset != int(pd.log_start_offset):
            news = True
            if update:
                self.log_start_offset = int(pd.log_start_offset)
        if int(pd.preferred_read_replica) >= 0:
            news = True
        if pd.error_code != ErrorCode.none:
            # Sent always; the HW is forgotten so that the partition is sent again once the
            # error is gone, even if its HW is the same as before.
            news = True
            if update:
                self.high_watermark = -1
        diverging = pd.diverging_epoch
        if diverging is not None and int(diverging.epoch) != -1:
            news = True  # the follower must truncate
        return news


@dataclass(slots=True)
class FetchSession:
    id: int
    privileged: bool  # a follower's (replica_id >= 0)
    partitions: dict[TP, CachedPartition]  # in fetch order
    creation_ms: int
    last_used_ms: int
    epoch: int
    # As of the last touch (Kafka's cachedSize and evictable maps): -1 while not in the cache.
    cached_size: int = -1
    evictable_by_all: bool = False
    evictable_by_privileged: bool = False

    def update(self, request: fetch_req.FetchRequest) -> tuple[list[TP], list[TP], list[TP]]:
        """Apply an incremental request: (added, updated, removed) partitions."""
        added, updated, removed = [], [], []
        for t in request.topics:
            for p in t.partitions:
                tp = (str(t.topic), int(p.partition))
                cached = self.partitions.get(tp)
                if cached is None:
                    self.partitions[tp] = CachedPartition(p)
                    added.append(tp)
                else:
                    cached.request = p
                    updated.append(tp)
        for t in request.forgotten_topics_data:
            for pid in t.partitions:
                tp = (str(t.topic), int(pid))
                if self.partitions.pop(tp, None) is not None:
                    removed.append(tp)
        return added, updated, removed


@dataclass
class FetchContext:
    """How one Fetch request is served: `request` lists every partition to read (for an
    incremental request, the whole session); `FetchSessionCache.respond` makes the answer."""

    kind: str  # "sessionless", "full", "incremental" or "error"
    request: fetch_req.FetchRequest
    error: ErrorCode = ErrorCode.none
    session: FetchSession | None = None
    request_epoch: int = FINAL_EPOCH


@dataclass
class FetchSessionCache:
    max_slots: int = DEFAULT_CACHE_SLOTS
    eviction_ms: int = EVICTION_MS
    rng: random.Random = field(default_factory=random.Random)
    sessions: dict[int, FetchSession] = field(default_factory=dict)
    evictions: int = 0

    # -- requests ------------------------------------------------------------------------
    def new_context(self, request: fetch_req.FetchRequest, now_ms: int) -> FetchContext:
        """Resolve a Fetch request's session (Kafka's FetchManager.newContext)."""
        session_id, epoch = int(request.session_id), int(request.session_epoch)
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):  # a full request closes the session it names
            if session_id != INVALID_SESSION_ID:
                self.remove(session_id)
            kind = "sessionless" if epoch == FINAL_EPOCH else "full"
            return FetchContext(kind, request, request_epoch=epoch)
        session = self.sessions.get(session_id)
        if session is None:
            return FetchContext("error", _no_partitions(request), ErrorCode.fetch_session_id_not_found,
                                request_epoch=epoch)
        if session.epoch != epoch:
            return FetchContext("error", _no_partitions(request), ErrorCode.invalid_fetch_session_epoch,
                                request_epoch=epoch)
        session.update(request)
        if not session.partitions:  # all forgotten: the session ends, the request goes on without
            self.remove(session.id)
            return FetchContext("sessionless", request, request_epoch=epoch)
        self._touch(session, now_ms)
        session.epoch = next_epoch(session.epoch)
        full = replace(request, topics=_topics((tp, c.request) for tp, c in session.partitions.items()),
                       forgotten_topics_data=())
        return FetchContext("incremental", full, session=session, request_epoch=epoch)

    # -- responses -----------------------------------------------------------------------
    def respond(self, context: FetchContext, response: fetch_resp.FetchResponse,
                now_ms: int) -> fetch_resp.FetchResponse:
        """The response to send for `context`, given the one served for context.request
        (Kafka's updateAndGenerateResponseData): opens a session for a full request, leaves
        unchanged partitions out of an incremental one."""
        if context.kind == "error":
            return replace(response, error_code=context.error, session_id=INVALID_SESSION_ID, responses=())
        if context.kind == "sessionless":
            return response if int(response.session_id) == INVALID_SESSION_ID \
                else replace(response, session_id=INVALID_SESSION_ID)
        if context.kind == "full":
            parts = {(str(t.topic), int(p.partition)): p for t in context.request.topics for p in t.partitions}
            cached = {(str(t.topic), int(pd.partition_index)): CachedPartition(
                parts[(str(t.topic), int(pd.partition_index))], int(pd.high_watermark), int(pd.log_start_offset))
                for t in response.responses for pd in t.partitions}
            session_id = self._maybe_create(now_ms, int(context.request.replica_id) >= 0, cached)
            return replace(response, session_id=session_id)
        session = context.session
        assert session is not None
        if session.epoch != next_epoch(context.request_epoch):
            # Another request of this session came in meanwhile: this one is a duplicate.
            return replace(response, error_code=ErrorCode.invalid_fetch_session_epoch, session_id=session.id,
                           responses=())
        kept: list[tuple[TP, fetch_resp.PartitionData]] = []
        for t in response.responses:
            for pd in t.partitions:
                tp = (str(t.topic), int(pd.partition_index))
                entry = session.partitions.get(tp)
                if entry is None or not entry.must_respond(pd, update=True):
                    continue
                kept.append((tp, pd))
                if records_size(pd.records) > 0:  # to the back of the line
                    session.partitions[tp] = session.partitions.pop(tp)
        return replace(response, session_id=session.id, responses=_response_topics(kept))

    # -- the cache -----------------------------------------------------------------------
    def remove(self, session_id: int) -> FetchSession | None:
        return self.sessions.pop(session_id, None)

    def _maybe_create(self, now_ms: int, privileged: bool, partitions: dict[TP, CachedPartition]) -> int:
        if len(self.sessions) >= self.max_slots and not self._try_evict(privileged, len(partitions), now_ms):
            return INVALID_SESSION_ID
        session = FetchSession(self._new_id(), privileged, partitions, now_ms, now_ms, next_epoch(INITIAL_EPOCH))
        self.sessions[session.id] = session
        self._touch(session, now_ms)
        return session.id

    def _new_id(self) -> int:
        while True:
            candidate = self.rng.randint(1, _MAX_SESSION_ID - 1)
            if candidate not in self.sessions:
                return candidate

    def _touch(self, session: FetchSession, now_ms: int) -> None:
        # Which evictable set a session is in is decided here, at its last use, as in Kafka.
        session.last_used_ms = now_ms
        session.cached_size = len(session.partitions)
        old = now_ms - session.creation_ms > self.eviction_ms
        session.evictable_by_privileged = (not session.privileged) or old
        session.evictable_by_all = old

    def _try_evict(self, privileged: bool, size: int, now_ms: int) -> bool:
        if not self.sessions:
            return False
        stale = min(self.sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now_ms - stale.last_used_ms > self.eviction_ms:
            self._evict(stale)
            return True
        candidates = [s for s in self.sessions.values()
                      if (s.evictable_by_privileged if privileged else s.evictable_by_all)]
        if not candidates:
            return False
        weakest = min(candidates, key=lambda s: (s.privileged, s.cached_size, s.id))
        # The newcomer's key has id 0, below every real id: it must be worth strictly more.
        if (privileged, size, 0) < (weakest.privileged, weakest.cached_size, weakest.id):
            return False
        self._evict(weakest)
        return True

    def _evict(self, session: FetchSession) -> None:
        self.remove(session.id)
        self.evictions += 1


def _no_partitions(request: fetch_req.FetchRequest) -> fetch_req.FetchRequest:
    return replace(request, topics=(), forgotten_topics_data=())


def _topics(parts: Iterable[tuple[TP, fetch_req.FetchPartition]]) -> tuple[fetch_req.FetchTopic, ...]:
    """Partitions in order, a topic entry per run of the same topic (as Kafka writes them)."""
    out: list[tuple[str, list[fetch_req.FetchPartition]]] = []
    for (topic, _pid), p in parts:
        if not out or out[-1][0] != topic:
            out.append((topic, []))
        out[-1][1].append(p)
    return tuple(fetch_req.FetchTopic(topic=t, partitions=tuple(ps)) for t, ps in out)


def _response_topics(parts: list[tuple[TP, fetch_resp.PartitionData]],
                     ) -> tuple[fetch_resp.FetchableTopicResponse, ...]:
    out: list[tuple[str, list[fetch_resp.PartitionData]]] = []
    for (topic, _pid), pd in parts:
        if not out or out[-1][0] != topic:
            out.append((topic, []))
        out[-1][1].append(pd)
    return tuple(fetch_resp.FetchableTopicResponse(topic=t, partitions=tuple(ps)) for t, ps in out)
