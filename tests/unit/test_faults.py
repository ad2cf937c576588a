"""FaultTable (who can hear whom) and Inbox (what a node receives under those faults)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkalab.transport.faults import FaultTable
from kafkalab.transport.inbox import Inbox

NODES = ["controller", "broker-1", "broker-2", "broker-3"]


def test_a_new_table_has_no_faults() -> None:
    table = FaultTable()
    assert not table and table.version == 0 and table.links() == []
    assert not any(table.is_cut(a, b) for a, b in itertools.permutations(NODES, 2))


def test_cut_is_symmetric_unless_one_way() -> None:
    table = FaultTable()
    table.cut("broker-1", "broker-2")
    assert table.is_cut("broker-1", "broker-2") and table.is_cut("broker-2", "broker-1")
    table.cut("broker-1", "controller", one_way=True)
    assert table.is_cut("broker-1", "controller") and not table.is_cut("controller", "broker-1")
    assert not table.is_cut("broker-1", "broker-3")


def test_restore_undoes_one_cut() -> None:
    table = FaultTable()
    table.cut("a", "b")
    table.restore("a", "b", one_way=True)
    assert not table.is_cut("a", "b") and table.is_cut("b", "a")


def test_partition_cuts_across_groups_only() -> None:
    table = FaultTable()
    table.partition(["broker-1"], ["broker-2", "broker-3", "controller"])
    for a, b in itertools.permutations(NODES, 2):
        across = "broker-1" in (a, b)
        assert table.is_cut(a, b) == across, (a, b)


def test_partition_with_three_groups_and_bare_names() -> None:
    table = FaultTable()
    table.partition("broker-1", ["broker-2"], ("broker-3", "controller"))
    assert table.is_cut("broker-1", "broker-2") and table.is_cut("broker-2", "controller")
    assert not table.is_cut("broker-3", "controller")


@pytest.mark.parametrize(
    ("groups", "match"),
    [((["a"],), "at least two"), ((["a"], []), "empty"), ((["a", "b"], ["b"]), "one side"), ((["a"], [""]), "non-empty")],
)
def test_bad_partitions_are_explained(groups: tuple, match: str) -> None:
    table = FaultTable()
    with pytest.raises(ValueError, match=match):
        table.partition(*groups)
    assert table.version == 0


def test_isolate_cuts_a_node_from_the_others() -> None:
    table = FaultTable()
    table.isolate("broker-2", NODES)
    assert all(table.is_cut("broker-2", n) and table.is_cut(n, "broker-2") for n in NODES if n != "broker-2")
    assert not table.is_cut("broker-1", "controller")


def test_delay_and_heal() -> None:
    table = FaultTable()
    table.delay("broker-1", "broker-2", 150, one_way=True)
    assert (table.delay_ms("broker-1", "broker-2"), table.delay_ms("broker-2", "broker-1")) == (150, 0)
    table.cut("controller", "broker-3")
    assert table.links() == [
        {"src": "broker-1", "dst": "broker-2", "cut": False, "delay_ms": 150},
        {"src": "broker-3", "dst": "controller", "cut": True, "delay_ms": 0},
        {"src": "controller", "dst": "broker-3", "cut": True, "delay_ms": 0},
    ]
    table.heal()
    assert not table and table.delay_ms("broker-1", "broker-2") == 0 and table.links() == []


@pytest.mark.parametrize("ms", [-1, 1.5, "10", True])
def test_bad_delays_are_rejected(ms: object) -> None:
    with pytest.raises(ValueError, match="milliseconds"):
        FaultTable().delay("a", "b", ms)  # type: ignore[arg-type]


def test_a_node_cannot_be_cut_from_itself() -> None:
    with pytest.raises(ValueError, match="two different nodes"):
        FaultTable().cut("a", "a")


def test_version_counts_changes_only() -> None:
    table = FaultTable()
    table.heal()
    assert table.version == 0
    table.cut("a", "b")
    table.cut("a", "b")
    assert table.version == 1
    table.delay("a", "b", 5)
    table.delay("a", "b", 5)
    table.delay("a", "b", 0)
    assert table.version == 3
    table.heal()
    assert table.version == 4


def test_json_round_trip() -> None:
    table = FaultTable()
    table.partition(["broker-1"], ["broker-2", "controller"])
    table.delay("broker-2", "controller", 30, one_way=True)
    copy = FaultTable.from_json(table.to_json())
    assert copy == table and copy.links() == table.links() and copy.version == table.version


@pytest.mark.parametrize("text", ["", "[]", '{"version": 1}', '{"version": 1, "cuts": [["a"]], "delays": []}', '{"version": 1, "cuts": [], "delays": [["a", "b", -5]]}'])
def test_bad_json_is_explained(text: str) -> None:
    with pytest.raises(ValueError, match="FaultTable.to_json"):
        FaultTable.from_json(text)


def test_update_from_adopts_newer_tables_in_place() -> None:
    mine = FaultTable()
    holder = {"faults": mine}  # e.g. an RpcServer holding a reference
    theirs = FaultTable()
    theirs.cut("a", "b")
    theirs.delay("b", "c", 9)
    assert mine.update_from(theirs)
    assert holder["faults"].is_cut("a", "b") and holder["faults"].delay_ms("c", "b") == 9
    theirs.cut("x", "y")  # adopted state is a copy, not shared
    assert not mine.is_cut("x", "y")


def test_update_from_ignores_older_or_equal_versions() -> None:
    newer = FaultTable()
    newer.cut("a", "b")
    newer.heal()  # version 2, no faults
    older = FaultTable()
    older.cut("c", "d")  # version 1
    assert not newer.update_from(older)
    assert not newer.is_cut("c", "d") and newer.version == 2
    assert not newer.update_from(FaultTable.from_json(newer.to_json()))


node = st.sampled_from(NODES)


@given(st.lists(st.tuples(st.sampled_from(["cut", "cut1", "delay", "heal", "restore"]), node, node, st.integers(0, 500))))
def test_any_sequence_of_changes_survives_json(ops: list) -> None:
    table = FaultTable()
    for op, a, b, ms in ops:
        if a == b and op != "heal":
            continue
        links, version = table.links(), table.version
        if op == "cut":
            table.cut(a, b)
        elif op == "cut1":
            table.cut(a, b, one_way=True)
        elif op == "delay":
            table.delay(a, b, ms)
        elif op == "restore":
            table.restore(a, b)
        else:
            table.heal()
        assert (table.links() != links) == (table.version == version + 1)
        assert table.version in (version, version + 1)
    assert FaultTable.from_json(table.to_json()) == table


# -- Inbox -----------------------------------------------------------------------------------


def test_inbox_passes_drops_and_holds() -> None:
    table = FaultTable()
    inbox: Inbox[str] = Inbox(table, "broker-1")
    inbox.offer("controller", "m1", now=0.0)
    table.cut("broker-2", "broker-1", one_way=True)
    inbox.offer("broker-2", "lost", now=0.0)
    table.delay("broker-3", "broker-1", 100)
    inbox.offer("broker-3", "slow", now=0.0)
    assert inbox.take(now=0.0) == ["m1"]
    assert (inbox.dropped, inbox.delayed, inbox.next_due()) == (1, 1, pytest.approx(0.1))
    assert inbox.take(now=0.099) == []
    assert inbox.take(now=0.1) == ["slow"]
    assert inbox.next_due() is None


def test_inbox_keeps_order_on_a_link_when_the_delay_is_lifted() -> None:
    table = FaultTable()
    inbox: Inbox[int] = Inbox(table, "b")
    table.delay("a", "b", 50)
    inbox.offer("a", 1, now=0.0)
    table.heal()
    inbox.offer("a", 2, now=0.01)  # no delay any more, but must not overtake 1
    inbox.offer("c", 3, now=0.01)  # another link is not held up
    assert inbox.take(now=0.01) == [3]
    assert inbox.take(now=0.05) == [1, 2]


def test_inbox_loses_held_messages_when_their_link_is_cut() -> None:
    table = FaultTable()
    inbox: Inbox[int] = Inbox(table, "b")
    table.delay("a", "b", 10)
    inbox.offer("a", 1, now=0.0)
    table.cut("a", "b")
    assert inbox.take(now=1.0) == [] and inbox.dropped == 1


def test_inbox_put_back_goes_first() -> None:
    inbox: Inbox[int] = Inbox(FaultTable(), "b")
    inbox.offer("a", 2, now=0.0)
    inbox.put_back([1])
    assert inbox.take(now=0.0) == [1, 2]
