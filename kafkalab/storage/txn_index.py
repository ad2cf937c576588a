"""The transaction index (.txnindex): the aborted transactions whose markers a segment holds.

Each entry is 34 bytes, big-endian, as Kafka writes them:

    version int16 (= 0), producer_id int64, first_offset int64, last_offset int64,
    last_stable_offset int64

first_offset..last_offset spans the aborted transaction (last_offset is its ABORT marker);
a read_committed consumer uses these ranges to skip aborted records, and the cleaner uses
them to drop those records. The file is not preallocated: entries are appended.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from kafkalab.errors import CorruptIndexError

_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34
VERSION = 0


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int

    def encode(self) -> bytes:
        return _ENTRY.pack(VERSION, *self)


class TransactionIndex:
    def __init__(self, path: str):
        self.path = path
        self._entries: list[AbortedTxn] = []
        self._fd = -1
        if os.path.exists(path):
            with open(path, "rb") as f:
                self._entries = decode_entries(f.read(), path)

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    @property
    def entries(self) -> list[AbortedTxn]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, txn: AbortedTxn) -> None:
        if self._entries and txn.last_offset <= self._entries[-1].last_offset:
            raise CorruptIndexError(
                f"{self.path}: aborted txn ending at {txn.last_offset} does not follow the one "
                f"ending at {self._entries[-1].last_offset}"
            )
        os.pwrite(self._open(), txn.encode(), len(self._entries) * ENTRY_SIZE)
        self._entries.append(txn)

    def collect_aborted(self, fetch_offset: int, upper_offset: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [fetch_offset, upper_offset)."""
        return [t for t in self._entries if t.last_offset >= fetch_offset and t.first_offset < upper_offset]

    def truncate_to(self, offset: int) -> None:
        """Drop entries whose marker (last_offset) is at or beyond offset."""
        keep = [t for t in self._entries if t.last_offset < offset]
        if len(keep) != len(self._entries):
            self._entries = keep
            os.ftruncate(self._open(), len(keep) * ENTRY_SIZE)

    def reset(self) -> None:
        self._entries = []
        if os.path.exists(self.path):
            os.ftruncate(self._open(), 0)

    def flush(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def rename(self, new_path: str) -> None:
        if os.path.exists(self.path):
            os.rename(self.path, new_path)
        self.path = new_path


def decode_entries(data: bytes, path: str = "<bytes>") -> list[AbortedTxn]:
    if len(data) % ENTRY_SIZE:
        raise CorruptIndexError(
            f"{path}: {len(data)} bytes is not a multiple of the {ENTRY_SIZE}-byte entry "
            f"(torn at byte {len(data) - len(data) % ENTRY_SIZE}); delete the file to rebuild it"
        )
    out = []
    for i, (version, *fields) in enumerate(_ENTRY.iter_unpack(data)):
        if version != VERSION:
            raise CorruptIndexError(
                f"{path}: entry at byte {i * ENTRY_SIZE} has version {version}, expected 0; "
                "delete the file to rebuild it"
            )
        out.append(AbortedTxn(*fields))
    return out
