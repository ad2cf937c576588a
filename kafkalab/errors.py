"""Exceptions raised by kafkalab. Each names the problem and, where there is one, the fix."""

from __future__ import annotations


class KafkaLabError(Exception):
    """Base class for every error kafkalab raises on purpose."""


class ClusterAlreadyRunningWarning(UserWarning):
    """A Cluster was started while another one this process started is still running."""


class ConfigError(KafkaLabError, ValueError):
    """A configuration key or value that Kafka would reject."""


class CorruptRecordError(KafkaLabError):
    """Bytes that are not a valid RecordBatch v2 (bad CRC, magic, length, codec ...).

    `path` and `position` say where the damage is, when the bytes came from a file.
    """

    def __init__(self, message: str, *, path: str | None = None, position: int | None = None):
        where = ""
        if path is not None:
            where = f" in {path}"
        if position is not None:
            where += f" at byte {position}"
        super().__init__(message + where)
        self.path = path
        self.position = position


class InvalidMagicError(CorruptRecordError):
    """A batch whose magic byte is not 2 (only RecordBatch v2 is supported)."""


class CrcMismatchError(CorruptRecordError):
    """A batch whose stored CRC-32C does not match its bytes."""


class TruncatedBatchError(CorruptRecordError):
    """A batch whose length runs past the end of the buffer or file."""


class UnknownCodecError(CorruptRecordError):
    """A batch whose attributes name a compression codec that does not exist."""


class CorruptIndexError(KafkaLabError):
    """An offset or time index whose entries point past the log or go backwards."""


class OffsetOutOfRangeError(KafkaLabError):
    """A read below the log start offset or above the log end offset."""

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int):
        super().__init__(
            f"offset {offset} is out of range [{log_start_offset}, {log_end_offset}]: "
            "seek to a valid offset (or use auto.offset.reset)"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset
