"""SIGKILL a process appending to a Log at random points, 100 times; every reopen must
recover a CRC-valid log that keeps every append that returned and never reuses an offset."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from kafkalab.records.batch import decode_batch
from kafkalab.storage import Log

CFG = {"segment.bytes": 200_000, "index.interval.bytes": 4096}

WRITER = r"""
import random, sys
from kafkalab.records.batch import encode_batch
from kafkalab.storage import Log
directory, seed, seq, rp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = {"segment.bytes": 200_000, "index.interval.bytes": 4096}
rng = random.Random(seed)
log = Log(directory, cfg, recovery_point=rp, now_ms=0)
print("ready", log.log_end_offset, flush=True)
while True:
    n = rng.randint(1, 10)
    big = rng.random() < 0.2  # some large batches, so a kill can land inside a write
    pad = b"p" * (rng.randint(10_000, 60_000) if big else rng.randint(0, 200))
    recs = [(b"k%d" % (seq + i), b"seq=%d;" % (seq + i) + pad, [], seq + i) for i in range(n)]
    first, last = log.append(encode_batch(recs), leader_epoch=0, now_ms=0)
    print(first, last, seq, flush=True)
    seq += n
"""

ROUNDS = 100


def read_line(proc: subprocess.Popen, deadline: float) -> str:
    if time.monotonic() > deadline:
        raise TimeoutError("writer produced no output in time")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"writer exited early: {proc.stderr.read()}")
    return line


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sigkill_at_random_points_loses_no_returned_append(tmp_path):
    directory = str(tmp_path / "crash-0")
    rng = random.Random(20240601)
    acked: dict[int, int] = {}  # offset -> the sequence number its record carries
    next_seq = 0
    leo = 0
    torn = 0
    recovery_point = 0  # what the last clean close flushed: later bytes are rescanned
    for round_no in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, directory, str(rng.randrange(2**32)), str(next_seq),
             str(recovery_point)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 20
            ready = read_line(proc, deadline).split()
            assert ready[0] == "ready"
            assert int(ready[1]) == leo, "the writer's recovery disagrees with ours"
            first_expected = leo
            for _ in range(rng.randint(1, 12)):
                first, last, seq = map(int, read_line(proc, deadline).split())
                assert first == first_expected, f"round {round_no}: offset {first} reused or skipped"
                for i in range(last - first + 1):
                    acked[first + i] = seq + i
                first_expected = last + 1
                next_seq = seq + last - first + 1
            time.sleep(rng.random() * 0.003)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        # Appends that were not read before the kill may or may not be there; their sequence
        # numbers continue after the highest acknowledged one, so skip past them.
        log = Log(directory, CFG, recovery_point=recovery_point, now_ms=0)
        try:
            torn += log.recovery_report.truncated_bytes > 0
            assert log.log_end_offset >= first_expected, f"round {round_no}: lost acknowledged appends"
            leo = log.log_end_offset
            if leo > first_expected:
                data = log.read_bytes(first_expected, 10**8, min_one_batch=True)
                last_rec = None
                pos = 0
                while pos < len(data):
                    b = decode_batch(data, pos)
                    last_rec = b.records[-1]
                    pos += b.header.size
                if last_rec is not None:
                    next_seq = max(next_seq, int(last_rec.value.split(b";")[0][4:]) + 1)
                # the region may stop at a segment boundary; the largest seq sits at the LEO
                tail = log.read_bytes(leo - 1, 10**8)
                b = decode_batch(tail)
                next_seq = max(next_seq, int(b.records[-1].value.split(b";")[0][4:]) + 1)
            log.close()  # flushes: the next writer rescans from here
            recovery_point = log.recovery_point
        finally:
            log.close(flush=False)

    # Every acknowledged record is in the final log, CRC-valid, at its offset.
    log = Log(directory, CFG, now_ms=0)
    try:
        found: dict[int, int] = {}
        for seg in log.segments:
            for _, _h, data in seg.scan(0, verify_crc=True, with_bytes=True):
                for r in decode_batch(data).records:
                    assert r.offset not in found, f"offset {r.offset} appears twice"
                    found[r.offset] = int(r.value.split(b";")[0][4:])
        missing = [o for o, s in acked.items() if found.get(o) != s]
        assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {missing[:5]}"
        assert sorted(found) == list(range(len(found)))
    finally:
        log.close()
    # Not a correctness condition, but the test should exercise torn tails some of the time.
    print(f"rounds: {ROUNDS}, acknowledged records: {len(acked)}, torn tails repaired: {torn}")
