"""KRaft's controller quorum as a pure state machine: RaftNode.

The voters of `__cluster_metadata` elect a leader with Vote, the winner announces itself
with BeginQuorumEpoch and writes a LEADER_CHANGE control record, and followers *pull* the
log with Fetch (fetch_offset + last_fetched_epoch; the leader answers records, a diverging
epoch to truncate to, a snapshot id to fetch with FetchSnapshot, or who the leader is now).
The leader commits an offset once a majority of voters has fetched past it *and* it is in the
leader's own epoch (so its LEADER_CHANGE record must be replicated first). A leader that has
not been fetched from by a majority within 1.5 x fetch timeout resigns (check-quorum, as
Kafka), and a leader shutting down sends EndQuorumEpoch so the others need not wait.

RaftNode does no I/O and reads no clock: every call takes `now_ms` and returns an `Output`
of messages to send and effects. The wiring must apply `PersistQuorumState` (write the
`quorum-state` file, fsync) before sending that output's messages: a vote granted must
survive a crash. The log (raft_log.RaftLog) is written through its interface and flushed
before the node reports what it holds.
"""

from __future__ import annotations

import datetime
import json
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.constants import EntityType

from kafkalab.controller.raft_log import (
    CommittedBatch,
    RaftLog,
    SnapshotId,
    decode_committed,
    encode_data_batch,
    encode_leader_change,
)
from kafkalab.metadata.topic import METADATA_TOPIC
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import lazy_schema
from kafkalab.records.scan import iter_batches

bqe_req = lazy_schema("kio.schema.begin_quorum_epoch.v0.request")
bqe_resp = lazy_schema("kio.schema.begin_quorum_epoch.v0.response")
eqe_req = lazy_schema("kio.schema.end_quorum_epoch.v0.request")
eqe_resp = lazy_schema("kio.schema.end_quorum_epoch.v0.response")
fetch_req = lazy_schema("kio.schema.fetch.v12.request")
fetch_resp = lazy_schema("kio.schema.fetch.v12.response")
fs_req = lazy_schema("kio.schema.fetch_snapshot.v0.request")
fs_resp = lazy_schema("kio.schema.fetch_snapshot.v0.response")
vote_req = lazy_schema("kio.schema.vote.v0.request")
vote_resp = lazy_schema("kio.schema.vote.v0.response")

__all__ = [
    "Committed",
    "HighWatermarkMoved",
    "LogAppended",
    "LogTruncated",
    "NotLeader",
    "Outbound",
    "Output",
    "PersistQuorumState",
    "QuorumStateRecord",
    "RaftNode",
    "Role",
    "RoleChanged",
    "SnapshotLoaded",
]

_NONE = ErrorCode.none
_ZERO = datetime.timedelta(0)


class Role(StrEnum):
    UNATTACHED = "unattached"  # knows the epoch, no leader, has not voted in it
    VOTED = "voted"
    CANDIDATE = "candidate"
    LEADER = "leader"
    FOLLOWER = "follower"
    RESIGNED = "resigned"  # was leader of this epoch, waits for the next one


@dataclass(frozen=True, slots=True)
class QuorumStateRecord:
    """What must survive a restart (Kafka's `quorum-state` file)."""

    leader_epoch: int = 0
    leader_id: int = -1
    voted_id: int = -1
    voters: tuple[int, ...] = ()

    def to_json(self) -> str:
        return json.dumps({
            "clusterId": "", "leaderId": self.leader_id, "leaderEpoch": self.leader_epoch,
            "votedId": self.voted_id, "appliedOffset": 0,
            "currentVoters": [{"voterId": v} for v in self.voters], "data_version": 0,
        })

    @classmethod
    def from_json(cls, text: str) -> QuorumStateRecord:
        d = json.loads(text)
        return cls(int(d["leaderEpoch"]), int(d["leaderId"]), int(d["votedId"]),
                   tuple(int(v["voterId"]) for v in d.get("currentVoters", [])))


# -- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistQuorumState:
    state: QuorumStateRecord


@dataclass(frozen=True, slots=True)
class RoleChanged:
    role: Role
    epoch: int
    leader_id: int


@dataclass(frozen=True, slots=True)
class LogAppended:
    first_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class LogTruncated:
    offset: int  # the new log end offset


@dataclass(frozen=True, slots=True)
class HighWatermarkMoved:
    high_watermark: int


@dataclass(frozen=True, slots=True)
class Committed:
    """Committed data batches in offset order, each handed to the state machine once."""

    batches: tuple[CommittedBatch, ...]


@dataclass(frozen=True, slots=True)
class SnapshotLoaded:
    """Replace the state machine's state with this snapshot; commits continue after it."""

    snapshot_id: SnapshotId
    data: bytes


Effect = PersistQuorumState | RoleChanged | LogAppended | LogTruncated | HighWatermarkMoved | Committed | SnapshotLoaded


