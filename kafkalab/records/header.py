"""The fixed 61-byte header of a RecordBatch v2, parsed without touching the records.

Layout (big-endian), offsets in bytes:

    0  base_offset            int64   \\ outside the CRC: a broker rewrites these
    8  batch_length           int32    | (offset assignment, leader epoch stamp)
   12  partition_leader_epoch int32   /  without recomputing the checksum
   16  magic                  int8     (= 2)
   17  crc                    uint32   CRC-32C of bytes 21 .. end
   21  attributes             int16
   23  last_offset_delta      int32
   27  base_timestamp         int64
   35  max_timestamp          int64
   43  producer_id            int64
   51  producer_epoch         int16
   53  base_sequence          int32
   57  records_count          int32
   61  records ...

batch_length counts the bytes after itself, so a whole batch is batch_length + 12 bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length: what batch_length does not count
MAGIC = 2
CRC_START = 21  # the CRC covers attributes .. end of batch

# attributes bits
COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08  # 0 = CreateTime, 1 = LogAppendTime
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes of the whole batch on disk or on the wire."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def delete_horizon_ms(self) -> int | None:
        """When the cleaner may drop this batch's tombstones or marker (KIP-534), or None.

        The cleaner stamps it on first cleaning a batch that keeps a tombstone or an empty
        transaction's marker: the flag is set and base_timestamp holds the horizon (the
        records' timestamp deltas are re-based on it, so their timestamps do not change)."""
        return self.base_timestamp if self.attributes & DELETE_HORIZON_BIT else None

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_BIT else 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at `pos`. The caller checks that HEADER_SIZE bytes are there."""
    return BatchHeader._make(_HEADER.unpack_from(buf, pos))


def set_base_offset(buf: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Assign offsets to a batch in place (outside the CRC, so no checksum change)."""
    struct.pack_into(">q", buf, pos, base_offset)


def set_partition_leader_epoch(buf: bytearray | memoryview, epoch: int, pos: int = 0) -> None:
    """Stamp the leader epoch in place (outside the CRC, so no checksum change)."""
    struct.pack_into(">i", buf, pos + 12, epoch)


def set_log_append_time(buf: bytearray | memoryview, timestamp_ms: int, pos: int = 0) -> None:
    """Stamp the broker's clock as a batch's LogAppendTime, in place.

    Sets the timestamp-type bit and max_timestamp (readers then report it as every
    record's timestamp) and recomputes the CRC, since both sit inside it.
    """
    import crc32c  # local: the rest of this module needs no checksum

    (attributes,) = struct.unpack_from(">h", buf, pos + 21)
    struct.pack_into(">h", buf, pos + 21, attributes | TIMESTAMP_TYPE_BIT)
    struct.pack_into(">q", buf, pos + 35, timestamp_ms)
    batch_length = struct.unpack_from(">i", buf, pos + 8)[0]
    crc = crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + LOG_OVERHEAD + batch_length])
    struct.pack_into(">I", buf, pos + 17, crc)
