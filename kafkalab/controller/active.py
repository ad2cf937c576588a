"""The active controller's rules: when a controller node serves, and when an answer may leave.

A controller node listens to its Raft node as Kafka's QuorumController listens to its
`RaftClient` (`RaftClient.Listener`): `handle_commit` hands over the batches below the high
watermark, in order, and `handle_leader_change` says who leads which epoch. From those two
alone this module decides:

- claim: this node leads and its epoch's LEADER_CHANGE record is committed, so every record
  an earlier leader committed has been applied. It builds a Controller over a working copy of
  the committed image (liveness is soft state: every broker gets a fresh session).
- respond: the Controller reads its own writes (records go into the working image as they are
  appended), but nobody hears of them before they are committed: an answer that depends on an
  uncommitted record is held until the high watermark passes it.
- fetch: brokers long-poll the metadata log and get committed batches only, as soon as there
  are new ones or when their wait ends.
- deactivate: leadership lost. The working image and the held answers go (a new leader may
  truncate those records); each held request and parked fetch is failed, so its client asks
  the new leader.

A single controller is a quorum of one: its own append commits at once, so it claims right
after electing itself and never holds an answer for long.

Pure: no sockets, files or clock. `append` is the Raft node's (it writes the log through its
interface); every method returns effects for the wiring to carry out.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafkalab.clock import long_poll_deadline_ms
from kafkalab.controller.controller import Controller
from kafkalab.controller.raft_log import CommittedBatch
from kafkalab.metadata.image import MetadataImage, decode_record, encode_record

# -- what the Raft node tells the listener ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaderAndEpoch:
    leader_id: int  # -1: no leader known (an election is on)
    epoch: int
    epoch_start_offset: int = -1  # the leader's LEADER_CHANGE offset (known on the leader only)


# -- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Send this answer to this request now."""

    request: Any
    response: Any


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer this request NOT_CONTROLLER (a metadata fetch: and who leads): this node does not
    serve, or the answer it was given may never become true."""

    request: Any


@dataclass(frozen=True, slots=True)
class AnswerFetch:
    """Answer this metadata fetch with the committed batches from `offset` below `high_watermark`."""

    request: Any
    offset: int
    high_watermark: int


@dataclass(frozen=True, slots=True)
class Activated:
    epoch: int


@dataclass(frozen=True, slots=True)
class Deactivated:
    epoch: int


@dataclass(frozen=True, slots=True)
class Event:
    """Something the Controller did (broker_fenced, leader_election, ...), for the story."""

    name: str
    detail: dict[str, Any]


Effect = Reply | Fail | AnswerFetch | Activated | Deactivated | Event


@dataclass
class PendingReplies:
    """Answers held until the metadata records they depend on are committed."""

    held: list[tuple[int, Any, Any]] = field(default_factory=list)  # (last offset, request, answer)

    def add(self, offset: int, request: Any, response: Any) -> None:
        self.held.append((offset, request, response))

    def release(self, high_watermark: int) -> list[tuple[Any, Any]]:
        ready = [(e, r) for off, e, r in self.held if off < high_watermark]
        self.held = [h for h in self.held if h[0] >= high_watermark]
        return ready

    def drop(self) -> list[Any]:
        gone, self.held = [e for _, e, _ in self.held], []
        return gone


class ActiveController:
    """One controller node's view: the committed image always, a Controller while active.

    `append(values)` appends one batch of record values to the metadata log as the leader and
    returns the offset of its last record (it raises if this node no longer leads)."""

    def __init__(self, node_id: int, config: dict[str, Any], append: Callable[[list[bytes]], int], *,
                 rng: random.Random, committed: MetadataImage | None = None):
        self.node_id = node_id
        self.config = config
        self._append = append
        self.rng = rng
        self.committed = committed if committed is not None else MetadataImage()
        self.high_watermark = 0
        self.leader = LeaderAndEpoch(-1, 0)
        self.controller: Controller | None = None
        self.image = self.committed  # the working image while active
        self.appended = -1  # last offset this active controller appended
        self.pending = PendingReplies()
        self.parked: list[tuple[Any, int, int]] = []  # metadata fetches: (request, offset, deadline ms)
        self._out: list[Effect] = []

    @property
    def active(self) -> bool:
        return self.controller is not None

    # -- RaftClient.Listener -----------------------------------------------------------------
    def handle_commit(self, batches: Sequence[CommittedBatch], high_watermark: int) -> list[Effect]:
        """Committed batches in offset order, and the high watermark they were committed under
        (every batch below it has been handed over by now)."""
        for b in batches:
            for i, value in enumerate(b.values):
                self.committed.apply(decode_record(value), b.base_offset + i)
        self.high_watermark = max(self.high_watermark, high_watermark)
        if self.active:
            self._out.extend(Reply(e, r) for e, r in self.pending.release(self.high_watermark))
            self._answer_fetches(lambda offset, _deadline: offset < self.high_watermark)
        self._maybe_claim()
        return self._take()

    def handle_leader_change(self, leader: LeaderAndEpoch) -> list[Effect]:
        if self.active and (leader.leader_id != self.node_id or leader.epoch != self.leader.epoch):
            self._deactivate()
        self.leader = leader
        self._maybe_claim()
        return self._take()

    # -- while active -----------------------------------------------------------------------
    def respond(self, request: Any, response: Any) -> list[Effect]:
        """The Controller's answer to a request: now, or once what it appended is committed."""
        if self.active and self.appended >= self.high_watermark:
            self.pending.add(self.appended, request, response)
        else:
            self._out.append(Reply(request, response))
        return self._take()

    def fetch(self, request: Any, offset: int, max_wait_ms: int, now_ms: int) -> list[Effect]:
        """A broker's long poll of the metadata log: answered as soon as something past `offset`
        is committed, or empty when its wait ends (Kafka's fetch max wait)."""
        if not self.active:
            self._out.append(Fail(request))
        elif offset < self.high_watermark or max_wait_ms <= 0:
            self._out.append(AnswerFetch(request, offset, self.high_watermark))
        else:
            self.parked.append((request, offset, long_poll_deadline_ms(now_ms, max_wait_ms)))
        return self._take()

    def tick(self, now_ms: int) -> list[Effect]:
        """The Controller's timers (broker sessions) and the fetches' waits, while active."""
        if self.controller is not None:
            self.controller.tick(now_ms)
            self._answer_fetches(lambda offset, deadline: offset < self.high_watermark or now_ms >= deadline)
        return self._take()

    def next_tick_ms(self) -> int | None:
        """When tick() next has something to do on time alone (a broker session ending, a
        parked fetch's wait), in the wall-clock ms tick() is given; None: nothing is waiting."""
        if self.controller is None:
            return None
        due = [deadline for _request, _offset, deadline in self.parked]
        session = self.controller.next_tick_ms()
        if session is not None:
            due.append(session)
        return min(due) if due else None

    def take(self) -> list[Effect]:
        """Effects the Controller produced outside these calls (events of a request it handled)."""
        return self._take()

    # -- rules ------------------------------------------------------------------------------
    def _maybe_claim(self) -> None:
        lead = self.leader
        if self.active or lead.leader_id != self.node_id:
            return
        if not self.high_watermark > lead.epoch_start_offset >= 0:
            return  # this epoch's LEADER_CHANGE is not committed: an earlier commit may be missing
        self.image = copy.deepcopy(self.committed)
        # Nothing follows the LEADER_CHANGE yet, so the next record lands at the high watermark
        # (and a broker's epoch is its registration's offset).
        self.image.offset = self.high_watermark
        self.appended = self.high_watermark - 1
        self.controller = Controller(self.image, self._commit, self.config, rng=self.rng,
                                     on_event=lambda name, detail: self._out.append(Event(name, detail)))
        self.controller.registration_offset = {b: r.epoch + 1 for b, r in self.image.brokers.items()}
        self._out.append(Activated(lead.epoch))

    def _answer_fetches(self, due: Callable[[int, int], bool]) -> None:
        still = []
        for request, offset, deadline in self.parked:
            if due(offset, deadline):
                self._out.append(AnswerFetch(request, offset, self.high_watermark))
            else:
                still.append((request, offset, deadline))
        self.parked = still

    def _deactivate(self) -> None:
        self.controller = None
        self.image = self.committed
        self.appended = -1
        self._out.extend(Fail(e) for e in self.pending.drop())
        self._out.extend(Fail(request) for request, _, _ in self.parked)  # they learn who leads now
        self.parked = []
        self._out.append(Deactivated(self.leader.epoch))

    def _commit(self, records: list[dict[str, Any]]) -> None:
        last = self._append([encode_record(r)[1] for r in records])
        base = last - len(records) + 1
        for i, r in enumerate(records):
            self.image.apply(r, base + i)
        self.appended = last

    def _take(self) -> list[Effect]:
        out, self._out = self._out, []
        return out
