"""The offset index (.index) and time index (.timeindex) of a segment.

Both are sparse, sorted, fixed-width files of big-endian entries, as Kafka writes them:

    .index      8 bytes: relative_offset int32, position int32
    .timeindex 12 bytes: timestamp int64, relative_offset int32

relative_offset = offset - segment base offset, so a segment spans at most 2**31 offsets.
An offset-index entry names the *last* offset of a batch and the file position where that
batch starts (Kafka since 3.x indexes per batch this way); a lookup returns the greatest
entry <= target and the reader scans forward from its position.

While a segment is active its index files are preallocated to `segment.index.bytes`
(zero-filled, sparse); they are trimmed to their entries when the segment rolls or the log
closes. A full index forces a roll. Entries are mirrored in memory for bisect lookups, as
two arrays of int64 (16 bytes an entry; lists of ints took ~80, 2 MB per 100 MB of log per
index at the default index.interval.bytes); the file is written through its mapping while
the segment is active, with pwrite otherwise.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from array import array

from kafkalab.errors import CorruptIndexError

NO_TIMESTAMP = -1


class _FixedIndex:
    """Shared machinery: a file of fixed-size entries (key, value) sorted by key."""

    ENTRY: struct.Struct
    KIND = "index"

    def __init__(self, path: str, base_offset: int, max_index_size: int, *, active: bool):
        self.path = path
        self.base_offset = base_offset
        self.entry_size = self.ENTRY.size
        self.max_entries = max(max_index_size // self.entry_size, 1)
        self._keys = array("q")
        self._values = array("q")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._mm: mmap.mmap | None = None
        self._load()
        self._active = False
        if active:
            self.make_active()

    # -- file <-> memory -------------------------------------------------
    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        # Preallocation (ftruncate) leaves a sparse hole after the last written entry: read only
        # up to it. Where holes are not reported, SEEK_HOLE answers the file size.
        try:
            end = min(os.lseek(self._fd, 0, os.SEEK_HOLE), size)
        except OSError:
            end = size
        data = os.pread(self._fd, end, 0) if end else b""
        # A preallocated file (a crash while active) ends in zeros never written: cut them off
        # at C speed before decoding; decoding a 10 MB index entry by entry takes seconds.
        written = len(data.rstrip(b"\0"))
        written += -written % self.entry_size
        usable = min(written, size - size % self.entry_size)
        entries = [self._decode(*e) for e in self.ENTRY.iter_unpack(data[:usable])]
        zero = self._decode(*self.ENTRY.unpack(bytes(self.entry_size)))
        while entries and entries[-1] == zero:
            entries.pop()
        self._keys = array("q", [k for k, _ in entries])
        self._values = array("q", [v for _, v in entries])
        self._misaligned_bytes = len(data) % self.entry_size

    def _file_cap(self) -> int:
        return self.max_entries * self.entry_size

    def _decode(self, a: int, b: int) -> tuple[int, int]:
        raise NotImplementedError

    def _encode(self, key: int, value: int) -> bytes:
        raise NotImplementedError

    def make_active(self) -> None:
        """Preallocate to segment.index.bytes and memory-map it, as Kafka does: an entry is a
        store into shared memory (no system call), visible to other processes at once."""
        self._active = True
        self.max_entries = max(self.max_entries, len(self._keys))
        self._map()

    def _map(self) -> None:
        self._unmap()
        os.ftruncate(self._fd, self._file_cap())
        self._mm = mmap.mmap(self._fd, self._file_cap())

    def _unmap(self) -> None:
        mm = getattr(self, "_mm", None)
        if mm is not None:
            mm.close()
        self._mm: mmap.mmap | None = None

    def trim(self) -> None:
        """Shrink the file to its entries (roll or close), as Kafka's trimToValidSize."""
        self._active = False
        self._unmap()
        os.ftruncate(self._fd, len(self._keys) * self.entry_size)

    # -- queries ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._keys, self._values, strict=True))

    @property
    def is_full(self) -> bool:
        return len(self._keys) >= self.max_entries

    def _floor(self, key: int) -> int:
        """Index of the greatest entry with entry key <= key, or -1."""
        return bisect.bisect_right(self._keys, key) - 1

    # -- changes ---------------------------------------------------------
    def _append(self, key: int, value: int) -> None:
        if self.is_full:
            raise CorruptIndexError(
                f"{self.path}: {self.KIND} is full ({self.max_entries} entries); roll the segment first"
            )
        at = len(self._keys) * self.entry_size
        if self._mm is not None:
            self._mm[at:at + self.entry_size] = self._encode(key, value)
        else:
            os.pwrite(self._fd, self._encode(key, value), at)
        self._keys.append(key)
        self._values.append(value)

    def _truncate_entries(self, count: int) -> None:
        written = len(self._keys) * self.entry_size
        del self._keys[count:]
        del self._values[count:]
        end = count * self.entry_size
        if self._active:
            # Zero the entries past the new end, so a reload does not see stale ones.
            if written > end:
                if self._mm is not None:
                    self._mm[end:written] = bytes(written - end)
                else:
                    os.pwrite(self._fd, bytes(written - end), end)
        else:
            os.ftruncate(self._fd, end)

    def reset(self) -> None:
        """Drop every entry (before a rebuild)."""
        self._truncate_entries(0)

    def flush(self) -> None:
        if self._mm is not None:
            self._mm.flush()
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            if self._active:
                self.trim()
            self._unmap()
            os.close(self._fd)
            self._fd = -1

    def rename(self, new_path: str) -> None:
        os.rename(self.path, new_path)
        self.path = new_path


