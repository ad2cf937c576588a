"""The whole-cluster simulator: seeded runs replay exactly, a run without faults acknowledges
everything, and `kafkalab sim` reports rows, violations and stories with the right exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kafkalab.broker.partition import Partition
from kafkalab.cli import main
from kafkalab.sim.replication import ReplicationRun, run
from kafkalab.sim.runner import parse_seeds
from kafkalab.sim.scenarios import SCENARIOS


def test_same_seed_same_summary_and_story() -> None:
    a, b = run(3, trace=True), run(3, trace=True)
    assert a == b
    assert a.trace and any("crashed" in line or "paused" in line or "cut" in line for line in a.trace)
    assert run(4) != run(3)


def test_without_faults_every_record_is_acknowledged_and_kept() -> None:
    r = ReplicationRun(1, faults=False)
    summary = r.run()
    assert summary.faults == 0 and summary.acknowledged > 100
    for p in r.producers:
        assert p.sent > 0 and p.acked == p.sent and p.failed == 0


def test_seeds_are_parsed_and_bad_ones_explained() -> None:
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    with pytest.raises(ValueError, match="low seed to a higher"):
        parse_seeds("5-2")


SCENARIO_NAMES = [name for name, _ in SCENARIOS]


def test_cli_rows_and_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seeds", "1-2", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[:2] for line in out.splitlines()[1:] if line[:1].isalpha() and line.split()[1:2] != []]
    for scenario in SCENARIO_NAMES:  # every scenario runs for every seed
        assert [scenario, "1"] in rows and [scenario, "2"] in rows
    assert "every invariant held" in out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seeds", "1", "--jobs", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["scenario"], r["seed"]) for r in doc["runs"]] == [(n, 1) for n in SCENARIO_NAMES]
    assert doc["violations"] == []
    assert all(r["checks"] > 0 for r in doc["runs"])
    assert doc["runs"][0]["checks"] > doc["runs"][0]["events"]  # replication checks after every event


def test_cli_trace_tells_the_story(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--trace", "3", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "topic t created" in out and "acked t-" in out
    assert out.splitlines()[0].startswith("t=0.")


def test_cli_violation_names_seed_event_invariant_and_replay(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def hw_is_leo(self: Partition) -> bool:  # the HW rule broken: the ISR ignored
        if self.is_leader and self.log_end_offset > self.high_watermark:
            self.high_watermark = self.log_end_offset
            return True
        return False
    monkeypatch.setattr(Partition, "maybe_advance_high_watermark", hw_is_leo)
    assert main(["sim", "--seeds", "2", "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION replication seed 2, event " in out
    assert "replay: kafkalab sim --seeds 2 --trace 2 --scenario replication" in out


def test_cli_refuses_what_it_cannot_simulate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--jobs", "1"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_a_power_loss_cuts_the_log_back_to_the_last_flush(tmp_path: Any) -> None:
    import random

    from kafkalab.records import encode_batch
    from kafkalab.sim.broker_node import lose_unflushed_tail
    from kafkalab.storage import Log

    cfg = {"segment.bytes": 300}
    for torn in (None, random.Random(1)):
        d = tmp_path / ("torn" if torn else "clean")
        log = Log(str(d), cfg, now_ms=0)
        for i in range(8):
            log.append(encode_batch([(None, b"v%d" % i, [], 0)]), leader_epoch=0, now_ms=0)
            if i == 4:
                log.flush()  # offsets 0-4 are on disk; 5-7 only in the page cache
        flushed = log.recovery_point
        assert flushed == 5 and len(log.segments) > 1
        log.close(flush=False)
        lose_unflushed_tail(str(d), flushed, torn)
        again = Log(str(d), cfg, now_ms=0, recovery_point=flushed)
        assert again.log_end_offset == 5
        assert (again.recovery_report.truncated_bytes > 0) == (torn is not None)
        again.close()
