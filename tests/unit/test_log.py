"""Log: append, read, roll, truncate, log start, recovery and corrupt input."""

from __future__ import annotations

import os
import struct

import pytest

from kafkalab.errors import CorruptRecordError, CrcMismatchError, OffsetOutOfRangeError
from kafkalab.records.batch import decode_batch, encode_batch
from kafkalab.records.header import parse_header
from kafkalab.storage import Log
from kafkalab.storage.log import parse_batches

CFG = {"segment.bytes": 1000, "index.interval.bytes": 100}


def batch(n: int = 2, ts: int = 1000, tag: bytes = b"", **kw) -> bytes:
    return encode_batch([(b"k%d" % i, tag + b"v" * 30, [], ts + i) for i in range(n)], **kw)


def marker(producer_id: int, abort: bool) -> bytes:
    key = struct.pack(">hh", 0, 0 if abort else 1)
    value = struct.pack(">hi", 0, 0)
    return encode_batch([(key, value, [], 5000)], producer_id=producer_id, producer_epoch=0,
                        transactional=True, control=True)


def offsets_of(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        b = decode_batch(data, pos)
        out += [r.offset for r in b.records]
        pos += b.header.size
    return out


@pytest.fixture
def log(tmp_path):
    lg = Log(str(tmp_path / "orders-0"), CFG, now_ms=0)
    yield lg
    lg.close()


def test_leader_assigns_offsets_and_stamps_epoch(log):
    assert log.append(batch(3), leader_epoch=4, now_ms=0) == (0, 2)
    assert log.append(batch(2) + batch(5), leader_epoch=4, now_ms=0) == (3, 9)
    assert log.log_end_offset == 10
    data = log.read_bytes(3, 10_000)
    h = parse_header(data)
    assert (h.base_offset, h.partition_leader_epoch) == (3, 4)
    assert offsets_of(data) == list(range(3, 10))
    assert log.epoch_cache.entries == [(4, 0)]


def test_follower_appends_as_is_and_rejects_going_backwards(log):
    assert log.append(batch(2, base_offset=0, partition_leader_epoch=1), assign_offsets=False, now_ms=0) == (0, 1)
    assert log.append(batch(2, base_offset=5, partition_leader_epoch=2), assign_offsets=False, now_ms=0) == (5, 6)
    assert log.epoch_cache.entries == [(1, 0), (2, 5)]
    with pytest.raises(ValueError, match="below 7"):
        log.append(batch(1, base_offset=3), assign_offsets=False, now_ms=0)
    assert log.log_end_offset == 7


def test_bad_append_input_names_the_problem(log):
    good = bytearray(batch())
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(CrcMismatchError, match="append input.*byte 0"):
        log.append(bytes(bad), now_ms=0)
    with pytest.raises(CorruptRecordError, match="byte 0"):
        log.append(bytes(good[:-5]), now_ms=0)
    with pytest.raises(ValueError):
        log.append(b"", now_ms=0)
    assert log.log_end_offset == 0


def test_roll_on_segment_bytes_and_segment_ms(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.bytes": 400, "segment.ms": 1000}, now_ms=0)
    size = len(batch())
    for _ in range(400 // size):
        lg.append(batch(), now_ms=10)
    assert len(lg.segments) == 1
    lg.append(batch(), now_ms=10)
    assert len(lg.segments) == 2
    assert lg.active_segment.base_offset == 2 * (400 // size)
    lg.append(batch(), now_ms=500)
    assert len(lg.segments) == 2
    lg.append(batch(), now_ms=1011)  # active segment created at 10: older than segment.ms
    assert len(lg.segments) == 3
    lg.close()


def test_full_index_forces_roll(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"segment.index.bytes": 16, "index.interval.bytes": 0}, now_ms=0)
    for _ in range(6):
        lg.append(batch(1), now_ms=0)
    assert len(lg.segments) >= 2
    assert all(len(s.index) <= 2 for s in lg.segments)
    lg.close()


def test_read_whole_batches_min_one_and_max_offset(log):
    for _ in range(10):
        log.append(batch(2), now_ms=0)
    size = len(batch(2))
    r = log.read(5, 3 * size)
    assert (r.first_offset, r.length, r.end_offset) == (4, 3 * size, 10)
    r = log.read(5, 1)  # smaller than one batch: still one whole batch
    assert r.length == size
    r = log.read(0, 10_000, max_offset=6)
    assert r.end_offset == 6
    assert log.read(6, 10_000, max_offset=6).length == 0
    assert log.read(20, 100).length == 0
    with pytest.raises(OffsetOutOfRangeError):
        log.read(21, 100)
    r = log.read(15, 100_000)  # a region never spans two segment files
    with open(r.path, "rb") as f:
        f.seek(r.position)
        assert offsets_of(f.read(r.length))[0] <= 15


def test_read_every_offset_across_segments(log):
    for i in range(30):
        log.append(batch(1 + i % 3), now_ms=0)
    assert len(log.segments) > 2
    for off in range(log.log_end_offset):
        data = log.read_bytes(off, 1)
        got = offsets_of(data)
        assert got[0] <= off <= got[-1]


def test_offset_for_timestamp(log):
    log.append(batch(3, ts=100), now_ms=0)
    log.append(batch(3, ts=200), now_ms=0)
    log.append(batch(3, ts=300), now_ms=0)
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(201) == 4
    assert log.offset_for_timestamp(300) == 6
    assert log.offset_for_timestamp(303) is None


def test_truncate_to_drops_segments_and_fixes_indexes(log):
    for _ in range(40):
        log.append(batch(2), leader_epoch=0, now_ms=0)
    log.append(batch(2), leader_epoch=3, now_ms=0)
    n_before = len(log.segments)
    target = 31
    log.truncate_to(target)
    assert log.log_end_offset == 30  # the batch holding 31 (30..31) goes whole
    assert len(log.segments) < n_before
    assert log.epoch_cache.entries == [(0, 0)]
    seg = log.active_segment
    assert all(o < 30 and p < seg.size for o, p in seg.index.entries)
    assert log.append(batch(2), now_ms=0) == (30, 31)
    assert offsets_of(log.read_bytes(29, 100_000))[-1] == 31


def test_truncate_below_log_start_restarts_log(log):
    for _ in range(5):
        log.append(batch(2), now_ms=0)
    log.increment_log_start_offset(6)
    log.truncate_to(2, now_ms=0)
    assert (log.log_start_offset, log.log_end_offset, log.size_bytes) == (2, 2, 0)


def test_log_start_offset_moves_up_only_and_bounds_reads(log):
    for _ in range(5):
        log.append(batch(2), leader_epoch=1, now_ms=0)
    assert log.delete_records(4) == 4
    assert log.increment_log_start_offset(2) == 4
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)
    assert log.read(4, 100).first_offset == 4
    assert log.epoch_cache.entries == [(1, 4)]
    with pytest.raises(OffsetOutOfRangeError):
        log.increment_log_start_offset(11)


def test_aborted_transaction_lands_in_txnindex(log):
    log.append(batch(2, producer_id=7, producer_epoch=0, base_sequence=0, transactional=True), now_ms=0)
    log.append(batch(1, producer_id=8, producer_epoch=0, base_sequence=0, transactional=True), now_ms=0)
    assert log.first_unstable_offset == 0
    log.append(marker(7, abort=True), now_ms=0)  # offset 3
    assert log.active_segment.txn_index.entries == [(7, 0, 3, 2)]
    log.append(marker(8, abort=False), now_ms=0)
    assert log.first_unstable_offset is None
    assert log.collect_aborted_transactions(0, 10) == [(7, 0, 3, 2)]


def reopen(lg: Log, **kw) -> Log:
    lg.close(flush=False)
    return Log(lg.dir, CFG, now_ms=0, **kw)


def test_reopen_continues_offsets_and_keeps_data(log):
    for _ in range(20):
        log.append(batch(2), leader_epoch=2, now_ms=0)
    lg = reopen(log, recovery_point=0)
    assert lg.recovery_report.clean
    assert lg.log_end_offset == 40
    assert lg.append(batch(1), now_ms=0) == (40, 40)
    assert offsets_of(lg.read_bytes(0, 10**6))[0] == 0
    assert lg.epoch_cache.entries == [(2, 0)]
    lg.close()


def test_recovery_truncates_torn_tail_and_reports_it(log, caplog):
    for _ in range(5):
        log.append(batch(2), now_ms=0)
    path, size = log.active_segment.log_path, log.active_segment.size
    log.close(flush=False)
    with open(path, "ab") as f:
        f.write(batch(2)[:50])  # a write torn mid-header
    lg = Log(log.dir, CFG, now_ms=0)
    rep = lg.recovery_report
    assert rep.truncated_bytes == 50
    assert f"{path} at byte {size}" in rep.problems[0]
    assert os.path.getsize(path) == size
    assert lg.log_end_offset == 10
    assert any("dropped 50 bytes" in r.message for r in caplog.records)
    lg.close()


def test_recovery_cuts_at_a_crc_error_and_drops_later_segments(log):
    for _ in range(30):
        log.append(batch(2), now_ms=0)
    seg = log.segments[1]
    pos = log.read(seg.base_offset + 4, 1).position
    n_segments = len(log.segments)
    log.close(flush=False)
    with open(seg.log_path, "r+b") as f:
        f.seek(pos + 70)
        b = f.read(1)
        f.seek(pos + 70)
        f.write(bytes([b[0] ^ 0xFF]))
    lg = Log(log.dir, CFG, now_ms=0)
    assert "CRC-32C" in lg.recovery_report.problems[0]
    assert f"at byte {pos}" in lg.recovery_report.problems[0]
    assert len(lg.recovery_report.deleted_segments) == n_segments - 2
    assert lg.log_end_offset == seg.base_offset + 4
    lg.close()


def test_corruption_before_recovery_point_is_not_rescanned_but_reads_raise(log):
    for _ in range(30):
        log.append(batch(2), now_ms=0)
    log.flush()
    seg0 = log.segments[0]
    pos = log.read(6, 1).position
    log.close()
    with open(seg0.log_path, "r+b") as f:
        f.seek(pos + 16)
        f.write(b"\x07")  # magic byte
    lg = Log(log.dir, CFG, recovery_point=60, now_ms=0)
    assert lg.log_end_offset == 60
    with pytest.raises(CorruptRecordError, match=f"{seg0.log_path} at byte {pos}"):
        lg.read(6, 100)
    data = bytearray(lg.read_bytes(0, 1))
    assert parse_header(data).base_offset == 0
    lg.close()


def test_crc_damage_before_recovery_point_raises_on_read_bytes(log):
    for _ in range(30):
        log.append(batch(2), now_ms=0)
    log.flush()
    seg0 = log.segments[0]
    pos = log.read(6, 1).position
    log.close()
    with open(seg0.log_path, "r+b") as f:
        f.seek(pos + 80)
        f.write(b"\xff")
    lg = Log(log.dir, CFG, recovery_point=60, now_ms=0)
    with pytest.raises(CrcMismatchError, match=f"byte {pos}"):
        lg.read_bytes(6, 100)
    lg.close()


def test_damaged_and_missing_indexes_are_rebuilt(log):
    for _ in range(30):
        log.append(batch(2), now_ms=0)
    log.flush()
    entries = log.segments[0].index.entries
    assert entries
    seg0, seg1 = log.segments[0], log.segments[1]
    log.close()
    with open(seg0.index.path, "r+b") as f:
        f.write(struct.pack(">ii", 1, 10**6))  # points past the end of the log
    os.unlink(seg1.time_index.path)
    lg = Log(log.dir, CFG, recovery_point=60, now_ms=0)
    rebuilt = " ".join(lg.recovery_report.rebuilt_indexes)
    assert "past the log" in rebuilt and "missing" in rebuilt
    assert lg.segments[0].index.entries == entries
    lg.close()


def test_leftover_cleaned_deleted_and_swap_files(log):
    for _ in range(30):
        log.append(batch(2), now_ms=0)
    seg0 = log.segments[0]
    log.close()
    d = log.dir
    open(os.path.join(d, "00000000000000000000.log.cleaned"), "wb").close()
    open(os.path.join(d, "00000000000000000099.log.deleted"), "wb").close()
    # an interrupted swap: the compacted segment 0 holds only its last batch
    with open(seg0.log_path, "rb") as f:
        data = f.read()
    last = parse_batches(data)[-1]
    os.rename(seg0.index.path, seg0.index.path + ".swap")  # stale index, rebuilt after the swap
    with open(seg0.log_path + ".swap", "wb") as f:
        f.write(data[last[0]:])
    lg = Log(d, CFG, now_ms=0)
    rep = lg.recovery_report
    assert rep.completed_swaps == [seg0.log_path]
    assert len(rep.removed_files) == 2
    assert not [n for n in os.listdir(d) if n.endswith((".cleaned", ".deleted", ".swap"))]
    assert offsets_of(lg.read_bytes(0, 10**6))[0] == last[1].base_offset
    lg.close()


def test_a_flush_with_nothing_new_syncs_nothing_and_a_new_append_is_synced(log, tmp_path, monkeypatch):
    """A broker flushes every few seconds; an idle one must not fsync its files each time."""
    from kafkalab.storage.checkpoint import OffsetCheckpointFile

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    cp = OffsetCheckpointFile(str(tmp_path / "recovery-point-offset-checkpoint"))
    log.append(batch(2), leader_epoch=1, now_ms=0)
    log.flush()
    cp.write({("orders", 0): log.recovery_point})
    assert synced and log.recovery_point == 2
    synced.clear()
    log.flush()
    cp.write({("orders", 0): log.recovery_point})
    assert synced == []  # idle: no segment, directory, epoch cache or checkpoint sync
    log.append(batch(1), leader_epoch=2, now_ms=0)  # new records and a new epoch
    log.flush()
    cp.write({("orders", 0): log.recovery_point})
    assert len(synced) >= 3 and log.recovery_point == 3
    assert Log(log.dir, CFG, now_ms=0).epoch_cache.entries == [(1, 0), (2, 2)]