class OffsetIndex(_FixedIndex):
    """Maps a batch's last offset to the file position where the batch starts."""

    ENTRY = struct.Struct(">ii")
    KIND = "offset index"

    def _decode(self, rel: int, pos: int) -> tuple[int, int]:
        return self.base_offset + rel, pos

    def _encode(self, offset: int, position: int) -> bytes:
        return self.ENTRY.pack(offset - self.base_offset, position)

    @property
    def last_offset(self) -> int:
        return self._keys[-1] if self._keys else self.base_offset

    def append(self, offset: int, position: int) -> None:
        if self._keys and (offset <= self._keys[-1] or position <= self._values[-1]):
            raise CorruptIndexError(
                f"{self.path}: entry (offset {offset}, position {position}) does not follow "
                f"({self._keys[-1]}, {self._values[-1]}); offset index entries must increase"
            )
        if not 0 <= offset - self.base_offset <= 0x7FFFFFFF:
            raise CorruptIndexError(f"{self.path}: offset {offset} does not fit a relative offset")
        self._append(offset, position)

    def lookup(self, target: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry <= target, else (base_offset, 0)."""
        i = self._floor(target)
        if i < 0:
            return self.base_offset, 0
        return self._keys[i], self._values[i]

    def truncate_to(self, offset: int) -> None:
        """Remove entries for offsets >= offset."""
        self._truncate_entries(bisect.bisect_left(self._keys, offset))

    def check(self, log_size: int) -> str | None:
        """Why the index cannot be trusted against a log of log_size bytes, or None."""
        if self._misaligned_bytes:
            return f"size is not a multiple of {self.entry_size} bytes"
        prev_o, prev_p = self.base_offset - 1, 0
        for i, (o, p) in enumerate(zip(self._keys, self._values, strict=True)):
            if o <= prev_o or p <= prev_p:
                return f"entry {i} (offset {o}, position {p}) is not increasing"
            if p >= log_size:
                return f"entry {i} points at position {p}, past the log's {log_size} bytes"
            prev_o, prev_p = o, p
        return None


class TimeIndex(_FixedIndex):
    """Maps a max timestamp seen so far to the offset of the batch holding it."""

    ENTRY = struct.Struct(">qi")
    KIND = "time index"

    def _decode(self, ts: int, rel: int) -> tuple[int, int]:
        return ts, self.base_offset + rel

    def _encode(self, timestamp: int, offset: int) -> bytes:
        return self.ENTRY.pack(timestamp, offset - self.base_offset)

    @property
    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry, or (-1, base_offset) when empty."""
        if not self._keys:
            return NO_TIMESTAMP, self.base_offset
        return self._keys[-1], self._values[-1]

    def maybe_append(self, timestamp: int, offset: int, *, skip_full_check: bool = False) -> None:
        """Add an entry only if timestamp is newer than the last one (the index stays sorted)."""
        if self._keys and timestamp <= self._keys[-1]:
            return
        if timestamp < 0:
            return
        if self.is_full and skip_full_check:
            # Roll time: make room for the final entry instead of failing.
            self.max_entries += 1
            if self._active:
                self._map()  # one entry larger
        self._append(timestamp, offset)

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the greatest entry with timestamp <= target, else (-1, base)."""
        i = self._floor(timestamp)
        if i < 0:
            return NO_TIMESTAMP, self.base_offset
        return self._keys[i], self._values[i]

    def truncate_to(self, offset: int) -> None:
        """Remove entries whose offset >= offset."""
        keep = len(self._values)
        while keep and self._values[keep - 1] >= offset:
            keep -= 1
        self._truncate_entries(keep)

    def check(self, next_offset: int) -> str | None:
        if self._misaligned_bytes:
            return f"size is not a multiple of {self.entry_size} bytes"
        prev_t, prev_o = NO_TIMESTAMP - 1, self.base_offset - 1
        for i, (t, o) in enumerate(zip(self._keys, self._values, strict=True)):
            if t <= prev_t or o < prev_o:
                return f"entry {i} (timestamp {t}, offset {o}) is not increasing"
            if o >= next_offset:
                return f"entry {i} points at offset {o}, past the segment's end {next_offset}"
            prev_t, prev_o = t, o
        return None
