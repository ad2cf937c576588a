"""Log compaction (cleanup.policy=compact): keep the latest record per key, offsets intact.

clean(log, now_ms) is pure storage logic (no threads, no clock reads). One pass, as Kafka's
LogCleaner does it:

0. Find the cleanable part of the log: the closed segments before the *first uncleanable
   offset*, which is the lowest of the active segment's base offset, the last stable offset
   (no record of an open transaction, or above the high watermark, is ever cleaned) and the
   first segment whose newest record is younger than min.compaction.lag.ms.
1. Build the offset map, as Kafka's Cleaner.buildOffsetMap does, from the *dirty* range only:
   each key's latest offset from the first dirty offset (where the last pass stopped) up to the
   first uncleanable offset. The clean part is not read into it (an earlier pass left it with
   one record per key); the active segment is not either: a value superseded only by a record
   in the active segment stays until that segment closes and a later pass runs. So a finished
   pass stays finished while producers append. Records of aborted transactions (known from the
   .txnindex files) are not mapped: they are removed.
2. Rewrite every cleanable segment, clean and dirty, into a `.cleaned` segment keeping, per
   batch, the records no newer record in the map supersedes (a key the map lacks is kept), as
   Kafka's shouldRetainRecord. A batch that keeps all its records is copied byte for
   byte; one that loses some is re-encoded with its surviving records at their original
   offsets (its base offset and last offset delta stay, so the batch still ends where it did).
3. Swap it in: `.cleaned` -> `.swap` (the commit point) -> old files removed -> final names,
   indexes rebuilt by the append. A crash anywhere leaves either the old or the new segment
   (Log's open completes a `.swap` and drops a `.cleaned`).

Delete horizon (tombstones and transaction markers), as Kafka 3.1+ (KIP-534): the first pass
that keeps a tombstone (null value) stamps its batch with a delete horizon, now +
delete.retention.ms (attributes bit 6; base_timestamp holds it). A later pass at or after the
horizon removes the tombstone, so a consumer that reads to the log end within
delete.retention.ms of the first cleaning still sees the delete. A COMMIT/ABORT marker gets its
horizon once no record of its transaction remains, and goes at the first pass after it.
Keyless records are dropped (the broker rejects them on a compacted topic at produce time).

Order, as Kafka's cleaner thread (LogCleaner.cleanFilthiestLog, then deleteOldSegments on every
compacted log): a log with cleanup.policy=compact,delete is compacted first, then retention
applies to what is left (`Cleaner.run`); a compact-only log still loses segments below its log
start offset (DeleteRecords). Kafka's log manager runs retention for delete-only logs.

min.cleanable.dirty.ratio: clean only when the dirty bytes (cleanable segments at or after the
first dirty offset, i.e. not yet cleaned) are at least that share of the cleanable log, or
when a dirty segment's first batch is older than max.compaction.lag.ms (KIP-354).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import crc32c

from kafkalab.records.batch import Record, decode_batch
from kafkalab.records.header import (
    COMPRESSION_MASK,
    DELETE_HORIZON_BIT,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    parse_header,
)
from kafkalab.records.varint import write_varint
from kafkalab.storage.files import CLEANED_SUFFIX, SEGMENT_SUFFIXES, segment_path
from kafkalab.storage.log import Log
from kafkalab.storage.retention import apply_retention
from kafkalab.storage.segment import LogSegment
from kafkalab.storage.txn_index import AbortedTxn


def _batches(seg: LogSegment) -> Iterator[tuple[int, BatchHeader, bytes]]:
    for pos, h, data in seg.scan(0, with_bytes=True):
        yield pos, h, bytes(data)


def _is_aborted(h: BatchHeader, offset: int, aborted: dict[int, list[AbortedTxn]]) -> bool:
    if not h.is_transactional or h.is_control:
        return False
    return any(t.first_offset <= offset <= t.last_offset for t in aborted.get(h.producer_id, ()))


def encode_retained(h: BatchHeader, records: list[Record], delete_horizon_ms: int | None = None) -> bytes:
    """A batch with some of its records, each at its original offset (uncompressed), and the
    delete horizon stamped in if given (then base_timestamp is the horizon, see the docstring)."""
    base_ts = records[0].timestamp if delete_horizon_ms is None else delete_horizon_ms
    body = bytearray()
    for r in records:
        rec = bytearray(b"\x00")
        write_varint(rec, r.timestamp - base_ts)
        write_varint(rec, r.offset - h.base_offset)
        for field in (r.key, r.value):
            if field is None:
                write_varint(rec, -1)
            else:
                write_varint(rec, len(field))
                rec += field
        write_varint(rec, len(r.headers))
        for hk, hv in r.headers:
            kb = hk.encode()
            write_varint(rec, len(kb))
            rec += kb
            if hv is None:
                write_varint(rec, -1)
            else:
                write_varint(rec, len(hv))
                rec += hv
        write_varint(body, len(rec))
        body += rec
    attributes = h.attributes & ~COMPRESSION_MASK & ~DELETE_HORIZON_BIT
    if delete_horizon_ms is not None:
        attributes |= DELETE_HORIZON_BIT
    tail = struct.pack(
        ">hiqqqhii", attributes, h.last_offset_delta, base_ts, max(r.timestamp for r in records),
        h.producer_id, h.producer_epoch, h.base_sequence, len(records),
    ) + bytes(body)
    head = struct.pack(">qiibI", h.base_offset, HEADER_SIZE - LOG_OVERHEAD + len(body),
                       h.partition_leader_epoch, MAGIC, crc32c.crc32c(tail))
    return head + tail


def cleanable_segments(log: Log, now_ms: int, last_stable_offset: int | None = None) -> list[LogSegment]:
    """The closed segments before the first uncleanable offset (see the module docstring)."""
    lag = log.config["min.compaction.lag.ms"]
    cleanable: list[LogSegment] = []
    for seg in log.segments[:-1]:
        if last_stable_offset is not None and seg.next_offset > last_stable_offset:
            break
        if lag and seg.max_timestamp_so_far > now_ms - lag:
            break
        cleanable.append(seg)
    return cleanable


def dirty_ratio(segments: list[LogSegment], first_dirty_offset: int) -> tuple[float, int, int]:
    """(ratio, clean bytes, dirty bytes) over the cleanable segments."""
    clean = sum(s.size for s in segments if s.next_offset <= first_dirty_offset)
    dirty = sum(s.size for s in segments if s.next_offset > first_dirty_offset)
    total = clean + dirty
    return (dirty / total if total else 0.0), clean, dirty


def _max_compaction_lag_passed(segments: list[LogSegment], first_dirty_offset: int, now_ms: int,
                               max_lag_ms: int) -> bool:
    """max.compaction.lag.ms: a dirty segment whose first batch is older than this is cleaned
    whatever the dirty ratio (Kafka times it from the first batch's timestamp)."""
    for seg in segments:
        if seg.next_offset > first_dirty_offset:  # dirty, as in dirty_ratio
            first = next(iter(seg.scan(0)), None)
            if first is not None and 0 <= first[1].max_timestamp < now_ms - max_lag_ms:
                return True
    return False


class Cleaner:
    """Remembers each log's first dirty offset (Kafka's cleaner-offset-checkpoint)."""

    def __init__(self) -> None:
        self.first_dirty: dict[str, int] = {}

    def clean(self, log: Log, now_ms: int, last_stable_offset: int | None = None) -> dict:
        first_dirty = max(self.first_dirty.get(log.dir, 0), log.log_start_offset)
        stats = clean(log, now_ms, first_dirty_offset=first_dirty, last_stable_offset=last_stable_offset)
        if stats["cleaned"]:
            self.first_dirty[log.dir] = stats["first_dirty_offset"]
        return stats

    def run(self, log: Log, now_ms: int, high_watermark: int | None = None,
            last_stable_offset: int | None = None) -> tuple[dict | None, dict]:
        """One log's turn in a cleanup round, in Kafka's order: compaction (if the policy has
        compact), then retention on what is left. Returns (compaction stats or None, retention)."""
        compaction = None
        if "compact" in log.config["cleanup.policy"]:
            compaction = self.clean(log, now_ms, last_stable_offset)
        return compaction, apply_retention(log, now_ms, high_watermark)


def clean(log: Log, now_ms: int, *, first_dirty_offset: int | None = None,
          last_stable_offset: int | None = None, force: bool = False) -> dict:
    """Compact `log` once if its policy and dirty ratio call for it; returns statistics.

    last_stable_offset: the partition's LSO (the broker passes it; None means the log end)."""
    stats: dict = {"cleaned": False, "reason": None, "segments_cleaned": 0, "records_read": 0,
                   "records_kept": 0, "records_removed": 0, "tombstones_removed": 0,
                   "aborted_removed": 0, "keyless_removed": 0, "markers_removed": 0,
                   "bytes_before": 0, "bytes_after": 0}
    if "compact" not in log.config["cleanup.policy"]:
        stats["reason"] = "cleanup.policy does not include compact"
        return stats
    first_dirty = log.log_start_offset if first_dirty_offset is None else first_dirty_offset
    cleanable = cleanable_segments(log, now_ms, last_stable_offset)
    ratio, clean_bytes, dirty_bytes = dirty_ratio(cleanable, first_dirty)
    stats.update(dirty_ratio=ratio, clean_bytes=clean_bytes, dirty_bytes=dirty_bytes)
    if not cleanable:
        stats["reason"] = ("no segment is cleanable yet (the active segment, open transactions, "
                           "the high watermark or min.compaction.lag.ms)")
        return stats
    if not force and (ratio == 0 or ratio < log.config["min.cleanable.dirty.ratio"]):
        # Below the ratio: only max.compaction.lag.ms can still call for a pass (read only now,
        # as it costs a header read per dirty segment every round).
        overdue = dirty_bytes > 0 and _max_compaction_lag_passed(cleanable, first_dirty, now_ms,
                                                                 log.config["max.compaction.lag.ms"])
        stats["max_compaction_lag_passed"] = overdue
        if not overdue:
            stats["reason"] = f"dirty ratio {ratio:.2f} < min.cleanable.dirty.ratio"
            return stats

    aborted: dict[int, list[AbortedTxn]] = {}
    for seg in log.segments:
        for t in seg.txn_index.entries:
            aborted.setdefault(t.producer_id, []).append(t)

    # Pass 1: the offset map, latest offset per key over the dirty range of the cleanable part.
    latest: dict[bytes, int] = {}
    for seg in cleanable:
        if seg.next_offset <= first_dirty:
            continue  # clean: not read into the map
        for _, h, data in _batches(seg):
            if h.is_control or h.last_offset < first_dirty:
                continue
            for r in decode_batch(data, verify_crc=False).records:
                if r.offset >= first_dirty and r.key is not None and not _is_aborted(h, r.offset, aborted):
                    latest[r.key] = r.offset

    def superseded(r: Record) -> bool:
        return r.offset < latest.get(r.key, -1)  # a key the map lacks is kept

    # Pass 2: which transactions keep data (markers of emptied ones may go).
    txn_has_data: dict[int, bool] = {}  # marker offset -> any record of its txn survives
    open_txn: dict[int, bool] = {}
    for seg in cleanable:
        for _, h, data in _batches(seg):
            if not h.is_transactional:
                continue
            if h.is_control:
                txn_has_data[h.base_offset] = open_txn.pop(h.producer_id, False)
                continue
            keeps = any(
                r.key is not None and not superseded(r) and not _is_aborted(h, r.offset, aborted)
                for r in decode_batch(data, verify_crc=False).records
            )
            open_txn[h.producer_id] = open_txn.get(h.producer_id, False) or keeps

    retention = log.config["delete.retention.ms"]
    for seg in cleanable:
        cleaned = _new_cleaned(log, seg)
        out = bytearray()
        headers: list[tuple[int, BatchHeader]] = []
        for _, h, data in _batches(seg):
            stats["bytes_before"] += h.size
            horizon = h.delete_horizon_ms
            if h.is_control:
                new = data
                if not txn_has_data.get(h.base_offset, False):   # its transaction left no record
                    if horizon is not None and now_ms >= horizon:
                        stats["markers_removed"] += 1
                        continue
                    if horizon is None:
                        new = encode_retained(h, decode_batch(data, verify_crc=False).records,
                                              now_ms + retention)
                headers.append((len(out), parse_header(new)))
                out += new
                continue
            records = decode_batch(data, verify_crc=False).records
            kept = []
            for r in records:
                stats["records_read"] += 1
                if r.key is None:
                    stats["keyless_removed"] += 1
                elif _is_aborted(h, r.offset, aborted):
                    stats["aborted_removed"] += 1
                elif superseded(r):
                    pass
                elif r.value is None and horizon is not None and now_ms >= horizon:
                    stats["tombstones_removed"] += 1
                else:
                    kept.append(r)
            stats["records_kept"] += len(kept)
            stats["records_removed"] += len(records) - len(kept)
            if not kept:
                continue
            if horizon is None and any(r.value is None for r in kept):
                new = encode_retained(h, kept, now_ms + retention)   # first cleaning of a tombstone
            elif len(kept) == len(records) and not h.compression:
                new = data
            else:
                new = encode_retained(h, kept, horizon)
            headers.append((len(out), parse_header(new)))
            out += new
        if headers:
            cleaned.append(out, headers)
        for t in seg.txn_index.entries:
            cleaned.txn_index.append(t)
        cleaned.on_become_inactive()
        stats["bytes_after"] += cleaned.size
        log.replace_segment(seg, cleaned)
        stats["segments_cleaned"] += 1
    stats["cleaned"] = True
    stats["first_dirty_offset"] = log.segments[len(cleanable)].base_offset
    return stats


def _new_cleaned(log: Log, seg: LogSegment) -> LogSegment:
    for suffix in SEGMENT_SUFFIXES:  # a stale .cleaned from an earlier crash
        stale = segment_path(log.dir, seg.base_offset, suffix) + CLEANED_SUFFIX
        if os.path.exists(stale):
            os.unlink(stale)
    return LogSegment(
        log.dir, seg.base_offset,
        index_interval_bytes=log.config["index.interval.bytes"],
        max_index_size=log.config["segment.index.bytes"],
        created_ms=seg.created_ms, active=False, suffix=CLEANED_SUFFIX,
    )
