"""Retention (delete) and compaction (compact) over real segment files."""

from __future__ import annotations

import os
import struct

import pytest

from kafkalab.records.batch import decode_batch, encode_batch
from kafkalab.storage import Log
from kafkalab.storage.cleaner import Cleaner, clean
from kafkalab.storage.retention import apply_retention, deletable_segments

DAY = 86_400_000


def records(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    for seg in log.segments:
        for _, h, data in seg.scan(0, with_bytes=True, verify_crc=True):
            if h.is_control:
                out.append((h.base_offset, b"<marker>", None))
                continue
            out += [(r.offset, r.key, r.value) for r in decode_batch(data).records]
    return out


def put(log: Log, kvs, ts: int, **kw) -> tuple[int, int]:
    return log.append(encode_batch([(k, v, [], ts) for k, v in kvs], **kw), now_ms=ts)


# -- retention --------------------------------------------------------------

def test_retention_ms_deletes_old_segments_from_the_oldest(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 300, "retention.ms": 1000}, now_ms=0)
    for i in range(20):
        put(lg, [(b"k", b"x" * 50)], ts=i * 100)
    n = len(lg.segments)
    segs, reason = deletable_segments(lg, now_ms=2500)
    assert reason == "retention.ms"
    assert all(now - s.largest_timestamp > 1000 for s in segs for now in [2500])
    result = apply_retention(lg, now_ms=2500)
    assert len(lg.segments) == n - len(segs)
    assert lg.log_start_offset == lg.segments[0].base_offset > 0
    assert all(p.endswith(".log") for p in result["deleted_segments"])
    assert os.path.exists(result["deleted_segments"][0] + ".deleted")
    lg.delete_expired_files(2500 + 60_000)
    assert not os.path.exists(result["deleted_segments"][0] + ".deleted")
    lg.close()


def test_an_expired_active_segment_goes_after_a_new_empty_one_is_rolled(tmp_path):
    # Kafka's UnifiedLog.deletableSegments: the active segment is a candidate like any other
    # once it is wholly below the HW and not empty; deleteSegments rolls a new one first.
    lg = Log(str(tmp_path / "t-0"), {"retention.ms": 1000}, now_ms=0)
    put(lg, [(b"k", b"x" * 50)] * 10, ts=0)
    assert len(lg.segments) == 1
    assert deletable_segments(lg, now_ms=5000, high_watermark=5) == ([], None)  # HW below its end
    result = apply_retention(lg, now_ms=5000, high_watermark=10)
    assert result["reasons"] == ["retention.ms"] and len(result["deleted_segments"]) == 1
    assert len(lg.segments) == 1 and lg.active_segment.size == 0
    assert lg.active_segment.base_offset == lg.log_start_offset == lg.log_end_offset == 10
    assert apply_retention(lg, now_ms=10**9)["deleted_segments"] == []  # an empty log stays
    assert put(lg, [(b"k", b"y")], ts=10**9) == (10, 10)  # offsets carry on
    lg.close()


def test_retention_never_moves_the_log_start_past_the_high_watermark(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 300, "retention.ms": 1000}, now_ms=0)
    for _ in range(20):
        put(lg, [(b"k", b"x" * 50)], ts=0)
    hw = lg.segments[2].base_offset + 1  # inside the third segment
    apply_retention(lg, now_ms=10**9, high_watermark=hw)
    assert lg.log_start_offset == lg.segments[0].base_offset <= hw
    assert lg.segments[1].base_offset > hw
    lg.close()


def test_retention_bytes_keeps_log_at_or_above_limit(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 300, "retention.bytes": 700, "retention.ms": -1}, now_ms=0)
    for _ in range(20):
        put(lg, [(b"k", b"x" * 50)], ts=0)
    apply_retention(lg, now_ms=0)
    seg_size = lg.segments[0].size
    assert 700 <= lg.size_bytes < 700 + seg_size + lg.active_segment.size
    lg.close()


def test_delete_records_then_retention_drops_segments_below_log_start(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 300, "cleanup.policy": "compact"}, now_ms=0)
    for _ in range(20):
        put(lg, [(b"k", b"x" * 50)], ts=0)
    third = lg.segments[2].base_offset
    lg.delete_records(third + 1)
    result = apply_retention(lg, now_ms=0)
    assert result["reasons"] == ["log start offset"]
    assert lg.segments[0].base_offset == third
    assert lg.log_start_offset == third + 1
    lg.close()


