"""`kafkalab bench storage`: record encoding and Log.append against a raw file write."""

from __future__ import annotations

from typing import Any


def run(seconds: float = 2.0) -> list[dict[str, Any]]:
    from kafkalab.bench.records import bench_encode
    from kafkalab.bench.storage import bench_append

    rows: list[dict[str, Any]] = []
    enc = bench_encode(seconds=seconds)
    rows.append({"measure": "encode 100-byte records, no compression", "value": enc["records_per_s"],
                 "unit": "records/s", "target": ">= 2,000,000"})
    for codec, r in enc.get("codecs", {}).items():
        rows.append({"measure": f"encode {codec}", "value": r["encode_mb_per_s"], "unit": "MB/s",
                     "target": f"ratio {r['ratio']:.2f}"})
    app = bench_append(seconds=seconds)
    for k, v in app.items():
        if isinstance(v, int | float):
            rows.append({"measure": f"append: {k}", "value": v, "unit": "", "target": ""})
    return rows
