"""Seeded chaos simulations of the KRaft quorum (cf. Kafka's RaftEventSimulationTest).

Each run drives a 3- or 5-voter quorum through random kills, restarts, partitions, one-node
isolation and message loss while a client appends at whoever leads; Simulation checks after
every event: one leader per epoch, epochs and high watermarks never go back, a committed
offset never holds two values. After healing: every voter holds the same committed records,
including every record a leader acknowledged as committed.
"""

from __future__ import annotations

import random

import pytest

from kafkalab.controller.raft_sim import SafetyViolation, SimConfig, Simulation


def chaos(seed: int, voters: int, *, snapshot_every: int | None = None, drop: float = 0.05,
          duration_ms: int = 6000, wire: bool = False) -> Simulation:
    cfg = SimConfig(voters=voters, delay_ms=(1, 20), drop_rate=drop, snapshot_every=snapshot_every,
                    snapshot_chunk_bytes=256 if snapshot_every else 1 << 20, wire=wire)
    sim = Simulation(seed, cfg)
    rng = random.Random(seed * 7919 + voters)
    t, i, next_fault = 0, 0, rng.randint(100, 600)
    while t < duration_ms:
        t += rng.randint(5, 30)
        sim.run_until(t)
        sim.append(f"{seed}:{i}".encode())
        i += 1
        if t >= next_fault:
            next_fault = t + rng.randint(100, 800)
            action = rng.choice(["kill", "kill", "restart", "restart", "partition", "isolate", "heal", "drop"])
            dead = [n for n in sim.ids if n not in sim.alive()]
            if action == "kill" and sim.alive():
                sim.kill(rng.choice(sim.alive()))
            elif action == "restart":
                sim.restart(rng.choice(dead or sim.ids))  # a live node restarts as after a crash
            elif action == "partition":
                ids = sim.ids[:]
                rng.shuffle(ids)
                k = rng.randint(1, len(ids) - 1)
                sim.partition(ids[:k], ids[k:])
            elif action == "isolate":
                sim.isolate(rng.choice(sim.ids))
            elif action == "heal":
                sim.heal()
            else:
                sim.drop_rate = rng.choice([0.0, 0.05, 0.2])
    # Heal everything, let the quorum settle, commit some more, then let it go quiet.
    sim.heal()
    sim.drop_rate = 0.0
    for n in sim.ids:
        if n not in sim.alive():
            sim.restart(n)
    sim.healed_from = i  # type: ignore[attr-defined]
    end = t + 1500
    while t < end:
        t += 10
        sim.run_until(t)
        sim.append(f"{seed}:{i}".encode())
        i += 1
    sim.run_for(3000)
    return sim


def check_final(sim: Simulation) -> None:
    leader = sim.leader()
    assert leader is not None, "no leader after healing"
    hw = sim.nodes[leader].raft.high_watermark  # type: ignore[union-attr]
    assert {n: sim.nodes[n].raft.high_watermark for n in sim.ids} == dict.fromkeys(sim.ids, hw)  # type: ignore[union-attr]
    sim.check_converged()
    assert sim.acked, "nothing was ever committed"
    # Records appended after healing committed: the quorum is live again.
    assert any(int(v.split(b":")[1]) >= sim.healed_from for v in sim.acked.values())  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(40))
def test_chaos_three_voters(seed: int) -> None:
    check_final(chaos(seed, 3))


@pytest.mark.parametrize("seed", range(15))
def test_chaos_five_voters(seed: int) -> None:
    check_final(chaos(seed, 5))


@pytest.mark.parametrize("seed", range(15))
def test_chaos_with_snapshots(seed: int) -> None:
    sim = chaos(seed, 3 if seed % 2 else 5, snapshot_every=7)
    check_final(sim)
    assert any(sim.nodes[n].log.log_start_offset > 0 for n in sim.ids), "no snapshot was taken"


@pytest.mark.parametrize("seed", range(3))
def test_chaos_through_kafkas_codec(seed: int) -> None:
    # Every message is encoded and decoded with kio at the versions RaftNode speaks.
    check_final(chaos(seed, 3, duration_ms=2000, wire=True, snapshot_every=10))


def test_checker_catches_two_leaders_in_one_epoch() -> None:
    # The invariant checks must be able to fail: forge a second leader for a live epoch.
    from kafkalab.controller.raft import Role, RoleChanged

    sim = Simulation(1)
    sim.run_for(1000)
    leader = sim.leader()
    assert leader is not None
    other = next(n for n in sim.ids if n != leader)
    epoch = sim.nodes[leader].raft.epoch  # type: ignore[union-attr]
    with pytest.raises(SafetyViolation, match="two leaders"):
        sim._check_effect(sim.nodes[other], RoleChanged(Role.LEADER, epoch, other))


def test_checker_catches_a_lost_acknowledged_record() -> None:
    sim = Simulation(2)
    sim.run_for(1000)
    assert sim.append(b"kept") is not None
    sim.run_for(500)
    off = next(iter(sim.acked))
    sim.nodes[sim.ids[0]].sm.values.pop(off)
    with pytest.raises(SafetyViolation):
        sim.check_converged()
