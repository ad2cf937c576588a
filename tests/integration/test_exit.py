"""A script that starts a cluster ends cleanly however it ends: no hang, no process, no data dir,
no traceback from a child."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Prints one JSON line (data dir and child pids), then ends or waits to be signalled.
SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from kafkalab import Cluster
    c = Cluster(brokers=1)
    try:  # a signal may come as soon as the line is out
        print(json.dumps({"data_dir": c.data_dir, "pids": [p.pid for p in c.processes.values()]}), flush=True)
        if sys.argv[1] == "wait":
            time.sleep(120)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(mode: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the script did not start a cluster: {proc.stderr.read()}")
    return proc, json.loads(line)


def _finish(proc: subprocess.Popen, info: dict, timeout: float = 20.0) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the script did not exit within {timeout:.0f} s of its end")
    finally:
        for pid in info["pids"]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in info["pids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in info["pids"] if _alive(p)], "a child process outlived the script"
    assert not os.path.exists(info["data_dir"]), "the data dir was left behind"
    return out, err


def test_a_script_that_never_closes_its_cluster_exits_and_cleans_up():
    proc, info = _start("end")
    out, err = _finish(proc, info)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_sigterm_closes_the_cluster_then_ends_the_process():
    proc, info = _start("wait")
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc, info)
    assert proc.returncode == -signal.SIGTERM
    assert "Traceback" not in err


def test_ctrl_c_to_the_process_group_prints_no_child_traceback():
    proc, info = _start("wait")
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C (or a kernel restart) does
    out, err = _finish(proc, info)
    assert "interrupted" in out
    assert proc.returncode == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_children_of_a_killed_parent_die_without_a_traceback():
    proc, info = _start("wait")
    proc.kill()   # SIGKILL: no cleanup runs in the parent; its children must still go, quietly
    try:
        _, err = proc.communicate(timeout=20)   # EOF once every child holding stderr has exited
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("children of a killed parent still hold its stderr after 20 s")
    finally:
        for pid in info["pids"]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(info["data_dir"], ignore_errors=True)   # the next Cluster() would remove it
    assert "Traceback" not in err, err
