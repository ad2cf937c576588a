"""Mutation tests: break one rule in a core and the simulator must report a violation within
the few seeds run here, while the unbroken code holds every invariant on the same seeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from kafkalab.broker.partition import Partition
from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.controller.controller import Controller
from kafkalab.sim.invariants import Violation
from kafkalab.sim.replication import run


def _hw_is_leader_leo(self: Partition) -> bool:
    """The HW rule broken: advance to the leader's LEO, whatever the ISR has."""
    if self.is_leader and self.log_end_offset > self.high_watermark:
        self.high_watermark = self.log_end_offset
        return True
    return False


_apply_fetch_response = ReplicaManager.apply_fetch_response


def _ignore_diverging_epoch(self: ReplicaManager, leader: int, resp: Any, now_ms: int, *session: Any) -> bool:
    """Divergence truncation broken: the follower takes a DivergingEpoch answer as a plain one."""
    resp = dataclasses.replace(resp, responses=tuple(
        dataclasses.replace(t, partitions=tuple(dataclasses.replace(p, diverging_epoch=None) for p in t.partitions))
        for t in resp.responses))
    return _apply_fetch_response(self, leader, resp, now_ms, *session)


_register_broker = Controller.register_broker


def _keep_old_session(self: Controller, broker_id: int, *args: Any, **kwargs: Any) -> int:
    """Broker-epoch fencing broken: a restarted broker's new registration does not fence its old
    session, so it keeps leading in the same leader epoch with what its disk kept."""
    old = self.image.brokers.get(broker_id)
    if old is not None:
        old.fenced = True  # look already fenced: the fix's fence_broker is skipped
    return _register_broker(self, broker_id, *args, **kwargs)


MUTATIONS: list[tuple[str, type, str, Callable[..., Any], list[int]]] = [
    ("high watermark ignores the ISR", Partition, "maybe_advance_high_watermark", _hw_is_leader_leo, [2, 4]),
    ("follower ignores DivergingEpoch", ReplicaManager, "apply_fetch_response", _ignore_diverging_epoch, [2, 4]),
    ("restarted broker keeps its old session's leadership", Controller, "register_broker", _keep_old_session,
     [9, 15]),
]


@pytest.mark.parametrize("name, cls, attr, mutant, seeds", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(name: str, cls: type, attr: str, mutant: Callable[..., Any], seeds: list[int],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    for seed in seeds:  # the real code holds on these seeds
        run(seed)
    monkeypatch.setattr(cls, attr, mutant)
    caught = []
    for seed in seeds:
        try:
            run(seed)
        except Violation as v:
            caught.append((seed, v.invariant))
    assert caught, f"{name}: no violation on seeds {seeds}"
