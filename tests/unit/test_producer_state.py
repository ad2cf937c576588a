"""ProducerStateManager: the broker half of the idempotent producer (pure, no processes)."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.broker.producer_state import (
    INT32_MAX,
    NUM_BATCHES_TO_RETAIN,
    Outcome,
    ProducerStateManager,
    Verdict,
    plan_rebuild,
)
from kafkalab.records import (
    encode_batch,
    encode_control_batch,
    iter_batches,
    parse_header,
    set_base_offset,
)
from kafkalab.storage.producer_snapshot import decode_snapshot, encode_snapshot

PID, OTHER = 1000, 2000


def data(pid: int, epoch: int, seq: int, n: int = 1, ts: int = 1_000, *, txn: bool = False) -> bytes:
    return encode_batch([(None, b"v%d" % i, None, ts + i) for i in range(n)], producer_id=pid,
                        producer_epoch=epoch, base_sequence=seq, transactional=txn)


def marker(pid: int, epoch: int, *, coordinator_epoch: int = 0, ts: int = 1_000, abort: bool = False) -> bytes:
    return encode_control_batch("abort" if abort else "commit", producer_id=pid, producer_epoch=epoch,
                                coordinator_epoch=coordinator_epoch, timestamp_ms=ts)


class Leader:
    """A leader's produce path in miniature: check, append (assign offsets), update."""

    def __init__(self, psm: ProducerStateManager | None = None) -> None:
        self.psm = psm or ProducerStateManager()
        self.log = bytearray()
        self.leo = 0

    def produce(self, batch: bytes, *, coordinator_epoch: int | None = None) -> tuple[Verdict, int]:
        """(verdict, base offset the producer is answered with; -1 on error)."""
        h = parse_header(batch)
        v = self.psm.check(h, coordinator_epoch=coordinator_epoch)
        if v.outcome is Outcome.DUPLICATE:
            return v, v.duplicate.first_offset
        if not v.should_append:
            return v, -1
        buf = bytearray(batch)
        set_base_offset(buf, self.leo)
        base = self.leo
        self.log += buf
        self.leo += h.last_offset_delta + 1
        self.psm.update_records(buf)
        return v, base


def test_first_batches_in_sequence_are_appended():
    ld = Leader()
    assert ld.produce(data(PID, 0, 0, 3))[0].outcome is Outcome.OK
    v, base = ld.produce(data(PID, 0, 3, 2))
    assert (v.outcome, v.error_code, base) == (Outcome.OK, ErrorCode.none, 3)
    st = ld.psm.last_entry(PID)
    assert (st.producer_epoch, st.last_seq, st.last_data_offset) == (0, 4, 4)


def test_retried_batch_is_answered_with_its_original_offsets_and_not_appended():
    ld = Leader()
    ld.produce(data(PID, 0, 0, 2))
    first = data(PID, 0, 2, 3)
    _, base = ld.produce(first)
    ld.produce(data(PID, 0, 5, 1))
    leo, size = ld.leo, len(ld.log)
    v, again = ld.produce(first)
    assert v.outcome is Outcome.DUPLICATE
    assert v.error_code == ErrorCode.none  # modern Kafka: success with the first append's offsets
    assert again == base == 2 and v.duplicate.last_offset == 4
    assert (ld.leo, len(ld.log)) == (leo, size)


def test_only_the_last_five_batches_are_remembered():
    ld = Leader()
    batches = [data(PID, 0, i, 1) for i in range(NUM_BATCHES_TO_RETAIN + 1)]
    bases = [ld.produce(b)[1] for b in batches]
    for b, base in zip(batches[1:], bases[1:], strict=True):
        v, again = ld.produce(b)
        assert v.outcome is Outcome.DUPLICATE and again == base
    v, base = ld.produce(batches[0])  # the 6th-oldest: no longer known, and not next in line
    assert v.outcome is Outcome.OUT_OF_ORDER_SEQUENCE
    assert v.error_code == ErrorCode.out_of_order_sequence_number and base == -1


def test_a_gap_in_sequences_is_out_of_order():
    ld = Leader()
    ld.produce(data(PID, 0, 0, 2))
    v, _ = ld.produce(data(PID, 0, 3, 1))  # 2 is missing
    assert v.outcome is Outcome.OUT_OF_ORDER_SEQUENCE and "expected 2" in v.message
    assert ld.produce(data(PID, 0, 2, 1))[0].outcome is Outcome.OK


