"""Log: one partition's directory (e.g. orders-0) of segments, as Kafka lays it out.

Pure storage logic: no threads, sockets or clocks; every time-dependent call takes now_ms.
The caller (the broker) persists recovery_point and log_start_offset in the log dir's
checkpoint files and passes them back when it reopens the log.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import crc32c

from kafkalab.config import TOPIC_CONFIGS, resolve
from kafkalab.errors import CorruptRecordError, CrcMismatchError, OffsetOutOfRangeError
from kafkalab.records.header import (
    CRC_START,
    HEADER_SIZE,
    BatchHeader,
    parse_header,
)
from kafkalab.storage.epoch_cache import LeaderEpochCache
from kafkalab.storage.files import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    LOG_SUFFIX,
    SEGMENT_SUFFIXES,
    SNAPSHOT_SUFFIX,
    SWAP_SUFFIX,
    fsync_dir,
    offset_from_name,
    segment_path,
    write_atomic,
)
from kafkalab.storage.producer_snapshot import ProducerStateEntry, decode_snapshot, encode_snapshot
from kafkalab.storage.segment import FileRegion, LogSegment, validate_header
from kafkalab.storage.txn_index import AbortedTxn

log = logging.getLogger(__name__)

MAX_RELATIVE_OFFSET = 0x7FFFFFFF
CONTROL_ABORT, CONTROL_COMMIT = 0, 1
# A batch's base offset, length and partition leader epoch: the 16 bytes before magic that a
# leader rewrites and the CRC does not cover.
_BATCH_PREFIX = struct.Struct(">qii")


@dataclass
class RecoveryReport:
    """What opening the log had to repair. Empty lists and 0 bytes: a clean open."""

    recovered_segments: list[str] = field(default_factory=list)  # rescanned (after recovery point)
    truncated_bytes: int = 0  # torn or corrupt tail cut off
    problems: list[str] = field(default_factory=list)  # each names file and byte position
    rebuilt_indexes: list[str] = field(default_factory=list)
    deleted_segments: list[str] = field(default_factory=list)  # after a corrupt segment
    completed_swaps: list[str] = field(default_factory=list)  # interrupted compaction finished
    removed_files: list[str] = field(default_factory=list)  # leftover .cleaned/.deleted/.tmp

    @property
    def clean(self) -> bool:
        return not (self.truncated_bytes or self.problems or self.rebuilt_indexes or self.deleted_segments)


def control_type(batch: bytes | memoryview) -> int:
    """ABORT (0) or COMMIT (1) from a control batch's first record key (version, type)."""
    from kafkalab.records.batch import decode_batch

    key = decode_batch(batch, verify_crc=False).records[0].key or b""
    if len(key) < 4:
        return -1
    return struct.unpack_from(">hh", key)[1]


