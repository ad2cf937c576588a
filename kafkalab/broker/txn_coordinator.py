"""TransactionCoordinator: Kafka's transaction state machine, as a plain class (pure).

Each transactional.id belongs to one partition of the internal, compacted, replicated topic
`__transaction_state` (abs(String.hashCode) % transaction.state.log.num.partitions); the
leader of that partition is the id's coordinator. Every state change is first written to
that partition (Kafka's TransactionLogKey v0 / TransactionLogValue v0 layout, below) and only
acted on once the write is acknowledged, so a new leader replays the log and finishes what
its predecessor prepared.

    Empty --AddPartitions--> Ongoing --EndTxn(commit)--> PrepareCommit --markers--> CompleteCommit
                                     --EndTxn(abort)---> PrepareAbort  --markers--> CompleteAbort
    Ongoing --timeout / new instance--> PrepareEpochFence (epoch bumped) --> PrepareAbort --> ...

InitProducerId bumps the epoch (or hands out a new producer id), which fences the previous
instance of the same transactional.id: its requests get PRODUCER_FENCED here and
INVALID_PRODUCER_EPOCH at partition leaders. An ongoing transaction of that instance is
aborted first, and the new instance is asked to retry (CONCURRENT_TRANSACTIONS) meanwhile.

The effects are injected: `append(partition, [(key, value)], on_done(error_code))` writes to
__transaction_state, `send_markers(txn_partition, coordinator_epoch, producer_id, producer_epoch, commit,
partitions, on_done())` (the first argument the id's __transaction_state partition) gets
COMMIT/ABORT markers written (retrying until every partition has
it), `owns(partition)` says "yes" / "loading" / "no", `next_producer_id()` hands out an id
(None while a new block is on its way), `publish(kind, row)` emits metrics. Time is passed in.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.group_coordinator import OFFSETS_TOPIC, java_string_hashcode
from kafkalab.broker.group_coordinator import partition_for as group_partition

TRANSACTION_STATE_TOPIC = "__transaction_state"
MAX_PRODUCER_EPOCH = 32766  # Short.MAX_VALUE - 1: the next bump needs a new producer id
NO_PRODUCER_ID = -1

TP = tuple[str, int]
Reply = Callable[..., None]


class TxnState(Enum):
    """Kafka's TransactionState, with the byte each is logged as."""

    EMPTY = (0, "Empty")
    ONGOING = (1, "Ongoing")
    PREPARE_COMMIT = (2, "PrepareCommit")
    PREPARE_ABORT = (3, "PrepareAbort")
    COMPLETE_COMMIT = (4, "CompleteCommit")
    COMPLETE_ABORT = (5, "CompleteAbort")
    DEAD = (6, "Dead")
    PREPARE_EPOCH_FENCE = (7, "PrepareEpochFence")

    @property
    def id(self) -> int:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]

    @classmethod
    def of(cls, state_id: int) -> TxnState:
        for s in cls:
            if s.id == state_id:
                return s
        raise ValueError(f"unknown transaction state id {state_id}")


COMPLETE = (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
PREPARE = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)


def partition_for(transactional_id: str, num_partitions: int) -> int:
    """The __transaction_state partition whose leader coordinates this transactional.id."""
    return (java_string_hashcode(transactional_id) & 0x7FFFFFFF) % num_partitions


# ---- __transaction_state records: TransactionLogKey v0 / TransactionLogValue v0 ------------

def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def txn_log_key(transactional_id: str) -> bytes:
    return struct.pack(">h", 0) + _str(transactional_id)


def txn_log_value(producer_id: int, producer_epoch: int, timeout_ms: int, state: TxnState,
                  partitions: Iterable[TP], last_update_ms: int, start_ms: int) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for t, p in sorted(partitions):
        by_topic.setdefault(t, []).append(p)
    out = [struct.pack(">hqhib", 0, producer_id, producer_epoch, timeout_ms, state.id),
           struct.pack(">i", len(by_topic))]
    for t, ps in by_topic.items():
        out.append(_str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps))
    out.append(struct.pack(">qq", last_update_ms, start_ms))
    return b"".join(out)


