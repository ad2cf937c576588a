"""TopicPartition and Message, with confluent-kafka's accessors and constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001

TIMESTAMP_NOT_AVAILABLE = 0
TIMESTAMP_CREATE_TIME = 1
TIMESTAMP_LOG_APPEND_TIME = 2


@dataclass(slots=True)
class TopicPartition:
    """A partition of a topic and, depending on the call, an offset (or a timestamp)."""

    topic: str
    partition: int = -1
    offset: int = OFFSET_INVALID
    error: Any = None
    leader_epoch: int | None = None

    # confluent-kafka compares and hashes by (topic, partition) only, so a TopicPartition
    # works as a dict key whatever offset it carries.
    def __hash__(self) -> int:
        return hash((self.topic, self.partition))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopicPartition):
            return NotImplemented
        return (self.topic, self.partition) == (other.topic, other.partition)

    def __lt__(self, other: TopicPartition) -> bool:
        return (self.topic, self.partition) < (other.topic, other.partition)


class Message:
    """One record as a consumer (or a delivery report) sees it.

    Plain slots and methods, like confluent-kafka's Message, so code carries over.
    """

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_headers",
                 "_timestamp", "_timestamp_type", "_error", "_latency", "_leader_epoch")

    def __init__(
        self,
        topic: str | None,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        timestamp: int = -1,
        timestamp_type: int = TIMESTAMP_NOT_AVAILABLE,
        error: Any = None,
        latency: float | None = None,
        leader_epoch: int | None = None,
    ):
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._headers = headers or None
        self._timestamp = timestamp
        self._timestamp_type = timestamp_type
        self._error = error
        self._latency = latency
        self._leader_epoch = leader_epoch

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        """(TIMESTAMP_CREATE_TIME or TIMESTAMP_LOG_APPEND_TIME, milliseconds since the epoch)."""
        return (self._timestamp_type, self._timestamp)

    def error(self) -> Any:
        return self._error

    def latency(self) -> float | None:
        """Seconds from produce() to the delivery report (producer side only)."""
        return self._latency

    def leader_epoch(self) -> int | None:
        return self._leader_epoch

    def set_key(self, key: bytes | None) -> None:
        self._key = key

    def set_value(self, value: bytes | None) -> None:
        self._value = value

    def set_headers(self, headers: list[tuple[str, bytes | None]] | None) -> None:
        self._headers = headers

    def __len__(self) -> int:
        return 0 if self._value is None else len(self._value)

    def __repr__(self) -> str:
        where = f"{self._topic}[{self._partition}]@{self._offset}"
        return f"Message({where}, key={self._key!r}, error={self._error!r})"
