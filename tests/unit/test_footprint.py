"""What keeps a learner small: lazy imports on the notebook side, state rows sent on change."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_kafkalab_and_cluster_leaves_pandas_and_plotly_out():
    code = ("import sys, kafkalab\nfrom kafkalab import Cluster\n"
            "from kafkalab.metrics import MetricsCollector\n"
            "print(sorted(m for m in ('pandas', 'plotly', 'numpy') if m in sys.modules))\n"
            "from kafkalab.metrics import KIND_COLUMNS, _to_frame\n"
            "print(type(_to_frame([], 'broker')).__module__.split('.')[0], 'pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "pandas True"]  # and a frame still comes out as pandas


# What each lab process imports before its main runs: the module its target lives in, and the
# clients the main then imports. A consumer worker once paid ~30 MB for pandas through
# workloads/__init__ (the checker), a MirrorMaker replicator the same through mirror/__init__.
PROCESS_MODULES = {
    "broker and controller": "kafkalab.broker.server, kafkalab.controller.server",
    "consumer worker": "kafkalab.workloads.consumers, kafkalab.client.consumer",
    "eos worker": "kafkalab.workloads.eos, kafkalab.client.consumer, kafkalab.client.producer",
    "load worker": "kafkalab.load_worker, kafkalab.client.producer",
    "mirror replicator": "kafkalab.mirror.replicator, kafkalab.client",
    "schema registry": "kafkalab.registry.server",
}


@pytest.mark.parametrize("modules", PROCESS_MODULES.values(), ids=PROCESS_MODULES.keys())
def test_lab_process_modules_never_import_pandas(modules):
    code = f"import sys, {modules}\nprint(sorted(m for m in ('pandas', 'numpy', 'plotly') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.integration
def test_a_cluster_with_a_topic_and_traffic_leaves_pandas_out_until_a_frame_is_asked_for():
    code = ("import sys\nfrom kafkalab import Cluster\n"
            "with Cluster(brokers=1) as c:\n"
            "    c.create_topic('t', partitions=1, replication_factor=1)\n"
            "    p = c.producer({'acks': '1'})\n"
            "    p.produce('t', value=b'x')\n"
            "    assert p.flush(10) == 0\n"
            "    p.close()\n"
            "    print('pandas' in sys.modules)\n"
            "    c.describe_topic('t')\n"
            "    print('pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_footprint_reads_the_lab_peaks_the_labs_run_saved(tmp_path, monkeypatch):
    from kafkalab.bench.footprint import LAB_PEAKS_ENV, lab_peaks

    monkeypatch.delenv(LAB_PEAKS_ENV, raising=False)
    assert lab_peaks() == {}  # no file named: no rows, not an error
    path = tmp_path / "peaks.json"
    path.write_text('{"04_consumer_groups.ipynb": 412.5, "11_failure_scenarios.ipynb": 600}')
    monkeypatch.setenv(LAB_PEAKS_ENV, str(path))
    assert lab_peaks() == {"04_consumer_groups.ipynb": 412.5, "11_failure_scenarios.ipynb": 600.0}


def test_metrics_history_keeps_rows_compact_and_reads_them_back_whole():
    import json
    import tracemalloc

    from kafkalab.metrics import MetricsCollector

    row = {"broker": 1, "topic": "orders", "partition": 2, "is_leader": True, "leader": 1, "leader_epoch": 3,
           "log_start_offset": 0, "log_end_offset": 123456, "high_watermark": 123456, "isr": [1, 2, 3],
           "segments": 3, "size_bytes": 12345678, "lag_offsets": 0, "lag_ms": 0,
           "follower_lag": {"2": 0, "3": 0}, "follower_lag_ms": {"2": 12, "3": 40}, "node": "broker-1"}
    n = 10_000  # five minutes of one topic's replica rows from 3 brokers in the lab profile
    with MetricsCollector() as c:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(n):  # fresh objects per row, as rows decoded from other processes are
                c.record("replica", json.loads(json.dumps({**row, "log_end_offset": i, "time": 1000.0 + i / 40})))
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # As dicts these rows held ~2.3 KB each (23 MB here); kept as their JSON, under 0.8 KB.
        assert held < n * 800, f"{held / n:.0f} bytes a row"
        assert c.row_count("replica") == n  # all within history_seconds
        back = c.replicas(since=1000.0 + (n - 2) / 40)
        assert back["log_end_offset"].tolist() == [n - 2, n - 1]
        assert back["time"].tolist() == [1000.0 + (n - 2) / 40, 1000.0 + (n - 1) / 40]
        assert back["isr"].tolist() == [[1, 2, 3], [1, 2, 3]]


def test_pss_counts_a_shared_page_once_across_its_sharers():
    import mmap
    import os

    from kafkalab.bench.footprint import pss_mb, rss_mb

    alone = pss_mb(os.getpid())
    assert alone is not None and 0 < alone <= rss_mb(os.getpid()) + 0.01
    # 64 MiB touched in a shared mapping, then shared with a forked child: each is charged half.
    region = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_SHARED)
    region.write(b"x" * (64 << 20))
    before = pss_mb(os.getpid())
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:  # touch every page of the region, then wait to be measured
        sum(region[i] for i in range(0, 64 << 20, 4096))
        os.write(ready_w, b"1")
        os.read(done_r, 1)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        shared = pss_mb(os.getpid())
        assert before - shared > 25  # ~32 MiB of the region moved to the child's share
    finally:
        os.write(done_w, b"1")
        os.waitpid(child, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
        region.close()
