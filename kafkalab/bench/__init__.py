"""`kafkalab bench NAME`: measurements, never timed assertions. Each bench returns a list of
rows (dicts) printed as a table or as JSON; ratios are against a reference measured in the
same run, because these machines are noisy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Bench = Callable[..., list[dict[str, Any]]]
BENCHES: dict[str, tuple[str, str]] = {
    # name -> (module, function)
    "storage": ("kafkalab.bench.storage_suite", "run"),
    "startup": ("kafkalab.bench.startup", "run"),
    "failover": ("kafkalab.bench.failover", "run"),
    "produce": ("kafkalab.bench.produce", "run"),
    "rebalance": ("kafkalab.bench.rebalance", "run"),
    "transactions": ("kafkalab.bench.transactions", "run"),
    "consume": ("kafkalab.bench.kafka_clients", "consume"),
    "footprint": ("kafkalab.bench.footprint", "run"),
}


def load(name: str) -> Bench:
    import importlib

    if name not in BENCHES:
        raise SystemExit(f"unknown bench {name!r}; choose one of: {', '.join(sorted(BENCHES))}")
    module, fn = BENCHES[name]
    return getattr(importlib.import_module(module), fn)


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return "" if v is None else str(v)
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    numeric = [all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) for c in cols]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def align(v: str, w: int, num: bool) -> str:
        return v.rjust(w) if num else v.ljust(w)
    lines = ["  ".join(align(c, w, n) for c, w, n in zip(cols, widths, numeric, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(align(v, w, n) for v, w, n in zip(row, widths, numeric, strict=True)) for row in cells]
    return "\n".join(lines)
