"""Transactions under the simulator, and what it found in the transaction coordinator."""

from __future__ import annotations

import itertools

from kio.schema.errors import ErrorCode

from kafkalab.broker.txn_coordinator import TransactionCoordinator, partition_for
from kafkalab.sim import transactions


def test_same_seed_same_story():
    a, b = transactions.run(7, trace=True), transactions.run(7, trace=True)
    assert a == b and a.events > 1000 and a.faults > 0


def test_a_fault_free_run_copies_everything_exactly_once():
    sim = transactions.TransactionsSim(3, faults=False)
    summary = sim.run()
    assert summary.faults == 0 and summary.acknowledged > 0
    assert sim.committed_offsets() == dict.fromkeys(range(sim.partitions), transactions.RECORDS_PER_INPUT)
    expected = {f"in-{p}@{o}" for p in range(sim.partitions) for o in range(transactions.RECORDS_PER_INPUT)}
    assert set(sim.copied) == expected and set(sim.copied.values()) == {1}


class _Coordinator:
    """One transactional.id's coordinator over an in-memory log, markers delivered at once."""

    def __init__(self, log=None):
        self.log = [] if log is None else log
        self.pids = itertools.count(1000)
        self.c = TransactionCoordinator(
            num_partitions=1, offsets_partitions=1, append=self.append,
            send_markers=lambda *args: args[-1](), owns=lambda p: "yes",
            next_producer_id=lambda: next(self.pids))
        self.c.load_partition(0, 0 if log is None else 1, list(self.log), 0)  # it leads the partition

    def append(self, p, records, done):
        self.log.extend(records)
        done(ErrorCode.none)

    def init(self, pid=-1, epoch=-1):
        out = []
        self.c.init_producer_id("t", 10_000, pid, epoch, 0, lambda *a: out.append(a))
        return out[0]


def test_a_fenced_instance_cannot_take_its_id_back():
    """Found by the simulator (seed 63 before the fix): instance 1 aborted and re-initialised
    with its producer id and epoch (KIP-360) just after instance 2 had taken a new epoch; the
    coordinator took instance 1's epoch for the previous one and bumped again, fencing
    instance 2 - the zombie was back."""
    h = _Coordinator()
    _, pid, e0 = h.init()
    assert h.init()[:2] == (ErrorCode.none, pid)  # a new instance: epoch e0 + 1
    assert h.init(pid, e0)[0] == ErrorCode.producer_fenced
    assert partition_for("t", 1) == 0
    h2 = _Coordinator(list(h.log))  # the same after a failover: the next coordinator loads the log
    assert h2.init(pid, e0)[0] == ErrorCode.producer_fenced


def test_an_instance_may_still_re_initialise_itself():
    h = _Coordinator()
    _, pid, e0 = h.init()
    code, pid1, e1 = h.init(pid, e0)
    assert (code, pid1, e1) == (ErrorCode.none, pid, e0 + 1)
