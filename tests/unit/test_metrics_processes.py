"""A publisher in another OS process reaches the collector, and a restarted one reconnects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kafkalab.metrics import MetricsCollector

CHILD = """
import sys, time, zmq
from kafkalab.metrics_publisher import MetricsPublisher
endpoint, node, incarnation = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = zmq.Context()
pub = MetricsPublisher(ctx, endpoint, node)
deadline = time.monotonic() + 20
seq = 0
while time.monotonic() < deadline:   # the parent kills us once it has seen enough
    pub.publish("broker", {"broker": 1, "state": "running", "bytes_in": seq,
                           "incarnation": incarnation})
    seq += 1
    time.sleep(0.01)
"""


def start_child(endpoint: str, incarnation: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, endpoint, "broker-1", str(incarnation)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rows_of(collector: MetricsCollector, incarnation: int):
    frame = collector.brokers()
    if frame.empty or "incarnation" not in frame:
        return frame.iloc[0:0]
    return frame[frame["incarnation"] == incarnation]


@pytest.mark.integration
def test_publisher_in_a_child_process_reaches_the_collector_and_reconnects_after_restart():
    children: list[subprocess.Popen] = []
    with MetricsCollector() as collector:
        try:
            for incarnation in (1, 2):
                child = start_child(collector.endpoint, incarnation)
                children.append(child)
                arrived = collector.wait_for(
                    lambda c, i=incarnation: len(rows_of(c, i)) >= 5, timeout=15.0)
                assert arrived, (child.poll(), child.stderr.read() if child.poll() else b"")
                rows = rows_of(collector, incarnation)
                assert set(rows["node"]) == {"broker-1"}
                assert rows["bytes_in"].is_monotonic_increasing  # in order, per publisher
                assert rows["time"].is_monotonic_increasing
                child.kill()  # like kill_broker: SIGKILL, no goodbye
                child.wait(timeout=10)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)
                child.stderr.close()
