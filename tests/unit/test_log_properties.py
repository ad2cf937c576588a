"""Stateful property test: random appends, rolls, truncations, closes and crash-reopens
keep the Log's invariants against a plain list model of what was appended."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kafkalab.records.batch import decode_batch, encode_batch
from kafkalab.records.header import parse_header
from kafkalab.storage import Log

CFG = {"segment.bytes": 600, "index.interval.bytes": 64, "segment.index.bytes": 64}


def abandon(lg: Log) -> None:
    """Drop a Log like a killed process would: fds closed, nothing trimmed or flushed."""
    for seg in lg.segments:
        for fd in (seg._fd, seg.index._fd, seg.time_index._fd, seg.txn_index._fd):
            if fd >= 0:
                os.close(fd)
        seg._fd = seg.index._fd = seg.time_index._fd = seg.txn_index._fd = -1
    lg._closed = True


class LogMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.tmp = tempfile.mkdtemp()
        self.dir = os.path.join(self.tmp, "p-0")
        self.log = Log(self.dir, CFG, now_ms=0)
        self.batches: list[tuple[int, list[bytes]]] = []  # (base offset, values)
        self.counter = 0
        self.leo = 0

    def teardown(self):
        if hasattr(self, "log"):
            self.log.close(flush=False)
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(n=st.integers(1, 4), size=st.integers(0, 200), batches=st.integers(1, 3))
    def append(self, n, size, batches):
        data = b""
        values = []
        for _ in range(batches):
            vals = [b"%d:" % (self.counter + i) + b"x" * size for i in range(n)]
            self.counter += n
            values.append(vals)
            data += encode_batch([(None, v, [], 1000 + self.counter) for v in vals])
        first, last = self.log.append(data, leader_epoch=1, now_ms=0)
        assert first == self.leo
        for vals in values:
            self.batches.append((self.leo, vals))
            self.leo += len(vals)
        assert last == self.leo - 1

    @rule()
    def roll(self):
        self.log.roll(0)

    @precondition(lambda self: self.leo > 0)
    @rule(data=st.data())
    def truncate(self, data):
        target = data.draw(st.integers(0, self.leo))
        self.log.truncate_to(target)
        kept = [(b, v) for b, v in self.batches if b + len(v) - 1 < target]
        self.batches = kept
        self.leo = kept[-1][0] + len(kept[-1][1]) if kept else 0
        # a whole-batch cut: the new end is the start of the batch that held `target`

    @rule(data=st.data(), clean=st.booleans())
    def reopen(self, data, clean):
        rp = data.draw(st.integers(0, self.leo))
        if clean:
            self.log.close()
            rp = self.leo
        else:
            abandon(self.log)
        self.log = Log(self.dir, CFG, recovery_point=rp, now_ms=0)
        assert self.log.recovery_report.truncated_bytes == 0

    @invariant()
    def log_end_offset_matches(self):
        if hasattr(self, "log"):
            assert self.log.log_end_offset == max(self.leo, self.log.active_segment.base_offset)

    @invariant()
    def reads_return_exactly_what_was_appended(self):
        if not hasattr(self, "log"):
            return
        expected = [(b + i, v) for b, vals in self.batches for i, v in enumerate(vals)]
        got = []
        off = self.log.log_start_offset
        while off < self.log.log_end_offset:
            data = self.log.read_bytes(off, 300)
            assert data, f"empty read at {off}"
            pos = 0
            while pos < len(data):
                b = decode_batch(data, pos)
                got += [(r.offset, r.value) for r in b.records]
                pos += b.header.size
            off = got[-1][0] + 1
        assert got == expected
        offsets = [o for o, _ in got]
        assert offsets == sorted(set(offsets))

    @invariant()
    def index_entries_sit_at_batch_starts(self):
        if not hasattr(self, "log"):
            return
        for seg in self.log.segments:
            prev = -1
            for off, pos in seg.index.entries:
                h = parse_header(seg.read_bytes(pos, 61))
                assert h.last_offset == off
                assert off > prev
                prev = off
            for _ts, off in seg.time_index.entries:
                assert seg.base_offset <= off < seg.next_offset


TestLogMachine = pytest.mark.slow(LogMachine.TestCase)
TestLogMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
