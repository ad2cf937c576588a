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

# Each open cluster and its shape: what makes two clusters the same (brokers, controllers,
# profile, config, name) - a notebook cell run again makes an identical one.
_live: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def add(cluster: Any, shape: tuple[Any, ...]) -> None:
    """Warn if an identical cluster is still open, then count this one among the open."""
    others = [c for c, s in list(_live.items()) if c is not cluster and not c.closed and s == shape]
    _live[cluster] = shape
    if others:
        warnings.warn(
            f"an identical Cluster is still running in this process: {others[0]!r}. "
            "Call its close() first (or use `with Cluster(...) as cluster:`); a notebook cell that "
            "creates a Cluster starts a new one each time it runs. To run two clusters on purpose, "
            "give each its own name=...", ClusterAlreadyRunningWarning, stacklevel=4)


def discard(cluster: Any) -> None:
    _live.pop(cluster, None)


def _close_all() -> None:
    for c in list(_live):
        c.close()


_registered = False


def register_exit_cleanup() -> None:
    """Close every open cluster when the interpreter exits or is told to stop (once: the
    first start registers it). Without it the processes would still die with this one
    (kafkalab/process.py), but the data dirs would stay. SIGTERM would end the process
    without any exit handler: close, then die of it."""
    global _registered
    if not _registered:
        atexit.register(_close_all)
        _registered = True
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _close_all_and_die)


def _close_all_and_die(signum: int, frame: Any) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
