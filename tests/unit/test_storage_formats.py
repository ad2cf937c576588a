"""Byte layout of every storage file kafkalab writes, checked against Kafka's formats."""

from __future__ import annotations

import os
import struct

import pytest

from kafkalab.errors import CorruptIndexError, CorruptRecordError
from kafkalab.records.batch import encode_batch
from kafkalab.storage import (
    AbortedTxn,
    CorruptCheckpointError,
    LeaderEpochCache,
    Log,
    OffsetCheckpointFile,
    OffsetIndex,
    ProducerStateEntry,
    TimeIndex,
    TransactionIndex,
)
from kafkalab.storage.producer_snapshot import decode_snapshot, encode_snapshot


def batch(n: int = 1, ts: int = 1000, value: bytes = b"v" * 40) -> bytes:
    return encode_batch([(b"k%d" % i, value, [], ts + i) for i in range(n)])


def test_offset_index_entries_are_relative_offset_and_position_big_endian(tmp_path):
    path = str(tmp_path / "00000000000000000100.index")
    idx = OffsetIndex(path, 100, 80, active=True)
    assert os.path.getsize(path) == 80  # preallocated to segment.index.bytes
    idx.append(103, 4096)
    idx.append(110, 9000)
    idx.close()  # trims to the entries
    with open(path, "rb") as f:
        raw = f.read()
    assert raw == struct.pack(">ii", 3, 4096) + struct.pack(">ii", 10, 9000)
    again = OffsetIndex(path, 100, 80, active=False)
    assert again.entries == [(103, 4096), (110, 9000)]
    assert again.lookup(105) == (103, 4096)
    assert again.lookup(102) == (100, 0)
    again.close()


def test_offset_index_rejects_backwards_entries_and_reports_full(tmp_path):
    idx = OffsetIndex(str(tmp_path / "x.index"), 0, 16, active=True)
    idx.append(5, 100)
    with pytest.raises(CorruptIndexError, match="must increase"):
        idx.append(4, 200)
    idx.append(6, 200)
    assert idx.is_full
    idx.close()


def test_preallocated_index_reloads_without_its_zero_tail(tmp_path):
    path = str(tmp_path / "00000000000000000000.index")
    idx = OffsetIndex(path, 0, 800, active=True)
    idx.append(7, 500)
    os.close(idx._fd)  # a crash: the file is never trimmed
    assert os.path.getsize(path) == 800
    assert OffsetIndex(path, 0, 800, active=False).entries == [(7, 500)]


def test_time_index_entries_are_timestamp_and_relative_offset(tmp_path):
    path = str(tmp_path / "00000000000000000050.timeindex")
    idx = TimeIndex(path, 50, 120, active=True)
    idx.maybe_append(2000, 52)
    idx.maybe_append(1500, 53)  # not newer: skipped, the index stays sorted
    idx.maybe_append(2500, 60)
    idx.close()
    with open(path, "rb") as f:
        assert f.read() == struct.pack(">qi", 2000, 2) + struct.pack(">qi", 2500, 10)
    assert TimeIndex(path, 50, 120, active=False).lookup(2400) == (2000, 52)


def test_txn_index_entry_is_34_bytes_with_version_0(tmp_path):
    path = str(tmp_path / "00000000000000000000.txnindex")
    idx = TransactionIndex(path)
    idx.append(AbortedTxn(producer_id=7, first_offset=10, last_offset=15, last_stable_offset=16))
    idx.close()
    with open(path, "rb") as f:
        raw = f.read()
    assert raw == struct.pack(">hqqqq", 0, 7, 10, 15, 16)
    assert TransactionIndex(path).entries == [AbortedTxn(7, 10, 15, 16)]
    with open(path, "ab") as f:
        f.write(b"\x00\x01")
    with pytest.raises(CorruptIndexError, match="34-byte entry"):
        TransactionIndex(path)


def test_offset_checkpoint_text_format_and_errors(tmp_path):
    path = str(tmp_path / "recovery-point-offset-checkpoint")
    cp = OffsetCheckpointFile(path)
    assert cp.read() == {}
    cp.write({("orders", 1): 99, ("orders", 0): 1234})
    with open(path) as f:
        assert f.read() == "0\n2\norders 0 1234\norders 1 99\n"
    assert cp.read() == {("orders", 0): 1234, ("orders", 1): 99}
    assert not os.path.exists(path + ".tmp")
    with open(path, "w") as f:
        f.write("0\n3\norders 0 1\n")
    with pytest.raises(CorruptCheckpointError, match="line 2.*3 entries but 1"):
        cp.read()
    with open(path, "w") as f:
        f.write("1\n0\n")
    with pytest.raises(CorruptCheckpointError, match="line 1"):
        cp.read()


