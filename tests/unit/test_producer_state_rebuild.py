"""Rebuilding producer state: snapshot + replay and truncation give the live state back."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalab.broker.producer_state import INT32_MAX, Outcome, ProducerStateManager, plan_rebuild
from kafkalab.records import parse_header, set_base_offset
from kafkalab.storage import Log
from kafkalab.storage.producer_snapshot import ProducerStateEntry
from tests.unit.test_producer_state import data, marker

PIDS = (11, 22, 33)


@dataclass
class Client:
    """What an idempotent (or transactional) producer knows about one partition."""

    epoch: int = 0
    next_seq: int = 0
    txn_open: bool = False


@dataclass
class History:
    """A leader's log built from random producer actions, with the state at every batch end."""

    log: bytearray = field(default_factory=bytearray)
    live: ProducerStateManager = field(default_factory=ProducerStateManager)
    boundaries: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])  # (offset, byte position)
    states: list[list[ProducerStateEntry]] = field(default_factory=lambda: [[]])

    def append(self, batch: bytes, coordinator_epoch: int | None = None) -> None:
        h = parse_header(batch)
        v = self.live.check(h, coordinator_epoch=coordinator_epoch)
        assert v.should_append, v  # a well-behaved producer is never refused
        buf = bytearray(batch)
        offset = self.boundaries[-1][0]
        set_base_offset(buf, offset)
        self.log += buf
        self.live.update_records(buf)
        self.boundaries.append((offset + h.last_offset_delta + 1, len(self.log)))
        self.states.append(self.live.take_snapshot())


ACTIONS = st.lists(
    st.tuples(st.sampled_from(PIDS), st.sampled_from(["data", "data", "txn", "commit", "abort", "bump"]),
              st.integers(1, 4), st.integers(0, 40)),
    max_size=30,
)
STARTS = st.fixed_dictionaries({p: st.sampled_from([0, INT32_MAX - 3]) for p in PIDS})


def build(actions, starts) -> History:
    hist = History()
    clients = {p: Client(next_seq=starts[p]) for p in PIDS}
    now, coord = 1_000, 0
    for pid, kind, n, dt in actions:
        now += dt
        c = clients[pid]
        if kind in ("commit", "abort") and c.txn_open:
            coord += n % 2  # the coordinator may have moved; its epoch never goes back
            bump = n % 2 == 0  # transactions v2: the marker carries epoch + 1
            epoch = c.epoch + 1 if bump else c.epoch
            hist.append(marker(pid, epoch, coordinator_epoch=coord, ts=now, abort=kind == "abort"), coord)
            c.txn_open = False
            if bump:
                c.epoch, c.next_seq = epoch, 0
            continue
        if kind == "bump" and not c.txn_open:
            c.epoch, c.next_seq = c.epoch + 1, 0
        if kind == "txn":
            c.txn_open = True
        hist.append(data(pid, c.epoch, c.next_seq, n, ts=now, txn=c.txn_open))
        c.next_seq = (c.next_seq + n) & INT32_MAX
    return hist


def assert_same_state(rebuilt: ProducerStateManager, live: ProducerStateManager, snapshot_offset: int) -> None:
    assert rebuilt.take_snapshot() == live.take_snapshot()
    assert rebuilt.map_end_offset == live.map_end_offset
    for pid, lv in live.producers.items():
        rb = list(rebuilt.producers[pid].batches)
        lvb = list(lv.batches)
        # A snapshot keeps each producer's last batch only, so the rebuilt window is a suffix
        # of the live one that holds every batch appended after the snapshot.
        key = [(b.last_seq, b.last_offset, b.offset_delta) for b in rb]
        assert key == [(b.last_seq, b.last_offset, b.offset_delta) for b in lvb[len(lvb) - len(rb):]]
        after = [b for b in lvb if b.first_offset >= snapshot_offset]
        assert rb[len(rb) - len(after):] == after
        for b in after:  # the same retries are recognised as duplicates, with the same offsets
            h = parse_header(data(pid, lv.producer_epoch, b.first_seq, b.offset_delta + 1))
            assert rebuilt.check(h) == live.check(h)
            assert live.check(h).outcome is Outcome.DUPLICATE


@settings(max_examples=150, deadline=None)
@given(ACTIONS, STARTS, st.data())
def test_snapshot_then_replay_equals_the_live_state(actions, starts, draw):
    hist = build(actions, starts)
    k = draw.draw(st.integers(0, len(hist.boundaries) - 1))
    offset, pos = hist.boundaries[k]
    rebuilt = ProducerStateManager()
    rebuilt.load_from_snapshot(hist.states[k], offset)
    rebuilt.update_records(bytes(hist.log[pos:]))
    assert_same_state(rebuilt, hist.live, offset)
    follower = ProducerStateManager()  # a follower fed the leader's bytes from offset 0
    follower.update_records(bytes(hist.log))
    assert_same_state(follower, hist.live, 0)
    assert follower.producers == hist.live.producers


