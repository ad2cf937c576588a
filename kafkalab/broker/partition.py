"""One partition replica on one broker: the leader's bookkeeping and the follower's.

Pure logic around a storage Log: no sockets, no clocks (now_ms is passed in). The leader tracks
every follower's log end offset (learned from the fetch offsets followers send), advances the
high watermark to the smallest LEO in the ISR (never while the ISR is under its minimum), and proposes ISR shrinks and expansions to the
controller; the follower appends what it fetched and truncates where its log diverged from the
leader's (found with leader epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.producer_state import ProducerStateManager
from kafkalab.metadata.image import NO_LEADER, PartitionRegistration


@dataclass(slots=True)
class ReplicaState:
    """What the leader knows about one follower."""

    log_end_offset: int = -1
    last_fetch_ms: int = -1
    last_caught_up_ms: int = -1
    leo_at_last_fetch: int = -1  # the leader's LEO when this follower last fetched


@dataclass(slots=True)
class PendingIsr:
    """An AlterPartition in flight; the leader proposes one change at a time."""

    isr: list[int]
    sent_ms: int


@dataclass
class Partition:
    topic: str
    partition: int
    broker_id: int
    log: Any  # kafkalab.storage.Log
    config: dict[str, Any]
    leader: int = NO_LEADER
    leader_epoch: int = -1
    partition_epoch: int = -1
    replicas: list[int] = field(default_factory=list)
    isr: list[int] = field(default_factory=list)
    high_watermark: int = 0
    followers: dict[int, ReplicaState] = field(default_factory=dict)
    pending_isr: PendingIsr | None = None
    leader_epoch_start_offset: int = 0  # LEO when this broker became leader
    # Idempotence: the last batches of every producer, rebuilt from the log on every replica
    # so that a new leader deduplicates retries just like the old one did.
    producer_state: ProducerStateManager = field(default_factory=ProducerStateManager)

    @property
    def is_leader(self) -> bool:
        return self.leader == self.broker_id

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def last_stable_offset(self) -> int:
        """read_committed consumers stop here: below the first open transaction and the HW."""
        first_open = self.log.first_unstable_offset
        return self.high_watermark if first_open is None else min(first_open, self.high_watermark)

    @property
    def latest_epoch(self) -> int | None:
        return self.log.epoch_cache.latest_epoch

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= requested, where it ended on this log)."""
        return self.log.epoch_cache.end_offset_for_epoch(epoch, self.log_end_offset)

    @property
    def maximal_isr(self) -> list[int]:
        """The ISR used for the high watermark: while an expansion is in flight the new member
        already counts (safe: it has caught up), while a shrink is in flight the old one still
        does (safe: waiting for more replicas never loses data)."""
        if self.pending_isr is None:
            return self.isr
        return sorted(set(self.isr) | set(self.pending_isr.isr))

    # -- metadata --------------------------------------------------------------------------
    def apply_registration(self, reg: PartitionRegistration, now_ms: int) -> str | None:
        """Adopt the controller's view. Returns "leader"/"follower" when the role or epoch
        changed (the caller then starts or retargets the follower fetcher), else None."""
        became = None
        if reg.leader_epoch != self.leader_epoch or reg.leader != self.leader:
            became = "leader" if reg.leader == self.broker_id else "follower"
            if became == "leader":
                self.leader_epoch_start_offset = self.log_end_offset
                # As Kafka's makeLeader: the new epoch starts here in the epoch cache at once, so
                # that a follower whose last epoch this log never had is told where the previous
                # epoch ended, even before this leader has appended anything.
                latest = self.latest_epoch
                if reg.leader_epoch >= 0 and (latest is None or reg.leader_epoch > latest):
                    self.log.epoch_cache.assign(reg.leader_epoch, self.log_end_offset)
                # Followers start from scratch: their LEOs are unknown until they fetch.
                self.followers = {
                    b: ReplicaState(last_caught_up_ms=now_ms) for b in reg.replicas if b != self.broker_id
                }
            else:
                self.followers = {}
            self.pending_isr = None
        self.leader, self.leader_epoch = reg.leader, reg.leader_epoch
        self.partition_epoch = reg.partition_epoch
        self.replicas, self.isr = list(reg.replicas), list(reg.isr)
        if self.pending_isr is not None and sorted(self.pending_isr.isr) == sorted(self.isr):
            self.pending_isr = None
        if self.is_leader:
            self.maybe_advance_high_watermark()
        else:
            self.high_watermark = min(self.high_watermark, self.log_end_offset)
        return became

    # -- leader side -----------------------------------------------------------------------
    def check_leader(self, current_leader_epoch: int) -> ErrorCode:
        """Kafka's epoch check for produce and fetch requests on the leader."""
        if current_leader_epoch != -1:
            if current_leader_epoch < self.leader_epoch:
                return ErrorCode.fenced_leader_epoch
            if current_leader_epoch > self.leader_epoch:
                return ErrorCode.unknown_leader_epoch
        if not self.is_leader:
            return ErrorCode.not_leader_or_follower
        return ErrorCode.none

    @property
    def effective_min_isr(self) -> int:
        """min.insync.replicas, capped by the replication factor (Kafka accepts a larger value
        on a topic and uses min(min.insync.replicas, replicas))."""
        return min(self.config["min.insync.replicas"], max(1, len(self.replicas)))

    @property
    def is_under_min_isr(self) -> bool:
        return self.is_leader and len(self.isr) < self.effective_min_isr

    def check_min_isr(self, acks: int) -> ErrorCode:
        if acks == -1 and self.is_under_min_isr:
            return ErrorCode.not_enough_replicas
        return ErrorCode.none

    def append_as_leader(self, batch: bytes | bytearray, now_ms: int) -> tuple[int, int]:
        base, last = self.log.append(batch, assign_offsets=True, leader_epoch=self.leader_epoch, now_ms=now_ms)
        self.producer_state.update_records(batch, first_offset=base)
        self.maybe_advance_high_watermark()
        return base, last

    def record_follower_fetch(self, follower: int, fetch_offset: int, now_ms: int) -> None:
        """A follower's fetch offset is its LEO: everything below it is on its disk."""
        st = self.followers.get(follower)
        if st is None:
            if follower not in self.replicas:
                return
            st = self.followers[follower] = ReplicaState(last_caught_up_ms=now_ms)
        leo = self.log_end_offset
        if fetch_offset >= leo:
            st.last_caught_up_ms = now_ms
        elif st.leo_at_last_fetch >= 0 and fetch_offset >= st.leo_at_last_fetch:
            # It has everything we had when it fetched last time: caught up as of then.
            st.last_caught_up_ms = max(st.last_caught_up_ms, st.last_fetch_ms)
        st.log_end_offset = min(fetch_offset, leo)
        st.last_fetch_ms = now_ms
        st.leo_at_last_fetch = leo
        self.maybe_advance_high_watermark()

    def maybe_advance_high_watermark(self) -> bool:
        # Since Kafka 3.7 (KAFKA-15583) the HW stands still while the ISR is under its minimum:
        # acks=0/1 writes are still accepted, but no consumer sees them until the ISR recovers,
        # so a record a consumer has read is always on min.insync.replicas replicas.
        if not self.is_leader or self.is_under_min_isr:
            return False
        leos = [self.log_end_offset]
        for b in self.maximal_isr:
            if b == self.broker_id:
                continue
            st = self.followers.get(b)
            leos.append(st.log_end_offset if st is not None else -1)
        new_hw = min(leos)
        if new_hw > self.high_watermark:
            self.high_watermark = new_hw
            return True
        return False

    def isr_change_to_propose(self, now_ms: int) -> list[int] | None:
        """The ISR the leader should propose now (shrink laggards, add caught-up followers)."""
        if not self.is_leader:
            return None
        if self.pending_isr is not None:
            # An AlterPartition lost on a cut link is never answered: propose again later.
            if now_ms - self.pending_isr.sent_ms < self.config.get("request.timeout.ms", 30_000):
                return None
            self.pending_isr = None
        lag_max = self.config["replica.lag.time.max.ms"]
        isr = set(self.isr)
        for b, st in self.followers.items():
            if b in isr and now_ms - st.last_caught_up_ms > lag_max:
                isr.discard(b)
            elif b not in isr and st.log_end_offset >= self.high_watermark and (
                st.log_end_offset >= self.log_end_offset or now_ms - st.last_caught_up_ms <= lag_max
            ) and st.log_end_offset >= self.leader_epoch_start_offset:
                isr.add(b)
        isr.add(self.broker_id)
        proposal = sorted(isr, key=lambda b: self.replicas.index(b) if b in self.replicas else 99)
        if sorted(proposal) == sorted(self.isr):
            return None
        self.pending_isr = PendingIsr(proposal, now_ms)
        return proposal

    def next_isr_check_ms(self) -> int | None:
        """The earliest time isr_change_to_propose could propose something with no fetch in
        between: a follower in the ISR falling behind for too long, or a proposal lost. An
        expansion needs a fetch (the follower catching up), so time alone never brings one."""
        if not self.is_leader:
            return None
        if self.pending_isr is not None:
            return self.pending_isr.sent_ms + self.config.get("request.timeout.ms", 30_000)
        lag_max = self.config["replica.lag.time.max.ms"]
        due = [st.last_caught_up_ms + lag_max + 1 for b, st in self.followers.items() if b in self.isr]
        return min(due) if due else None

    def isr_change_failed(self) -> None:
        self.pending_isr = None

    def isr_change_committed(self, leader_epoch: int, isr: list[int], partition_epoch: int) -> bool:
        """The controller committed an AlterPartition: adopt it now rather than waiting for
        the metadata to arrive. An answer for an older leader epoch is ignored (this broker
        has been leader again since). Returns True if it was adopted."""
        if leader_epoch != self.leader_epoch:
            return False
        self.isr = list(isr)
        self.partition_epoch = partition_epoch
        self.pending_isr = None
        self.maybe_advance_high_watermark()
        return True

    def follower_lag(self, follower: int, now_ms: int) -> tuple[int, int]:
        st = self.followers.get(follower)
        if st is None:
            return self.log_end_offset, 0
        return max(0, self.log_end_offset - max(st.log_end_offset, 0)), max(0, now_ms - st.last_caught_up_ms)

    # -- follower side ---------------------------------------------------------------------
    def append_as_follower(self, records: bytes, leader_high_watermark: int, now_ms: int) -> None:
        if records:
            self.log.append(records, assign_offsets=False, now_ms=now_ms)
            self.producer_state.update_records(records)
        self.high_watermark = max(self.high_watermark, min(leader_high_watermark, self.log_end_offset))

    def truncate_to(self, offset: int) -> int:
        """Cut a divergent tail; returns how many offsets went. After an unclean election this
        can go below the old high watermark: that is the data loss the lab shows."""
        removed = max(0, self.log_end_offset - offset)
        self.log.truncate_to(offset)  # with nothing to cut, still trims the epoch cache to the log end
        if removed:
            self.producer_state.reload(self.log)
        self.high_watermark = min(self.high_watermark, self.log_end_offset)
        return removed
