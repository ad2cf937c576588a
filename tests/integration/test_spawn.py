"""How lab processes start (kafkalab/process.py): fresh interpreters that import only their
target, report why they failed, never re-run the parent's script, and share a worker's count,
status and stop flag with the notebook (workloads/worker_state.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from kafkalab import Cluster
from kafkalab.bench.footprint import descendants
from kafkalab.cluster import wait_until
from kafkalab.process import BOOT, spawner, target_name
from kafkalab.roles import run_role
from kafkalab.workloads.worker_state import attach, spawn_worker

pytestmark = pytest.mark.integration

MACHINERY = ("multiprocess", "multiprocessing", "dill")


def report_modules(*, out: str) -> None:
    """A child's target: import every role's main, then write which of MACHINERY got loaded."""
    import kafkalab.broker.server  # noqa: F401
    import kafkalab.controller.server  # noqa: F401
    import kafkalab.load_worker  # noqa: F401
    import kafkalab.workloads.consumers  # noqa: F401
    import kafkalab.workloads.eos  # noqa: F401
    with open(out, "w") as f:
        json.dump({"machinery": sorted(m for m in sys.modules if m.split(".")[0] in MACHINERY),
                   "main": getattr(sys.modules["__main__"], "__file__", None)}, f)


def count_until_stopped(*, state_fd: int, n: int) -> None:
    state = attach(state_fd)
    for _ in range(n):
        state.add(1)
    state.set_status(json.dumps({"done": n}).encode())
    while not state.stop_requested():
        time.sleep(0.01)


def _exited(proc, timeout: float = 30.0) -> int:
    proc.join(timeout)
    assert not proc.is_alive(), f"{proc} did not exit within {timeout:g} s"
    return proc.exitcode


def test_a_lab_process_imports_no_multiprocessing_machinery(tmp_path):
    out = tmp_path / "modules.json"
    proc = spawner().spawn(report_modules, "modules", out=str(out))
    assert _exited(proc) == 0
    got = json.loads(out.read_text())
    assert got["machinery"] == []
    assert got["main"] is None  # `python -c`: the parent's script is not the child's __main__


def test_a_cluster_is_its_processes_and_nothing_else():
    before = set(descendants(os.getpid()))
    with Cluster(brokers=1) as cluster:
        procs = cluster.processes
        # No helper process (such as a multiprocessing resource tracker), here or below a child.
        assert set(descendants(os.getpid())) - before == {p.pid for p in procs.values()}
        for node, proc in procs.items():
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                argv = f.read().rstrip(b"\0").split(b"\0")
            assert argv[1:] == [b"-c", BOOT.encode(), f"kafkalab-{node}".encode()]
            # Brokers and controllers speak plaintext: no TLS library mapped (roles.py).
            with open(f"/proc/{proc.pid}/maps") as f:
                assert "libssl" not in f.read(), f"{node} loaded ssl"


def test_a_role_that_fails_says_why(tmp_path, capfd):
    error_file = tmp_path / "x.error"
    proc = spawner().spawn(run_role, "bad-role", role="nope", parent_pid=os.getpid(), error_file=str(error_file))
    assert _exited(proc) == 1
    assert error_file.read_text().startswith("ValueError: unknown process role 'nope'")
    err = capfd.readouterr().err
    assert "Process kafkalab-bad-role:" in err and "unknown process role 'nope'" in err


def test_a_target_must_be_importable_by_a_fresh_interpreter():
    def local() -> None:
        pass
    with pytest.raises(ValueError, match="top level of an importable module"):
        spawner().spawn(local, "local")
    with pytest.raises(ValueError, match="not in __main__"):
        target_name(type("F", (), {"__module__": "__main__", "__qualname__": "f", "__repr__": lambda s: "f"})())
    assert target_name(run_role) == "kafkalab.roles:run_role"


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """The child never re-runs the parent's __main__: a script that spawns at top level would
    otherwise spawn again from each child."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[p for p in sys.path if p]!r}
        print("script ran", flush=True)
        from kafkalab.process import spawner
        from test_spawn import report_modules
        proc = spawner().spawn(report_modules, "unguarded", out={str(tmp_path / 'm.json')!r})
        proc.join(60)
        print("child exit", proc.exitcode, flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert done.stdout.splitlines() == ["script ran", "child exit 0"], done.stderr
    assert json.loads((tmp_path / "m.json").read_text())["machinery"] == []


def test_a_worker_shares_its_count_and_status_and_stops_when_asked():
    proc, state = spawn_worker(count_until_stopped, "counter", n=1000)
    try:
        wait_until(lambda: state.status(), 30, "the worker's status")
        assert state.count == 1000
        assert json.loads(state.status()) == {"done": 1000}
        assert proc.is_alive()
        state.request_stop()
        assert _exited(proc) == 0
    finally:
        proc.kill()
        proc.join(5)


def count_nothing(message) -> None:
    """A consumer worker's handler that needs nothing of its module: it crosses as code."""


def test_workers_load_no_tls_library():
    """A load worker and a consumer worker with a handler map no libssl: their client imports
    neither asyncio nor ssl (process.skip_import_extras)."""
    with Cluster(brokers=1) as cluster:
        cluster.create_topic("plain", partitions=1, replication_factor=1)
        before = set(descendants(os.getpid()))
        cluster.start_load("plain", rate=200)
        [worker] = cluster.spawn_consumers("plain-group", 1, ["plain"], handler=count_nothing)
        try:
            wait_until(lambda: worker.consumed > 0, 60, "the consumer worker's first records")
            [load] = set(descendants(os.getpid())) - before - {worker.pid}
            for pid in (load, worker.pid):
                with open(f"/proc/{pid}/maps") as f:
                    maps = f.read()
                assert "_zmq" in maps  # a live worker's maps, read while it runs
                assert "libssl" not in maps, f"worker {pid} loaded ssl"
        finally:
            worker.stop()
            cluster.stop_load()
