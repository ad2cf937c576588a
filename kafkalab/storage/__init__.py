"""Kafka's on-disk log, byte for byte: segments, indexes, checkpoints, retention, compaction."""

from kafkalab.storage.checkpoint import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_CHECKPOINT,
    CorruptCheckpointError,
    OffsetCheckpointFile,
)
from kafkalab.storage.epoch_cache import EpochEntry, LeaderEpochCache
from kafkalab.storage.index import OffsetIndex, TimeIndex
from kafkalab.storage.log import Log, RecoveryReport
from kafkalab.storage.producer_snapshot import ProducerStateEntry
from kafkalab.storage.segment import FileRegion, LogSegment
from kafkalab.storage.txn_index import AbortedTxn, TransactionIndex

__all__ = [
    "LOG_START_OFFSET_CHECKPOINT",
    "RECOVERY_POINT_CHECKPOINT",
    "REPLICATION_CHECKPOINT",
    "AbortedTxn",
    "CorruptCheckpointError",
    "EpochEntry",
    "FileRegion",
    "LeaderEpochCache",
    "Log",
    "LogSegment",
    "OffsetCheckpointFile",
    "OffsetIndex",
    "ProducerStateEntry",
    "RecoveryReport",
    "TimeIndex",
    "TransactionIndex",
]
