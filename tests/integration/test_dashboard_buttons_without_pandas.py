"""A live Dashboard's buttons (kill, restart, cut, heal) and redraws never import pandas or
numpy: the Cluster calls behind them (describe_cluster_rows, the fault wait, the restart's
wait, the active controller) read plain rows too."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODE = r"""
import sys, time
from kafkalab import Cluster
from kafkalab.widgets import Dashboard

def wait_for(line):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(line in said for _, said in dash.story.lines):
            return
        time.sleep(0.1)
    raise AssertionError(f"the story never said {line!r}: {dash.story.lines}")

with Cluster(brokers=3) as cluster:
    cluster.create_topic("orders", partitions=1, replication_factor=3)
    dash = Dashboard(cluster, topic="orders")
    try:
        dash.brokers.buttons[(2, "kill")].click()
        wait_for("broker 2 killed")
        dash.brokers.buttons[(2, "restart")].click()
        wait_for("broker 2 restarted")
        dash.network.a.value, dash.network.b.value = "broker-1", "broker-3"
        dash.network.press("cut")
        wait_for("cut broker-1 ↔ broker-3")
        dash.network.press("heal")
        wait_for("network healed")
    finally:
        dash.close()
    print("pandas" in sys.modules, "numpy" in sys.modules)
"""


def test_a_live_dashboards_buttons_never_import_pandas():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "False False"
