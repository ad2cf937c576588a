"""`kafkalab sim`: run every scenario for every seed, a row per run, and name any violation.

Runs are spread over worker processes (each run is a pure function of its seed, so the table is
the same whatever the number of workers); rows print in (seed, scenario) order.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

from kafkalab.sim.invariants import Violation
from kafkalab.sim.scenarios import SCENARIOS

COLUMNS = ("scenario", "seed", "virtual_s", "events", "faults", "acknowledged", "checks")


def parse_seeds(text: str) -> list[int]:
    """"1-200", "7" or "1,5,10-12" -> the seeds, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"--seeds {text!r}: use A-B, a single seed, or a comma list such as 1,5,10-12") from None
        if a < 0 or b < a:
            raise ValueError(f"--seeds {text!r}: a range goes from a low seed to a higher one (e.g. 1-200)")
        seeds.extend(range(a, b + 1))
    return seeds


def _run_one(task: tuple[str, int, int, int, bool]) -> dict[str, Any]:
    name, seed, brokers, controllers, trace = task
    runner = dict(SCENARIOS)[name]
    try:
        summary = runner(seed, brokers=brokers, controllers=controllers, trace=trace)
    except Violation as v:
        return {"violation": {"scenario": name, "seed": v.seed, "event": v.event, "invariant": v.invariant,
                              "detail": v.detail}, "trace": v.trace}
    row = asdict(summary)
    story = row.pop("trace")
    return {"row": row, "trace": story}


def _replay(v: dict[str, Any], brokers: int, controllers: int) -> str:
    extra = (f" --brokers {brokers}" if brokers != 3 else "") + (f" --controllers {controllers}" if controllers != 1 else "")
    return f"kafkalab sim --seeds {v['seed']} --trace {v['seed']} --scenario {v['scenario']}{extra}"


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [[f"{r[c]:.2f}" if c == "virtual_s" else str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(COLUMNS)]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(COLUMNS, widths, strict=True)))]
    for row in cells:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(out)


def main(seeds_text: str | None, *, brokers: int = 3, controllers: int = 1, trace: int | None = None,
         scenarios: list[str] | None = None, as_json: bool = False, jobs: int | None = None) -> int:
    known = [name for name, _ in SCENARIOS]
    names = scenarios or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(known)}")
    if trace is not None:
        seeds = [trace]
    elif seeds_text is None:
        raise ValueError("give --seeds A-B (e.g. --seeds 1-200) or --trace SEED")
    else:
        seeds = parse_seeds(seeds_text)
    tasks = [(name, seed, brokers, controllers, trace is not None) for seed in seeds for name in names]
    jobs = jobs or min(2, os.cpu_count() or 1)
    started = time.monotonic()
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_run_one, tasks, chunksize=4))
    else:
        results = [_run_one(t) for t in tasks]
    wall = time.monotonic() - started
    rows = [r["row"] for r in results if "row" in r]
    violations = [r["violation"] for r in results if "violation" in r]
    for v in violations:
        v["replay"] = _replay(v, brokers, controllers)
    if as_json:
        print(json.dumps({"runs": rows, "violations": violations, "wall_s": round(wall, 2)}, indent=1))
        return 1 if violations else 0
    if trace is not None:
        for r in results:
            for line in r["trace"] or []:
                print(line)
    if rows:
        print(_table(rows))
    total = {k: sum(r[k] for r in rows) for k in ("events", "faults", "acknowledged", "checks")}
    print(f"{len(tasks)} runs ({', '.join(names)}) over {len(seeds)} seeds in {wall:.1f} s with {jobs} "
          f"worker{'s' if jobs > 1 else ''}; the {len(rows)} that held: {total['events']} events, "
          f"{total['faults']} faults, {total['acknowledged']} acknowledged records, {total['checks']} invariant checks")
    for v in violations:
        print(f"VIOLATION {v['scenario']} seed {v['seed']}, event {v['event']}: {v['invariant']}: {v['detail']}\n"
              f"  replay: {v['replay']}")
    if not violations:
        print("every invariant held")
    return 1 if violations else 0
