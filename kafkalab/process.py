"""Starting lab processes so that none outlives the notebook kernel that started them.

Below every role: a role's process calls die_with_parent(); which role runs which main is
kafkalab/roles.py's table, one layer up.

Every controller, broker and worker is a fresh interpreter started with `subprocess` (no fork
of a kernel full of threads): `python -c BOOT NAME`, which reads the parent's sys.path, then
the target ("module:function") and its keyword arguments, as two stdlib pickles on its stdin,
and calls the target. A child imports only its target's modules: no multiprocessing machinery,
no helper process, and never the parent's __main__ (a script that starts a cluster without a
`__main__` guard would start a second one). Before the target, it imports the two dependencies
every lab process uses, kio's serializer and pyzmq's monitor helpers, without what they import
and no lab process needs (skip_import_extras). stdout and stderr are the parent's, as for any
subprocess: in normal runs a lab process writes nothing to them.

Two guards make a child die with its parent, even when the parent is SIGKILLed: the kernel's
PR_SET_PDEATHSIG (delivered when the spawning *thread* ends, so all spawns go through one
long-lived daemon thread), and a poll of getppid() in the child.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import select
import signal
import sys
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import queue
    import subprocess

# subprocess and queue serve the parent's side (LabProcess, Spawner) and are imported there: every
# child imports this module first, and they would cost it ~0.7 MB for nothing.

_PR_SET_PDEATHSIG = 1

# The child's first code: SIGINT ignored before anything else (see die_with_parent), then the
# parent's import path, then the rest from here. argv[1] is the process's name, for `ps`.
BOOT = ("import signal,sys,pickle;signal.signal(signal.SIGINT,signal.SIG_IGN);"
        "sys.path[:]=pickle.load(sys.stdin.buffer);import kafkalab.process as p;p.child_main()")


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


def target_name(target: Callable[..., Any]) -> str:
    """"module:function" for a function a fresh interpreter can import."""
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(f"{target!r} cannot be a lab process's main: it must be a function defined at "
                         "the top level of an importable module (not in __main__, not a lambda or closure)")
    return f"{module}:{qualname}"


def skip_import_extras() -> None:
    """Leave out what dependencies load at import and no lab process uses (none is patched).

    - hypothesis: kio registers strategies with it when it is importable (the test install).
    - crc32c's package imports its command line (argparse) and reads its own version through
      importlib.metadata (email, zipfile, csv, tempfile ...): ~2.5 MB resident for one function.
      Its C extension is loaded directly and stands for the package: `crc32c.crc32c` is the same
      function, nothing else of the package is used by a lab process.
    - asyncio (with subprocess, concurrent.futures, ssl ...: ~2 MB), imported only for type
      annotations: by kio's writers (`asyncio.StreamWriter` in a type alias) and by pyzmq's
      monitor helpers (`zmq.asyncio.Socket` in an overload; the lab client decodes socket events
      with them). Each imports with a stand-in module in its place, removed after, so a later
      `import asyncio` or `import zmq.asyncio` gets the real one.
    Called in every child before its target is imported; a no-op for what is imported already."""
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    if "crc32c" not in sys.modules:
        _load_crc32c_extension()
    _import_with_stand_in("kio.serial.writers", "asyncio", "StreamWriter")
    _import_with_stand_in("zmq.utils.monitor", "zmq.asyncio", "Socket")


def _import_with_stand_in(module: str, stand_in_for: str, class_name: str) -> None:
    """Import `module` while `stand_in_for` is a module holding one empty class `class_name`."""
    if module in sys.modules or stand_in_for in sys.modules:
        return
    parent, _, attr = stand_in_for.rpartition(".")
    if parent:
        importlib.import_module(parent)
    stand_in = types.ModuleType(stand_in_for, f"stand-in while {module} imports")
    setattr(stand_in, class_name, type(class_name, (), {}))
    sys.modules[stand_in_for] = stand_in
    try:
        importlib.import_module(module)
    finally:
        if sys.modules.get(stand_in_for) is stand_in:
            del sys.modules[stand_in_for]
        if parent and getattr(sys.modules[parent], attr, None) is stand_in:
            delattr(sys.modules[parent], attr)


def _load_crc32c_extension() -> None:
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("crc32c")  # finds the package without running it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_crc32c" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                module = importlib.util.module_from_spec(
                    importlib.util.spec_from_file_location("crc32c._crc32c", path, loader=loader))
                loader.exec_module(module)
                sys.modules["crc32c._crc32c"] = sys.modules["crc32c"] = module
                return
    # Another layout: the package's own import, extras and all.


def child_main() -> None:
    """The child's side of BOOT: guard, read the target, run it, exit with its code."""
    stdin = sys.stdin.buffer
    parent_pid, name, target, kwargs = pickle.load(stdin)
    die_with_parent(parent_pid)
    skip_import_extras()
    null = os.open(os.devnull, os.O_RDONLY)  # stdin was only the way in
    os.dup2(null, 0)
    os.close(null)
    code: Any = 0
    try:
        module, _, qualname = target.partition(":")
        fn: Any = __import__(module, fromlist=["_"])
        for part in qualname.split("."):
            fn = getattr(fn, part)
        fn(**kwargs)
    except SystemExit as e:
        code = e.code
    except BaseException:  # noqa: BLE001 - reported as a failed process is, then exit 1
        import traceback

        sys.stderr.write(f"Process {name}:\n")
        traceback.print_exc()
        code = 1
    sys.exit(code)