def test_compact_only_policy_ignores_retention_ms(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 300, "retention.ms": 1, "cleanup.policy": "compact"}, now_ms=0)
    for _ in range(10):
        put(lg, [(b"k", b"x" * 50)], ts=0)
    assert deletable_segments(lg, now_ms=10**9) == ([], None)
    lg.close()


# -- compaction ---------------------------------------------------------------

CCFG = {"segment.bytes": 400, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.01}


def test_compaction_keeps_latest_per_key_with_original_offsets(tmp_path):
    lg = Log(str(tmp_path / "t-0"), CCFG, now_ms=0)
    for i in range(40):
        put(lg, [(b"user-%d" % (i % 5), b"v%d" % i), (None, b"keyless")], ts=1000)
    before = records(lg)
    active_base = lg.active_segment.base_offset
    # the offset map covers the closed segments only (Kafka's first uncleanable offset)
    expected_latest = {k: (o, v) for o, k, v in before if o < active_base and k is not None}
    stats = clean(lg, now_ms=2000)
    assert stats["cleaned"] and stats["segments_cleaned"] == len(lg.segments) - 1
    after = records(lg)
    # below the active segment: exactly the latest record of each key, at its old offset
    assert [(k, (o, v)) for o, k, v in after if o < active_base] == sorted(
        expected_latest.items(), key=lambda kv: kv[1][0])
    assert set(after) <= set(before)
    assert [r for r in after if r[0] >= active_base] == [r for r in before if r[0] >= active_base]
    assert lg.log_end_offset == 80
    assert stats["keyless_removed"] > 0 and stats["bytes_after"] < stats["bytes_before"]
    # reads and indexes still work, and a reopen finds a clean log
    lg.close()
    lg = Log(lg.dir, CCFG, recovery_point=0, now_ms=0)
    assert lg.recovery_report.problems == [] and records(lg) == after
    assert not [n for n in os.listdir(lg.dir) if n.endswith((".cleaned", ".swap"))]
    lg.close()


def test_a_record_superseded_only_in_the_active_segment_waits_for_it_to_close(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {**CCFG, "segment.bytes": 200}, now_ms=0)
    for i in range(5):   # two 73-byte batches per segment: the active one has room for one more
        put(lg, [(b"k%d" % (i % 3), b"v%d" % i)], ts=0)
    cleaner = Cleaner()
    assert cleaner.clean(lg, 0)["cleaned"]
    settled = records(lg)
    active_base = lg.active_segment.base_offset
    # k1 at 1 stays although the active segment holds a newer k1 (4): it is not in the offset map
    assert active_base == 4 and [o for o, _, _ in settled] == [1, 2, 3, 4]
    # a newer k0 lands in the active segment: it does not reach back into the cleaned ones
    off, _ = put(lg, [(b"k0", b"new")], ts=0)
    assert lg.active_segment.base_offset == active_base and off >= active_base
    assert any(k == b"k0" and o < active_base for o, k, _ in settled)
    again = cleaner.clean(lg, 0)
    assert not again["cleaned"] and "dirty ratio 0.00" in again["reason"]
    assert records(lg) == settled + [(off, b"k0", b"new")]   # a finished pass stays finished
    while lg.active_segment.base_offset == active_base:       # close the segment holding it
        put(lg, [(b"pad", b"x" * 60)], ts=0)
    assert cleaner.clean(lg, 0)["cleaned"]
    assert [o for o, k, _ in records(lg) if k == b"k0"] == [off]
    lg.close()


def test_the_offset_map_covers_the_dirty_range_only(tmp_path):
    # Kafka's Cleaner.buildOffsetMap reads [first dirty offset, first uncleanable offset): a record
    # of the clean part goes only if a newer record of the *dirty* part supersedes it.
    lg = Log(str(tmp_path / "t-0"), {**CCFG, "segment.bytes": 200}, now_ms=0)
    for k in (b"a", b"a", b"b", b"b", b"c", b"x"):   # two per segment: [a a] [b b] [c x] [active]
        put(lg, [(k, b"v")], ts=0)
    put(lg, [(b"y", b"v")], ts=0)
    assert [s.base_offset for s in lg.segments] == [0, 2, 4, 6]
    stats = clean(lg, 0, first_dirty_offset=2)         # offsets 0-1 count as cleaned before
    assert stats["cleaned"] and stats["first_dirty_offset"] == 6
    # a at 0 stays (its newer a at 1 is in the clean part, outside the map); b at 2 goes
    assert [o for o, _, _ in records(lg)] == [0, 1, 3, 4, 5, 6]
    lg.close()


