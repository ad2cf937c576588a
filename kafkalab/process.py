"""Starting lab processes so that none outlives the notebook kernel that started them.

Below every role: a role's process calls die_with_parent(); which role runs which main is
kafkalab/roles.py's table, one layer up.

Every controller, broker and worker is a fresh interpreter (`multiprocess`, spawn method: no
fork of a kernel full of threads). Two guards make a child die with its parent, even when the
parent is SIGKILLed: the kernel's PR_SET_PDEATHSIG (delivered when the spawning thread ends, so
all spawns go through one long-lived daemon thread), and a poll of getppid() in the child.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import multiprocess

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a child: SIGKILL me when my parent goes.

    A child also ignores SIGINT: Ctrl-C in a terminal (or a kernel restart) signals the whole
    process group, and the parent, not each child, decides how its children end - without a
    KeyboardInterrupt traceback from every broker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def _install_main_guard() -> None:
    """Our children run functions importable from kafkalab (or dill-pickled by value), so they
    need not re-run the parent's __main__ script — which would start a second cluster from an
    unguarded script. Strip that step for processes named kafkalab-*."""
    from multiprocess import spawn

    if getattr(spawn.get_preparation_data, "_kafkalab", False):
        return
    original = spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if name.startswith("kafkalab-"):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._kafkalab = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


class Spawner:
    """Owns one daemon thread through which every child is started (see module doc)."""

    def __init__(self) -> None:
        _install_main_guard()
        self._ctx = multiprocess.get_context("spawn")
        self._requests: queue.Queue[tuple[Callable[..., Any], str, dict[str, Any], queue.Queue]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kafkalab-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            target, name, kwargs, reply = self._requests.get()
            try:
                proc = self._ctx.Process(target=target, name=f"kafkalab-{name}", kwargs=kwargs, daemon=False)
                proc.start()
                reply.put(proc)
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                reply.put(e)

    def spawn(self, target: Callable[..., Any], name: str, **kwargs: Any) -> Any:
        reply: queue.Queue = queue.Queue()
        self._requests.put((target, name, kwargs, reply))
        result = reply.get()
        if isinstance(result, BaseException):
            raise result
        return result


_spawner: Spawner | None = None
_lock = threading.Lock()


def spawner() -> Spawner:
    global _spawner
    with _lock:
        if _spawner is None:
            _spawner = Spawner()
        return _spawner