def decode_txn_key(key: bytes) -> str:
    version, n = struct.unpack_from(">hh", key)
    if version != 0:
        raise ValueError(f"TransactionLogKey version {version}; only 0 is known")
    return key[4:4 + n].decode()


def decode_txn_value(value: bytes) -> dict[str, Any]:
    version, pid, epoch, timeout, state = struct.unpack_from(">hqhib", value)
    if version != 0:
        raise ValueError(f"TransactionLogValue version {version}; only 0 is known")
    pos = struct.calcsize(">hqhib")
    (count,) = struct.unpack_from(">i", value, pos)
    pos += 4
    partitions: set[TP] = set()
    for _ in range(max(count, 0)):
        (n,) = struct.unpack_from(">h", value, pos)
        topic = value[pos + 2:pos + 2 + n].decode()
        pos += 2 + n
        (k,) = struct.unpack_from(">i", value, pos)
        pos += 4
        for _ in range(k):
            partitions.add((topic, struct.unpack_from(">i", value, pos)[0]))
            pos += 4
    last_update, start = struct.unpack_from(">qq", value, pos)
    return {"producer_id": pid, "producer_epoch": epoch, "timeout_ms": timeout, "state": TxnState.of(state),
            "partitions": partitions, "last_update_ms": last_update, "start_ms": start}


# ---- the metadata of one transactional.id -------------------------------------------------

@dataclass
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[TP] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1
    last_producer_epoch: int = -1  # the epoch before the coordinator's own bump (KIP-360)
    pending: TxnState | None = None  # a transition whose log write is in flight
    markers_pending: bool = False  # PrepareX logged, markers not all written yet
    complete_failed: bool = False  # the CompleteX write failed: retried by tick()
    complete_retry_ms: int = 0  # when a failed CompleteX write is due to be retried

    def value(self, state: TxnState, partitions: set[TP], now_ms: int, start_ms: int,
              epoch: int | None = None) -> bytes:
        return txn_log_value(self.producer_id, self.producer_epoch if epoch is None else epoch,
                             self.timeout_ms, state, partitions, now_ms, start_ms)


def _log_error(code: ErrorCode) -> ErrorCode:
    """What a client hears when a __transaction_state write fails (Kafka's mapping)."""
    if code in (ErrorCode.not_leader_or_follower, ErrorCode.unknown_topic_or_partition):
        return ErrorCode.not_coordinator
    if code in (ErrorCode.message_too_large, ErrorCode.record_list_too_large, ErrorCode.invalid_fetch_size):
        return ErrorCode.unknown_server_error
    return ErrorCode.coordinator_not_available  # NOT_ENOUGH_REPLICAS, timeouts: retriable


