from kafkalab.bench.storage import bench_append


def test_bench_append_measures_both_sides():
    r = bench_append(seconds=0.4, batch_bytes=65536, rounds=2)
    assert r["raw_MBps"] > 0 and r["log_MBps"] > 0
    assert abs(r["ratio"] - r["log_MBps"] / r["raw_MBps"]) < 0.01
    assert 60_000 < r["batch_bytes"] < 70_000
