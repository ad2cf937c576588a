"""The Dashboard in a real JupyterLab and Chromium: kill the leader with its button, watch it.

A notebook builds a 3-broker cluster, a replicated topic and some records, prints partition
0's leader into a known output element and displays `Dashboard(cluster, topic="orders")`.
The test runs it, clicks "Kill broker N" on that leader and checks that, within 3 s, the
broker's tile says "killed" and the ReplicaView's Plotly figure names another leader for P0.
Then it shuts the kernel down and checks that no process it started survives.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "dashboard.ipynb"
SCREENSHOT_FOR_README = Path(__file__).parents[2] / "docs" / "screenshots" / "dashboard.png"
FAILOVER_DEADLINE_MS = 3_000
SETUP_TIMEOUT_MS = 90_000  # first cell of a fresh kernel: imports, 4 processes, a topic

SETUP_CELL = """\
import os
from IPython.display import HTML, display
from kafkalab import Cluster
from kafkalab.widgets import Dashboard

cluster = Cluster(brokers=3)
cluster.create_topic("orders", partitions=3, replication_factor=3,
                     config={"min.insync.replicas": "2"})
producer = cluster.producer({"acks": "all"})
for i in range(300):
    producer.produce("orders", key=f"user-{i % 7}".encode(), value=f"order {i}".encode())
producer.flush()
topic = cluster.describe_topic("orders")
leader = int(topic.loc[topic.partition == 0, "leader"].iloc[0])
display(HTML(f"<pre id='kafkalab-setup'>leader_p0={leader} kernel_pid={os.getpid()}</pre>"))
"""

DASHBOARD_CELL = """\
dashboard = Dashboard(cluster, topic="orders")
dashboard
"""

# The ReplicaView's rendered figure: which broker's bar of P0 is labelled "leader".
REPLICA_LEADERS_JS = """
() => {
  for (const gd of document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot')) {
    const title = gd.layout && gd.layout.title && gd.layout.title.text;
    if (!title || !title.startsWith("Replicas of 'orders'")) continue;
    const bars = (gd.data || []).find(t => t.name === 'log end offset');
    if (!bars) return {found: true, leaders: {}, colors: {}};
    const leaders = {}, colors = {};
    bars.x[0].forEach((partition, i) => {
      const broker = bars.x[1][i];
      colors[partition + ' ' + broker] = bars.marker.color[i];
      if (bars.text[i] === 'leader') leaders[partition] = broker;
    });
    return {found: true, leaders, colors};
  }
  return {found: false};
}
"""


def write_notebook(root: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP_CELL), nbformat.v4.new_code_cell(DASHBOARD_CELL)]
    path = root / NOTEBOOK
    nbformat.write(nb, path)
    return path


def replica_leader(page: Any, partition: str = "P0") -> str | None:
    """The broker ("broker 2") the rendered ReplicaView marks as leader of `partition`."""
    state = page.evaluate(REPLICA_LEADERS_JS)
    return state.get("leaders", {}).get(partition) if state.get("found") else None


def tile_text(page: Any, broker: int) -> str:
    tile = page.locator(".jp-OutputArea-output .widget-html-content",
                        has=page.locator(f"b:text-is('broker {broker}')"))
    return tile.inner_text() if tile.count() == 1 else ""


def run_all_cells(page: Any) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def test_kill_button_fails_over_the_leader_live(jupyter_lab: Any, chromium_page: Any,
                                                 artifacts: Path) -> None:
    from playwright.sync_api import expect

    page, out = chromium_page, artifacts
    started = time.monotonic()
    write_notebook(jupyter_lab.root)
    page.goto(f"{jupyter_lab.url}/lab/tree/{NOTEBOOK}")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    run_all_cells(page)

    setup = page.locator(".jp-OutputArea-output pre#kafkalab-setup")
    expect(setup).to_be_visible(timeout=SETUP_TIMEOUT_MS)
    match = re.fullmatch(r"leader_p0=(\d+) kernel_pid=(\d+)", setup.inner_text().strip())
    assert match, f"unexpected setup output {setup.inner_text()!r}"
    leader, kernel_pid = int(match[1]), int(match[2])
    assert kernel_pid in jupyter_lab.processes(), "the kernel is not one of the server's processes"
    cluster_pids = jupyter_lab.children_of_server() - {kernel_pid}
    assert len(cluster_pids) >= 4, cluster_pids  # controller + 3 brokers (+ resource tracker)

    kill = page.locator(f".jp-OutputArea-output button:has-text('Kill broker {leader}')")
    expect(kill).to_be_visible(timeout=30_000)
    # The view is live before we break anything: it agrees with the cluster on the leader.
    page.wait_for_function(f"() => ({REPLICA_LEADERS_JS})().leaders?.P0 === 'broker {leader}'",
                           timeout=15_000)
    assert "up" in tile_text(page, leader)
    setup_s = time.monotonic() - started
    page.screenshot(path=str(out / "dashboard-before-kill.png"))

    clicked = time.monotonic()
    kill.click()
    page.wait_for_function(
        f"""() => {{
          const tiles = [...document.querySelectorAll('.jp-OutputArea-output .widget-html-content')];
          const mine = tiles.find(t => t.querySelector('b')?.textContent === 'broker {leader}');
          return mine && /killed/.test(mine.textContent);
        }}""", timeout=FAILOVER_DEADLINE_MS)
    tile_s = time.monotonic() - clicked
    remaining = max(1, FAILOVER_DEADLINE_MS - int(tile_s * 1000))
    page.wait_for_function(
        f"() => {{ const l = ({REPLICA_LEADERS_JS})().leaders?.P0;"
        f" return l !== undefined && l !== 'broker {leader}'; }}", timeout=remaining)
    failover_s = time.monotonic() - clicked
    new_leader = replica_leader(page)
    assert new_leader and new_leader != f"broker {leader}"
    # The killed replica's bar goes grey (offline) once its reports are stale (3 s).
    page.wait_for_function(
        f"() => ({REPLICA_LEADERS_JS})().colors?.['P0 broker {leader}'] === '#9e9e9e'",
        timeout=10_000)
    page.screenshot(path=str(out / "dashboard-after-kill.png"))
    SCREENSHOT_FOR_README.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "dashboard-after-kill.png", SCREENSHOT_FOR_README)

    # Closing the kernel takes its cluster with it.
    jupyter_lab.shutdown_kernels()
    survivors = jupyter_lab.wait_children_gone()
    assert not survivors, "outlived their kernel: " + "; ".join(survivors)
    (out / "dashboard-timings.txt").write_text(
        f"setup (server up -> dashboard live) {setup_s:.1f} s\n"
        f"click -> tile killed {tile_s:.2f} s\n"
        f"click -> new leader of P0 in ReplicaView {failover_s:.2f} s ({new_leader})\n"
        f"whole test body {time.monotonic() - started:.1f} s\n")
