"""Producer-state snapshots (NNNNNNNNNNNNNNNNNNNN.snapshot), in Kafka's layout (version 1).

A snapshot at offset N holds every producer's state after the log up to N, so a restarted
broker replays only the log after N to know each idempotent producer's last sequence and
each transaction's first offset. Big-endian:

    version  int16  (= 1)
    crc      uint32  CRC-32C of everything after this field
    count    int32
    count x  producer_id int64, producer_epoch int16, last_sequence int32, last_offset int64,
             offset_delta int32, timestamp int64, coordinator_epoch int32,
             current_txn_first_offset int64 (-1: no open transaction)

offset_delta = last_offset - the first offset of the producer's last batch.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import crc32c

from kafkalab.errors import CorruptRecordError

SNAPSHOT_VERSION = 1
_HEAD = struct.Struct(">hIi")
_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_END = 6  # version (2) + crc (4): the CRC covers the bytes after it


class ProducerStateEntry(NamedTuple):
    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_offset: int
    timestamp: int
    coordinator_epoch: int = -1
    current_txn_first_offset: int = -1
    offset_delta: int = 0


def encode_snapshot(entries: list[ProducerStateEntry]) -> bytes:
    body = struct.pack(">i", len(entries)) + b"".join(
        _ENTRY.pack(e.producer_id, e.producer_epoch, e.last_sequence, e.last_offset, e.offset_delta,
                    e.timestamp, e.coordinator_epoch, e.current_txn_first_offset)
        for e in entries
    )
    return struct.pack(">hI", SNAPSHOT_VERSION, crc32c.crc32c(body)) + body


def decode_snapshot(data: bytes, path: str = "<bytes>") -> list[ProducerStateEntry]:
    """Entries of a snapshot; damage raises CorruptRecordError naming file and byte."""
    fix = "delete the snapshot: the broker rebuilds producer state from the log"
    if len(data) < _HEAD.size:
        raise CorruptRecordError(f"snapshot of {len(data)} bytes is shorter than its header; {fix}",
                                 path=path, position=0)
    version, crc, count = _HEAD.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise CorruptRecordError(f"snapshot version {version} is not {SNAPSHOT_VERSION}; {fix}",
                                 path=path, position=0)
    actual = crc32c.crc32c(data[_CRC_END:])
    if actual != crc:
        raise CorruptRecordError(f"snapshot CRC-32C {actual:#010x} != stored {crc:#010x}; {fix}",
                                 path=path, position=2)
    expected = _HEAD.size + count * _ENTRY.size
    if count < 0 or len(data) != expected:
        raise CorruptRecordError(f"snapshot says {count} entries ({expected} bytes) but has "
                                 f"{len(data)} bytes; {fix}", path=path, position=6)
    out = []
    for pid, epoch, seq, last, delta, ts, coord, txn in _ENTRY.iter_unpack(data[_HEAD.size:]):
        out.append(ProducerStateEntry(pid, epoch, seq, last, ts, coord, txn, delta))
    return out