class LabProcess:
    """The parent's handle on one child: what callers need of it, nothing more."""

    def __init__(self, popen: subprocess.Popen, name: str):
        self._popen, self.name = popen, name

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def exitcode(self) -> int | None:
        """None while running; the exit status, or -N if signal N ended it."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        """Wait for the process to end (and reap it), at most `timeout` seconds."""
        import subprocess

        if timeout is not None and hasattr(os, "pidfd_open") and self.is_alive():
            # Woken the moment it ends (Popen.wait with a timeout polls, up to 50 ms late).
            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:  # already gone
                pass
            else:
                try:
                    select.select([pidfd], [], [], timeout)
                finally:
                    os.close(pidfd)
            self._popen.poll()
            return
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self._popen.kill()  # a no-op once it has ended and been reaped

    def terminate(self) -> None:
        self._popen.terminate()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else f"exitcode={self.exitcode}"
        return f"<LabProcess {self.name} pid={self.pid} {state}>"


class Spawner:
    """Owns one daemon thread through which every child is started (see module doc)."""

    def __init__(self) -> None:
        import queue

        self._requests: queue.Queue[tuple[str, bytes, tuple[int, ...], queue.Queue]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kafkalab-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            name, payload, pass_fds, reply = self._requests.get()
            try:
                reply.put(self._start(name, payload, pass_fds))
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                reply.put(e)

    @staticmethod
    def _start(name: str, payload: bytes, pass_fds: tuple[int, ...]) -> LabProcess:
        import subprocess

        popen = subprocess.Popen([sys.executable, "-c", BOOT, name], stdin=subprocess.PIPE,
                                 pass_fds=pass_fds)
        try:
            popen.stdin.write(payload)
            popen.stdin.close()
        except BrokenPipeError:  # it died before reading: its exit code says so to the caller
            pass
        return LabProcess(popen, name)

    def spawn(self, target: Callable[..., Any], name: str, *, pass_fds: tuple[int, ...] = (),
              **kwargs: Any) -> LabProcess:
        """Start `target(**kwargs)` in a new process named kafkalab-`name`. The arguments are
        pickled here, so one that cannot cross is an error in the caller, not in the child.
        `pass_fds`: file descriptors the child inherits (same numbers)."""
        full_name = f"kafkalab-{name}"
        payload = pickle.dumps(sys.path) + pickle.dumps((os.getpid(), full_name, target_name(target), kwargs))
        import queue

        reply: queue.Queue = queue.Queue()
        self._requests.put((full_name, payload, tuple(pass_fds), reply))
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
