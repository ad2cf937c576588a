"""A workload's history: every record sent, what the producer was told about it, and what a
fresh consumer read back afterwards. Plain data (dataclasses of ints and strings), saved as JSON.

Each record's value starts with `kl|<producer>|<seq>|`: the producer's index in the workload
and its own sequence number, counting from 0 in send order. That pair is the record's id.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VALUE_PREFIX = b"kl|"

# What the producer was told about a record.
ACKED, FAILED, PENDING = "acked", "failed", "pending"  # pending: no delivery report by the end


def record_id(producer: int, seq: int) -> str:
    return f"{producer}-{seq}"


def encode_value(producer: int, seq: int, size: int = 0) -> bytes:
    """The record's value: its id, padded with '.' to `size` bytes if it is shorter."""
    head = b"%s%d|%d|" % (VALUE_PREFIX, producer, seq)
    return head + b"." * max(0, size - len(head))


def decode_value(value: bytes | None) -> tuple[int, int] | None:
    """(producer, seq) from a value encode_value made, None for anything else."""
    if not value or not value.startswith(VALUE_PREFIX):
        return None
    parts = value.split(b"|", 3)
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None


@dataclass(slots=True)
class Sent:
    """One record the workload produced, and its outcome."""

    producer: int
    seq: int
    sent_s: float                 # seconds since the workload started
    status: str = PENDING         # acked | failed | pending
    partition: int | None = None  # where the ack says it is
    offset: int | None = None
    error: str | None = None      # the delivery report's error, for failed records
    done_s: float | None = None   # when the delivery report came

    @property
    def id(self) -> str:
        return record_id(self.producer, self.seq)


@dataclass(slots=True)
class Read:
    """One record the read-back found in the log."""

    partition: int
    offset: int
    producer: int | None   # None: the value is not one this workload wrote
    seq: int | None
    value: str = ""        # only for foreign values: a short preview, for the report

    @property
    def id(self) -> str | None:
        return None if self.producer is None or self.seq is None else record_id(self.producer, self.seq)


@dataclass
class History:
    topic: str
    partitions: int
    sent: list[Sent] = field(default_factory=list)
    read: list[Read] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)  # what the injector did, and when
    meta: dict[str, Any] = field(default_factory=dict)          # configs, rate, seed, timings

    # -- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partitions": self.partitions,
                "sent": [asdict(s) for s in self.sent], "read": [asdict(r) for r in self.read],
                "faults": list(self.faults), "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(topic=d["topic"], partitions=int(d["partitions"]),
                   sent=[Sent(**s) for s in d.get("sent", [])],
                   read=[Read(**r) for r in d.get("read", [])],
                   faults=list(d.get("faults", [])), meta=dict(d.get("meta", {})))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> History:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        return cls.from_json(Path(path).read_text())

    def __repr__(self) -> str:
        acked = sum(s.status == ACKED for s in self.sent)
        return (f"<History {self.topic!r}: {len(self.sent)} sent, {acked} acked, {len(self.read)} read, "
                f"{len(self.faults)} fault actions>")
