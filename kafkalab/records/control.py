"""Control batches: the transaction markers a coordinator has the leader write.

A control batch has the control and transactional bits set, the transaction's producer id
and epoch, and exactly one record:

    key   = version int16 (0) | type int16 (ABORT = 0, COMMIT = 1)
    value = version int16 (0) | coordinator_epoch int32

A read_committed consumer never returns these to the application; it uses them to
release (COMMIT) or drop (ABORT) the producer's pending records.
"""

from __future__ import annotations

import struct
from typing import Literal

from kafkalab.errors import CorruptRecordError
from kafkalab.records.batch import Record, encode_batch
from kafkalab.records.header import NO_PARTITION_LEADER_EPOCH

ABORT = 0
COMMIT = 1
CONTROL_RECORD_VERSION = 0
_KINDS = {"abort": ABORT, "commit": COMMIT}
_NAMES = {ABORT: "abort", COMMIT: "commit"}
_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")

ControlKind = Literal["commit", "abort"]


def control_record_key(kind: ControlKind) -> bytes:
    t = _KINDS.get(kind)
    if t is None:
        raise ValueError(f"control record kind must be 'commit' or 'abort', got {kind!r}")
    return _KEY.pack(CONTROL_RECORD_VERSION, t)


def control_record_value(coordinator_epoch: int) -> bytes:
    return _VALUE.pack(CONTROL_RECORD_VERSION, coordinator_epoch)


def encode_control_batch(
    kind: ControlKind,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """One transaction marker (COMMIT or ABORT) as a whole batch."""
    if producer_id < 0:
        raise ValueError(f"a transaction marker needs the transaction's producer_id (>= 0), got {producer_id}")
    return encode_batch(
        [(control_record_key(kind), control_record_value(coordinator_epoch), None, timestamp_ms)],
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transactional=True,
        control=True,
    )


def parse_control_record(record: Record) -> tuple[ControlKind, int]:
    """(kind, coordinator_epoch) of the record of a control batch."""
    key, value = record.key, record.value
    if key is None or len(key) < _KEY.size:
        raise CorruptRecordError(f"control record at offset {record.offset} has a key of {_len(key)} bytes, need 4")
    version, t = _KEY.unpack_from(key)
    if version != CONTROL_RECORD_VERSION:
        raise CorruptRecordError(
            f"control record at offset {record.offset} has key version {version}; only 0 is known"
        )
    kind = _NAMES.get(t)
    if kind is None:
        raise CorruptRecordError(
            f"control record at offset {record.offset} has type {t}; known: 0 ABORT, 1 COMMIT"
        )
    if value is None or len(value) < _VALUE.size:
        raise CorruptRecordError(
            f"control record at offset {record.offset} has a value of {_len(value)} bytes, need 6"
        )
    _, coordinator_epoch = _VALUE.unpack_from(value)
    return kind, coordinator_epoch  # type: ignore[return-value]


def _len(b: bytes | None) -> str:
    return "null" if b is None else str(len(b))
