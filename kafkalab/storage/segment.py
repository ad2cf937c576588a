"""LogSegment: one .log file of whole record batches plus its three indexes.

The .log file is exactly the concatenation of RecordBatch v2 bytes (no framing of our own),
so a Kafka tool can read it. Appends go straight to the file with os.write on an O_APPEND
descriptor: once append returns, another process (or os.sendfile) sees the bytes, and a
process crash cannot lose them (the page cache survives it; fsync is flush()'s job).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import crc32c

from kafkalab.errors import (
    CorruptRecordError,
    CrcMismatchError,
    InvalidMagicError,
    TruncatedBatchError,
)
from kafkalab.records.header import (
    CRC_START,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    parse_header,
)
from kafkalab.storage.files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    segment_path,
)
from kafkalab.storage.index import NO_TIMESTAMP, OffsetIndex, TimeIndex
from kafkalab.storage.txn_index import TransactionIndex

Buffer = bytes | bytearray | memoryview
_IOV_MAX = 1024  # pieces per writev (Linux's IOV_MAX)

_CHUNK = 1 << 20  # read-ahead when scanning whole batches
# Read-ahead when scanning headers only (a fetch finding its batches): enough for many small
# batches, while a scan over big batches does not copy megabytes it skips.
_HEADER_CHUNK = 1 << 16
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # batch_length of a batch with no records


@dataclass(frozen=True, slots=True)
class FileRegion:
    """Whole batches of one segment file: what os.sendfile(sock, fd, position, length) sends.

    first_offset is the base offset of the first batch (it may be below the offset asked for,
    which then sits inside that batch); end_offset is the offset after the last batch. An empty
    region (length 0) has first_offset == end_offset == the offset asked for.
    """

    path: str
    position: int
    length: int
    first_offset: int
    end_offset: int


def validate_header(h: BatchHeader, path: str, pos: int, remaining: int) -> None:
    """Raise the named CorruptRecordError if the header at pos cannot start a whole batch."""
    if h.magic != MAGIC:
        raise InvalidMagicError(
            f"magic byte {h.magic} is not 2 (only RecordBatch v2 is supported); the file is "
            "damaged from here: truncate it at this position or restore it from a replica",
            path=path, position=pos,
        )
    if h.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"batch_length {h.batch_length} is below the {MIN_BATCH_LENGTH}-byte minimum; the "
            "file is damaged from here: truncate it at this position",
            path=path, position=pos,
        )
    if h.size > remaining:
        raise TruncatedBatchError(
            f"batch of {h.size} bytes runs past the end of the file ({remaining} bytes left): a "
            "torn write; truncate the file at this position",
            path=path, position=pos,
        )
    if h.last_offset_delta < 0:
        raise CorruptRecordError(
            f"last_offset_delta {h.last_offset_delta} is negative; truncate the file at this position",
            path=path, position=pos,
        )


class LogSegment:
    def __init__(
        self,
        directory: str,
        base_offset: int,
        *,
        index_interval_bytes: int = 4096,
        max_index_size: int = 10_485_760,
        created_ms: int = 0,
        active: bool = False,
        suffix: str = "",
    ):
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.suffix = suffix  # "" normally; ".cleaned"/".swap" while compaction builds it
        self.log_path = segment_path(directory, base_offset, LOG_SUFFIX) + suffix
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
        self.index = OffsetIndex(
            segment_path(directory, base_offset, INDEX_SUFFIX) + suffix, base_offset, max_index_size, active=active
        )
        self.time_index = TimeIndex(
            segment_path(directory, base_offset, TIME_INDEX_SUFFIX) + suffix, base_offset, max_index_size, active=active
        )
        self.txn_index = TransactionIndex(segment_path(directory, base_offset, TXN_INDEX_SUFFIX) + suffix)
        self.active = active
        ts, off = self.time_index.last_entry
        self.max_timestamp_so_far = ts
        self.offset_of_max_timestamp = off
        last_pos = self.index.entries[-1][1] if len(self.index) else 0
        self._bytes_since_last_index_entry = self.size - last_pos if self.size else 0
        self._next_offset: int | None = base_offset if self.size == 0 else None
        self.created_ms = created_ms
        if self.size >= HEADER_SIZE:
            first = parse_header(os.pread(self._fd, HEADER_SIZE, 0))
            if first.magic == MAGIC and first.max_timestamp >= 0:
                # As Kafka's rollingBasedTimestamp: a found segment's age counts from its first batch.
                self.created_ms = first.max_timestamp

    # -- reading ---------------------------------------------------------
    def scan(
        self, start: int = 0, *, verify_crc: bool = False, with_bytes: bool = False, end: int | None = None
    ) -> Iterator[tuple[int, BatchHeader, memoryview | None]]:
        """Yield (position, header, batch bytes or None) from `start`, checking structure.

        Raises the named CorruptRecordError (with this file and the byte position) at the
        first batch that is torn, has a bad magic or length, or (verify_crc) a bad CRC.
        """
        end = self.size if end is None else end
        pos, buf, buf_start = start, b"", start
        expected = self.base_offset
        need_bytes = verify_crc or with_bytes
        read_ahead = _CHUNK if need_bytes else _HEADER_CHUNK
        while pos < end:
            remaining = end - pos
            if remaining < HEADER_SIZE:
                raise TruncatedBatchError(
                    f"{remaining} trailing bytes are too few for a {HEADER_SIZE}-byte batch header: "
                    "a torn write; truncate the file at this position",
                    path=self.log_path, position=pos,
                )
            off = pos - buf_start
            if off + HEADER_SIZE > len(buf):
                buf, buf_start, off = os.pread(self._fd, min(read_ahead, remaining), pos), pos, 0
            h = parse_header(buf, off)
            validate_header(h, self.log_path, pos, remaining)
            if h.base_offset < expected:
                raise CorruptRecordError(
                    f"batch base offset {h.base_offset} is below {expected} (offsets must increase); "
                    "truncate the file at this position",
                    path=self.log_path, position=pos,
                )
            data = None
            if need_bytes:
                if off + h.size > len(buf):
                    buf, buf_start, off = os.pread(self._fd, min(max(_CHUNK, h.size), remaining), pos), pos, 0
                data = memoryview(buf)[off : off + h.size]
                if verify_crc:
                    actual = crc32c.crc32c(data[CRC_START:])
                    if actual != h.crc:
                        raise CrcMismatchError(
                            f"CRC-32C {actual:#010x} does not match the stored {h.crc:#010x}; the "
                            "batch is damaged: truncate the file at this position",
                            path=self.log_path, position=pos,
                        )
            yield pos, h, data
            expected = h.next_offset
            pos += h.size

    def translate_offset(self, offset: int) -> tuple[int, BatchHeader] | None:
        """(position, header) of the first batch whose last offset >= offset, or None."""
        _, start = self.index.lookup(offset)
        for pos, h, _ in self.scan(start):
            if h.last_offset >= offset:
                return pos, h
        return None

    def read(
        self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one_batch: bool = True
    ) -> FileRegion | None:
        """Whole batches from the one holding `offset`, or None if no batch here reaches it."""
        _, index_position = self.index.lookup(offset)
        start, first = -1, None
        length, end_offset = 0, offset
        # One pass from the index entry: skip to the batch holding offset, then take batches.
        for pos, h, _ in self.scan(index_position):
            if first is None:
                if h.last_offset < offset:
                    continue
                start, first, end_offset = pos, h, h.base_offset
            if max_offset is not None and h.base_offset >= max_offset:
                break
            if length + h.size > max_bytes and (length or not min_one_batch):
                break
            length += h.size
            end_offset = h.next_offset
        if first is None:
            return None
        if length == 0:
            return FileRegion(self.log_path, start, 0, offset, offset)
        return FileRegion(self.log_path, start, length, first.base_offset, end_offset)

    def read_bytes(self, position: int, length: int) -> bytes:
        return os.pread(self._fd, length, position)

    @property
    def next_offset(self) -> int:
        """The offset after this segment's last batch (base_offset when empty)."""
        if self._next_offset is None:
            _, start = self.index.lookup(2**63 - 1)
            nxt = self.base_offset
            for _, h, _ in self.scan(start):
                nxt = h.next_offset
            self._next_offset = nxt
        return self._next_offset

    def find_offset_by_timestamp(self, timestamp: int, starting_offset: int) -> tuple[int, int] | None:
        """(timestamp, offset) of the first record at or after starting_offset with ts >= timestamp."""
        from kafkalab.records.batch import decode_batch  # the records package owns decoding

        _, ts_offset = self.time_index.lookup(timestamp)
        _, start = self.index.lookup(max(ts_offset, starting_offset))
        for pos, h, data in self.scan(start, with_bytes=True):
            if h.max_timestamp < timestamp or h.last_offset < starting_offset or h.is_control:
                continue
            try:
                batch = decode_batch(data)
            except CorruptRecordError as e:
                raise type(e)(str(e), path=self.log_path, position=pos) from None
            for r in batch.records:
                if r.timestamp >= timestamp and r.offset >= starting_offset:
                    return r.timestamp, r.offset
        return None

    @property
    def largest_timestamp(self) -> int:
        """Max batch timestamp seen (retention.ms looks at it); file mtime if none."""
        if self.max_timestamp_so_far >= 0:
            return self.max_timestamp_so_far
        return int(os.stat(self.log_path).st_mtime * 1000)

    # -- writing ---------------------------------------------------------
    def append(self, data: Buffer | list[Buffer], batches: list[tuple[int, BatchHeader]]) -> None:
        """Write whole batches (positions relative to the bytes written) and index them at
        Kafka's cadence. data: the bytes, or pieces written in order with one writev."""
        start = self.size
        pieces = [memoryview(data)] if not isinstance(data, list) else [memoryview(p) for p in data]
        size = sum(p.nbytes for p in pieces)
        while pieces:  # a short write (a full disk's last bytes) continues where it stopped
            written = os.writev(self._fd, pieces[:_IOV_MAX])
            while pieces and written >= pieces[0].nbytes:
                written -= pieces[0].nbytes
                pieces.pop(0)
            if pieces and written:
                pieces[0] = pieces[0][written:]
        for rel, h in batches:
            self._index_batch(start + rel, h)
        self.size = start + size
        self._next_offset = batches[-1][1].next_offset

    def _index_batch(self, pos: int, h: BatchHeader) -> None:
        if h.max_timestamp > self.max_timestamp_so_far:
            self.max_timestamp_so_far = h.max_timestamp
            self.offset_of_max_timestamp = h.last_offset
        # Kafka's rule: an entry once more than index.interval.bytes were written since the last.
        if self._bytes_since_last_index_entry > self.index_interval_bytes:
            self.index.append(h.last_offset, pos)
            self.time_index.maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp)
            self._bytes_since_last_index_entry = 0
        self._bytes_since_last_index_entry += h.size

    def recover(
        self, on_batch: Callable[[int, BatchHeader, memoryview], None] | None = None
    ) -> tuple[int, CorruptRecordError | None]:
        """Re-validate every batch (CRC included), rebuild the indexes, cut a bad tail.

        Returns (bytes truncated, the error that ended the valid prefix or None).
        """
        self.index.reset()
        self.time_index.reset()
        self.txn_index.reset()
        self.max_timestamp_so_far, self.offset_of_max_timestamp = NO_TIMESTAMP, self.base_offset
        self._bytes_since_last_index_entry = 0
        valid, nxt, problem = 0, self.base_offset, None
        try:
            for pos, h, data in self.scan(0, verify_crc=True):
                if h.last_offset - self.base_offset > 0x7FFFFFFF:
                    raise CorruptRecordError(
                        f"last offset {h.last_offset} does not fit this segment's relative offsets; "
                        "truncate the file at this position",
                        path=self.log_path, position=pos,
                    )
                self._index_batch(pos, h)
                if on_batch is not None:
                    on_batch(pos, h, data)
                valid, nxt = pos + h.size, h.next_offset
        except CorruptRecordError as e:
            problem = e
        truncated = self.size - valid
        if truncated:
            os.ftruncate(self._fd, valid)
            self.size = valid
        self._next_offset = nxt
        if not self.active:
            self.time_index.maybe_append(
                self.max_timestamp_so_far, self.offset_of_max_timestamp, skip_full_check=True
            )
        return truncated, problem

    def truncate_to(self, offset: int) -> int:
        """Drop the batch holding `offset` and everything after it; return the bytes removed."""
        found = self.translate_offset(offset)
        if found is None:
            return 0
        pos, h = found
        cut = min(offset, h.base_offset)
        self.index.truncate_to(cut)
        self.time_index.truncate_to(cut)
        self.txn_index.truncate_to(cut)
        removed = self.size - pos
        os.ftruncate(self._fd, pos)
        self.size = pos
        self._next_offset = h.base_offset if pos else self.base_offset
        self.max_timestamp_so_far, self.offset_of_max_timestamp = self.time_index.last_entry
        last_pos = self.index.entries[-1][1] if len(self.index) else 0
        self._bytes_since_last_index_entry = self.size - last_pos if self.size else 0
        return removed

    def on_become_inactive(self) -> None:
        """At roll: a final time-index entry for the segment's max, then trim the indexes."""
        self.time_index.maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp, skip_full_check=True)
        self.index.trim()
        self.time_index.trim()
        self.active = False

    def make_active(self) -> None:
        self.index.make_active()
        self.time_index.make_active()
        self.active = True

    def flush(self) -> None:
        os.fsync(self._fd)
        self.index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def close(self) -> None:
        if self._fd >= 0:
            if self.active:
                self.time_index.maybe_append(
                    self.max_timestamp_so_far, self.offset_of_max_timestamp, skip_full_check=True
                )
            os.close(self._fd)
            self._fd = -1
        self.index.close()
        self.time_index.close()
        self.txn_index.close()

    @property
    def files(self) -> list[str]:
        return [p for p in (self.log_path, self.index.path, self.time_index.path, self.txn_index.path) if os.path.exists(p)]

    def change_suffix(self, new_suffix: str) -> None:
        """Rename every file of the segment from its current suffix to new_suffix."""
        def renamed(path: str) -> str:
            return path[: len(path) - len(self.suffix)] + new_suffix if self.suffix else path + new_suffix

        new_log = renamed(self.log_path)
        os.rename(self.log_path, new_log)
        self.log_path = new_log
        self.index.rename(renamed(self.index.path))
        self.time_index.rename(renamed(self.time_index.path))
        self.txn_index.rename(renamed(self.txn_index.path))
        self.suffix = new_suffix

    def delete_files(self) -> None:
        self.close()
        for p in self.files:
            os.unlink(p)

    def __repr__(self) -> str:
        return f"LogSegment(base_offset={self.base_offset}, size={self.size}, path={self.log_path!r})"
