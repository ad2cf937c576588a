"""The history checker on hand-built histories: one per anomaly kind, and clean ones."""

from __future__ import annotations

import pytest

from kafkalab.workloads.checker import KINDS, check
from kafkalab.workloads.history import (
    ACKED,
    FAILED,
    PENDING,
    History,
    Read,
    Sent,
    decode_value,
    encode_value,
)


def acked(producer: int, seq: int, partition: int, offset: int) -> Sent:
    return Sent(producer, seq, sent_s=seq * 0.01, status=ACKED, partition=partition, offset=offset)


def read(partition: int, offset: int, producer: int | None, seq: int | None, value: str = "") -> Read:
    return Read(partition, offset, producer, seq, value)


def clean_history(n: int = 6, partitions: int = 2) -> History:
    """Producer 0 sends n records round-robin over partitions; all acked, all read back."""
    sent, reads, next_offset = [], [], [0] * partitions
    for seq in range(n):
        p = seq % partitions
        sent.append(acked(0, seq, p, next_offset[p]))
        reads.append(read(p, next_offset[p], 0, seq))
        next_offset[p] += 1
    return History("t", partitions, sent, reads)


def only(result, kind: str) -> None:
    """Exactly the anomalies of `kind` and nothing else."""
    for k in KINDS:
        if k != kind:
            assert result.counts[k] == 0, f"unexpected {k}: {result.frame}"


def test_value_round_trip():
    assert decode_value(encode_value(3, 17)) == (3, 17)
    assert decode_value(encode_value(3, 17, size=100)) == (3, 17)
    assert len(encode_value(3, 17, size=100)) == 100
    assert decode_value(b"hello") is None
    assert decode_value(b"kl|x|1|") is None
    assert decode_value(None) is None


def test_clean_history_has_no_anomalies():
    h = clean_history()
    r = check(h)
    assert r.ok
    assert r.frame.empty
    assert r.summary == "acked 6, read 6: lost 0, duplicated 0, moved 0, reordered 0, unexpected 0"
    assert (r.lost, r.duplicated, r.moved, r.reordered, r.unexpected) == (0, 0, 0, 0, 0)


def test_empty_history_is_clean():
    r = check(History("t", 3))
    assert r.ok and r.counts["acked"] == 0 and r.counts["read"] == 0


def test_lost_acknowledged_record_never_read():
    h = clean_history()
    gone = h.read.pop(2)  # producer 0 seq 2, at p0@1
    r = check(h)
    only(r, "lost")
    assert r.lost == 1
    row = r.frame.iloc[0]
    assert (row.kind, row.record, row.partition, row.offset) == ("lost", "0-2", gone.partition, gone.offset)
    assert "nothing was read there" in row.detail
    assert r.summary.startswith("acked 6, read 5: lost 1,")


def test_lost_record_whose_offset_was_reused_says_so():
    # A truncated leader: 0-1 was acked at p0@1, and after the truncation 0-2 landed there.
    h = History("t", 1,
                [acked(0, 0, 0, 0), acked(0, 1, 0, 1), acked(0, 2, 0, 1)],
                [read(0, 0, 0, 0), read(0, 1, 0, 2)])
    r = check(h)
    only(r, "lost")
    assert list(r.frame.record) == ["0-1"]
    assert "0-2 was read there instead" in r.frame.iloc[0].detail


def test_failed_or_unreported_record_that_was_never_read_is_not_lost():
    h = clean_history(4)
    h.sent.append(Sent(0, 4, 0.5, status=FAILED, partition=0, error="REQUEST_TIMED_OUT"))
    h.sent.append(Sent(0, 5, 0.6, status=PENDING))
    r = check(h)
    assert r.ok
    assert (r.counts["failed"], r.counts["failed_written"], r.counts["pending"]) == (1, 0, 1)


def test_failed_but_written_is_counted_not_an_anomaly():
    h = clean_history(4)
    h.sent.append(Sent(0, 4, 0.5, status=FAILED, partition=0, error="REQUEST_TIMED_OUT"))
    h.read.append(read(0, 2, 0, 4))
    h.sent.append(Sent(0, 5, 0.6, status=PENDING))
    h.read.append(read(1, 2, 0, 5))
    r = check(h)
    assert r.ok, r.frame
    assert (r.counts["failed_written"], r.counts["pending_written"]) == (1, 1)
    assert "failed 1, of which written 1" in str(r)


def test_duplicated_record_read_twice():
    h = clean_history()
    h.read.append(read(0, 3, 0, 4))  # 0-4 was read at p0@2; a retry wrote it again at p0@3
    r = check(h)
    only(r, "duplicated")
    assert r.duplicated == 1
    row = r.frame.iloc[0]
    assert (row.record, row.partition, row.offset) == ("0-4", 0, 3)
    assert "read 2 times" in row.detail and "p0@2" in row.detail and "p0@3" in row.detail


