"""Mutation tests: break a rule the group or transaction coordinators depend on, and the
simulator must report a violation within the few seeds run here; unbroken, the same seeds pass."""

from __future__ import annotations

import dataclasses

from kafkalab.broker.consumer_group import ConsumerGroup, ConsumerGroupCoordinator
from kafkalab.broker.group_coordinator import GroupCoordinator
from kafkalab.broker.partition import Partition
from kafkalab.sim import groups, groups_consumer, transactions
from kafkalab.sim.invariants import Violation

TXN_SEEDS = (1, 2)
GROUP_SEEDS = (2, 3, 4)
CONSUMER_SEEDS = (1, 2)


def _violations(run, seeds) -> list[Violation]:
    found = []
    for seed in seeds:
        try:
            run(seed)
        except Violation as v:
            found.append(v)
    return found


def test_unbroken_code_passes_the_seeds():
    assert _violations(transactions.run, TXN_SEEDS) == []
    assert _violations(groups.run, GROUP_SEEDS) == []
    assert _violations(groups_consumer.run, CONSUMER_SEEDS) == []


def test_an_lso_at_the_high_watermark_is_caught(monkeypatch):
    # read_committed consumers would read open transactions' records
    monkeypatch.setattr(Partition, "last_stable_offset", property(lambda self: self.high_watermark))
    found = _violations(transactions.run, TXN_SEEDS)
    assert found and {v.invariant for v in found} == {"no read_committed consumer reads past the last stable offset"}
    assert all(v.event > 0 and f"--seeds {v.seed} " in str(v) for v in found)


def test_a_commit_accepted_from_any_generation_is_caught(monkeypatch):
    commit = GroupCoordinator.commit_offsets

    def any_generation(self, req, now_ms, reply):
        g = self.groups.get(str(req.group_id))
        if g is not None:  # the coordinator no longer compares the commit's generation with its own
            req = dataclasses.replace(req, generation_id_or_member_epoch=g.generation)
        commit(self, req, now_ms, reply)

    monkeypatch.setattr(GroupCoordinator, "commit_offsets", any_generation)
    found = _violations(groups.run, GROUP_SEEDS)
    assert found and {v.invariant for v in found} == {"a commit carrying a stale generation is never accepted"}
    assert all(v.event > 0 and f"--seeds {v.seed} " in str(v) for v in found)



def test_a_commit_accepted_from_a_replaced_static_member_is_caught(monkeypatch):
    commit = GroupCoordinator.commit_offsets

    def any_incarnation(self, req, now_ms, reply):
        g = self.groups.get(str(req.group_id))
        holder = g.static.get(req.group_instance_id) if g is not None and req.group_instance_id else None
        if holder is not None:  # the coordinator no longer tells the group.instance.id's processes apart
            req = dataclasses.replace(req, member_id=holder)
        commit(self, req, now_ms, reply)

    monkeypatch.setattr(GroupCoordinator, "commit_offsets", any_incarnation)
    found = _violations(groups.run, GROUP_SEEDS)
    assert found and {v.invariant for v in found} == {"a replaced static member's commit is never accepted"}

def test_a_consumer_protocol_commit_accepted_at_any_member_epoch_is_caught(monkeypatch):
    validate = ConsumerGroupCoordinator.validate_commit

    def any_epoch(self, group_id, member_id, epoch):
        g = self.groups.get(group_id)
        m = g.members.get(member_id) if g is not None else None
        return validate(self, group_id, member_id, epoch if m is None else m.member_epoch)

    monkeypatch.setattr(ConsumerGroupCoordinator, "validate_commit", any_epoch)
    found = _violations(groups_consumer.run, CONSUMER_SEEDS)
    assert found and {v.invariant for v in found} == {"a commit is accepted only at the member's current epoch"}


def test_a_partition_handed_on_before_its_owner_revoked_it_is_caught(monkeypatch):
    # the reconciliation no longer waits for the previous owner to give a partition up
    monkeypatch.setattr(ConsumerGroup, "owner", lambda self: {})
    found = _violations(groups_consumer.run, CONSUMER_SEEDS)
    assert found and {v.invariant for v in found} == {"a partition is handed on only once its owner gave it up"}
