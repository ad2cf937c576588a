"""Many learners on one host: four labs run side by side on two cores, each in its own temporary
dir, and all pass nbval. While they run, the loopback ports each lab listens on are sampled; at
the end every process a lab started is gone and its temporary dir holds no cluster data dir.

Each learner of a JupyterHub on one server is such a lab: this is what the instructor guide's
"learners per host" figures rest on (the test prints each lab's peak RSS and wall time).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
LABS = ["00_start_here", "01_the_log", "02_partitioning", "15_kafka_in_2_minutes"]  # the short ones


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    return children


def _tree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def _listening_inodes() -> dict[int, int]:
    """Socket inode -> port of every loopback/any TCP socket in LISTEN state."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A":  # TCP_LISTEN
                found[int(parts[9])] = int(parts[1].rsplit(":", 1)[1], 16)
    return found


def _ports_of(pids: list[int], listening: dict[int, int]) -> set[int]:
    ports = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                port = listening.get(int(target[8:-1]))
                if port is not None:
                    ports.add(port)
    return ports


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total / 2**20


def _identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time): a pid reused by a later process is not the same process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (pid, fields[19])


def test_four_labs_side_by_side_on_two_cores(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))[:2]
    runs = {}
    try:
        for lab in LABS:
            tmp = tmp_path / lab
            tmp.mkdir()
            env = {**os.environ, "TMPDIR": str(tmp), "KAFKALAB_PROGRESS": "off"}
            runs[lab] = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"labs/{lab}.ipynb"],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        seen_pids = {lab: set() for lab in LABS}
        ports = {lab: set() for lab in LABS}
        peak = dict.fromkeys(LABS, 0.0)
        started = time.monotonic()
        wall = {}
        while len(wall) < len(LABS):
            children, listening = _children(), _listening_inodes()
            now = {lab: _tree(p.pid, children) for lab, p in runs.items() if lab not in wall}
            held = {lab: _ports_of(pids, listening) for lab, pids in now.items()}
            for lab, pids in now.items():
                seen_pids[lab].update(i for i in map(_identity, pids) if i is not None)
                ports[lab] |= held[lab]
                peak[lab] = max(peak[lab], _rss_mb(pids))
            for a in held:  # two labs never hold the same port at the same time
                for b in held:
                    assert a >= b or not held[a] & held[b], (a, b, held[a] & held[b])
            for lab, p in runs.items():
                if lab not in wall and p.poll() is not None:
                    wall[lab] = time.monotonic() - started
            time.sleep(0.2)
        outputs = {lab: p.communicate()[0] for lab, p in runs.items()}
    finally:
        for p in runs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    for lab, p in runs.items():
        assert p.returncode == 0, f"{lab} failed beside the others:\n{outputs[lab][-4000:]}"
        assert ports[lab], f"no listening port seen for {lab}: the sampler saw nothing"
        # Each lab cleaned up after itself: no process left, no cluster data dir in its TMPDIR.
        leftover = [ident for ident in seen_pids[lab] if _identity(ident[0]) == ident]
        assert not leftover, (lab, leftover)
        assert not list((tmp_path / lab).glob("kafkalab-*")), (lab, list((tmp_path / lab).iterdir()))
    print(json.dumps({lab: {"wall_s": round(wall[lab], 1), "peak_rss_mb": round(peak[lab]),
                            "listening_ports": len(ports[lab])} for lab in LABS}))
