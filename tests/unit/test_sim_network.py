"""The simulator's scheduler and network: seeded runs replay exactly; faults do what they say."""

from kafkalab.sim.network import LinkFaults, Network
from kafkalab.sim.scheduler import Scheduler


def _run(seed: int, faults: LinkFaults) -> tuple[list[tuple[int, str, int]], Network]:
    s = Scheduler(seed)
    net = Network(s, s.fork(), faults)
    got: list[tuple[int, str, int]] = []
    net.attach("a", lambda src, m: got.append((s.now_ms, src, m)))
    net.attach("b", lambda src, m: None)
    for i in range(50):
        net.send("b", "a", i)
    s.run_until(1000)
    return got, net


def test_same_seed_same_story_and_another_seed_another() -> None:
    faults = LinkFaults(delay_ms=(1, 20), loss=0.1, duplicate=0.1)
    assert _run(7, faults)[0] == _run(7, faults)[0]
    assert _run(7, faults)[0] != _run(8, faults)[0]


def test_delays_reorder_losses_drop_duplicates_repeat() -> None:
    got, net = _run(3, LinkFaults(delay_ms=(1, 20), loss=0.2, duplicate=0.2))
    values = [m for _, _, m in got]
    assert values != sorted(values)  # reordered
    assert len(set(values)) < 50  # some lost
    assert len(values) > len(set(values))  # some twice
    assert net.dropped > 0


def test_cuts_are_one_way_and_pauses_hold_messages() -> None:
    s = Scheduler(1)
    net = Network(s, s.fork())
    got: dict[str, list[int]] = {"a": [], "b": []}
    net.attach("a", lambda src, m: got["a"].append(m))
    net.attach("b", lambda src, m: got["b"].append(m))
    net.cut_one_way("a", "b")
    net.send("a", "b", 1)
    net.send("b", "a", 2)
    s.run_until(50)
    net.pause("a")
    net.send("b", "a", 3)
    s.run_until(100)
    assert got == {"a": [2], "b": []}
    net.resume("a")
    assert got["a"] == [2, 3]
    net.crash("a")
    net.send("b", "a", 4)
    s.run_until(200)
    assert got["a"] == [2, 3]
