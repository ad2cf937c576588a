"""What a worker process and the notebook that started it share: a few bytes of one unnamed
file, mapped by both (stdlib mmap; no helper process, nothing to clean up but the mapping).

The worker writes its count (records consumed, processed) and a status blob (JSON); the
notebook writes one stop flag. Each field has a single writer. The count is one aligned
8-byte word, stored and read whole. The status is guarded by a sequence number (odd while
the worker writes): a reader that sees it change retries, and keeps the last whole status
it read if the worker was stopped or killed mid-write.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from typing import Any

from kafkalab.process import LabProcess, spawner

STATUS_BYTES = 65536  # a file's pages cost nothing until written
_HEADER = 32  # stop flag (byte 0), then words: [1] sequence, [2] count, [3] status length
SIZE = _HEADER + STATUS_BYTES
_SEQ, _COUNT, _LEN = 1, 2, 3


class WorkerState:
    def __init__(self, fd: int):
        self._map = mmap.mmap(fd, SIZE)
        self._words = memoryview(self._map)[:_HEADER].cast("q")
        self._last_status = b""

    # -- the worker's side -------------------------------------------------------------------
    def add(self, n: int) -> None:
        self._words[_COUNT] += n

    def set_status(self, blob: bytes) -> None:
        if len(blob) > STATUS_BYTES:
            raise ValueError(f"a worker's status is at most {STATUS_BYTES} bytes, not {len(blob)}")
        self._words[_SEQ] += 1
        self._map[_HEADER:_HEADER + len(blob)] = blob
        self._words[_LEN] = len(blob)
        self._words[_SEQ] += 1

    def stop_requested(self) -> bool:
        return self._map[0] == 1

    # -- the notebook's side -----------------------------------------------------------------
    def request_stop(self) -> None:
        self._map[0] = 1

    @property
    def count(self) -> int:
        return int(self._words[_COUNT])

    def status(self) -> bytes:
        """The worker's last status (b"" before the first)."""
        for _ in range(100):
            seq = self._words[_SEQ]
            if seq % 2 == 0:
                blob = self._map[_HEADER:_HEADER + self._words[_LEN]]
                if self._words[_SEQ] == seq:
                    self._last_status = blob
                    break
            time.sleep(0.0001)
        return self._last_status


def spawn_worker(target: Callable[..., Any], name: str, **kwargs: Any) -> tuple[LabProcess, WorkerState]:
    """Start `target(state_fd=N, **kwargs)`; the worker maps it with WorkerState(state_fd)."""
    import tempfile  # the notebook's side only: a worker imports this module for attach()

    with tempfile.TemporaryFile() as f:
        f.truncate(SIZE)
        state = WorkerState(f.fileno())  # the mapping outlives the file's descriptor
        proc = spawner().spawn(target, name, pass_fds=(f.fileno(),), state_fd=f.fileno(), **kwargs)
    return proc, state


def attach(state_fd: int) -> WorkerState:
    """In the worker: map the state its parent handed over, and close the descriptor."""
    state = WorkerState(state_fd)
    os.close(state_fd)
    return state
