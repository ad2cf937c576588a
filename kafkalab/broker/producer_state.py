"""Per-partition producer state: what makes the idempotent producer exactly-once per partition.

Every batch with a producer id carries (producer_id, producer_epoch, base_sequence). The
partition leader remembers, per producer id, its epoch and the last 5 batches it appended
(sequence range, offsets, timestamp). Before appending a batch the leader checks it:

- a retry of one of those 5 batches (same epoch, same sequence range) is a DUPLICATE: it is
  not appended again and the producer gets the original offsets with no error (modern
  Kafka; DUPLICATE_SEQUENCE_NUMBER is only a client-side notion now);
- an older epoch is fenced: INVALID_PRODUCER_EPOCH;
- a newer epoch must start at sequence 0, the same epoch must continue at last + 1 (wrapping
  from 2**31-1 to 0); anything else is OUT_OF_ORDER_SEQUENCE_NUMBER. A retry of a batch
  older than the last 5 is also out of order: the producer never has more than 5 in flight;
- a producer id this partition has never seen (or has expired) is accepted at any sequence.
  Since Kafka 2.5 (KIP-360) the broker no longer answers UNKNOWN_PRODUCER_ID here, because
  retention or DeleteRecords may have removed all of a live producer's batches. Pass
  strict_unknown_producer=True to see the pre-2.5 answer in a lab.

The state is a function of the log alone (timestamps come from the batches, not a clock), so
followers build it from the batches they replicate, and a restarted broker rebuilds it from
the latest producer snapshot plus the log after it. Kafka's snapshot keeps only each
producer's last batch, so after a rebuild only batches after the snapshot and the last one
before it are known for duplicate detection.

Pure logic: no clocks, sockets or files, except the Log-API helpers at the end (reload,
write_snapshot), which touch files only through kafkalab.storage.Log.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.errors import CorruptRecordError
from kafkalab.records.batch import decode_batch
from kafkalab.records.control import parse_control_record
from kafkalab.records.header import NO_PRODUCER_EPOCH, NO_SEQUENCE, BatchHeader
from kafkalab.records.scan import Buffer, iter_batches
from kafkalab.storage.producer_snapshot import ProducerStateEntry

NUM_BATCHES_TO_RETAIN = 5
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000  # producer.id.expiration.ms (Kafka 3.4+, KIP-854)
INT32_MAX = 0x7FFFFFFF
REPLAY_READ_BYTES = 1 << 20


def in_sequence(last_seq: int, next_seq: int) -> bool:
    """next_seq directly follows last_seq; sequences wrap from 2**31-1 to 0."""
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """One appended batch as the duplicate check needs it."""

    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int

    @property
    def first_seq(self) -> int:
        return (self.last_seq - self.offset_delta) & INT32_MAX

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(slots=True)
class ProducerState:
    """One producer id's state on this partition (Kafka's ProducerStateEntry; that name is
    taken here by the snapshot row, kafkalab.storage.ProducerStateEntry)."""

    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    coordinator_epoch: int = -1
    last_timestamp: int = -1
    current_txn_first_offset: int = -1  # -1: no open transaction
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=NUM_BATCHES_TO_RETAIN))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def find_duplicate(self, h: BatchHeader) -> BatchMetadata | None:
        if h.producer_epoch != self.producer_epoch:
            return None
        last_seq = h.last_sequence
        for b in self.batches:
            if b.first_seq == h.base_sequence and b.last_seq == last_seq:
                return b
        return None

    def maybe_update_epoch(self, epoch: int) -> None:
        # A new epoch restarts sequences at 0: the old batches can no longer be retried.
        if epoch != self.producer_epoch:
            self.batches.clear()
            self.producer_epoch = epoch

    def add_batch(self, epoch: int, last_seq: int, last_offset: int, offset_delta: int, timestamp: int) -> None:
        self.maybe_update_epoch(epoch)
        self.batches.append(BatchMetadata(last_seq, last_offset, offset_delta, timestamp))
        self.last_timestamp = timestamp

    def to_entry(self) -> ProducerStateEntry:
        last = self.batches[-1] if self.batches else None
        return ProducerStateEntry(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            last_sequence=last.last_seq if last else NO_SEQUENCE,
            last_offset=last.last_offset if last else -1,
            timestamp=self.last_timestamp,
            coordinator_epoch=self.coordinator_epoch,
            current_txn_first_offset=self.current_txn_first_offset,
            offset_delta=last.offset_delta if last else 0,
        )

    @classmethod
    def from_entry(cls, e: ProducerStateEntry) -> ProducerState:
        st = cls(e.producer_id, e.producer_epoch, e.coordinator_epoch, e.timestamp, e.current_txn_first_offset)
        if e.last_offset >= 0:
            st.batches.append(BatchMetadata(e.last_sequence, e.last_offset, e.offset_delta, e.timestamp))
        return st


class Outcome(Enum):
    OK = "ok"  # append it, then call update()
    DUPLICATE = "duplicate"  # already in the log: answer with the original offsets, append nothing
    OUT_OF_ORDER_SEQUENCE = "out_of_order_sequence"
    INVALID_PRODUCER_EPOCH = "invalid_producer_epoch"
    UNKNOWN_PRODUCER_ID = "unknown_producer_id"  # only with strict_unknown_producer (pre-2.5 Kafka)
    INVALID_TXN_STATE = "invalid_txn_state"
    TRANSACTION_COORDINATOR_FENCED = "transaction_coordinator_fenced"
    INVALID_RECORD = "invalid_record"


_ERROR_CODES = {
    Outcome.OK: ErrorCode.none,
    Outcome.DUPLICATE: ErrorCode.none,
    Outcome.OUT_OF_ORDER_SEQUENCE: ErrorCode.out_of_order_sequence_number,
    Outcome.INVALID_PRODUCER_EPOCH: ErrorCode.invalid_producer_epoch,
    Outcome.UNKNOWN_PRODUCER_ID: ErrorCode.unknown_producer_id,
    Outcome.INVALID_TXN_STATE: ErrorCode.invalid_txn_state,
    Outcome.TRANSACTION_COORDINATOR_FENCED: ErrorCode.transaction_coordinator_fenced,
    Outcome.INVALID_RECORD: ErrorCode.invalid_record,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    message: str = ""
    duplicate: BatchMetadata | None = None  # set for DUPLICATE: the batch already in the log

    @property
    def error_code(self) -> ErrorCode:
        return _ERROR_CODES[self.outcome]

    @property
    def should_append(self) -> bool:
        return self.outcome is Outcome.OK


OK = Verdict(Outcome.OK)


@dataclass(frozen=True, slots=True)
class RebuildPlan:
    """How to rebuild producer state for a log [log_start_offset, log_end_offset)."""

    snapshot_offset: int | None  # load this snapshot first (None: start empty)
    replay_from: int  # then apply the log's batches from this offset to the log end
    delete_snapshots: tuple[int, ...]  # snapshots that no longer describe this log


def plan_rebuild(snapshot_offsets: Iterable[int], log_start_offset: int, log_end_offset: int) -> RebuildPlan:
    """Which snapshot to load and where to replay from, e.g. after a follower truncation.

    Snapshots past the log end describe batches that are gone; snapshots below the log start
    would need batches that are gone to be brought up to date. (Kafka also drops a snapshot
    exactly at the log start; keeping it is safe, and keeps producers retention removed.)
    """
    offsets = sorted(set(snapshot_offsets))
    usable = [o for o in offsets if log_start_offset <= o <= log_end_offset]
    stale = tuple(o for o in offsets if o not in usable)
    if usable:
        return RebuildPlan(usable[-1], usable[-1], stale)
    return RebuildPlan(None, log_start_offset, stale)


class ProducerStateManager:
    """The producer state of one partition replica (leader or follower)."""

    def __init__(
        self,
        *,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        strict_unknown_producer: bool = False,
    ) -> None:
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.strict_unknown_producer = strict_unknown_producer
        self.producers: dict[int, ProducerState] = {}
        self.map_end_offset = 0  # state covers the log below this offset

    # -- the leader's check ---------------------------------------------------------------
    def check(self, h: BatchHeader, *, coordinator_epoch: int | None = None) -> Verdict:
        """Validate one batch a client (or, for a marker, the coordinator) asks to append."""
        return self._check(h, self.producers.get(h.producer_id), self.producers.get(h.producer_id), coordinator_epoch)

    def check_records(self, data: Buffer) -> Verdict:
        """check() every batch of a produce request's records, in order, as if each before
        it was appended. The first batch that is not OK decides; a duplicate anywhere makes
        the whole request a duplicate (as Kafka answers it). Markers come only from the
        transaction coordinator, so a client's control batch is an invalid record."""
        pending: dict[int, ProducerState] = {}
        offset = 0  # offsets only order the batches here; the log assigns the real ones
        for _, h in iter_batches(data):
            if h.is_control:
                return Verdict(Outcome.INVALID_RECORD, "clients may not write control records (transaction markers)")
            if h.producer_id < 0:
                continue
            committed = self.producers.get(h.producer_id)
            if h.producer_id not in pending:
                pending[h.producer_id] = copy.deepcopy(committed) if committed else ProducerState(h.producer_id)
            v = self._check(h, committed, pending[h.producer_id], None)
            if not v.should_append:
                return v
            _apply(pending[h.producer_id], h, offset, offset + h.last_offset_delta, None)
            offset += h.last_offset_delta + 1
        return OK

    def _check(self, h: BatchHeader, committed: ProducerState | None, entry: ProducerState | None,
               coordinator_epoch: int | None) -> Verdict:
        pid = h.producer_id
        if pid < 0:
            return OK
        current_epoch = entry.producer_epoch if entry else NO_PRODUCER_EPOCH
        if h.is_control:
            if h.producer_epoch < current_epoch:
                return Verdict(Outcome.INVALID_PRODUCER_EPOCH,
                               f"marker epoch {h.producer_epoch} of producer {pid} is older than {current_epoch}")
            if entry and coordinator_epoch is not None and coordinator_epoch < entry.coordinator_epoch:
                return Verdict(Outcome.TRANSACTION_COORDINATOR_FENCED,
                               f"coordinator epoch {coordinator_epoch} for producer {pid} is older than "
                               f"{entry.coordinator_epoch}: a zombie coordinator")
            return OK
        if h.base_sequence < 0:
            return Verdict(Outcome.INVALID_RECORD,
                           f"batch of producer {pid} has sequence {h.base_sequence}; an idempotent batch needs >= 0")
        # Duplicates are looked up in what is already in the log, before any other check.
        dup = committed.find_duplicate(h) if committed else None
        if dup is not None:
            return Verdict(Outcome.DUPLICATE,
                           f"producer {pid} epoch {h.producer_epoch} sequences {h.base_sequence}..{h.last_sequence} "
                           f"are already at offsets {dup.first_offset}..{dup.last_offset}", dup)
        if h.producer_epoch < current_epoch:
            return Verdict(Outcome.INVALID_PRODUCER_EPOCH,
                           f"epoch {h.producer_epoch} of producer {pid} is older than the last seen {current_epoch}")
        if h.producer_epoch != current_epoch:
            if h.base_sequence != 0:
                if current_epoch != NO_PRODUCER_EPOCH:
                    return Verdict(Outcome.OUT_OF_ORDER_SEQUENCE,
                                   f"new epoch {h.producer_epoch} of producer {pid} must start at sequence 0, "
                                   f"not {h.base_sequence}")
                if self.strict_unknown_producer:
                    return Verdict(Outcome.UNKNOWN_PRODUCER_ID,
                                   f"no state for producer {pid} on this partition and sequence {h.base_sequence} != 0")
        else:
            last_seq = entry.last_seq if entry else NO_SEQUENCE
            if not in_sequence(last_seq, h.base_sequence):
                return Verdict(Outcome.OUT_OF_ORDER_SEQUENCE,
                               f"producer {pid} sent sequence {h.base_sequence}, expected "
                               f"{0 if last_seq in (NO_SEQUENCE, INT32_MAX) else last_seq + 1}")
        if entry and entry.current_txn_first_offset >= 0 and not h.is_transactional:
            return Verdict(Outcome.INVALID_TXN_STATE,
                           f"producer {pid} has a transaction open since offset {entry.current_txn_first_offset} "
                           "but sent a non-transactional batch")
        return OK

    # -- after an append (leader and follower alike) ---------------------------------------
    def update(self, h: BatchHeader, first_offset: int, last_offset: int, *,
               coordinator_epoch: int | None = None) -> None:
        """Record a batch now in the log at [first_offset, last_offset]. No validation: the
        leader checked it, and a follower takes what its leader wrote. For a transaction
        marker pass the coordinator epoch from its record (see update_records)."""
        if h.producer_id >= 0:
            st = self.producers.get(h.producer_id)
            if st is None:
                st = self.producers[h.producer_id] = ProducerState(h.producer_id)
            _apply(st, h, first_offset, last_offset, coordinator_epoch)
        self.map_end_offset = max(self.map_end_offset, last_offset + 1)

    def update_records(self, data: Buffer, *, first_offset: int | None = None) -> None:
        """update() for each batch in data. The leader passes the first offset Log.append
        returned (its input bytes still carry the producer's offsets); a follower and a replay
        use the offsets in the bytes."""
        nxt = first_offset
        for pos, h in iter_batches(data):
            base = h.base_offset if nxt is None else nxt
            last = base + h.last_offset_delta
            if nxt is not None:
                nxt = last + 1
            coord = None
            if h.is_control and h.producer_id >= 0:
                coord = _marker_coordinator_epoch(data, pos, h)
                if coord is None:
                    continue  # the cleaner emptied this marker: nothing to apply (as Kafka)
            self.update(h, base, last, coordinator_epoch=coord)

    def replay(self, batches: Iterable[tuple[int, BatchHeader]]) -> None:
        """Apply (first_offset, header) pairs read from the log. Markers keep the coordinator
        epoch unchanged; use update_records when the bytes are at hand."""
        for first, h in batches:
            if h.is_control and h.records_count == 0:
                continue  # a marker the cleaner emptied
            self.update(h, first, first + h.last_offset_delta)

    # -- reading the state ----------------------------------------------------------------
    def last_entry(self, producer_id: int) -> ProducerState | None:
        return self.producers.get(producer_id)

    def first_undecided_offset(self) -> int | None:
        """First offset of the oldest open transaction (what bounds the LSO), or None."""
        open_txns = [st.current_txn_first_offset for st in self.producers.values() if st.current_txn_first_offset >= 0]
        return min(open_txns, default=None)

    # -- snapshots, rebuild, expiry -------------------------------------------------------
    def take_snapshot(self) -> list[ProducerStateEntry]:
        return [self.producers[pid].to_entry() for pid in sorted(self.producers)]

    def load_from_snapshot(self, entries: Sequence[ProducerStateEntry], offset: int | None = None,
                           now_ms: int | None = None) -> None:
        """Replace the state with a snapshot's (taken at `offset`); with now_ms, producers
        already expired are left out, as Kafka does on load."""
        self.producers = {}
        for e in entries:
            st = ProducerState.from_entry(e)
            if now_ms is None or not self._expired(st, now_ms):
                self.producers[e.producer_id] = st
        if offset is not None:
            self.map_end_offset = offset

    def clear(self, offset: int = 0) -> None:
        self.producers = {}
        self.map_end_offset = offset

    def _expired(self, st: ProducerState, now_ms: int) -> bool:
        # An open transaction keeps its producer: the LSO depends on its first offset.
        return st.current_txn_first_offset < 0 and now_ms - st.last_timestamp >= self.producer_id_expiration_ms

    def remove_expired(self, now_ms: int) -> list[int]:
        """Forget producers idle for producer.id.expiration.ms (measured from their last
        batch's timestamp, as Kafka does). Kafka runs this every
        producer.id.expiration.check.interval.ms (600000)."""
        gone = [pid for pid, st in self.producers.items() if self._expired(st, now_ms)]
        for pid in gone:
            del self.producers[pid]
        return gone

    # -- wiring to a storage Log (files only through the Log API) -------------------------
    def write_snapshot(self, log: Any) -> str:
        """Write a snapshot at the log end offset (Kafka: on segment roll and clean shutdown)."""
        return log.write_producer_snapshot(log.log_end_offset, self.take_snapshot())

    def reload(self, log: Any, now_ms: int | None = None) -> RebuildPlan:
        """Rebuild from `log` (a kafkalab.storage.Log): after opening it, and after every
        truncation. Deletes stale snapshots, loads the newest usable one (a corrupt one is
        deleted and the next older tried) and replays the log after it."""
        start, end = log.log_start_offset, log.log_end_offset
        offsets = list(log.producer_snapshot_offsets())
        while True:
            plan = plan_rebuild(offsets, start, end)
            for o in plan.delete_snapshots:
                log.delete_producer_snapshot(o)
            offsets = [o for o in offsets if o not in plan.delete_snapshots]
            if plan.snapshot_offset is None:
                self.clear(plan.replay_from)
                break
            try:
                entries = log.read_producer_snapshot(plan.snapshot_offset)
            except CorruptRecordError:
                log.delete_producer_snapshot(plan.snapshot_offset)
                offsets.remove(plan.snapshot_offset)
                continue
            self.load_from_snapshot(entries, plan.snapshot_offset, now_ms)
            break
        pos = plan.replay_from
        while pos < end:
            data = log.read_bytes(pos, REPLAY_READ_BYTES)
            last = None
            for _, h in iter_batches(data):
                last = h
            if last is None or last.next_offset <= pos:
                break
            self.update_records(data)
            pos = last.next_offset
        self.map_end_offset = max(self.map_end_offset, end)
        return plan


def _apply(st: ProducerState, h: BatchHeader, first_offset: int, last_offset: int,
           coordinator_epoch: int | None) -> None:
    if h.is_control:
        # A transaction marker ends the producer's transaction; a bumped epoch resets sequences.
        st.maybe_update_epoch(h.producer_epoch)
        if coordinator_epoch is not None:
            st.coordinator_epoch = coordinator_epoch
        st.current_txn_first_offset = -1
        st.last_timestamp = h.max_timestamp
        return
    st.add_batch(h.producer_epoch, h.last_sequence, last_offset, last_offset - first_offset, h.max_timestamp)
    if h.is_transactional and st.current_txn_first_offset < 0:
        st.current_txn_first_offset = first_offset


def _marker_coordinator_epoch(data: Buffer, pos: int, h: BatchHeader) -> int | None:
    records = decode_batch(data, pos, verify_crc=False).records
    if not records:
        return None
    return parse_control_record(records[0])[1]