@dataclass(frozen=True, slots=True)
class Outbound:
    """A request (new correlation id) or a response (the request's correlation id)."""

    destination: int
    correlation_id: int
    message: Any

    @property
    def is_response(self) -> bool:
        return self.message.__type__ is EntityType.response


@dataclass(slots=True)
class Output:
    messages: list[Outbound] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NotLeader:
    leader_id: int
    epoch: int


@dataclass(slots=True)
class _InFlight:
    destination: int
    api_key: int
    deadline: int
    fetch_offset: int = -1


@dataclass(slots=True)
class _Parked:
    source: int
    correlation_id: int
    fetch_offset: int
    max_bytes: int
    deadline: int


# -- the node -------------------------------------------------------------------------------


class RaftNode:
    def __init__(
        self,
        node_id: int,
        voters: list[int] | tuple[int, ...],
        log: RaftLog,
        *,
        election_timeout_ms: tuple[int, int] = (150, 300),
        fetch_timeout_ms: int = 500,
        request_timeout_ms: int = 250,
        fetch_max_wait_ms: int = 100,
        retry_backoff_ms: int = 20,
        fetch_max_bytes: int = 1 << 20,
        snapshot_chunk_bytes: int = 1 << 20,
        rng: random.Random,
        quorum_state: QuorumStateRecord | None = None,
        cluster_id: str | None = None,
        wall_clock_offset_ms: int = 0,
    ) -> None:
        if node_id not in voters:
            raise ValueError(f"node {node_id} is not one of the voters {sorted(voters)}")
        if not fetch_max_wait_ms < request_timeout_ms <= fetch_timeout_ms:
            raise ValueError("need fetch_max_wait_ms < request_timeout_ms <= fetch_timeout_ms")
        self.node_id = node_id
        self.voters = tuple(sorted(voters))
        self.majority = len(self.voters) // 2 + 1
        self.log = log
        self.election_timeout_ms = election_timeout_ms
        self.fetch_timeout_ms = fetch_timeout_ms
        self.check_quorum_timeout_ms = fetch_timeout_ms * 3 // 2
        self.request_timeout_ms = request_timeout_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.fetch_max_bytes = fetch_max_bytes
        self.snapshot_chunk_bytes = snapshot_chunk_bytes
        self.rng = rng
        self.cluster_id = cluster_id
        # Batches are stamped with wall-clock time (CreateTime, as Kafka), timers use now_ms:
        # the wiring gives the difference between the two clocks, so the core reads neither.
        self.wall_clock_offset_ms = wall_clock_offset_ms
        st = quorum_state or QuorumStateRecord()
        self.epoch, self.leader_id, self.voted_id = st.leader_epoch, st.leader_id, st.voted_id
        self.role = Role.UNATTACHED
        snap = log.latest_snapshot()
        # The high watermark is not persisted (as Kafka): a restarted node learns it again.
        self.high_watermark = snap.end_offset if snap else 0
        self.applied_offset = self.high_watermark  # next offset to hand to the state machine
        self._out = Output()
        # Random start: a reply meant for this node's previous life must not match a new request.
        self._next_corr = rng.randrange(1 << 30)
        self._inflight: dict[int, _InFlight] = {}
        self._parked: list[_Parked] = []
        self._election_deadline = 0
        self._fetch_deadline = 0
        self._retry_at = 0
        self._granted: set[int] = set()
        self._rejected: set[int] = set()
        self._voter_end: dict[int, int] = {}
        self._last_fetch: dict[int, int] = {}
        self._begin_acked: set[int] = set()
        self.epoch_start_offset = -1
        self._snapshot_fetch: tuple[SnapshotId, bytearray] | None = None
        self._started = False

    # -- public API -------------------------------------------------------------------------

    @property
    def quorum_state(self) -> QuorumStateRecord:
        return QuorumStateRecord(self.epoch, self.leader_id, self.voted_id, self.voters)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def start(self, now_ms: int) -> Output:
        """Resume from the persisted quorum state and log (Kafka's QuorumState.initialize)."""
        if self._started:
            raise RuntimeError("start() once per RaftNode")
        self._started = True
        snap = self.log.latest_snapshot()
        if snap is not None:
            data = self.log.read_snapshot(snap)
            if data is not None:
                self._out.effects.append(SnapshotLoaded(snap, data))
        if self.leader_id == self.node_id:
            # Leadership does not survive a restart: resign, elect anew after a timeout.
            self._set(Role.RESIGNED, self.epoch, self.node_id, self.voted_id)
            self._election_deadline = now_ms + self._election_timeout()
        elif self.leader_id >= 0:
            self._become_follower(self.epoch, self.leader_id, now_ms)
        elif self.voted_id == self.node_id:
            self._become_candidate(now_ms, same_epoch=True)
        elif self.voted_id >= 0:
            self._set(Role.VOTED, self.epoch, -1, self.voted_id)
            self._election_deadline = now_ms + self._election_timeout()
        else:
            self._become_unattached(self.epoch, now_ms)
        if len(self.voters) == 1 and self.role is not Role.LEADER:
            self._become_candidate(now_ms)
        return self._take()

    def append(self, values: list[bytes] | tuple[bytes, ...], now_ms: int) -> tuple[int | NotLeader, Output]:
        """Leader only: append one batch of records; returns the offset of its last record."""
        if not values:
            raise ValueError("append needs at least one record")
        if self.role is not Role.LEADER:
            return NotLeader(self.leader_id, self.epoch), self._take()
        first, last = self.log.append_as_leader(encode_data_batch(values, now_ms + self.wall_clock_offset_ms), self.epoch)
        self.log.flush()
        self._out.effects.append(LogAppended(first, last))
        self._maybe_advance_high_watermark(now_ms)
        self._complete_parked(now_ms, force=True)
        return last, self._take()

    def resign(self, now_ms: int) -> Output:
        """Graceful shutdown of a leader: EndQuorumEpoch so a successor starts at once."""
        if self.role is Role.LEADER:
            self._resign(now_ms)
        return self._take()

    def create_snapshot(self, end_offset: int, data: bytes) -> SnapshotId:
        """Store the state machine's state after every record below `end_offset` (it must have
        been handed over in a Committed effect) and drop the log prefix it covers."""
        if not self.log.log_start_offset < end_offset <= self.applied_offset:
            raise ValueError(
                f"snapshot end offset {end_offset} must be above the log start "
                f"{self.log.log_start_offset} and at most the applied offset {self.applied_offset}"
            )
        sid = SnapshotId(end_offset, self.log.epoch_of(end_offset - 1))
        self.log.create_snapshot(sid, data)
        return sid

    def handle_request(self, source: int, correlation_id: int, request: Any, now_ms: int) -> Output:
        key = int(request.__api_key__)
        if key == ApiKey.VOTE:
            resp = self._on_vote(request, now_ms)
        elif key == ApiKey.BEGIN_QUORUM_EPOCH:
            resp = self._on_begin_quorum_epoch(request, now_ms)
        elif key == ApiKey.END_QUORUM_EPOCH:
            resp = self._on_end_quorum_epoch(request, now_ms)
        elif key == ApiKey.FETCH:
            resp = self._on_fetch(source, correlation_id, request, now_ms)
        elif key == ApiKey.FETCH_SNAPSHOT:
            resp = self._on_fetch_snapshot(request)
        else:
            raise ValueError(f"api key {key} is not a KRaft quorum request")
        if resp is not None:
            self._out.messages.append(Outbound(source, correlation_id, resp))
        return self._take()

    def handle_response(self, source: int, correlation_id: int, response: Any, now_ms: int) -> Output:
        sent = self._inflight.pop(correlation_id, None)
        if sent is None or sent.destination != source or sent.api_key != int(response.__api_key__):
            return self._take()  # timed out, or from before a role change
        key = int(response.__api_key__)
        if key == ApiKey.VOTE:
            self._on_vote_response(source, response, now_ms)
        elif key == ApiKey.BEGIN_QUORUM_EPOCH:
            p = response.topics[0].partitions[0] if response.topics else None
            if p is not None and not self._observe(p.leader_epoch, p.leader_id, now_ms):
                if self.role is Role.LEADER and p.error_code == _NONE:
                    self._begin_acked.add(source)
        elif key == ApiKey.END_QUORUM_EPOCH:
            p = response.topics[0].partitions[0] if response.topics else None
            if p is not None:
                self._observe(p.leader_epoch, p.leader_id, now_ms)
        elif key == ApiKey.FETCH:
            self._on_fetch_response(source, sent, response, now_ms)
        elif key == ApiKey.FETCH_SNAPSHOT:
            self._on_fetch_snapshot_response(source, response, now_ms)
        self._drive(now_ms)
        return self._take()

    def poll(self, now_ms: int) -> Output:
        """Run the timers; call at next_deadline_ms() (or any time)."""
        for corr in [c for c, f in self._inflight.items() if f.deadline <= now_ms]:
            del self._inflight[corr]
        self._complete_parked(now_ms, force=False)
        r = self.role
        if r in (Role.UNATTACHED, Role.VOTED, Role.RESIGNED) and now_ms >= self._election_deadline:
            self._become_candidate(now_ms)
        elif r is Role.CANDIDATE and now_ms >= self._election_deadline:
            self._become_candidate(now_ms)
        elif r is Role.FOLLOWER and now_ms >= self._fetch_deadline:
            self._become_candidate(now_ms)
        elif r is Role.LEADER and now_ms >= self._check_quorum_deadline():
            self._resign(now_ms)
        self._drive(now_ms)
        return self._take()

    def next_deadline_ms(self) -> int:
        """When poll() next has work (may be in the past: poll now)."""
        times = [f.deadline for f in self._inflight.values()]
        times += [p.deadline for p in self._parked]
        r = self.role
        if r in (Role.UNATTACHED, Role.VOTED, Role.RESIGNED, Role.CANDIDATE):
            times.append(self._election_deadline)
        elif r is Role.FOLLOWER:
            times.append(self._fetch_deadline)
        elif r is Role.LEADER:
            times.append(self._check_quorum_deadline())
        if self._wants_to_send():
            times.append(self._retry_at)
        return min(times)

    def describe(self) -> dict[str, Any]:
        """State for metrics and DescribeQuorum."""
        return {
            "node_id": self.node_id, "role": str(self.role), "epoch": self.epoch,
            "leader_id": self.leader_id, "voted_id": self.voted_id,
            "high_watermark": self.high_watermark, "log_end_offset": self.log.log_end_offset,
            "log_start_offset": self.log.log_start_offset, "applied_offset": self.applied_offset,
            "voter_end_offsets": dict(self._voter_end) if self.role is Role.LEADER else {},
            "voter_last_fetch_ms": dict(self._last_fetch) if self.role is Role.LEADER else {},
        }

    # -- transitions ------------------------------------------------------------------------

    def _take(self) -> Output:
        out, self._out = self._out, Output()
        return out

    def _election_timeout(self) -> int:
        lo, hi = self.election_timeout_ms
        return self.rng.randint(lo, hi)

    def _set(self, role: Role, epoch: int, leader_id: int, voted_id: int) -> None:
        if epoch < self.epoch:
            raise AssertionError(f"epoch went back from {self.epoch} to {epoch}")
        was_leader = self.role is Role.LEADER
        changed = (epoch, leader_id, voted_id) != (self.epoch, self.leader_id, self.voted_id)
        self.role, self.epoch, self.leader_id, self.voted_id = role, epoch, leader_id, voted_id
        self._inflight.clear()
        self._snapshot_fetch = None
        self._retry_at = 0
        if changed:
            self._out.effects.append(PersistQuorumState(self.quorum_state))
        self._out.effects.append(RoleChanged(role, epoch, leader_id))
        if was_leader and role is not Role.LEADER:
            for p in self._parked:  # a fetch parked on the old leader learns who leads now
                self._out.messages.append(Outbound(p.source, p.correlation_id, self._fetch_error(ErrorCode.not_leader_or_follower)))
            self._parked.clear()

    def _become_unattached(self, epoch: int, now_ms: int) -> None:
        self._set(Role.UNATTACHED, epoch, -1, -1)
        self._election_deadline = now_ms + self._election_timeout()

    def _become_follower(self, epoch: int, leader_id: int, now_ms: int) -> None:
        voted = self.voted_id if epoch == self.epoch else -1
        self._set(Role.FOLLOWER, epoch, leader_id, voted)
        self._fetch_deadline = now_ms + self.fetch_timeout_ms

    def _become_candidate(self, now_ms: int, *, same_epoch: bool = False) -> None:
        epoch = self.epoch if same_epoch else self.epoch + 1
        self._set(Role.CANDIDATE, epoch, -1, self.node_id)
        self._granted, self._rejected = {self.node_id}, set()
        self._election_deadline = now_ms + self._election_timeout()
        if len(self._granted) >= self.majority:
            self._become_leader(now_ms)

    def _become_leader(self, now_ms: int) -> None:
        self._set(Role.LEADER, self.epoch, self.node_id, self.voted_id)
        others = [v for v in self.voters if v != self.node_id]
        self._voter_end = {v: -1 for v in others}
        self._last_fetch = {v: now_ms for v in others}  # a grace period to start fetching
        self._begin_acked = set()
        batch = encode_leader_change(self.node_id, list(self.voters), sorted(self._granted),
                                     now_ms + self.wall_clock_offset_ms)
        first, last = self.log.append_as_leader(batch, self.epoch)
        self.log.flush()
        self.epoch_start_offset = first
        self._out.effects.append(LogAppended(first, last))
        self._maybe_advance_high_watermark(now_ms)

    def _resign(self, now_ms: int) -> None:
        # Successors in order of how much of the log they have: the first may start at once.
        successors = sorted(self._voter_end, key=lambda v: (-self._voter_end[v], v))
        self._set(Role.RESIGNED, self.epoch, self.node_id, self.voted_id)
        self._election_deadline = now_ms + self._election_timeout()
        for v in successors:
            self._send(v, self._end_quorum_epoch(successors), now_ms)

    def _observe(self, epoch: int, leader_id: int, now_ms: int) -> bool:
        """Follow news of a newer epoch (or of the leader of ours); True if the role changed."""
        if epoch > self.epoch:
            if leader_id >= 0 and leader_id != self.node_id:
                self._become_follower(epoch, leader_id, now_ms)
            else:
                self._become_unattached(epoch, now_ms)
            return True
        if (epoch == self.epoch and leader_id >= 0 and leader_id != self.node_id
                and self.role in (Role.UNATTACHED, Role.VOTED, Role.CANDIDATE)):
            self._become_follower(epoch, leader_id, now_ms)
            return True
        return False

    # -- sending ----------------------------------------------------------------------------

    def _send(self, dest: int, message: Any, now_ms: int, fetch_offset: int = -1) -> None:
        self._next_corr += 1
        corr = self._next_corr
        timeout = self.request_timeout_ms
        self._inflight[corr] = _InFlight(dest, int(message.__api_key__), now_ms + timeout, fetch_offset)
        self._out.messages.append(Outbound(dest, corr, message))

    def _has_inflight(self, dest: int, api_key: int | None = None) -> bool:
        return any(f.destination == dest and (api_key is None or f.api_key == api_key)
                   for f in self._inflight.values())

    def _vote_targets(self) -> list[int]:
        return [v for v in self.voters
                if v not in self._granted and v not in self._rejected and not self._has_inflight(v)]

    def _begin_targets(self) -> list[int]:
        return [v for v in self._voter_end if v not in self._begin_acked and not self._has_inflight(v)]

    def _wants_to_send(self) -> bool:
        if self.role is Role.CANDIDATE:
            return bool(self._vote_targets())
        if self.role is Role.LEADER:
            return bool(self._begin_targets())
        return self.role is Role.FOLLOWER and not self._has_inflight(self.leader_id)

    def _drive(self, now_ms: int) -> None:
        """Send what the role wants in flight: votes, BeginQuorumEpoch, the next fetch."""
        if now_ms < self._retry_at:
            return
        if self.role is Role.CANDIDATE:
            for v in self._vote_targets():
                self._send(v, self._vote_request(), now_ms)
        elif self.role is Role.LEADER:
            for v in self._begin_targets():
                self._send(v, self._begin_quorum_epoch_request(), now_ms)
        elif self.role is Role.FOLLOWER and not self._has_inflight(self.leader_id):
            if self._snapshot_fetch is not None:
                sid, buf = self._snapshot_fetch
                self._send(self.leader_id, self._fetch_snapshot_request(sid, len(buf)), now_ms)
            else:
                leo = self.log.log_end_offset
                self._send(self.leader_id, self._fetch_request(), now_ms, fetch_offset=leo)

    # -- Vote -------------------------------------------------------------------------------

    def _on_vote(self, request: Any, now_ms: int) -> Any:
        p = request.topics[0].partitions[0]
        candidate, epoch = int(p.replica_id), int(p.replica_epoch)
        if candidate not in self.voters:
            return self._vote_response(False, ErrorCode.inconsistent_voter_set)
        if epoch < self.epoch:
            return self._vote_response(False, ErrorCode.fenced_leader_epoch)
        if epoch > self.epoch:
            self._become_unattached(epoch, now_ms)
        up_to_date = (p.last_offset_epoch, p.last_offset) >= (self.log.last_fetched_epoch, self.log.log_end_offset)
        if self.role is Role.UNATTACHED and up_to_date:
            self._set(Role.VOTED, self.epoch, -1, candidate)  # persisted before the reply goes
            self._election_deadline = now_ms + self._election_timeout()
            return self._vote_response(True)
        granted = self.role is Role.VOTED and self.voted_id == candidate
        return self._vote_response(granted)

    def _on_vote_response(self, source: int, response: Any, now_ms: int) -> None:
        p = response.topics[0].partitions[0] if response.topics else None
        if p is None or self._observe(p.leader_epoch, p.leader_id, now_ms):
            return
        if self.role is not Role.CANDIDATE or p.leader_epoch != self.epoch or p.error_code != _NONE:
            return
        (self._granted if p.vote_granted else self._rejected).add(source)
        if len(self._granted) >= self.majority:
            self._become_leader(now_ms)

    def _vote_request(self) -> Any:
        part = vote_req.PartitionData(
            partition_index=0, replica_epoch=self.epoch, replica_id=self.node_id,
            last_offset_epoch=self.log.last_fetched_epoch, last_offset=self.log.log_end_offset,
        )
        return vote_req.VoteRequest(cluster_id=self.cluster_id,
                                    topics=(vote_req.TopicData(topic_name=METADATA_TOPIC, partitions=(part,)),))

    def _vote_response(self, granted: bool, error: ErrorCode = _NONE) -> Any:
        part = vote_resp.PartitionData(partition_index=0, error_code=error, leader_id=self.leader_id,
                                       leader_epoch=self.epoch, vote_granted=granted)
        return vote_resp.VoteResponse(error_code=_NONE,
                                      topics=(vote_resp.TopicData(topic_name=METADATA_TOPIC, partitions=(part,)),))

    # -- BeginQuorumEpoch / EndQuorumEpoch --------------------------------------------------

    def _on_begin_quorum_epoch(self, request: Any, now_ms: int) -> Any:
        p = request.topics[0].partitions[0]
        epoch, leader = int(p.leader_epoch), int(p.leader_id)
        if epoch < self.epoch:
            return self._begin_response(ErrorCode.fenced_leader_epoch)
        if leader not in self.voters or leader == self.node_id:
            return self._begin_response(ErrorCode.inconsistent_voter_set)
        if epoch > self.epoch or self.role is not Role.FOLLOWER or self.leader_id != leader:
            if self.role in (Role.LEADER, Role.RESIGNED) and epoch == self.epoch:
                return self._begin_response(ErrorCode.fenced_leader_epoch)  # cannot happen in Raft
            self._become_follower(epoch, leader, now_ms)
        return self._begin_response(_NONE)

    def _begin_response(self, error: ErrorCode) -> Any:
        part = bqe_resp.PartitionData(partition_index=0, error_code=error, leader_id=self.leader_id, leader_epoch=self.epoch)
        return bqe_resp.BeginQuorumEpochResponse(error_code=_NONE, topics=(
            bqe_resp.TopicData(topic_name=METADATA_TOPIC, partitions=(part,)),))

    def _begin_quorum_epoch_request(self) -> Any:
        part = bqe_req.PartitionData(partition_index=0, leader_id=self.node_id, leader_epoch=self.epoch)
        return bqe_req.BeginQuorumEpochRequest(cluster_id=self.cluster_id, topics=(
            bqe_req.TopicData(topic_name=METADATA_TOPIC, partitions=(part,)),))

    def _on_end_quorum_epoch(self, request: Any, now_ms: int) -> Any:
        p = request.topics[0].partitions[0]
        epoch, leader = int(p.leader_epoch), int(p.leader_id)
        if epoch < self.epoch:
            return self._end_response(ErrorCode.fenced_leader_epoch)
        self._observe(epoch, leader, now_ms)
        successors = [int(s) for s in p.preferred_successors]
        if self.node_id in successors:
            pos = successors.index(self.node_id)
            # The most caught-up successor stands at once, the others a little later.
            backoff = 0 if pos == 0 else pos * self.election_timeout_ms[0] // 2 + self.rng.randint(0, self.election_timeout_ms[0] // 2)
        else:
            backoff = self._election_timeout()
        if epoch == self.epoch and self.role is Role.FOLLOWER and self.leader_id == leader:
            self._fetch_deadline = min(self._fetch_deadline, now_ms + backoff)
        elif epoch == self.epoch and self.role in (Role.UNATTACHED, Role.VOTED):
            self._election_deadline = min(self._election_deadline, now_ms + backoff)
        return self._end_response(_NONE)

    def _end_response(self, error: ErrorCode) -> Any:
        part = eqe_resp.PartitionData(partition_index=0, error_code=error, leader_id=self.leader_id, leader_epoch=self.epoch)
        return eqe_resp.EndQuorumEpochResponse(error_code=_NONE, topics=(
            eqe_resp.TopicData(topic_name=METADATA_TOPIC, partitions=(part,)),))

    def _end_quorum_epoch(self, successors: list[int]) -> Any:
        part = eqe_req.PartitionData(partition_index=0, leader_id=self.node_id, leader_epoch=self.epoch,
                                     preferred_successors=tuple(successors))
        return eqe_req.EndQuorumEpochRequest(cluster_id=self.cluster_id, topics=(
            eqe_req.TopicData(topic_name=METADATA_TOPIC, partitions=(part,)),))

    # -- Fetch (leader side) ----------------------------------------------------------------

    def _on_fetch(self, source: int, correlation_id: int, request: Any, now_ms: int) -> Any:
        p = request.topics[0].partitions[0]
        replica = int(request.replica_id)
        if self.role is not Role.LEADER:
            return self._fetch_error(ErrorCode.not_leader_or_follower)
        if p.current_leader_epoch < self.epoch:
            return self._fetch_error(ErrorCode.fenced_leader_epoch)
        if p.current_leader_epoch > self.epoch:
            return self._fetch_error(ErrorCode.unknown_leader_epoch)
        voter = replica in self._voter_end
        if voter:
            self._last_fetch[replica] = now_ms
            self._begin_acked.add(replica)
        offset, last_epoch = int(p.fetch_offset), int(p.last_fetched_epoch)
        snap = self.log.latest_snapshot()
        start = self.log.log_start_offset
        if snap is not None and (offset < start or (offset == start and last_epoch != snap.epoch)
                                 or last_epoch < snap.epoch):
            return self._fetch_data(snapshot_id=snap)
        if offset > 0:
            epoch, end = self.log.end_offset_for_epoch(last_epoch)
            if epoch < 0:
                return self._fetch_data(diverging=(0, start))
            if epoch < last_epoch or end < offset:
                return self._fetch_data(diverging=(epoch, end))
        if voter:
            self._voter_end[replica] = offset
            self._maybe_advance_high_watermark(now_ms)
        max_bytes = min(int(p.partition_max_bytes), self.fetch_max_bytes)
        if offset >= self.log.log_end_offset and request.max_wait > _ZERO:
            wait = min(int(request.max_wait.total_seconds() * 1000), self.fetch_max_wait_ms)
            self._parked.append(_Parked(source, correlation_id, offset, max_bytes, now_ms + wait))
            return None
        return self._fetch_data(records=self.log.read(offset, max_bytes) if offset < self.log.log_end_offset else b"")

    def _complete_parked(self, now_ms: int, *, force: bool) -> None:
        keep = []
        for p in self._parked:
            if force or p.deadline <= now_ms:
                recs = self.log.read(p.fetch_offset, p.max_bytes) if p.fetch_offset < self.log.log_end_offset else b""
                self._out.messages.append(Outbound(p.source, p.correlation_id, self._fetch_data(records=recs)))
            else:
                keep.append(p)
        self._parked = keep

    def _maybe_advance_high_watermark(self, now_ms: int) -> None:
        if self.role is not Role.LEADER:
            return
        ends = sorted([self.log.log_end_offset, *self._voter_end.values()], reverse=True)
        candidate = ends[self.majority - 1]
        # Only an offset past this epoch's LEADER_CHANGE record commits (Raft's §5.4.2 rule).
        if candidate > self.epoch_start_offset and candidate > self.high_watermark:
            self._update_high_watermark(candidate)
            self._complete_parked(now_ms, force=True)

    def _check_quorum_deadline(self) -> int:
        need = self.majority - 1
        if need == 0:
            return 1 << 62
        recent = sorted(self._last_fetch.values(), reverse=True)
        return recent[need - 1] + self.check_quorum_timeout_ms

    def _leader_and_epoch(self) -> fetch_resp.LeaderIdAndEpoch:
        return fetch_resp.LeaderIdAndEpoch(leader_id=self.leader_id, leader_epoch=self.epoch)

    def _fetch_response(self, part: fetch_resp.PartitionData) -> Any:
        return fetch_resp.FetchResponse(throttle_time=_ZERO, error_code=_NONE, responses=(
            fetch_resp.FetchableTopicResponse(topic=METADATA_TOPIC, partitions=(part,)),))

    def _fetch_error(self, error: ErrorCode) -> Any:
        return self._fetch_response(fetch_resp.PartitionData(
            partition_index=0, error_code=error, high_watermark=-1, current_leader=self._leader_and_epoch(),
            aborted_transactions=None, records=None))

    def _fetch_data(self, *, records: bytes = b"", diverging: tuple[int, int] | None = None,
                    snapshot_id: SnapshotId | None = None) -> Any:
        kw: dict[str, Any] = {}
        if diverging is not None:
            kw["diverging_epoch"] = fetch_resp.EpochEndOffset(epoch=diverging[0], end_offset=diverging[1])
        if snapshot_id is not None:
            kw["snapshot_id"] = fetch_resp.SnapshotId(end_offset=snapshot_id.end_offset, epoch=snapshot_id.epoch)
        return self._fetch_response(fetch_resp.PartitionData(
            partition_index=0, error_code=_NONE, high_watermark=self.high_watermark,
            log_start_offset=self.log.log_start_offset, current_leader=self._leader_and_epoch(),
            aborted_transactions=None, records=records, **kw))

    def _fetch_request(self) -> Any:
        part = fetch_req.FetchPartition(
            partition=0, current_leader_epoch=self.epoch, fetch_offset=self.log.log_end_offset,
            last_fetched_epoch=self.log.last_fetched_epoch, log_start_offset=self.log.log_start_offset,
            partition_max_bytes=self.fetch_max_bytes)
        return fetch_req.FetchRequest(
            cluster_id=self.cluster_id, replica_id=self.node_id,
            max_wait=datetime.timedelta(milliseconds=self.fetch_max_wait_ms), min_bytes=1,
            topics=(fetch_req.FetchTopic(topic=METADATA_TOPIC, partitions=(part,)),), forgotten_topics_data=())

    # -- Fetch (follower side) --------------------------------------------------------------

    def _on_fetch_response(self, source: int, sent: _InFlight, response: Any, now_ms: int) -> None:
        p = response.responses[0].partitions[0]
        cur = p.current_leader
        if self._observe(cur.leader_epoch, cur.leader_id, now_ms):
            return
        if self.role is not Role.FOLLOWER or source != self.leader_id or cur.leader_epoch != self.epoch:
            return
        if p.error_code != _NONE:
            self._retry_at = now_ms + self.retry_backoff_ms
            return
        self._fetch_deadline = now_ms + self.fetch_timeout_ms
        if sent.fetch_offset != self.log.log_end_offset:
            return
        if p.diverging_epoch.end_offset >= 0:
            self._truncate_to_diverging(p.diverging_epoch.epoch, p.diverging_epoch.end_offset)
            return
        if p.snapshot_id.end_offset >= 0:
            self._snapshot_fetch = (SnapshotId(p.snapshot_id.end_offset, p.snapshot_id.epoch), bytearray())
            return
        records = bytes(p.records or b"")
        if records:
            leo = self.log.log_end_offset
            keep = [(pos, h) for pos, h in iter_batches(records) if h.base_offset >= leo]
            if keep:
                first_pos = keep[0][0]
                last_pos, last_h = keep[-1]
                first, last = self.log.append_as_follower(records[first_pos:last_pos + last_h.size])
                self.log.flush()
                self._out.effects.append(LogAppended(first, last))
        self._update_high_watermark(min(int(p.high_watermark), self.log.log_end_offset))

    def _truncate_to_diverging(self, epoch: int, end_offset: int) -> None:
        local_epoch, local_end = self.log.end_offset_for_epoch(epoch)
        target = min(end_offset, local_end if local_epoch >= 0 else self.log.log_end_offset)
        target = max(target, self.log.log_start_offset)
        if target < self.high_watermark:
            raise AssertionError(f"node {self.node_id}: truncation to {target} below the high watermark {self.high_watermark}")
        if target < self.log.log_end_offset:
            self.log.truncate_to(target)
            self.log.flush()
            self._out.effects.append(LogTruncated(self.log.log_end_offset))

    def _update_high_watermark(self, hw: int) -> None:
        if hw <= self.high_watermark:
            return
        self.high_watermark = hw
        self._out.effects.append(HighWatermarkMoved(hw))
        while self.applied_offset < hw:
            data = self.log.read(self.applied_offset, self.fetch_max_bytes)
            if not data:
                break
            batches, nxt, _ = decode_committed(data, self.applied_offset, hw)
            if nxt == self.applied_offset:
                break
            if batches:
                self._out.effects.append(Committed(tuple(batches)))
            self.applied_offset = nxt

    # -- FetchSnapshot ----------------------------------------------------------------------

    def _on_fetch_snapshot(self, request: Any) -> Any:
        p = request.topics[0].partitions[0]
        sid = SnapshotId(int(p.snapshot_id.end_offset), int(p.snapshot_id.epoch))

        def answer(error: ErrorCode, data: bytes = b"", size: int = 0, position: int = 0) -> Any:
            part = fs_resp.PartitionSnapshot(
                index=0, error_code=error,
                snapshot_id=fs_resp.SnapshotId(end_offset=sid.end_offset, epoch=sid.epoch),
                current_leader=fs_resp.LeaderIdAndEpoch(leader_id=self.leader_id, leader_epoch=self.epoch),
                size=size, position=position, unaligned_records=data)
            return fs_resp.FetchSnapshotResponse(throttle_time=_ZERO, error_code=_NONE, topics=(
                fs_resp.TopicSnapshot(name=METADATA_TOPIC, partitions=(part,)),))

        if self.role is not Role.LEADER:
            return answer(ErrorCode.not_leader_or_follower)
        if p.current_leader_epoch != self.epoch:
            return answer(ErrorCode.fenced_leader_epoch if p.current_leader_epoch < self.epoch else ErrorCode.unknown_leader_epoch)
        data = self.log.read_snapshot(sid)
        if data is None:
            return answer(ErrorCode.snapshot_not_found)
        pos = int(p.position)
        if not 0 <= pos <= len(data):
            return answer(ErrorCode.position_out_of_range)
        chunk = data[pos:pos + min(int(request.max_bytes), self.snapshot_chunk_bytes)]
        return answer(_NONE, chunk, len(data), pos)

    def _fetch_snapshot_request(self, sid: SnapshotId, position: int) -> Any:
        part = fs_req.PartitionSnapshot(partition=0, current_leader_epoch=self.epoch,
                                        snapshot_id=fs_req.SnapshotId(end_offset=sid.end_offset, epoch=sid.epoch),
                                        position=position)
        return fs_req.FetchSnapshotRequest(cluster_id=self.cluster_id, replica_id=self.node_id,
                                           max_bytes=self.snapshot_chunk_bytes,
                                           topics=(fs_req.TopicSnapshot(name=METADATA_TOPIC, partitions=(part,)),))

    def _on_fetch_snapshot_response(self, source: int, response: Any, now_ms: int) -> None:
        p = response.topics[0].partitions[0]
        cur = p.current_leader
        if self._observe(cur.leader_epoch, cur.leader_id, now_ms):
            return
        if self.role is not Role.FOLLOWER or source != self.leader_id or self._snapshot_fetch is None:
            return
        sid, buf = self._snapshot_fetch
        if p.error_code != _NONE:
            # e.g. the leader made a newer snapshot: ask Fetch again where to start.
            self._snapshot_fetch = None
            self._retry_at = now_ms + self.retry_backoff_ms
            return
        if (p.snapshot_id.end_offset, p.snapshot_id.epoch) != sid or p.position != len(buf):
            return
        self._fetch_deadline = now_ms + self.fetch_timeout_ms
        buf += bytes(p.unaligned_records or b"")
        if len(buf) < p.size:
            return
        self._snapshot_fetch = None
        data = bytes(buf)
        self.log.load_snapshot(sid, data)
        self.log.flush()
        self._out.effects.append(LogTruncated(self.log.log_end_offset))
        self._out.effects.append(SnapshotLoaded(sid, data))
        self.applied_offset = max(self.applied_offset, sid.end_offset)
        if sid.end_offset > self.high_watermark:
            self.high_watermark = sid.end_offset
            self._out.effects.append(HighWatermarkMoved(sid.end_offset))
