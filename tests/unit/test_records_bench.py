"""The record-format benchmark returns sane, repeatable figures."""

from __future__ import annotations

from kafkalab.bench.records import bench_encode, synthetic_values


def test_bench_encode_reports_every_codec():
    first = bench_encode(0.3)
    assert first["records_per_s"] > 0 and first["batches"] > 0
    assert set(first["codecs"]) == {"none", "gzip", "snappy", "lz4", "zstd"}
    assert first["codecs"]["none"]["ratio"] == 1.0
    for name, figures in first["codecs"].items():
        assert figures["encode_mb_per_s"] > 0 and figures["decode_mb_per_s"] > 0
        if name != "none":
            assert figures["ratio"] > 1.5  # JSON-like values compress well with every codec
    # the data set is seeded: sizes (unlike speeds) repeat exactly
    second = bench_encode(0.1)
    assert {n: f["bytes_out"] for n, f in first["codecs"].items()} == {n: f["bytes_out"] for n, f in second["codecs"].items()}


def test_synthetic_values_are_seeded():
    assert synthetic_values(50, seed=3) == synthetic_values(50, seed=3) != synthetic_values(50, seed=4)