@settings(max_examples=150, deadline=None)
@given(ACTIONS, STARTS, st.data())
def test_truncation_then_rebuild_equals_the_state_at_the_truncation_point(actions, starts, draw):
    hist = build(actions, starts)
    n = len(hist.boundaries)
    snaps = draw.draw(st.sets(st.integers(0, n - 1)))
    t = draw.draw(st.integers(0, n - 1))
    trunc_offset, trunc_pos = hist.boundaries[t]
    plan = plan_rebuild([hist.boundaries[i][0] for i in snaps], 0, trunc_offset)
    assert all(o > trunc_offset for o in plan.delete_snapshots)
    rebuilt = ProducerStateManager()
    if plan.snapshot_offset is not None:
        i = next(i for i in snaps if hist.boundaries[i][0] == plan.snapshot_offset)
        rebuilt.load_from_snapshot(hist.states[i], plan.snapshot_offset)
    start_pos = next(p for o, p in hist.boundaries if o == plan.replay_from)
    rebuilt.update_records(bytes(hist.log[start_pos:trunc_pos]))
    assert rebuilt.take_snapshot() == hist.states[t]
    at_t = ProducerStateManager()
    at_t.update_records(bytes(hist.log[:trunc_pos]))
    assert_same_state(rebuilt, at_t, plan.snapshot_offset or 0)


# -- through a real storage Log -----------------------------------------------------------------

CFG = {"segment.bytes": 400, "index.interval.bytes": 100}


def append(log: Log, psm: ProducerStateManager, batch: bytes, now_ms: int) -> None:
    assert psm.check(parse_header(batch)).should_append
    first, _ = log.append(batch, assign_offsets=True, now_ms=now_ms)
    psm.update_records(batch, first_offset=first)


def fill(log: Log, psm: ProducerStateManager, start: int, count: int) -> list[list[ProducerStateEntry]]:
    """Append `count` batches from two producers (one transactional); the state after each."""
    out = []
    for i in range(start, start + count):
        if i % 7 == 6:
            append(log, psm, marker(22, 0, coordinator_epoch=i, ts=i), i)
        else:
            pid = 11 if i % 2 else 22
            seq = psm.last_entry(pid).last_seq + 1 if psm.last_entry(pid) else 0
            append(log, psm, data(pid, 0, seq, 1 + i % 3, ts=i, txn=pid == 22), i)
        out.append(psm.take_snapshot())
    return out


def test_reload_from_a_log_with_snapshot_after_reopen(tmp_path):
    log = Log(str(tmp_path / "t-0"), CFG, now_ms=0)
    live = ProducerStateManager()
    fill(log, live, 0, 10)
    snap_at = log.log_end_offset
    live.write_snapshot(log)
    fill(log, live, 10, 15)
    assert len(log.segments) > 2  # the replay crosses segments
    log.close()
    log = Log(str(tmp_path / "t-0"), CFG, now_ms=0)
    rebuilt = ProducerStateManager()
    plan = rebuilt.reload(log)
    assert (plan.snapshot_offset, plan.replay_from) == (snap_at, snap_at)
    assert_same_state(rebuilt, live, snap_at)
    assert rebuilt.last_entry(22).coordinator_epoch == live.last_entry(22).coordinator_epoch > 0
    log.close()


def test_reload_after_follower_truncation_drops_later_snapshots(tmp_path):
    log = Log(str(tmp_path / "t-0"), CFG, now_ms=0)
    psm = ProducerStateManager()
    states = fill(log, psm, 0, 8)
    early = log.log_end_offset
    psm.write_snapshot(log)
    states += fill(log, psm, 8, 8)
    psm.write_snapshot(log)
    late = log.log_end_offset
    target = 11  # truncate back to the end of the 12th batch
    offsets = sorted({h.base_offset for h in _headers(log)})
    cut = offsets[target + 1]
    log.truncate_to(cut)
    plan = psm.reload(log)
    assert plan.snapshot_offset == early and plan.delete_snapshots == (late,)
    assert log.producer_snapshot_offsets() == [early]
    assert psm.take_snapshot() == states[target]
    assert psm.map_end_offset == log.log_end_offset == cut
    log.close()


def test_reload_skips_a_corrupt_snapshot(tmp_path):
    log = Log(str(tmp_path / "t-0"), CFG, now_ms=0)
    psm = ProducerStateManager()
    fill(log, psm, 0, 5)
    psm.write_snapshot(log)
    fill(log, psm, 5, 5)
    path = psm.write_snapshot(log)
    with open(path, "r+b") as f:  # flip a byte inside the CRC-covered body
        f.seek(12)
        b = f.read(1)
        f.seek(12)
        f.write(bytes([b[0] ^ 0xFF]))
    rebuilt = ProducerStateManager()
    plan = rebuilt.reload(log)
    assert plan.snapshot_offset is not None and plan.snapshot_offset < log.log_end_offset
    assert rebuilt.take_snapshot() == psm.take_snapshot()
    assert log.producer_snapshot_offsets() == [plan.snapshot_offset]
    log.close()


def _headers(log: Log):
    from kafkalab.records import iter_batches

    pos, out = log.log_start_offset, []
    while pos < log.log_end_offset:
        chunk = log.read_bytes(pos, 1 << 20)
        hs = [h for _, h in iter_batches(chunk)]
        out += hs
        pos = hs[-1].next_offset
    return out