def test_a_stale_epoch_is_fenced():
    ld = Leader()
    ld.produce(data(PID, 0, 0, 1))
    ld.produce(data(PID, 1, 0, 1))
    v, _ = ld.produce(data(PID, 0, 1, 1))
    assert v.outcome is Outcome.INVALID_PRODUCER_EPOCH and v.error_code == ErrorCode.invalid_producer_epoch


def test_an_epoch_bump_resets_sequences():
    ld = Leader()
    old = data(PID, 0, 0, 4)
    ld.produce(old)
    assert ld.produce(data(PID, 1, 7, 1))[0].outcome is Outcome.OUT_OF_ORDER_SEQUENCE  # must restart at 0
    assert ld.produce(data(PID, 1, 0, 2))[0].outcome is Outcome.OK
    assert ld.psm.last_entry(PID).producer_epoch == 1 and len(ld.psm.last_entry(PID).batches) == 1
    assert ld.produce(old)[0].outcome is Outcome.INVALID_PRODUCER_EPOCH  # old epoch's retry: fenced
    assert ld.produce(data(PID, 1, 2, 1))[0].outcome is Outcome.OK


def test_sequences_wrap_at_int32_max():
    ld = Leader()
    ld.produce(data(PID, 0, INT32_MAX - 2, 3))  # 2**31-3 .. 2**31-1 (a new producer may start anywhere)
    assert ld.psm.last_entry(PID).last_seq == INT32_MAX
    assert ld.produce(data(PID, 0, 1, 1))[0].outcome is Outcome.OUT_OF_ORDER_SEQUENCE
    spanning = data(PID, 0, 0, 1)
    assert ld.produce(spanning)[0].outcome is Outcome.OK
    ld2 = Leader()
    ld2.produce(data(PID, 0, INT32_MAX - 1, 1))
    across = data(PID, 0, INT32_MAX, 3)  # sequences 2**31-1, 0, 1
    _, base = ld2.produce(across)
    assert ld2.psm.last_entry(PID).last_seq == 1
    v, again = ld2.produce(across)
    assert v.outcome is Outcome.DUPLICATE and again == base
    assert ld2.produce(data(PID, 0, 2, 1))[0].outcome is Outcome.OK


def test_unknown_producer_is_accepted_at_any_sequence_unless_strict():
    # Kafka >= 2.5 (KIP-360): retention may have removed every batch of a live producer.
    assert Leader().produce(data(PID, 3, 42))[0].outcome is Outcome.OK
    v, _ = Leader(ProducerStateManager(strict_unknown_producer=True)).produce(data(PID, 3, 42))
    assert v.outcome is Outcome.UNKNOWN_PRODUCER_ID and v.error_code == ErrorCode.unknown_producer_id
    assert Leader(ProducerStateManager(strict_unknown_producer=True)).produce(data(PID, 3, 0))[0].should_append


def test_negative_sequence_with_a_producer_id_is_an_invalid_record():
    v, _ = Leader().produce(data(PID, 0, -1))
    assert v.error_code == ErrorCode.invalid_record


def test_batches_without_producer_id_are_not_tracked():
    ld = Leader()
    ld.produce(encode_batch([(None, b"x", None, 1)]))
    assert ld.psm.producers == {} and ld.psm.map_end_offset == 1


def test_transactions_open_and_close_with_markers():
    ld = Leader()
    ld.produce(data(PID, 0, 0, 2, txn=True))
    ld.produce(data(OTHER, 0, 0, 1))
    ld.produce(data(PID, 0, 2, 1, txn=True))
    assert ld.psm.first_undecided_offset() == 0
    v, _ = ld.produce(data(PID, 0, 3, 1))
    assert v.error_code == ErrorCode.invalid_txn_state
    ld.produce(marker(PID, 1, coordinator_epoch=4), coordinator_epoch=4)  # TV2 style: marker bumps epoch
    st = ld.psm.last_entry(PID)
    assert (st.current_txn_first_offset, st.coordinator_epoch, st.producer_epoch) == (-1, 4, 1)
    assert ld.psm.first_undecided_offset() is None
    assert ld.produce(data(PID, 1, 4, 1))[0].outcome is Outcome.OUT_OF_ORDER_SEQUENCE
    assert ld.produce(data(PID, 1, 0, 1))[0].outcome is Outcome.OK
    zombie = ld.psm.check(parse_header(marker(PID, 1, coordinator_epoch=3)), coordinator_epoch=3)
    assert zombie.error_code == ErrorCode.transaction_coordinator_fenced
    assert ld.psm.check(parse_header(marker(PID, 0))).error_code == ErrorCode.invalid_producer_epoch