def test_leader_epoch_checkpoint_format_and_lookups(tmp_path):
    cache = LeaderEpochCache(str(tmp_path))
    assert cache.end_offset_for_epoch(0, 10) == (-1, -1)
    cache.assign(0, 0)
    cache.assign(0, 5)  # same epoch later: no change
    cache.assign(2, 10)
    cache.assign(4, 30)
    with open(tmp_path / "leader-epoch-checkpoint") as f:
        assert f.read() == "0\n3\n0 0\n2 10\n4 30\n"
    assert cache.end_offset_for_epoch(4, 45) == (4, 45)  # latest: the LEO
    assert cache.end_offset_for_epoch(2, 45) == (2, 30)
    assert cache.end_offset_for_epoch(3, 45) == (2, 30)  # largest epoch <= 3, next start
    assert cache.end_offset_for_epoch(5, 45) == (-1, -1)
    cache.truncate_from_end(30)
    assert cache.latest_epoch == 2
    cache.truncate_from_start(12)
    assert cache.entries == [(2, 12)]
    assert LeaderEpochCache(str(tmp_path)).entries == [(2, 12)]


def test_a_new_epoch_at_the_same_start_replaces_quietly_and_a_truncation_warns(tmp_path, caplog):
    # Kafka's LeaderEpochFileCache: only removing entries under which data was written warns.
    cache = LeaderEpochCache(str(tmp_path))
    cache.assign(0, 0)
    with caplog.at_level("WARNING", logger="kafkalab.storage.epoch_cache"):
        cache.assign(1, 0)  # a second leader before any record: routine
        assert caplog.records == [] and cache.entries == [(1, 0)]
        cache.assign(2, 10)
        cache.assign(3, 4)  # a start before epoch 2's: epoch 2's records are gone
    assert cache.entries == [(1, 0), (3, 4)]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == ["epoch 3 at 4 replaces [EpochEntry(epoch=2, start_offset=10)]"]


def test_producer_snapshot_kafka_layout_and_crc(tmp_path):
    entries = [ProducerStateEntry(1000, 2, 41, 500, 1_700_000_000_000, 3, 480, 4),
               ProducerStateEntry(1001, 0, 9, 510, 1_700_000_000_100)]
    data = encode_snapshot(entries)
    version, _crc, count = struct.unpack_from(">hIi", data)
    assert (version, count) == (1, 2)
    assert len(data) == 10 + 2 * 46
    assert struct.unpack_from(">qhiqiqiq", data, 10) == (1000, 2, 41, 500, 4, 1_700_000_000_000, 3, 480)
    assert decode_snapshot(data) == entries
    bad = bytearray(data)
    bad[20] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode_snapshot(bytes(bad), "x.snapshot")


def test_log_snapshot_api(tmp_path):
    lg = Log(str(tmp_path / "t-0"), now_ms=0)
    lg.append(batch(), now_ms=0)
    entry = ProducerStateEntry(5, 0, 0, 0, 1000)
    path = lg.write_producer_snapshot(1, [entry])
    assert os.path.basename(path) == "00000000000000000001.snapshot"
    assert lg.producer_snapshot_offsets() == [1]
    assert lg.read_producer_snapshot(1) == [entry]
    lg.delete_producer_snapshot(1)
    assert lg.producer_snapshot_offsets() == []
    lg.close()


def test_segment_files_have_20_digit_names_and_trimmed_indexes(tmp_path):
    d = tmp_path / "orders-0"
    lg = Log(str(d), {"segment.bytes": 500, "index.interval.bytes": 50}, now_ms=0)
    for _ in range(12):
        lg.append(batch(), now_ms=0)
    bases = [s.base_offset for s in lg.segments]
    assert len(bases) > 1
    # the rolled segment's index is trimmed, the active one preallocated
    first_index = d / "00000000000000000000.index"
    assert os.path.getsize(first_index) == 8 * len(lg.segments[0].index)
    assert os.path.getsize(lg.active_segment.index.path) == 10_485_760
    lg.close()
    names = sorted(os.listdir(d))
    for b in bases:
        assert f"{b:020d}.log" in names
    assert os.path.getsize(d / f"{bases[-1]:020d}.index") % 8 == 0
    assert os.path.getsize(d / f"{bases[-1]:020d}.index") < 10_485_760