class TransactionCoordinator:
    def __init__(self, *, num_partitions: int, offsets_partitions: int,
                 append: Callable[[int, list[tuple[bytes, bytes | None]], Callable[[ErrorCode], None]], None],
                 send_markers: Callable[[int, int, int, int, bool, list[TP], Callable[[], None]], None],
                 owns: Callable[[int], str],
                 next_producer_id: Callable[[], int | None],
                 publish: Callable[[str, dict[str, Any]], None] = lambda kind, row: None,
                 max_timeout_ms: int = 900_000, id_expiration_ms: int = 604_800_000,
                 complete_retry_ms: int = 500):
        self.num_partitions = num_partitions
        self.offsets_partitions = offsets_partitions
        self.append = append
        self.send_markers = send_markers
        self.owns = owns
        self.next_producer_id = next_producer_id
        self.publish = publish
        self.max_timeout_ms = max_timeout_ms
        self.id_expiration_ms = id_expiration_ms
        self.complete_retry_ms = complete_retry_ms  # how long next_deadline() waits to retry a CompleteX
        self.txns: dict[str, TransactionMetadata] = {}
        self.coordinator_epochs: dict[int, int] = {}  # partition -> leader epoch it was loaded at

    # -- helpers ---------------------------------------------------------------------------
    def partition_of(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.num_partitions)

    def _check_owner(self, transactional_id: str) -> ErrorCode:
        state = self.owns(self.partition_of(transactional_id))
        if state == "loading":
            return ErrorCode.coordinator_load_in_progress
        return ErrorCode.none if state == "yes" else ErrorCode.not_coordinator

    def _still_owner(self, tid: str, epoch: int) -> bool:
        p = self.partition_of(tid)
        return self.owns(p) == "yes" and self.coordinator_epochs.get(p) == epoch

    def row(self, m: TransactionMetadata) -> dict[str, Any]:
        state = m.pending if m.pending == TxnState.PREPARE_EPOCH_FENCE else m.state
        return {"transactional_id": m.transactional_id, "state": state.label, "producer_id": m.producer_id,
                "producer_epoch": m.producer_epoch,
                "partitions": sorted(f"{t}-{p}" for t, p in m.partitions)}

    def _changed(self, m: TransactionMetadata, now_ms: int, why: str) -> None:
        row = self.row(m)
        self.publish("txn", {"time": now_ms / 1000, **row})
        self.publish("event", {"event": "txn_state", "detail": f"{m.transactional_id}: {row['state']} ({why})",
                               "topic": TRANSACTION_STATE_TOPIC,
                               "partition": self.partition_of(m.transactional_id)})

    def _write(self, m: TransactionMetadata, state: TxnState, partitions: set[TP], now_ms: int,
               start_ms: int, done: Callable[[ErrorCode], None], epoch: int | None = None) -> None:
        """Log a transition; `done(code)` once the ISR has it (or it failed)."""
        p = self.partition_of(m.transactional_id)
        coord_epoch = self.coordinator_epochs.get(p, -1)
        tid = m.transactional_id

        def written(code: ErrorCode) -> None:
            if not self._still_owner(tid, coord_epoch) or self.txns.get(tid) is not m:
                done(ErrorCode.not_coordinator)  # we lost the partition meanwhile
                return
            done(code if code == ErrorCode.none else _log_error(code))

        self.append(p, [(txn_log_key(tid), m.value(state, partitions, now_ms, start_ms, epoch))], written)

    # -- InitProducerId --------------------------------------------------------------------
    def init_producer_id(self, transactional_id: str, timeout_ms: int, producer_id: int, producer_epoch: int,
                         now_ms: int, reply: Callable[[ErrorCode, int, int], None]) -> None:
        """reply(error_code, producer_id, producer_epoch)."""
        code = self._check_owner(transactional_id)
        if code == ErrorCode.none and not 0 < timeout_ms <= self.max_timeout_ms:
            code = ErrorCode.invalid_transaction_timeout
        if code != ErrorCode.none:
            reply(code, NO_PRODUCER_ID, -1)
            return
        m = self.txns.get(transactional_id)
        if m is None:
            pid = self.next_producer_id()
            if pid is None:  # Kafka's RPCProducerIdManager: no block yet, retry
                reply(ErrorCode.coordinator_load_in_progress, NO_PRODUCER_ID, -1)
                return
            m = TransactionMetadata(transactional_id, pid, -1, timeout_ms, last_update_ms=now_ms)
            self.txns[transactional_id] = m
        if m.pending is not None or m.state in PREPARE or m.state == TxnState.PREPARE_EPOCH_FENCE:
            reply(ErrorCode.concurrent_transactions, NO_PRODUCER_ID, -1)
            return
        if producer_id >= 0 and (producer_id != m.producer_id
                                 or producer_epoch not in (m.producer_epoch, m.last_producer_epoch)):
            # KIP-360: only the current (or just-bumped-past) instance may re-initialise itself.
            reply(ErrorCode.producer_fenced, NO_PRODUCER_ID, -1)
            return
        if m.state == TxnState.ONGOING:
            # The previous instance left a transaction open: abort it under a bumped epoch
            # (fencing that instance), and have this one retry until the abort is complete.
            self._fence_and_abort(m, now_ms, "a new instance called InitProducerId")
            reply(ErrorCode.concurrent_transactions, NO_PRODUCER_ID, -1)
            return
        # Empty, CompleteCommit, CompleteAbort: bump the epoch (or take a new id once exhausted).
        # Only the instance that named its own epoch may later retry with it (KIP-360); a new
        # instance's bump leaves no previous epoch, or the fenced one could take the id back.
        new_pid, new_epoch = m.producer_id, m.producer_epoch + 1
        last_epoch = m.producer_epoch if producer_id >= 0 else -1
        if new_epoch > MAX_PRODUCER_EPOCH:
            pid = self.next_producer_id()
            if pid is None:
                reply(ErrorCode.coordinator_load_in_progress, NO_PRODUCER_ID, -1)
                return
            new_pid, new_epoch, last_epoch = pid, 0, -1
        m.pending = TxnState.EMPTY
        p = self.partition_of(transactional_id)
        coord_epoch = self.coordinator_epochs.get(p, -1)
        value = txn_log_value(new_pid, new_epoch, timeout_ms, TxnState.EMPTY, (), now_ms, -1)

        def written(code: ErrorCode) -> None:
            m.pending = None
            if not self._still_owner(transactional_id, coord_epoch) or self.txns.get(transactional_id) is not m:
                reply(ErrorCode.not_coordinator, NO_PRODUCER_ID, -1)
                return
            if code != ErrorCode.none:
                if m.producer_epoch < 0:  # never written: forget it, the retry starts afresh
                    self.txns.pop(transactional_id, None)
                reply(_log_error(code), NO_PRODUCER_ID, -1)
                return
            m.producer_id, m.producer_epoch, m.last_producer_epoch = new_pid, new_epoch, last_epoch
            m.timeout_ms, m.state, m.partitions = timeout_ms, TxnState.EMPTY, set()
            m.start_ms, m.last_update_ms = -1, now_ms
            self._changed(m, now_ms, f"InitProducerId: producer {new_pid} epoch {new_epoch}")
            reply(ErrorCode.none, new_pid, new_epoch)

        self.append(p, [(txn_log_key(transactional_id), value)], written)

    # -- AddPartitionsToTxn / AddOffsetsToTxn -----------------------------------------------
    def _check_producer(self, m: TransactionMetadata | None, producer_id: int, producer_epoch: int) -> ErrorCode:
        if m is None or m.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if producer_epoch != m.producer_epoch:
            return ErrorCode.producer_fenced  # a zombie: another instance has bumped the epoch
        if m.pending is not None:
            return ErrorCode.concurrent_transactions
        return ErrorCode.none

    def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                       partitions: Iterable[TP], now_ms: int, reply: Callable[[ErrorCode], None]) -> None:
        """reply(error_code) for all the partitions together."""
        wanted = set(partitions)
        code = self._check_owner(transactional_id)
        m = self.txns.get(transactional_id)
        if code == ErrorCode.none:
            code = self._check_producer(m, producer_id, producer_epoch)
        if code == ErrorCode.none and m is not None and (m.state in PREPARE or m.state == TxnState.DEAD):
            code = ErrorCode.concurrent_transactions  # the last transaction's markers are still out
        if code != ErrorCode.none or m is None:
            reply(code)
            return
        if m.state == TxnState.ONGOING and wanted <= m.partitions:
            reply(ErrorCode.none)  # nothing new to log
            return
        start = m.start_ms if m.state == TxnState.ONGOING else now_ms
        new = m.partitions | wanted if m.state == TxnState.ONGOING else wanted
        m.pending = TxnState.ONGOING

        def written(code: ErrorCode) -> None:
            m.pending = None
            if code == ErrorCode.none:
                m.state, m.partitions, m.start_ms, m.last_update_ms = TxnState.ONGOING, new, start, now_ms
                self._changed(m, now_ms, "added " + ", ".join(f"{t}-{p}" for t, p in sorted(wanted)))
            reply(code)

        self._write(m, TxnState.ONGOING, new, now_ms, start, written)

    def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str,
                    now_ms: int, reply: Callable[[ErrorCode], None]) -> None:
        """The group's __consumer_offsets partition joins the transaction, so the commit marker
        also lands where the group coordinator keeps the transaction's offsets."""
        tp = (OFFSETS_TOPIC, group_partition(group_id, self.offsets_partitions))
        self.add_partitions(transactional_id, producer_id, producer_epoch, [tp], now_ms, reply)

    # -- EndTxn ----------------------------------------------------------------------------
    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
                now_ms: int, reply: Callable[[ErrorCode], None]) -> None:
        code = self._check_owner(transactional_id)
        m = self.txns.get(transactional_id)
        if code == ErrorCode.none:
            code = self._check_producer(m, producer_id, producer_epoch)
        if code != ErrorCode.none or m is None:
            reply(code)
            return
        done_state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        if m.state == done_state:
            reply(ErrorCode.none)  # a retry of an EndTxn that already completed
        elif m.state == prepare:
            reply(ErrorCode.concurrent_transactions)  # markers in flight: ask again shortly
        elif m.state == TxnState.ONGOING:
            self._prepare(m, commit, now_ms, reply, "EndTxn")
        else:  # Empty, the other outcome, Dead
            reply(ErrorCode.invalid_txn_state)

    def _prepare(self, m: TransactionMetadata, commit: bool, now_ms: int,
                 reply: Callable[[ErrorCode], None], why: str, epoch: int | None = None) -> None:
        """Log PrepareCommit/PrepareAbort; once durable answer the client and send markers."""
        prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        if m.pending is None:
            m.pending = prepare
        new_epoch = m.producer_epoch if epoch is None else epoch

        def written(code: ErrorCode) -> None:
            m.pending = None
            if code != ErrorCode.none:
                reply(code)
                return
            if new_epoch != m.producer_epoch:
                m.last_producer_epoch, m.producer_epoch = m.producer_epoch, new_epoch
            m.state, m.last_update_ms = prepare, now_ms
            self._changed(m, now_ms, why)
            reply(ErrorCode.none)  # Kafka answers EndTxn once the decision is logged
            self._write_markers(m, now_ms)

        self._write(m, prepare, m.partitions, now_ms, m.start_ms, written, epoch=new_epoch)

    def _fence_and_abort(self, m: TransactionMetadata, now_ms: int, why: str) -> None:
        m.pending = TxnState.PREPARE_EPOCH_FENCE
        self._changed(m, now_ms, why)
        epoch = m.producer_epoch + 1  # at most MAX_PRODUCER_EPOCH: a bump beyond gets a new id
        self._prepare(m, False, now_ms, lambda code: None, f"aborted: {why}", epoch=min(epoch, MAX_PRODUCER_EPOCH))

    # -- markers ---------------------------------------------------------------------------
    def _write_markers(self, m: TransactionMetadata, now_ms: int) -> None:
        commit = m.state == TxnState.PREPARE_COMMIT
        p = self.partition_of(m.transactional_id)
        coord_epoch = self.coordinator_epochs.get(p, -1)
        m.markers_pending = True
        tid = m.transactional_id

        def done(now: int | None = None) -> None:
            m.markers_pending = False
            if not self._still_owner(tid, coord_epoch) or self.txns.get(tid) is not m:
                return  # the next coordinator replays the log and finishes it
            self._complete(m, commit, now_ms if now is None else now)

        self.publish("event", {"event": "txn_markers", "topic": TRANSACTION_STATE_TOPIC, "partition": p,
                               "detail": f"{tid}: {'COMMIT' if commit else 'ABORT'} markers to "
                                         f"{len(m.partitions)} partitions"})
        if not m.partitions:
            done()
            return
        self.send_markers(p, coord_epoch, m.producer_id, m.producer_epoch, commit, sorted(m.partitions), done)

    def _complete(self, m: TransactionMetadata, commit: bool, now_ms: int) -> None:
        state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        m.pending = state
        m.complete_retry_ms = now_ms + self.complete_retry_ms  # if this write fails

        def written(code: ErrorCode) -> None:
            m.pending = None
            if code != ErrorCode.none:
                m.complete_failed = code != ErrorCode.not_coordinator  # tick() tries again
                return
            m.complete_failed = False
            m.state, m.partitions, m.last_update_ms = state, set(), now_ms
            self._changed(m, now_ms, "all markers written")

        self._write(m, state, set(), now_ms, m.start_ms, written)

    # -- timers ----------------------------------------------------------------------------
    def tick(self, now_ms: int) -> None:
        """Abort transactions open longer than their transaction.timeout.ms (bumping the epoch,
        which fences the silent producer); expire idle transactional ids; retry failed
        CompleteX writes."""
        for m in list(self.txns.values()):
            if self._check_owner(m.transactional_id) != ErrorCode.none or m.pending is not None:
                continue
            if m.state == TxnState.ONGOING and now_ms > m.start_ms + m.timeout_ms:
                self._fence_and_abort(m, now_ms, f"transaction.timeout.ms={m.timeout_ms} expired")
            elif m.complete_failed and m.state in PREPARE:
                self._complete(m, m.state == TxnState.PREPARE_COMMIT, now_ms)
            elif m.state in (TxnState.EMPTY, *COMPLETE) and now_ms > m.last_update_ms + self.id_expiration_ms:
                self._expire(m, now_ms)

    def next_deadline(self, now_ms: int) -> int | None:
        """When tick() next has something to do for a transaction this broker coordinates
        (None: nothing waits on time): the first ms past a transaction.timeout.ms or past
        transactional.id.expiration.ms, or the retry of a failed CompleteX write. A
        transaction whose log write is in flight waits for that write."""
        times: list[int] = []
        for m in self.txns.values():
            if m.pending is not None or self._check_owner(m.transactional_id) != ErrorCode.none:
                continue
            if m.state == TxnState.ONGOING:
                times.append(m.start_ms + m.timeout_ms + 1)  # tick() aborts strictly after it
            elif m.complete_failed and m.state in PREPARE:
                times.append(m.complete_retry_ms)
            elif m.state in (TxnState.EMPTY, *COMPLETE):
                times.append(m.last_update_ms + self.id_expiration_ms + 1)
        return min(times, default=None)

    def _expire(self, m: TransactionMetadata, now_ms: int) -> None:
        m.pending = TxnState.DEAD
        p = self.partition_of(m.transactional_id)

        def written(code: ErrorCode) -> None:
            m.pending = None
            if code == ErrorCode.none and self.txns.get(m.transactional_id) is m:
                m.state = TxnState.DEAD
                self._changed(m, now_ms, "transactional.id.expiration.ms passed")
                del self.txns[m.transactional_id]

        coord_epoch = self.coordinator_epochs.get(p, -1)
        self.append(p, [(txn_log_key(m.transactional_id), None)],
                    lambda code: written(code if self._still_owner(m.transactional_id, coord_epoch)
                                         else ErrorCode.not_coordinator))

    # -- loading and unloading (failover) ---------------------------------------------------
    def load_partition(self, partition: int, coordinator_epoch: int,
                       records: Iterable[tuple[bytes, bytes | None]], now_ms: int) -> int:
        """Replay a __transaction_state partition this broker now leads (last record per
        transactional.id wins, a tombstone removes it), then finish every transaction its
        predecessor had prepared: the markers go out again (they are idempotent at the
        partitions), then CompleteX is logged. Returns the number of records replayed."""
        self.unload_partition(partition)
        self.coordinator_epochs[partition] = coordinator_epoch
        loaded: dict[str, TransactionMetadata | None] = {}
        n = 0
        for key, value in records:
            n += 1
            tid = decode_txn_key(key)
            if value is None:
                loaded[tid] = None
                continue
            v = decode_txn_value(value)
            prev = loaded.get(tid)
            m = TransactionMetadata(tid, v["producer_id"], v["producer_epoch"], v["timeout_ms"], v["state"],
                                    v["partitions"], v["start_ms"], v["last_update_ms"])
            if prev is not None and prev.producer_id == m.producer_id and prev.producer_epoch != m.producer_epoch:
                # The coordinator's own bump (a fence or timeout abort) keeps the previous
                # epoch; an InitProducerId bump (Empty) may be a new instance's: none kept.
                m.last_producer_epoch = prev.producer_epoch if m.state != TxnState.EMPTY else -1
            elif prev is not None:
                m.last_producer_epoch = prev.last_producer_epoch
            loaded[tid] = m
        for tid, m in loaded.items():
            if m is not None and m.state != TxnState.DEAD:
                self.txns[tid] = m
                self._changed(m, now_ms, f"loaded by a new coordinator (epoch {coordinator_epoch})")
        for m in list(self.txns.values()):
            if self.partition_of(m.transactional_id) == partition and m.state in PREPARE:
                self._write_markers(m, now_ms)
        return n

    def unload_partition(self, partition: int) -> None:
        for tid in [t for t in self.txns if self.partition_of(t) == partition]:
            del self.txns[tid]
        self.coordinator_epochs.pop(partition, None)

    def describe(self) -> list[dict[str, Any]]:
        return [self.row(m) for m in self.txns.values()
                if self.owns(self.partition_of(m.transactional_id)) == "yes"]
