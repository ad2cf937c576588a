"""dump-log prints segments and indexes in DumpLogSegments' shape."""

from __future__ import annotations

import io

import pytest

from kafkalab.records.batch import encode_batch
from kafkalab.storage import Log
from kafkalab.tools.dump_log import dump_log


def test_dump_log_batches_records_and_indexes(tmp_path):
    lg = Log(str(tmp_path / "t-0"), {"index.interval.bytes": 10}, now_ms=0)
    lg.append(encode_batch([(b"k1", b"hello", [("h", b"1")], 1000), (None, b"x", [], 1001)]),
              leader_epoch=3, now_ms=0)
    lg.append(encode_batch([(b"k2", None, [], 2000)]), leader_epoch=3, now_ms=0)
    seg = lg.active_segment
    lg.close()
    out = io.StringIO()
    dump_log(seg.log_path, out=out)
    lines = out.getvalue().splitlines()
    assert lines[1] == "Log starting offset: 0"
    assert lines[2].startswith("baseOffset: 0 lastOffset: 1 count: 2 baseSequence: -1")
    assert "partitionLeaderEpoch: 3" in lines[2] and "position: 0 CreateTime: 1001" in lines[2]
    assert lines[2].endswith("isvalid: true") and "compresscodec: none" in lines[2]
    assert lines[3] == ("| offset: 0 CreateTime: 1000 keySize: 2 valueSize: 5 sequence: -1 "
                        "headerKeys: [h] key: k1 payload: hello")
    assert "keySize: -1" in lines[4]
    assert "valueSize: -1" in lines[6] and "payload: null" in lines[6]
    out = io.StringIO()
    dump_log(seg.index.path, out=out)
    assert out.getvalue().splitlines()[1:] == [f"offset: {o} position: {p}" for o, p in seg.index.entries]
    assert len(seg.index.entries) == 1
    out = io.StringIO()
    dump_log(seg.time_index.path, out=out)
    assert "timestamp: 2000 offset: 2" in out.getvalue()


def test_dump_log_reports_damage_with_position(tmp_path):
    lg = Log(str(tmp_path / "t-0"), now_ms=0)
    lg.append(encode_batch([(b"k", b"v", [], 1)]), now_ms=0)
    path = lg.active_segment.log_path
    size = lg.active_segment.size
    lg.close()
    with open(path, "ab") as f:
        f.write(b"\x00" * 20)
    out = io.StringIO()
    dump_log(path, out=out)
    assert f"at byte {size}" in out.getvalue().splitlines()[-1]
    with pytest.raises(ValueError, match="not a segment file"):
        dump_log(str(tmp_path / "t-0" / "leader-epoch-checkpoint"), out=out)


def test_dump_log_names_kraft_leader_change_and_txn_markers(tmp_path):
    from kafkalab.controller.raft_log import encode_leader_change
    from kafkalab.records.control import encode_control_batch

    lg = Log(str(tmp_path / "__cluster_metadata-0"), {}, now_ms=0)
    lg.append(encode_leader_change(2, [1, 2, 3], [2, 3], 5000), leader_epoch=1, now_ms=0)
    lg.append(encode_control_batch("commit", producer_id=9, producer_epoch=0, coordinator_epoch=4,
                                   timestamp_ms=6000), leader_epoch=1, now_ms=0)
    seg = lg.active_segment
    lg.close()
    out = io.StringIO()
    dump_log(seg.log_path, out=out)
    records = [line for line in out.getvalue().splitlines() if line.startswith("| offset:")]
    assert records[0].endswith('LeaderChange: {"leaderId": 2, "voters": [1, 2, 3], "grantingVoters": [2, 3]}')
    assert "endTxnMarker" not in records[0]
    assert records[1].endswith("endTxnMarker: COMMIT coordinatorEpoch: 4")


def test_dump_log_shows_a_tombstone_batch_delete_horizon(tmp_path):
    from kafkalab.storage.cleaner import clean

    cfg = {"segment.bytes": 300, "cleanup.policy": "compact", "delete.retention.ms": 500}
    lg = Log(str(tmp_path / "t-0"), cfg, now_ms=0)
    lg.append(encode_batch([(b"gone", None, [], 1000)]), now_ms=0)
    for _ in range(5):
        lg.append(encode_batch([(b"pad", b"x" * 60, [], 1000)]), now_ms=0)
    first = lg.segments[0]
    clean(lg, now_ms=7000, force=True)
    out = io.StringIO()
    dump_log(first.log_path, print_records=True, out=out)
    lines = out.getvalue().splitlines()
    assert "isControl: false deleteHorizonMs: 7500 position: 0" in lines[2]
    assert "| offset: 0 CreateTime: 1000 " in lines[3] and "payload: null" in lines[3]   # timestamp kept
    assert "deleteHorizonMs" not in "".join(lines[4:])   # batches without tombstones are not stamped
    lg.close()