class Log:
    def __init__(
        self,
        directory: str,
        config: dict[str, Any] | None = None,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        now_ms: int,
    ):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.config = resolve(config, TOPIC_CONFIGS, "topic")
        self.recovery_report = RecoveryReport()
        self.epoch_cache = LeaderEpochCache(self.dir)
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._txn_first: dict[int, int] = {}  # ongoing transactions: producer_id -> first offset
        self._pending_deletes: list[tuple[int, list[str]]] = []  # (due ms, files)
        self.recovery_point = recovery_point
        self._log_start_offset = log_start_offset
        self._closed = False
        self._load(now_ms)

    # -- opening and recovery -------------------------------------------
    def _new_segment(self, base_offset: int, now_ms: int, *, active: bool, suffix: str = "") -> LogSegment:
        return LogSegment(
            self.dir, base_offset,
            index_interval_bytes=self.config["index.interval.bytes"],
            max_index_size=self.config["segment.index.bytes"],
            created_ms=now_ms, active=active, suffix=suffix,
        )

    def _remove_file(self, path: str) -> None:
        os.unlink(path)
        self.recovery_report.removed_files.append(path)

    def _clean_leftovers(self) -> None:
        """Finish or undo what a crash interrupted: .tmp, .deleted, .cleaned, .swap files."""
        names = sorted(os.listdir(self.dir))
        for name in names:
            path = os.path.join(self.dir, name)
            if name.endswith((".tmp", DELETED_SUFFIX, CLEANED_SUFFIX)):
                # .deleted: already out of the log; .cleaned: compaction never committed.
                self._remove_file(path)
        for name in names:
            if not name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
                continue
            # A .swap log is a finished compaction of the segment with the same base offset:
            # replace that segment's files with the .swap ones (Kafka completes the swap too).
            base = offset_from_name(name)
            assert base is not None
            for suffix in SEGMENT_SUFFIXES:
                old = segment_path(self.dir, base, suffix)
                swap = old + SWAP_SUFFIX
                if os.path.exists(swap):
                    os.replace(swap, old)
                elif os.path.exists(old):
                    os.unlink(old)  # stale index of the replaced segment: rebuilt below
            self.recovery_report.completed_swaps.append(segment_path(self.dir, base, LOG_SUFFIX))
        for name in os.listdir(self.dir):
            if name.endswith(SWAP_SUFFIX):  # index .swap without its log: nothing to complete
                self._remove_file(os.path.join(self.dir, name))

    def _load(self, now_ms: int) -> None:
        self._clean_leftovers()
        bases = sorted(
            b for name in os.listdir(self.dir)
            if name.endswith(LOG_SUFFIX) and (b := offset_from_name(name)) is not None
        )
        for base in bases:
            missing_index = not all(
                os.path.exists(segment_path(self.dir, base, s)) for s in SEGMENT_SUFFIXES[1:3]
            )
            seg = self._new_segment(base, now_ms, active=False)
            seg._missing_index = missing_index  # type: ignore[attr-defined]
            self._segments.append(seg)
        self._bases = [s.base_offset for s in self._segments]
        if not self._segments:
            self._add_segment(self._new_segment(self._log_start_offset, now_ms, active=True))
        else:
            self._recover(now_ms)
            self._segments[-1].make_active()
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        leo = self.log_end_offset
        self.recovery_point = min(self.recovery_point, leo)
        self.epoch_cache.truncate_from_end(leo)
        self.epoch_cache.truncate_from_start(self._log_start_offset)
        for path in self.recovery_report.problems:
            log.warning("%s", path)
        if not self.recovery_report.clean:
            log.warning("recovered %s: %s", self.dir, self.recovery_report)

    def _recover(self, now_ms: int) -> None:
        report = self.recovery_report
        first_unflushed = max(bisect.bisect_right(self._bases, self.recovery_point) - 1, 0)
        # Segments before the recovery point were flushed: trust them, check their indexes.
        for seg in self._segments[:first_unflushed]:
            why = "missing" if seg._missing_index else None  # type: ignore[attr-defined]
            try:
                why = why or seg.index.check(seg.size) or seg.time_index.check(seg.next_offset)
                if why is None:
                    self._replay(seg)
            except CorruptRecordError as e:
                # Not rescanned (as Kafka): a read that reaches it raises with file and position.
                report.problems.append(f"{e} (before the recovery point, left in place)")
                continue
            if why is not None:
                report.rebuilt_indexes.append(f"{seg.index.path}: {why}")
                self._recover_segment(seg, write_txn_index=True, rebuild_only=True)
        for i in range(first_unflushed, len(self._segments)):
            seg = self._segments[i]
            report.recovered_segments.append(seg.log_path)
            truncated = self._recover_segment(seg, write_txn_index=True)
            if truncated:
                # Everything after a damaged batch is unreachable: drop later segments (as Kafka).
                for later in self._segments[i + 1 :]:
                    report.deleted_segments.append(later.log_path)
                    report.truncated_bytes += later.size
                    later.delete_files()
                del self._segments[i + 1 :]
                self._bases = self._bases[: i + 1]
                break

    def _recover_segment(self, seg: LogSegment, *, write_txn_index: bool, rebuild_only: bool = False) -> int:
        def on_batch(pos: int, h: BatchHeader, data: memoryview) -> None:
            if h.partition_leader_epoch >= 0:
                latest = self.epoch_cache.latest_epoch
                if latest is None or h.partition_leader_epoch > latest:
                    self.epoch_cache.assign(h.partition_leader_epoch, h.base_offset)
            self._track_txn(seg, h, data, write_txn_index=write_txn_index)

        truncated, problem = seg.recover(on_batch)
        if problem is not None:
            msg = f"{problem}: dropped {truncated} bytes"
            if rebuild_only:
                msg += " (found while rebuilding indexes before the recovery point)"
            self.recovery_report.problems.append(msg)
            self.recovery_report.truncated_bytes += truncated
            log.warning("%s", msg)
        return truncated

    def _replay(self, seg: LogSegment) -> None:
        """Rebuild in-memory transaction state from a trusted segment (headers only)."""
        for pos, h, _ in seg.scan(0):
            if h.is_transactional:
                data = seg.read_bytes(pos, h.size) if h.is_control else None
                self._track_txn(seg, h, data, write_txn_index=False)

    def _track_txn(self, seg: LogSegment, h: BatchHeader, data, *, write_txn_index: bool) -> None:
        if not h.is_transactional:
            return
        if not h.is_control:
            self._txn_first.setdefault(h.producer_id, h.base_offset)
            return
        first = self._txn_first.pop(h.producer_id, h.base_offset)
        if data is not None and control_type(data) == CONTROL_ABORT and write_txn_index:
            lso = min(self._txn_first.values(), default=h.base_offset + 1)
            seg.txn_index.append(AbortedTxn(h.producer_id, first, h.base_offset, lso))

    # -- properties -------------------------------------------------------
    @property
    def segments(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def first_unstable_offset(self) -> int | None:
        """First offset of the oldest open transaction (bounds the last stable offset), or None."""
        return min(self._txn_first.values(), default=None)

    def _add_segment(self, seg: LogSegment) -> None:
        self._segments.append(seg)
        self._bases.append(seg.base_offset)

    def _floor_index(self, offset: int) -> int:
        return max(bisect.bisect_right(self._bases, offset) - 1, 0)

    # -- appending --------------------------------------------------------
    def append(
        self,
        batch_bytes: bytes | bytearray | memoryview,
        *,
        assign_offsets: bool = True,
        leader_epoch: int | None = None,
        now_ms: int,
    ) -> tuple[int, int]:
        """Append one or more whole batches; returns (first offset, last offset).

        A leader (assign_offsets=True) gives the batches offsets from the log end offset and
        stamps leader_epoch (both outside the CRC). The input is not copied nor changed: each
        batch's first 16 bytes (base offset, length, leader epoch) go out as a new prefix and
        the rest straight from the caller's buffer, in one writev. A follower appends the
        leader's bytes as they are; their offsets must not go below the log end offset or
        backwards.
        """
        view = memoryview(batch_bytes)
        batches = parse_batches(view)
        leo = self.log_end_offset
        pieces: list[Any]
        if assign_offsets:
            pieces = []
            nxt = leo
            for i, (pos, h) in enumerate(batches):
                epoch = h.partition_leader_epoch if leader_epoch is None else leader_epoch
                h = h._replace(base_offset=nxt, partition_leader_epoch=epoch)
                batches[i] = (pos, h)
                pieces.append(_BATCH_PREFIX.pack(nxt, h.batch_length, epoch))
                pieces.append(view[pos + _BATCH_PREFIX.size : pos + h.size])
                nxt += h.last_offset_delta + 1
        else:
            pieces = [view]
            expected = leo
            for pos, h in batches:
                if h.base_offset < expected:
                    raise ValueError(
                        f"follower append at byte {pos} of the input: batch base offset "
                        f"{h.base_offset} is below {expected} (the log end offset or the previous "
                        "batch's end); truncate the log first (truncate_to) or fetch from the LEO"
                    )
                expected = h.next_offset
        first, last = batches[0][1], batches[-1][1]
        self._maybe_roll(len(view), first.base_offset, last.last_offset, len(batches), now_ms)
        seg = self.active_segment
        seg.append(pieces, batches)
        for pos, h in batches:
            if h.partition_leader_epoch >= 0:
                latest = self.epoch_cache.latest_epoch
                if latest is None or h.partition_leader_epoch > latest:
                    self.epoch_cache.assign(h.partition_leader_epoch, h.base_offset)
            if h.is_transactional:
                data = view[pos : pos + h.size] if h.is_control else None
                self._track_txn(seg, h, data, write_txn_index=True)
        return first.base_offset, last.last_offset

    def _maybe_roll(self, size: int, first_offset: int, last_offset: int, n_batches: int, now_ms: int) -> None:
        seg = self.active_segment
        if seg.size == 0:
            if first_offset - seg.base_offset > MAX_RELATIVE_OFFSET:
                # An empty segment that cannot index these offsets: start it where they start.
                self._segments.pop()
                self._bases.pop()
                seg.delete_files()
                self._add_segment(self._new_segment(first_offset, now_ms, active=True))
            return
        reason = None
        if seg.size + size > self.config["segment.bytes"]:
            reason = "segment.bytes"
        elif now_ms - seg.created_ms > self.config["segment.ms"]:
            reason = "segment.ms"
        elif len(seg.index) + n_batches > seg.index.max_entries or len(seg.time_index) + n_batches >= seg.time_index.max_entries:
            reason = "index full"
        elif last_offset - seg.base_offset > MAX_RELATIVE_OFFSET:
            reason = "relative offset overflow"
        if reason is not None:
            log.debug("rolling %s at %d: %s", self.dir, first_offset, reason)
            self.roll(now_ms, base_offset=max(first_offset, self.log_end_offset))

    def roll(self, now_ms: int, *, base_offset: int | None = None) -> LogSegment:
        """Close the active segment for appends and start a new one at the log end offset."""
        old = self.active_segment
        base = self.log_end_offset if base_offset is None else base_offset
        if old.size == 0 and base == old.base_offset:
            return old
        old.on_become_inactive()
        new = self._new_segment(base, now_ms, active=True)
        self._add_segment(new)
        return new

    # -- reading ----------------------------------------------------------
    def _check_range(self, offset: int) -> None:
        if offset < self._log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self._log_start_offset, self.log_end_offset)

    def read(
        self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one_batch: bool = True
    ) -> FileRegion:
        """Whole batches of one segment from the batch holding `offset` (see FileRegion).

        At least one whole batch even past max_bytes (as Kafka, so a big batch cannot stall a
        consumer); no batch starting at or beyond max_offset (e.g. the high watermark).
        """
        self._check_range(offset)
        leo = self.log_end_offset
        limit = leo if max_offset is None else min(max_offset, leo)
        i = self._floor_index(offset)
        if offset < limit:
            for seg in self._segments[i:]:
                region = seg.read(offset, max_bytes, max_offset=limit, min_one_batch=min_one_batch)
                if region is not None:
                    return region
        seg = self._segments[i]
        return FileRegion(seg.log_path, seg.size, 0, offset, offset)

    def read_bytes(
        self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one_batch: bool = True
    ) -> bytes:
        """The bytes of read(...), each batch's CRC checked (CorruptRecordError names file, byte)."""
        region = self.read(offset, max_bytes, max_offset=max_offset, min_one_batch=min_one_batch)
        if not region.length:
            return b""
        seg = self._segments[self._floor_index(region.first_offset)]
        if seg.log_path != region.path:
            seg = next(s for s in self._segments if s.log_path == region.path)
        data = seg.read_bytes(region.position, region.length)
        pos = 0
        while pos < len(data):
            h = parse_header(data, pos)
            if crc32c.crc32c(memoryview(data)[pos + CRC_START : pos + h.size]) != h.crc:
                raise CrcMismatchError(
                    "stored CRC-32C does not match the batch: the segment is damaged here; "
                    "delete the partition's data and re-replicate it",
                    path=region.path, position=region.position + pos,
                )
            pos += h.size
        return data

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """First offset whose record timestamp is >= timestamp (ListOffsets), or None."""
        for seg in self._segments:
            if seg.max_timestamp_so_far >= timestamp:
                found = seg.find_offset_by_timestamp(timestamp, self._log_start_offset)
                if found is not None:
                    return found[1]
        return None

    def collect_aborted_transactions(self, start_offset: int, upper_offset: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [start_offset, upper_offset), for read_committed."""
        out: list[AbortedTxn] = []
        for seg in self._segments[self._floor_index(start_offset):]:
            out.extend(seg.txn_index.collect_aborted(start_offset, upper_offset))
        return out

    # -- truncation and log start ---------------------------------------
    def truncate_to(self, offset: int, *, now_ms: int | None = None) -> int:
        """Follower truncation: drop everything at and after `offset`; returns bytes dropped.

        A batch holding `offset` goes whole (so the new log end offset may be below `offset`
        if it fell inside a batch); offsets < log_start_offset empty the log and restart it
        at `offset`.
        """
        if offset >= self.log_end_offset:
            # Nothing to cut, but an epoch this replica started as leader without appending
            # (Kafka's makeLeader entry at the log end) must go, as Kafka's truncateTo does:
            # else its fetches name an epoch it has no batch of, and never stop diverging.
            self.epoch_cache.truncate_from_end(self.log_end_offset)
            return 0
        if offset < self._log_start_offset:
            dropped = self.size_bytes
            self.truncate_fully_and_start_at(offset, now_ms=now_ms or 0)
            return dropped
        dropped = 0
        while len(self._segments) > 1 and self._segments[-1].base_offset > offset:
            seg = self._segments.pop()
            self._bases.pop()
            dropped += seg.size
            seg.delete_files()
        seg = self.active_segment
        dropped += seg.truncate_to(offset)
        if not seg.active:
            seg.make_active()
        self._after_truncation()
        return dropped

    def _after_truncation(self) -> None:
        leo = self.log_end_offset
        self.recovery_point = min(self.recovery_point, leo)
        self.epoch_cache.truncate_from_end(leo)
        self._txn_first = {}
        for seg in self._segments:
            self._replay(seg)

    def truncate_fully_and_start_at(self, offset: int, *, now_ms: int) -> None:
        """Delete every segment and restart the log empty at `offset`."""
        for seg in self._segments:
            seg.delete_files()
        self._segments, self._bases = [], []
        self._add_segment(self._new_segment(offset, now_ms, active=True))
        self._log_start_offset = offset
        self.recovery_point = offset
        self.epoch_cache.clear()
        self._txn_first = {}

    def increment_log_start_offset(self, offset: int) -> int:
        """Move the log start up (DeleteRecords, retention); segments below it go at cleanup."""
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self._log_start_offset, self.log_end_offset)
        if offset > self._log_start_offset:
            self._log_start_offset = offset
            self.epoch_cache.truncate_from_start(offset)
        return self._log_start_offset

    delete_records = increment_log_start_offset

    def delete_segments(self, segments: list[LogSegment], now_ms: int) -> None:
        """Take whole non-active segments out of the log: renamed .deleted, unlinked after
        file.delete.delay.ms by delete_expired_files (readers holding a FileRegion finish)."""
        for seg in segments:
            if seg is self.active_segment:
                raise ValueError(f"{seg.log_path} is the active segment; roll before deleting it")
            i = self._segments.index(seg)
            del self._segments[i]
            del self._bases[i]
            seg.close()
            files = []
            for p in seg.files:
                os.rename(p, p + DELETED_SUFFIX)
                files.append(p + DELETED_SUFFIX)
            self._pending_deletes.append((now_ms + self.config["file.delete.delay.ms"], files))
        if self._segments:
            self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
            self.epoch_cache.truncate_from_start(self._log_start_offset)

    def delete_expired_files(self, now_ms: int) -> list[str]:
        """Unlink .deleted files whose file.delete.delay.ms has passed; returns their paths."""
        done, keep = [], []
        for due, files in self._pending_deletes:
            if due <= now_ms:
                for p in files:
                    if os.path.exists(p):
                        os.unlink(p)
                    done.append(p)
            else:
                keep.append((due, files))
        self._pending_deletes = keep
        return done

    def replace_segment(self, old: LogSegment, cleaned: LogSegment) -> None:
        """Swap a compacted `.cleaned` segment in for `old` (same base offset), crash-safely:
        .cleaned -> .swap (the commit point), old files removed, .swap -> final names."""
        i = self._segments.index(old)
        cleaned.flush()
        cleaned.change_suffix(SWAP_SUFFIX)
        fsync_dir(self.dir)
        old.delete_files()
        cleaned.change_suffix("")
        fsync_dir(self.dir)
        self._segments[i] = cleaned

    # -- durability and close ----------------------------------------------
    def flush(self) -> None:
        """fsync segments up to the log end offset; recovery_point moves there. Nothing
        appended since the last flush (truncation lowers recovery_point): nothing to sync."""
        leo = self.log_end_offset
        if leo != self.recovery_point:
            for seg in self._segments[self._floor_index(self.recovery_point):]:
                seg.flush()
            fsync_dir(self.dir)
        self.epoch_cache.flush()
        self.recovery_point = leo

    def close(self, *, flush: bool = True) -> None:
        """Flush (unless told not to), trim the active indexes, release the files."""
        if self._closed:
            return
        self._closed = True
        if flush:
            self.flush()
        for seg in self._segments:
            seg.close()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- producer-state snapshots ------------------------------------------
    def snapshot_path(self, offset: int) -> str:
        return segment_path(self.dir, offset, SNAPSHOT_SUFFIX)

    def write_producer_snapshot(self, offset: int, entries: list[ProducerStateEntry]) -> str:
        path = self.snapshot_path(offset)
        write_atomic(path, encode_snapshot(entries))
        return path

    def read_producer_snapshot(self, offset: int) -> list[ProducerStateEntry]:
        path = self.snapshot_path(offset)
        with open(path, "rb") as f:
            return decode_snapshot(f.read(), path)

    def producer_snapshot_offsets(self) -> list[int]:
        return sorted(
            o for n in os.listdir(self.dir)
            if n.endswith(SNAPSHOT_SUFFIX) and (o := offset_from_name(n)) is not None
        )

    def delete_producer_snapshot(self, offset: int) -> None:
        path = self.snapshot_path(offset)
        if os.path.exists(path):
            os.unlink(path)

    def __repr__(self) -> str:
        return (f"Log({self.dir!r}, log_start_offset={self._log_start_offset}, "
                f"log_end_offset={self.log_end_offset}, segments={len(self._segments)})")


def parse_batches(buf: bytes | bytearray | memoryview, path: str = "<append input>") -> list[tuple[int, BatchHeader]]:
    """(position, header) of each whole batch in buf; CRC and structure checked."""
    view = memoryview(buf)
    out: list[tuple[int, BatchHeader]] = []
    pos = 0
    if not len(view):
        raise ValueError("append needs at least one record batch, got 0 bytes")
    while pos < len(view):
        remaining = len(view) - pos
        if remaining < HEADER_SIZE:
            raise CorruptRecordError(
                f"{remaining} trailing bytes are too few for a batch header; send whole batches",
                path=path, position=pos,
            )
        h = parse_header(view, pos)
        validate_header(h, path, pos, remaining)
        if crc32c.crc32c(view[pos + CRC_START : pos + h.size]) != h.crc:
            raise CrcMismatchError(
                "stored CRC-32C does not match the batch; the producer or network corrupted it",
                path=path, position=pos,
            )
        out.append((pos, h))
        pos += h.size
    return out
