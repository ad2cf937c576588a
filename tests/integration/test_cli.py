"""The command line: demo, up, dump-log, bench — as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KAFKALAB = [sys.executable, "-m", "kafkalab.cli"]


def test_demo_runs_the_story_and_loses_nothing():
    t0 = time.monotonic()
    out = subprocess.run([*KAFKALAB, "demo", "--records", "2000"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "lost: 0" in out.stdout and "at another offset: 0" in out.stdout
    assert "Killing broker" in out.stdout
    assert "\r" not in out.stdout  # progress redraws only on a terminal, not in a log
    assert time.monotonic() - t0 < 60


def test_up_prints_bootstrap_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([*KAFKALAB, "up", "--brokers", "1", "--data-dir", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "bootstrap.servers = 127.0.0.1:" in text, text
        assert "(kept on exit)" in text, text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert "shutting down" in proc.stdout.read()
        # keep_data: the segments are still there for the learner to open
        assert os.path.isdir(tmp_path / "d" / "broker-1")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dump_log_prints_batches(tmp_path):
    from kafkalab.records import encode_batch
    from kafkalab.storage import Log

    log = Log(str(tmp_path / "t-0"), {}, now_ms=0)
    log.append(encode_batch([(b"k", b"v1", [], 5), (None, b"v2", [], 6)]), now_ms=0)
    log.close()
    out = subprocess.run([*KAFKALAB, "dump-log", str(tmp_path / "t-0" / "00000000000000000000.log")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "baseOffset: 0 lastOffset: 1 count: 2" in out.stdout
    assert "payload: v2" in out.stdout
    missing = subprocess.run([*KAFKALAB, "dump-log", str(tmp_path / "nope.log")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_bench_table_and_json():
    out = subprocess.run([*KAFKALAB, "bench", "nope"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "unknown bench" in out.stderr
