"""The labs' exercise checkers: each accepts a right answer and gives a specific hint on a wrong one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import checkers  # noqa: E402
import lab00_checks as l00  # noqa: E402
import lab01_checks as l01  # noqa: E402
import lab02_checks as l02  # noqa: E402
import lab03_checks as l03  # noqa: E402
import lab05_checks as l05  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- shared -------------------------------------------------------------------------------

def test_feedback_renders_and_is_truthy_only_when_right():
    assert str(checkers.right("fine")).startswith("✅") and bool(checkers.right())
    assert str(checkers.wrong("hint")).startswith("❌") and not checkers.wrong("hint")
    assert checkers.not_answered().ok is None and not checkers.not_answered()


def test_reveal_compares_prediction():
    assert checkers.reveal(3, 3, "segments").ok is True
    assert checkers.reveal(2, 3, "segments").ok is False
    fb = checkers.reveal(None, 3, "segments")
    assert fb.ok is None and "3" in fb.message
    assert checkers.reveal({"a": None, "b": None}, {"a": 1, "b": 2}, "outcomes").ok is None
    assert checkers.reveal({"a": 1, "b": None}, {"a": 1, "b": 2}, "outcomes").ok is False


def test_call_learner_reports_exceptions_as_hints():
    ok, fb = checkers.call_learner(lambda x: 1 // x, 0)
    assert not ok and fb.ok is False and "ZeroDivisionError" in fb.message


# -- lab 00 -------------------------------------------------------------------------------

def test_segment_file_name_right():
    assert l00.check_segment_file_name("00000000000000000000.log").ok is True
    assert l00.check_segment_file_name("/tmp/x/broker-1/hello-0/00000000000000000000.log").ok is True
    assert l00.check_segment_file_name("00000000000000000012.log", base_offset=12).ok is True


@pytest.mark.parametrize("answer, hint", [
    (None, "Not answered"),
    ("0.log", "20"),
    ("00000000000000000000.index", "index beside"),
    ("00000000000000000000", ".log"),
    ("00000000000000000001.log", "FIRST record"),
    ("hello-0.log", "digits"),
    (0, "string"),
])
def test_segment_file_name_wrong(answer, hint):
    fb = l00.check_segment_file_name(answer)
    assert fb.ok is not True and hint in fb.message


def test_replica_brokers():
    assert l00.check_replica_brokers({2, 3}, [3, 2], leader=3).ok is True
    assert "only the leader" in l00.check_replica_brokers({3}, [3, 2], leader=3).message
    assert "hold no copy" in l00.check_replica_brokers({1, 2, 3}, [3, 2], leader=3).message
    assert "left out" in l00.check_replica_brokers({2}, [3, 2], leader=3).message
    assert l00.check_replica_brokers(None, [3, 2], leader=3).ok is None
    assert "set of broker ids" in l00.check_replica_brokers("x", [3, 2], leader=3).message


# -- lab 01 -------------------------------------------------------------------------------

def test_segment_for_right():
    def segment_for(offset, bases):
        below = [b for b in bases if b <= offset]
        return max(below) if below else None
    assert l01.check_segment_for(segment_for).ok is True
    assert l01.check_segment_for(l01.segment_for_reference).ok is True


def test_segment_for_wrong_answers_get_specific_hints():
    def strict(offset, bases):  # < instead of <=
        below = [b for b in bases if b < offset]
        return max(below) if below else bases[0]
    assert "use <=" in l01.check_segment_for(strict).message

    def fixed_size(offset, bases):
        return offset // 12 * 12 if offset < 48 else 48
    fb = l01.check_segment_for(fixed_size)
    assert fb.ok is False and "don't divide" in fb.message

    def never_none(offset, bases):
        below = [b for b in bases if b <= offset]
        return max(below) if below else bases[0]
    assert "return None" in l01.check_segment_for(never_none).message

    def next_one(offset, bases):
        above = [b for b in bases if b > offset]
        return min(above) if above else bases[-1]
    assert "next segment" in l01.check_segment_for(next_one).message
    assert l01.check_segment_for(_unfinished).ok is None
    assert "TypeError" in l01.check_segment_for(lambda o, b: o + "x").message


SEGS = [(0, 948), (12, 948), (24, 948), (36, 948), (48, 948)]


def test_size_retention_reference_matches_kafkas_rule():
    assert l01.log_start_after_size_retention(SEGS, 1500) == 36
    assert l01.log_start_after_size_retention(SEGS, 2000) == 24
    assert l01.log_start_after_size_retention(SEGS, 10_000) == 0
    assert l01.log_start_after_size_retention(SEGS, 900) == 48  # the active one stays: 948 > 900 - 0
    # retention.bytes=0: the active segment goes too, after a new empty one is rolled at the LEO
    assert l01.log_start_after_size_retention(SEGS, 0, log_end_offset=60) == 60


def test_size_retention_prediction():
    assert l01.check_size_retention_prediction(36, SEGS, 1500).ok is True
    assert l01.check_size_retention_prediction(None, SEGS, 1500).ok is None
    assert "whole segments" in l01.check_size_retention_prediction(30, SEGS, 1500).message
    assert "ABOVE the limit" in l01.check_size_retention_prediction(36, SEGS, 2000).message
    assert "every closed segment" in l01.check_size_retention_prediction(48, SEGS, 2000).message
    assert "too few" in l01.check_size_retention_prediction(12, SEGS, 1500).message
    assert "whole number" in l01.check_size_retention_prediction("many", SEGS, 1500).message


# -- lab 05 -------------------------------------------------------------------------------

def test_high_watermark_right():
    assert l05.check_high_watermark(lambda leos, isr: min(leos[b] for b in isr)).ok is True


@pytest.mark.parametrize("fn, hint", [
    (lambda leos, isr: min(leos.values()), "only in-sync replicas count"),
    (lambda leos, isr: max(leos[b] for b in isr), "smallest LEO"),
    (lambda leos, isr: min(leos[b] for b in isr) - 1, "No -1"),
    (lambda leos, isr: sum(leos.values()) // len(leos), "smallest log end offset"),
    (_unfinished, "Not answered"),
])
def test_high_watermark_wrong(fn, hint):
    fb = l05.check_high_watermark(fn)
    assert fb.ok is not True and hint in fb.message


def test_eligible_leaders_right():
    assert l05.check_eligible_leaders(l05.eligible_leaders_reference).ok is True


@pytest.mark.parametrize("fn, hint", [
    (lambda r, isr, alive, u: set(isr), "down cannot lead"),
    (lambda r, isr, alive, u: {b for b in alive if b in r}, "only an in-sync replica"),
    (lambda r, isr, alive, u: {b for b in isr if b in alive}, "any live replica may lead"),
    (lambda r, isr, alive, u: {b for b in isr if b in alive} or {b for b in r if b in alive}, "goes offline"),
    (lambda r, isr, alive, u: l05.eligible_leaders_reference(r, isr, alive, u) | (set(alive) - set(r)),
     "holds a replica"),
    (lambda r, isr, alive, u: ({b for b in r if b in alive} if u else {b for b in isr if b in alive}),
     "prefers the ISR"),
    (lambda r, isr, alive, u: 7, "set of broker ids"),
    (_unfinished, "Not answered"),
])
def test_eligible_leaders_wrong(fn, hint):
    fb = l05.check_eligible_leaders(fn)
    assert fb.ok is not True and hint in fb.message, fb.message


# -- lab 02 -------------------------------------------------------------------------------

def test_partitioner_right():
    from kafkalab.client.partitioner import murmur2_partition
    assert l02.check_partitioner(lambda k, n, avail: murmur2_partition(k, n)).ok is True
    assert l02.check_partitioner(l02.keyed_partition_reference).ok is True


def _murmur(key):
    from kafkalab.client.partitioner import murmur2
    return murmur2(key)


@pytest.mark.parametrize("fn, hint", [
    (lambda k, n, a: _murmur(k) % n, "0x7fffffff"),
    (lambda k, n, a: abs(_murmur(k) - (1 << 32) if _murmur(k) >> 31 else _murmur(k)) % n, "0x7fffffff"),
    (lambda k, n, a: a[(_murmur(k) & 0x7FFFFFFF) % len(a)], "ALL"),
    (lambda k, n, a: (_murmur(k) & 0x7FFFFFFF) % n if (_murmur(k) & 0x7FFFFFFF) % n in a else a[0], "ALL"),
    (lambda k, n, a: sum(k) % n if k else 0, "Python's hash()"),
    (lambda k, n, a: _murmur(k) & 0x7FFFFFFF, "0 .. partition_count - 1"),
    (lambda k, n, a: str(k), "an int"),
    (lambda k, n, a: int(k), "raised"),
    (_unfinished, "Not answered"),
])
def test_partitioner_wrong(fn, hint):
    fb = l02.check_partitioner(fn)
    assert fb.ok is False or (fb.ok is None and hint == "Not answered")
    assert hint in fb.message, fb.message


def test_partition_prediction():
    key, n = b"order-35", 6
    want = l02.keyed_partition_reference(key, n)
    assert l02.check_partition_prediction(want, key, n).ok is True
    assert l02.check_partition_prediction(None, key, n).ok is None
    cases = {
        _murmur(key) % n: "unsigned hash",
        l02._java_abs(key, n): "abs()",
        n: "partitions 0 .. 5",
        "2": "whole number",
    }
    assert len(cases) == 4, "order-35 must make each mistake give a different answer"
    for answer, hint in cases.items():
        fb = l02.check_partition_prediction(answer, key, n)
        assert fb.ok is False and hint in fb.message, (answer, fb.message)
    other = next(p for p in range(n) if p not in cases and p != want)
    assert "murmur2" in l02.check_partition_prediction(other, key, n).message


# -- lab 03 -------------------------------------------------------------------------------

def test_records_per_batch_right():
    assert l03.check_records_per_batch(l03.records_per_batch_reference).ok is True
    assert l03.check_records_per_batch(
        lambda r, linger, b, rec: min(max(1, r * linger // 1000), b // rec)).ok is True


@pytest.mark.parametrize("fn, hint", [
    (lambda r, linger, b, rec: min(max(1, r * linger), b // rec), "divide"),
    (lambda r, linger, b, rec: max(1, int(r * linger / 1000)), "as soon as it is full"),
    (lambda r, linger, b, rec: min(int(r * linger / 1000), b // rec), "at least 1"),
    (lambda r, linger, b, rec: min(max(1, r * linger / 1000), b // rec), "whole records"),
    (lambda r, linger, b, rec: b // rec, "capped"),
    (lambda r, linger, b, rec: "many", "number of records"),
    (_unfinished, "Not answered"),
])
def test_records_per_batch_wrong(fn, hint):
    fb = l03.check_records_per_batch(fn)
    assert fb.ok is not True and hint in fb.message, fb.message


def test_safe_producer_config():
    assert l03.check_safe_producer_config({}).ok is True          # Kafka 3.x defaults are safe
    assert l03.check_safe_producer_config({"acks": "all", "enable.idempotence": True,
                                           "max.in.flight.requests.per.connection": 1}).ok is True
    assert l03.check_safe_producer_config(None).ok is None
    cases = [
        ({"acks": "1"}, "acks=1"),
        ({"acks": 0}, "acks=0"),
        ({"retries": 0}, "retries=0"),
        ({"max.in.flight.requests.per.connection": 10}, "would refuse"),
        ({"enable.idempotence": False}, "a second time"),
        ({"enable.idempotence": True, "acks": "1"}, "would refuse"),
        ({"lingr.ms": 5}, "would refuse"),
        ("acks=all", "dict"),
    ]
    for cfg, hint in cases:
        fb = l03.check_safe_producer_config(cfg)
        assert fb.ok is False and hint in fb.message, (cfg, fb.message)


# -- lab 04 -------------------------------------------------------------------------------

import lab04_checks as l04  # noqa: E402


def _range_like(ppt, subs, order=sorted, extra_first=True, per_topic=True):
    """A range assignor with one knob turned wrong (for the hint tests)."""
    out = {m: [] for m in subs}
    groups = ([(t, [(t, p) for p in range(n)]) for t, n in sorted(ppt.items())] if per_topic else
              [(None, [(t, p) for t, n in sorted(ppt.items()) for p in range(n)])])
    for topic, tps in groups:
        members = list(order([m for m, ts in subs.items() if topic is None or topic in ts]))
        per, extra = divmod(len(tps), len(members))
        start = 0
        for i, m in enumerate(members):
            count = per + (1 if (i < extra if extra_first else i >= len(members) - extra) else 0)
            out[m] += tps[start:start + count]
            start += count
    return out


def test_range_assignor_right():
    assert l04.check_range_assignor(l04.range_reference).ok is True
    assert l04.check_range_assignor(lambda ppt, subs: _range_like(ppt, subs)).ok is True


def _roundrobin(ppt, subs):
    from kafkalab.client.assignors import roundrobin_assign
    return roundrobin_assign(ppt, l04.as_subscriptions(subs))


@pytest.mark.parametrize("fn, hint", [
    (_roundrobin, "roundrobin"),
    (lambda ppt, subs: _range_like(ppt, subs, order=list), "by member id, not by dict order"),
    (lambda ppt, subs: _range_like(ppt, subs, extra_first=False), "first"),
    (lambda ppt, subs: _range_like(ppt, subs, per_topic=False), "subscribed to"),
    (lambda ppt, subs: {m: [(t, p) for t, n in ppt.items() for p in range(n)] for m in subs}, "exactly one member"),
    (lambda ppt, subs: _range_like(ppt, subs, order=lambda ms: sorted(ms, reverse=True)), "partitions 0.."),
    (lambda ppt, subs: [1, 2], "return a dict"),
    (lambda ppt, subs: 1 / 0, "raised"),
    (_unfinished, "Not answered"),
])
def test_range_assignor_wrong(fn, hint):
    fb = l04.check_range_assignor(fn)
    assert fb.ok is not True and hint in fb.message, fb.message


def test_rebalance_prediction():
    want = l04.rebalance_reference()
    assert want == {"d_gets_range": [9, 10, 11], "moved_range": 6, "moved_sticky": 3,
                    "revoked_eager": 12, "revoked_cooperative": 3}
    assert l04.check_rebalance_prediction(want).ok is True
    assert l04.check_rebalance_prediction({k: None for k in want}).ok is None
    assert l04.check_rebalance_prediction({**want, "moved_sticky": None}).ok is None
    cases = [
        ({"d_gets_range": [3, 7, 11]}, "sticky would do"),
        ({"d_gets_range": [0, 1, 2]}, "sorts last"),
        ({"d_gets_range": [8, 9, 10]}, "blocks of 3"),
        ({"moved_range": 12}, "revoked is not moved"),
        ({"moved_range": 3}, "blocks shift"),
        ({"moved_range": 9}, "count the partitions"),
        ({"moved_sticky": 6}, "quota"),
        ({"revoked_eager": 3}, "ALL its partitions"),
        ({"revoked_cooperative": 12}, "only what moves"),
        ({"revoked_cooperative": 6}, "sticky's target"),
        ({"moved_range": "six"}, "whole numbers"),
    ]
    for change, hint in cases:
        fb = l04.check_rebalance_prediction({**want, **change})
        assert fb.ok is False and hint in fb.message, (change, fb.message)


# -- lab 07 -------------------------------------------------------------------------------

import lab07_checks as l07  # noqa: E402


def test_compaction_right():
    assert l07.check_compaction(l07.compaction_reference).ok is True

    def as_lists(records, active):
        latest = {k: o for o, k, _ in records if o < active}
        return [[o, k, v] for o, k, v in records if o >= active or latest[k] == o]
    assert l07.check_compaction(as_lists).ok is True


def _latest(records):
    return {k: o for o, k, _ in records}


@pytest.mark.parametrize("fn, hint", [
    (lambda r, a: [(i, k, v) for i, (_, k, v) in enumerate(l07.compaction_reference(r, a))], "offsets never change"),
    (lambda r, a: sorted(l07.compaction_reference(r, a), key=lambda x: (x[1], x[0])), "offset order"),
    (lambda r, a: [x for x in r if _latest(r)[x[1]] == x[0]], "active segment"),
    (lambda r, a: [x for x in l07.compaction_reference(r, a) if x[2] is not None], "tombstone"),
    (lambda r, a: [x for x in r if x[0] >= a or _latest(list(reversed(r)))[x[1]] == x[0]], "LATEST"),
    (lambda r, a: [x for x in r if x[0] >= a or _latest(r)[x[1]] == x[0]], "does not read the active segment"),
    (lambda r, a: [x for x in l07.compaction_reference(r, a) if x[0] >= a or x[1] != "b"], "below it the latest"),
    (lambda r, a: sorted({*l07.compaction_reference(r, a), *[x for x in r if x == (2, "a", "2")]}),
     "only if no later"),
    (lambda r, a: None, "list of (offset, key, value)"),
    (lambda r, a: r[0][5], "raised"),
    (_unfinished, "Not answered"),
])
def test_compaction_wrong(fn, hint):
    fb = l07.check_compaction(fn)
    assert fb.ok is not True and hint in fb.message, fb.message


def test_tombstone_predictions():
    want = l07.tombstone_reference()
    assert want == {"A": True, "B": False, "C": True, "D": True}
    assert l07.check_tombstone_predictions(want).ok is True
    assert l07.check_tombstone_predictions({n: None for n in want}).ok is None
    cases = [
        ({"A": False, "B": False, "C": True, "D": True}, "segment's newest timestamp"),   # pre-3.1 Kafka
        ({"A": False, "B": False, "C": True, "D": False}, "own timestamp"),            # from the tombstone
        ({"A": False, "B": False, "C": False, "D": True}, "timer"),                     # gone once it passed
        ({"A": False, "B": False, "C": False, "D": False}, "timer"),
        ({"A": True, "B": True, "C": True, "D": True}, "['B']"),
        ({"A": "yes", "B": False, "C": True, "D": True}, "True (still readable)"),
        ({"A": True, "B": False}, "True (still readable)"),
    ]
    for answer, hint in cases:
        fb = l07.check_tombstone_predictions(answer)
        assert fb.ok is False and hint in fb.message, (answer, fb.message)


def test_tombstone_rule_boundary():
    # the first run stamps horizon = run + retention; a later run at or after it removes the tombstone
    assert l07.tombstone_readable(100, [0, 99], 200) is True
    assert l07.tombstone_readable(100, [0, 100], 200) is False
    assert l07.tombstone_readable(100, [0, 150], 120) is True     # the removing pass comes after the read
    assert l07.tombstone_readable(0, [50], 10**9) is True         # the stamping pass never removes it
    assert l07.tombstone_readable(100, [], 10**9) is True
