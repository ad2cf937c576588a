"""Every view's figure data draws in Plotly.js, in Chromium, without an error.

The unit tests check the figure data; this checks that Plotly accepts it (a heatmap that
shares a category axis with rows it lacks, for one, throws inside Plotly and draws nothing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import plotly
import pytest

from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets import (
    IsrTimeline,
    LagView,
    RebalanceTimeline,
    ReplicaView,
    SegmentView,
    ThroughputView,
)
from kafkalab.widgets.network import network_figure_data

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                       reason="chromium is not installed (apt-get install chromium)"),
]
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

T0 = 1_000.0
NODES = ["controller", "broker-1", "broker-2", "broker-3", "client-1", "client-kafka"]


def replica(t, broker, partition, leader, epoch, isr, leo=100):
    return {"time": t, "node": f"broker-{broker}", "broker": broker, "topic": "orders",
            "partition": partition, "is_leader": broker == leader, "leader": leader,
            "leader_epoch": epoch, "log_start_offset": 0, "log_end_offset": leo,
            "high_watermark": leo, "last_stable_offset": leo, "isr": list(isr), "segments": 2,
            "size_bytes": 4096}


def figures() -> dict[str, Any]:
    snap = MetricsSnapshot(start_time=T0)
    for t in range(1, 30):
        for p in (0, 1):
            leader, isr = (2, [2, 1, 3]) if t < 10 else (1, [1, 3])
            for b in (1, 2, 3):
                if t < 10 or b != 2:
                    snap.add("replica", replica(T0 + t, b, p, leader, 0 if t < 10 else 1, isr))
    snap.add("event", {"time": T0 + 9.5, "node": "cluster", "event": "kill", "broker": 2})
    snap.add("event", {"time": T0 + 10, "node": "controller", "event": "leader_election",
                       "topic": "orders", "partition": 0, "leader": 1, "leader_epoch": 1,
                       "isr": [1, 3], "detail": "clean"})
    member = "client-3-11111111-2222-3333-4444-555555555555"
    for t, gen, assignment in ((1, 1, {member: ["orders-0", "orders-1"]}), (20, 2, {})):
        snap.add("group", {"time": T0 + t, "group": "billing", "state": "Stable",
                           "generation": gen, "members": len(assignment),
                           "assignment": assignment})
    for t in range(1, 30):
        snap.add("lag", {"time": T0 + t, "group": "billing", "topic": "orders", "partition": 0,
                         "committed_offset": 50, "log_end_offset": 100, "lag": 50})
        snap.add("client", {"time": T0 + t, "node": "client-1", "client_type": "producer",
                            "records_sent": 100 * t, "bytes_sent": 10_000 * t})
    links = [{"src": "broker-1", "dst": "broker-2", "cut": True, "delay_ms": 0},
             {"src": "broker-2", "dst": "broker-1", "cut": True, "delay_ms": 0},
             {"src": "broker-3", "dst": "controller", "cut": True, "delay_ms": 0},
             {"src": "client-1", "dst": "broker-3", "cut": False, "delay_ms": 200}]
    views = {
        "replicas": ReplicaView(snap, "orders", broker_states=lambda: {2: "killed"}),
        "segments": SegmentView(snap, "orders"),
        "isr": IsrTimeline(snap, "orders"),
        "isr-empty": IsrTimeline(MetricsSnapshot(start_time=T0), "orders"),
        "throughput": ThroughputView(snap),
        "lag": LagView(snap, "billing"),
        "rebalance": RebalanceTimeline(snap, "billing"),
        "rebalance-empty": RebalanceTimeline(MetricsSnapshot(start_time=T0), "billing"),
    }
    out = {name: view.figure_data() for name, view in views.items()}
    out["network"] = network_figure_data({"nodes": NODES, "links": links,
                                          "brokers": {2: "killed"}}, {1: ["orders-0"]})
    out["network-healthy"] = network_figure_data({"nodes": NODES, "links": []})
    return out


def test_every_view_draws_in_plotly_js(chromium_page: Any, tmp_path: Path) -> None:
    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    page = tmp_path / "views.html"
    page.write_text(
        "<html><body><script>" + bundle.read_text() + "</script><script>"
        "window.errors = {}; window.drawn = {};"
        f"for (const [name, f] of Object.entries({json.dumps(figures())})) {{"
        "  const div = document.createElement('div'); document.body.appendChild(div);"
        "  try { Plotly.newPlot(div, f.data, f.layout);"
        "        window.drawn[name] = div.querySelectorAll('.main-svg').length; }"
        "  catch (e) { window.errors[name] = String(e); } }"
        "</script></body></html>")
    chromium_page.goto(page.as_uri())
    chromium_page.wait_for_function("() => Object.keys(window.drawn).length"
                                    " + Object.keys(window.errors).length === 10")
    assert chromium_page.evaluate("window.errors") == {}
    assert all(n > 0 for n in chromium_page.evaluate("window.drawn").values())
