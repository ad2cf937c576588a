"""File names in a partition directory, as Kafka spells them.

Every segment file is named by its base offset printed as 20 zero-padded digits, so a
directory listing sorts in offset order: 00000000000000000000.log, .index, .timeindex,
.txnindex, and producer-state snapshots 00000000000000001234.snapshot.
"""

from __future__ import annotations

import os

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"
SNAPSHOT_SUFFIX = ".snapshot"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)

# Suffixes appended to a whole file name during deletion and compaction.
DELETED_SUFFIX = ".deleted"  # waiting for file.delete.delay.ms before unlink
CLEANED_SUFFIX = ".cleaned"  # a compacted segment still being written
SWAP_SUFFIX = ".swap"  # a finished compacted segment about to replace the originals

LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"


def offset_name(offset: int) -> str:
    """20-digit zero-padded offset, Kafka's file-name stem."""
    return f"{offset:020d}"


def segment_path(directory: str, base_offset: int, suffix: str) -> str:
    return os.path.join(directory, offset_name(base_offset) + suffix)


def offset_from_name(name: str) -> int | None:
    """Base offset of a file named like 00000000000000000042.log(.swap), else None."""
    stem = os.path.basename(name).split(".", 1)[0]
    if len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


def write_atomic(path: str, data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` so a crash leaves either the old or the new file.

    Write a .tmp sibling, fsync it, rename over the target, fsync the directory.
    """
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(directory: str) -> None:
    """Make renames and new files in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
