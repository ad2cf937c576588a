"""The clusters this process has open: each is closed when the interpreter exits or is told to
stop, and starting one just like an open one warns (a notebook cell run twice)."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import warnings
import weakref
from typing import Any

from kafkalab.errors import ClusterAlreadyRunningWarning

_live: weakref.WeakSet[Any] = weakref.WeakSet()


def add(cluster: Any) -> None:
    _live.add(cluster)


def discard(cluster: Any) -> None:
    _live.discard(cluster)


def warn_if_another_is_open(cluster: Any, shape: tuple[Any, ...]) -> None:
    """`shape`: what makes two clusters the same (a notebook cell run again makes an identical one)."""
    others = [c for c in _live if c is not cluster and not c.closed and c.shape() == shape]
    if others:
        warnings.warn(
            f"an identical Cluster is still running in this process: {others[0]!r}. "
            "Call its close() first (or use `with Cluster(...) as cluster:`); a notebook cell that "
            "creates a Cluster starts a new one each time it runs. To run two clusters on purpose, "
            "give each its own name=...", ClusterAlreadyRunningWarning, stacklevel=4)


def _close_all() -> None:
    for c in list(_live):
        c.close()


def register_exit_cleanup() -> None:
    """Close every open cluster when the interpreter exits or is told to stop.

    Exit handlers run last-registered-first, and multiprocess registers one (again, when it
    first logs) that joins every non-daemon child: a running broker never ends, so a script that
    never called close() would hang there. Registering ours again after each start puts it
    first. SIGTERM would end the process without any exit handler: close, then die of it."""
    atexit.unregister(_close_all)
    atexit.register(_close_all)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _close_all_and_die)


def _close_all_and_die(signum: int, frame: Any) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