def test_check_records_checks_each_batch_of_a_request_in_order():
    psm = Leader().psm
    assert psm.check_records(data(PID, 0, 0, 2) + data(PID, 0, 2, 1)).should_append
    bad = psm.check_records(data(PID, 0, 0, 2) + data(PID, 0, 5, 1))
    assert bad.outcome is Outcome.OUT_OF_ORDER_SEQUENCE
    ld = Leader(psm)
    first = data(PID, 0, 0, 2)
    ld.produce(first)
    v = psm.check_records(first + data(PID, 0, 2, 1))
    assert v.outcome is Outcome.DUPLICATE and v.duplicate.first_offset == 0
    assert psm.check_records(marker(PID, 0)).error_code == ErrorCode.invalid_record


def test_leader_offsets_override_the_producers_in_update_records():
    psm = ProducerStateManager()
    psm.update_records(data(PID, 0, 0, 2) + data(PID, 0, 2, 3), first_offset=10)
    assert [(b.first_offset, b.last_offset) for b in psm.last_entry(PID).batches] == [(10, 11), (12, 14)]
    assert psm.map_end_offset == 15


def test_expiry_follows_producer_id_expiration_ms_from_the_last_batch_timestamp():
    psm = ProducerStateManager(producer_id_expiration_ms=1_000)
    ld = Leader(psm)
    ld.produce(data(PID, 0, 0, 1, ts=5_000))
    ld.produce(data(OTHER, 0, 0, 1, ts=5_000, txn=True))
    assert psm.remove_expired(5_999) == []
    assert psm.remove_expired(6_000) == [PID]  # OTHER has an open transaction: kept
    assert set(psm.producers) == {OTHER}
    entries = [e._replace(current_txn_first_offset=-1) for e in psm.take_snapshot()]
    psm.load_from_snapshot(entries, 2, now_ms=6_000)
    assert psm.producers == {}
    psm.load_from_snapshot(entries, 2, now_ms=5_999)
    assert set(psm.producers) == {OTHER} and psm.map_end_offset == 2


def test_snapshot_round_trips_through_the_file_format():
    ld = Leader()
    ld.produce(data(PID, 2, 0, 3, ts=7))
    ld.produce(data(OTHER, 0, 0, 1, txn=True))
    ld.produce(marker(OTHER, 0, coordinator_epoch=9, ts=8), coordinator_epoch=9)
    entries = ld.psm.take_snapshot()
    assert decode_snapshot(encode_snapshot(entries)) == entries
    rebuilt = ProducerStateManager()
    rebuilt.load_from_snapshot(decode_snapshot(encode_snapshot(entries)), ld.leo)
    assert rebuilt.take_snapshot() == entries
    v = rebuilt.check(parse_header(data(PID, 2, 0, 3, ts=7)))  # the last batch survives a snapshot
    assert v.outcome is Outcome.DUPLICATE and (v.duplicate.first_offset, v.duplicate.last_offset) == (0, 2)


def test_replay_of_headers_rebuilds_data_batches():
    ld = Leader()
    for seq in range(0, 12, 2):
        ld.produce(data(PID, 0, seq, 2))
    replayed = ProducerStateManager()
    replayed.replay((h.base_offset, h) for _, h in iter_batches(ld.log))
    assert replayed.take_snapshot() == ld.psm.take_snapshot()
    assert list(replayed.last_entry(PID).batches) == list(ld.psm.last_entry(PID).batches)


@pytest.mark.parametrize(("snapshots", "start", "end", "expected"), [
    ([], 0, 10, (None, 0, ())),
    ([5], 0, 10, (5, 5, ())),
    ([3, 8, 12], 0, 10, (8, 8, (12,))),  # 12 is past the truncated log end
    ([3, 8], 5, 10, (8, 8, (3,))),  # 3 is below the log start
    ([3, 10], 0, 10, (10, 10, ())),
    ([2, 12], 5, 10, (None, 5, (2, 12))),
])
def test_plan_rebuild(snapshots, start, end, expected):
    plan = plan_rebuild(snapshots, start, end)
    assert (plan.snapshot_offset, plan.replay_from, plan.delete_snapshots) == expected