def test_compact_delete_compacts_first_then_applies_retention(tmp_path):
    # Kafka's cleaner thread compacts a log, then runs deleteOldSegments on it: retention.bytes
    # judges the compacted log, so the unique keys of the oldest segments survive.
    cfg = {**CCFG, "segment.bytes": 200, "cleanup.policy": "compact,delete", "retention.bytes": 800}
    lg = Log(str(tmp_path / "t-0"), cfg, now_ms=0)
    for i in range(6):   # each segment: a unique key, then the hot key
        put(lg, [(b"u%d" % i, b"x" * 20)], ts=0)
        put(lg, [(b"hot", b"x" * 20)], ts=0)
    assert lg.size_bytes > 800   # retention first would delete the oldest segment (u0)
    compaction, retention = Cleaner().run(lg, 0)
    assert compaction["cleaned"] and retention["deleted_segments"] == []
    assert lg.log_start_offset == 0 and lg.size_bytes <= 800
    assert [k for _, k, _ in records(lg)] == [b"u0", b"u1", b"u2", b"u3", b"u4", b"hot", b"u5", b"hot"]
    lg.close()


def test_a_compact_only_log_still_drops_segments_below_its_log_start(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {**CCFG, "segment.bytes": 300, "retention.ms": 1}, now_ms=0)
    for i in range(20):
        put(lg, [(b"k%d" % i, b"x" * 50)], ts=0)
    third = lg.segments[2].base_offset
    lg.delete_records(third)
    compaction, retention = Cleaner().run(lg, 10**9)
    assert retention["reasons"] == ["log start offset"]     # not retention.ms: no delete policy
    assert lg.segments[0].base_offset == third == lg.log_start_offset
    lg.close()


def test_nothing_at_or_above_the_last_stable_offset_is_cleaned(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {**CCFG, "segment.bytes": 200}, now_ms=0)
    for i in range(12):
        put(lg, [(b"k", b"v%d" % i)], ts=0)
    bases = [s.base_offset for s in lg.segments]
    assert len(bases) >= 4
    nothing = clean(lg, 0, last_stable_offset=bases[1] - 1)   # inside the first segment
    assert not nothing["cleaned"] and "no segment is cleanable" in nothing["reason"]
    lso = bases[2]   # e.g. an open transaction, or the HW, starts in the third segment
    stats = clean(lg, 0, last_stable_offset=lso)
    assert stats["cleaned"] and stats["segments_cleaned"] == 2
    kept = records(lg)
    assert [o for o, _, _ in kept if o < lso] == [lso - 1]     # latest k below the LSO only
    assert [o for o, _, _ in kept if o >= lso] == list(range(lso, 12))
    lg.close()


def test_tombstones_live_for_delete_retention_ms_from_their_first_cleaning(tmp_path):
    cfg = {**CCFG, "delete.retention.ms": DAY}
    lg = Log(str(tmp_path / "t-0"), cfg, now_ms=0)
    put(lg, [(b"a", b"1"), (b"b", b"1")], ts=1000)
    put(lg, [(b"a", None)], ts=1000)  # tombstone for a
    for _ in range(10):
        put(lg, [(b"c", b"x" * 60)], ts=1000)
    first = 5000
    clean(lg, now_ms=first)
    assert (2, b"a", None) in records(lg)  # kept, and its batch now carries the horizon
    assert (0, b"a", b"1") not in records(lg)
    stamped = [h for s in lg.segments for _, h, _ in s.scan(0) if h.base_offset == 2]
    assert [h.delete_horizon_ms for h in stamped] == [first + DAY]
    assert [r.timestamp for s in lg.segments for _, h, d in s.scan(0, with_bytes=True)
            if h.base_offset == 2 for r in decode_batch(bytes(d)).records] == [1000]   # unchanged
    # counted from the first cleaning, not from the record: 1000 + DAY has passed, the horizon not
    early = clean(lg, now_ms=first + DAY - 1, force=True)
    assert early["tombstones_removed"] == 0 and (2, b"a", None) in records(lg)
    stats = clean(lg, now_ms=first + DAY, force=True)
    assert stats["tombstones_removed"] == 1
    assert not [r for r in records(lg) if r[1] == b"a"]
    assert (1, b"b", b"1") in records(lg)
    lg.close()


def test_dirty_ratio_gates_cleaning(tmp_path):
    cfg = {**CCFG, "min.cleanable.dirty.ratio": 0.5}
    lg = Log(str(tmp_path / "t-0"), cfg, now_ms=0)
    for i in range(30):
        put(lg, [(b"k%d" % (i % 3), b"x" * 40)], ts=0)
    cleaner = Cleaner()
    assert cleaner.clean(lg, 0)["cleaned"]
    # just cleaned: nothing is dirty, so the next run declines
    again = cleaner.clean(lg, 0)
    assert not again["cleaned"] and "dirty ratio" in again["reason"]
    lg.close()


