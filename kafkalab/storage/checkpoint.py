"""Kafka's small text checkpoint files, written atomically (.tmp, fsync, rename).

Offset checkpoints of a whole log dir (recovery-point-offset-checkpoint,
replication-offset-checkpoint, log-start-offset-checkpoint):

    0                 <- format version
    2                 <- number of entries
    orders 0 1234     <- topic partition offset
    orders 1 99

The per-partition leader-epoch-checkpoint has the same frame with "epoch start_offset" lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from kafkalab.errors import KafkaLabError
from kafkalab.storage.files import write_atomic

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
REPLICATION_CHECKPOINT = "replication-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
VERSION = 0

T = TypeVar("T")


class CorruptCheckpointError(KafkaLabError, ValueError):
    """A checkpoint file that does not follow Kafka's text format."""


def format_checkpoint(lines: Iterable[str]) -> bytes:
    body = list(lines)
    return ("\n".join([str(VERSION), str(len(body)), *body]) + "\n").encode()


def parse_checkpoint(text: str, path: str, parse_line: Callable[[list[str]], T], fields: int) -> list[T]:
    """Entries of a checkpoint; a malformed file raises CorruptCheckpointError naming the line."""
    lines = text.splitlines()

    def bad(lineno: int, why: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{path} line {lineno}: {why}; expected '0', a count, then {fields}-field entries. "
            "Delete the file to start over (the broker rebuilds it, rescanning the log)"
        )

    if len(lines) < 2:
        raise bad(len(lines) + 1, "file ends before the version and count lines")
    if lines[0].strip() != str(VERSION):
        raise bad(1, f"version {lines[0]!r} is not {VERSION}")
    try:
        count = int(lines[1])
    except ValueError:
        raise bad(2, f"count {lines[1]!r} is not an integer") from None
    entries = [ln for ln in lines[2:] if ln.strip()]
    if len(entries) != count:
        raise bad(2, f"count says {count} entries but {len(entries)} follow")
    out = []
    for i, ln in enumerate(entries, start=3):
        parts = ln.split()
        if len(parts) != fields:
            raise bad(i, f"{ln!r} does not have {fields} fields")
        try:
            out.append(parse_line(parts))
        except ValueError:
            raise bad(i, f"{ln!r} has a non-integer number") from None
    return out


class OffsetCheckpointFile:
    """A log dir's {(topic, partition): offset} checkpoint."""

    def __init__(self, path: str):
        self.path = path
        self._synced: dict[tuple[str, int], int] | None = None  # what the file durably says

    def write(self, offsets: dict[tuple[str, int], int], *, fsync: bool = True) -> None:
        if fsync and offsets == self._synced:
            return  # unchanged since the last durable write: an idle broker writes nothing
        lines = (f"{t} {p} {o}" for (t, p), o in sorted(offsets.items()))
        write_atomic(self.path, format_checkpoint(lines), fsync=fsync)
        self._synced = dict(offsets) if fsync else None

    def read(self) -> dict[tuple[str, int], int]:
        """The entries, or {} when the file does not exist yet."""
        if not os.path.exists(self.path):
            return {}
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        rows = parse_checkpoint(text, self.path, lambda p: ((p[0], int(p[1])), int(p[2])), 3)
        return dict(rows)
