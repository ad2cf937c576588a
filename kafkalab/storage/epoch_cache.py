"""The leader epoch cache: where each leader epoch's writes start in this partition's log.

A follower asks its new leader "where does my latest epoch end in *your* log?"
(OffsetForLeaderEpoch) and truncates there, instead of trusting its high watermark: that is
how Kafka avoids the log divergence a high-watermark truncation allowed (KIP-101).

Persisted as `leader-epoch-checkpoint` in Kafka's text format: "0", a count, then
"epoch start_offset" lines.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

from kafkalab.storage.checkpoint import format_checkpoint, parse_checkpoint
from kafkalab.storage.files import LEADER_EPOCH_CHECKPOINT, write_atomic

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1

log = logging.getLogger(__name__)


class EpochEntry(NamedTuple):
    epoch: int
    start_offset: int


class LeaderEpochCache:
    def __init__(self, directory: str):
        self.path = os.path.join(directory, LEADER_EPOCH_CHECKPOINT)
        self._entries: list[EpochEntry] = []
        # The file on disk is fsynced and says what _entries say (a new log's is written at
        # its first flush, as Kafka keeps one for every partition).
        self._synced = os.path.exists(self.path)
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            self._entries = parse_checkpoint(
                text, self.path, lambda p: EpochEntry(int(p[0]), int(p[1])), 2
            )

    @property
    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    @property
    def latest_epoch(self) -> int | None:
        return self._entries[-1].epoch if self._entries else None

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that `epoch` starts at `start_offset`; returns whether the cache changed.

        As Kafka: a repeat of the latest epoch at a later offset is ignored; entries that
        conflict (same or later epoch, or a start at or after this one) are replaced.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"leader epoch {epoch} / start offset {start_offset} must be >= 0")
        last = self._entries[-1] if self._entries else None
        if last is not None and last.epoch == epoch and start_offset >= last.start_offset:
            return False
        kept = [e for e in self._entries if e.epoch < epoch and e.start_offset < start_offset]
        removed = self._entries[len(kept):]
        # Kafka warns only when data was written under a removed epoch: one entry replaced at
        # the same start offset (a new leader before any record) is routine.
        if len(removed) > 1 or (removed and removed[0].start_offset != start_offset):
            log.warning("%s: epoch %d at %d replaces %s", self.path, epoch, start_offset, removed)
        self._entries = [*kept, EpochEntry(epoch, start_offset)]
        self._write()
        return True

    def end_offset_for_epoch(self, requested: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end_offset) as OffsetForLeaderEpoch answers.

        The latest epoch ends at the log end offset; an older one ends where the next larger
        epoch starts, reported with the largest epoch <= requested; an epoch above every known
        one, or UNDEFINED, gives (-1, -1).
        """
        if requested == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested == self._entries[-1].epoch:
            return requested, log_end_offset
        higher = next((e for e in self._entries if e.epoch > requested), None)
        if higher is None:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        floor = [e for e in self._entries if e.epoch <= requested]
        return (floor[-1].epoch if floor else requested), higher.start_offset

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that start at or after end_offset (the log was truncated there)."""
        kept = [e for e in self._entries if e.start_offset < end_offset]
        if len(kept) != len(self._entries):
            self._entries = kept
            self._write()

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget epochs wholly below the new log start; the one spanning it now starts there."""
        below = [e for e in self._entries if e.start_offset <= start_offset]
        if not below or (len(below) == 1 and below[0].start_offset == start_offset):
            return
        above = self._entries[len(below):]
        self._entries = [EpochEntry(below[-1].epoch, start_offset), *above]
        self._write()

    def clear(self) -> None:
        self._entries = []
        self._write()

    def _write(self, fsync: bool = False) -> None:
        # Without fsync on every change (Kafka too flushes it lazily); recovery rebuilds it
        # from the batches' partition_leader_epoch after a crash.
        write_atomic(self.path, format_checkpoint(f"{e.epoch} {e.start_offset}" for e in self._entries),
                     fsync=fsync)
        self._synced = fsync

    def flush(self) -> None:
        """Make the file durable; nothing to do when it has not changed since (an idle broker
        flushing every few seconds writes nothing)."""
        if not self._synced:
            self._write(fsync=True)