def test_max_compaction_lag_forces_a_pass_below_the_dirty_ratio(tmp_path):
    cfg = {**CCFG, "min.cleanable.dirty.ratio": 0.9, "max.compaction.lag.ms": 60_000}
    lg = Log(str(tmp_path / "t-0"), cfg, now_ms=0)
    for i in range(30):                                 # 30 keys: compaction keeps them all
        put(lg, [(b"k%d" % i, b"x" * 40)], ts=1000)
    cleaner = Cleaner()
    assert cleaner.clean(lg, 2000)["cleaned"]           # all dirty: ratio 1.0
    for i in range(6):                                  # a little more, written at 5000
        put(lg, [(b"n%d" % i, b"y" * 40)], ts=5000)
    # the first dirty segment is the one that was active at the first pass: it starts at ts 1000
    young = cleaner.clean(lg, 1000 + 60_000)
    assert not young["cleaned"] and young["dirty_ratio"] < 0.9 and not young["max_compaction_lag_passed"]
    old = cleaner.clean(lg, 1000 + 60_001)              # its first batch is now overdue
    assert old["cleaned"] and old["dirty_ratio"] < 0.9 and old["max_compaction_lag_passed"]
    lg.close()


def test_aborted_records_and_their_marker_are_removed(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {**CCFG, "delete.retention.ms": 0}, now_ms=0)
    txn = {"producer_id": 9, "producer_epoch": 0, "base_sequence": 0, "transactional": True}
    put(lg, [(b"a", b"committed")], ts=100)
    put(lg, [(b"a", b"aborted"), (b"z", b"aborted")], ts=100, **txn)
    abort = encode_batch([(struct.pack(">hh", 0, 0), struct.pack(">hi", 0, 0), [], 100)],
                         producer_id=9, producer_epoch=0, transactional=True, control=True)
    lg.append(abort, now_ms=100)
    for _ in range(8):
        put(lg, [(b"pad", b"x" * 60)], ts=100)
    assert lg.collect_aborted_transactions(0, 100) == [(9, 1, 3, 4)]
    stats = clean(lg, now_ms=1000)
    # the first pass empties the transaction and stamps its marker; the next one removes it
    assert stats["aborted_removed"] == 2 and stats["markers_removed"] == 0
    assert [h.delete_horizon_ms for s in lg.segments for _, h, _ in s.scan(0) if h.is_control] == [1000]
    stats = clean(lg, now_ms=1000, force=True)
    assert stats["markers_removed"] == 1
    recs = records(lg)
    assert (0, b"a", b"committed") in recs
    assert not [r for r in recs if r[2] == b"aborted" or r[1] == b"<marker>"]
    lg.close()


def test_non_compacted_topic_is_not_cleaned(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 300}, now_ms=0)
    put(lg, [(b"a", b"1")], ts=0)
    assert not clean(lg, 0)["cleaned"]
    lg.close()


@pytest.mark.parametrize("crash_at", ["cleaned", "swap"])
def test_interrupted_swap_recovers(tmp_path, crash_at, monkeypatch):
    lg = Log(str(tmp_path / "t-0"), CCFG, now_ms=0)
    for i in range(30):
        put(lg, [(b"k%d" % (i % 3), b"x" * 40)], ts=0)
    before = records(lg)

    def crash(*a, **k):
        raise RuntimeError("crash")

    from kafkalab.storage import log as log_mod

    if crash_at == "cleaned":
        monkeypatch.setattr(log_mod.LogSegment, "change_suffix", crash)
    else:
        real = log_mod.LogSegment.delete_files
        monkeypatch.setattr(log_mod.LogSegment, "delete_files",
                            lambda self: crash() if self.suffix == "" and ".swap" not in self.log_path else real(self))
    with pytest.raises(RuntimeError):
        clean(lg, 0)
    monkeypatch.undo()
    lg.close(flush=False)
    lg = Log(lg.dir, CCFG, now_ms=0)
    after = records(lg)
    if crash_at == "cleaned":
        assert after == before
    else:
        assert lg.recovery_report.completed_swaps
        assert set(after) <= set(before) and len(after) < len(before)
    assert not [n for n in os.listdir(lg.dir) if n.endswith((".cleaned", ".swap"))]
    lg.close()