def test_each_extra_copy_is_one_duplicate():
    h = clean_history(2, partitions=1)
    h.read += [read(0, 2, 0, 1), read(0, 3, 0, 1)]
    r = check(h)
    only(r, "duplicated")
    assert r.duplicated == 2
    assert list(r.frame.offset) == [2, 3]


def test_moved_record_read_at_another_offset_than_acknowledged():
    # 0-1 was acknowledged at p0@1 but is read at p0@2, and 0-2 (acked at p0@2) sits at p0@1.
    h = History("t", 1,
                [acked(0, 0, 0, 0), acked(0, 1, 0, 1), acked(0, 2, 0, 2)],
                [read(0, 0, 0, 0), read(0, 1, 0, 2), read(0, 2, 0, 1)])
    r = check(h)
    assert r.lost == 0 and r.duplicated == 0 and r.unexpected == 0
    moved = r.frame[r.frame.kind == "moved"]
    assert sorted(moved.record) == ["0-1", "0-2"]
    row = moved[moved.record == "0-1"].iloc[0]
    assert (row.partition, row.offset) == (0, 1)
    assert "0-2 is there" in row.detail and "read at p0@2" in row.detail
    # and that swap is also a reorder: 0-2 was read before 0-1
    assert r.reordered == 1


def test_moved_to_another_partition():
    h = History("t", 2, [acked(0, 0, 0, 0)], [read(1, 0, 0, 0)])
    r = check(h)
    only(r, "moved")
    assert r.moved == 1 and "read at p1@0" in r.frame.iloc[0].detail


def test_reordered_within_a_partition():
    h = History("t", 1,
                [acked(0, s, 0, o) for s, o in [(0, 0), (1, 2), (2, 1), (3, 3)]],
                [read(0, 0, 0, 0), read(0, 1, 0, 2), read(0, 2, 0, 1), read(0, 3, 0, 3)])
    r = check(h)
    only(r, "reordered")
    assert r.reordered == 1
    row = r.frame.iloc[0]
    assert (row.record, row.offset) == ("0-1", 2)
    assert "sent before 0-2" in row.detail


def test_order_is_per_producer_and_per_partition():
    # Interleaved producers and records of one producer spread over partitions are in order.
    sent = [acked(0, 0, 0, 1), acked(1, 0, 0, 0), acked(0, 1, 1, 0), acked(0, 2, 0, 2), acked(1, 1, 1, 1)]
    reads = [read(s.partition, s.offset, s.producer, s.seq) for s in sent]
    r = check(History("t", 2, sent, reads))
    assert r.ok, r.frame


def test_reordering_of_failed_sends_is_not_an_anomaly():
    sent = [acked(0, 0, 0, 0), Sent(0, 1, 0.01, status=FAILED, error="x"), acked(0, 2, 0, 1)]
    reads = [read(0, 0, 0, 0), read(0, 1, 0, 2), read(0, 2, 0, 1)]
    r = check(History("t", 1, sent, reads))
    assert r.ok, r.frame
    assert r.counts["failed_written"] == 1


def test_unexpected_record_never_sent():
    h = clean_history()
    h.read.append(read(1, 3, 7, 0))
    h.read.append(read(1, 4, None, None, value="not ours"))
    r = check(h)
    only(r, "unexpected")
    assert r.unexpected == 2
    assert list(r.frame.record) == ["7-0", None]
    assert "'not ours'" in r.frame.iloc[1].detail


@pytest.mark.parametrize("kind", KINDS)
def test_summary_counts_each_kind(kind):
    h = clean_history()
    if kind == "lost":
        h.read.pop()
    elif kind == "duplicated":
        h.read.append(read(0, 3, 0, 0))
    elif kind == "moved":
        h.sent[0].offset = 5
    elif kind == "reordered":
        h.read[0].offset, h.read[2].offset = h.read[2].offset, h.read[0].offset
        h.sent[0].offset, h.sent[2].offset = h.sent[2].offset, h.sent[0].offset
    else:
        h.read.append(read(0, 3, 9, 9))
    r = check(h)
    assert f"{kind} 1" in r.summary
    assert r.counts[kind] == 1 and sum(r.counts[k] for k in KINDS) == 1, r.frame
    assert not r.ok


def test_history_json_round_trip(tmp_path):
    h = clean_history()
    h.sent.append(Sent(0, 6, 0.7, status=FAILED, partition=1, error="NOT_ENOUGH_REPLICAS", done_s=0.9))
    h.read.append(read(1, 9, None, None, value="junk"))
    h.faults.append({"at_s": 1.0, "kind": "kill", "target": 2, "error": None})
    h.meta["seed"] = 7
    back = History.load(h.save(tmp_path / "h.json"))
    assert back.to_dict() == h.to_dict()
    assert check(back).frame.equals(check(h).frame)
