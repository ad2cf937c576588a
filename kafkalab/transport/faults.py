"""FaultTable: which links between lab nodes are cut or slowed down. Pure data, no sockets.

Nodes are names ("controller", "broker-1", "client-3"). A link is directed: src -> dst.
Every process holds a copy of the table and enforces it on what it *receives*, so a cut
a -> b is applied by b, and a one-way cut models the asymmetric partitions that make
real clusters interesting (a leader that can send but not hear).

The Cluster owns the authoritative table; processes adopt newer copies by `version`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["FaultTable"]

Link = tuple[str, str]


def _node(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"a node is a non-empty name such as 'broker-1' or 'controller', not {name!r}"
        )
    return name


def _base(node: str) -> str:
    return node.split("/", 1)[0]


class FaultTable:
    """Cuts and delays on directed links between named nodes, with a change counter."""

    def __init__(self) -> None:
        self._cuts: set[Link] = set()
        self._delays: dict[Link, int] = {}
        self.version = 0

    # -- changes ---------------------------------------------------------------------------

    def cut(self, a: str, b: str, one_way: bool = False) -> None:
        """Drop everything from a to b (and from b to a unless one_way)."""
        self._change(add_cuts=self._pairs(a, b, one_way))

    def restore(self, a: str, b: str, one_way: bool = False) -> None:
        """Undo cut(a, b, one_way); delays stay."""
        pairs = self._pairs(a, b, one_way)
        if self._cuts & pairs:
            self._cuts -= pairs
            self.version += 1

    def delay(self, a: str, b: str, ms: int, one_way: bool = False) -> None:
        """Hold every message from a to b (and b to a unless one_way) for ms; 0 removes it."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"delay must be a whole number of milliseconds >= 0, not {ms!r}")
        changed = False
        for link in self._pairs(a, b, one_way):
            if self._delays.get(link, 0) != ms:
                changed = True
                if ms:
                    self._delays[link] = ms
                else:
                    del self._delays[link]
        if changed:
            self.version += 1

    def partition(self, *groups: Iterable[str] | str) -> None:
        """Cut every link between nodes of different groups (a bare name is a group of one).

        partition(["broker-1"], ["broker-2", "broker-3", "controller"]) leaves broker-1
        alone on its side; links inside a group are untouched.
        """
        if len(groups) < 2:
            raise ValueError("partition() needs at least two groups, e.g. (['broker-1'], ['broker-2'])")
        sides: list[set[str]] = []
        seen: dict[str, int] = {}
        for i, group in enumerate(groups):
            members = {_node(group)} if isinstance(group, str) else {_node(n) for n in group}
            if not members:
                raise ValueError(f"partition() group {i} is empty; every group needs a node")
            for n in members:
                if n in seen:
                    raise ValueError(
                        f"node {n!r} is in partition groups {seen[n]} and {i}; "
                        "a node can be on one side only"
                    )
                seen[n] = i
            sides.append(members)
        pairs = {
            (a, b)
            for i, side in enumerate(sides)
            for j, other in enumerate(sides)
            if i != j
            for a in side
            for b in other
        }
        self._change(add_cuts=pairs)

    def isolate(self, node: str, others: Iterable[str]) -> None:
        """Cut node off from each of others, both ways."""
        _node(node)
        rest = [n for n in others if n != node]
        if rest:
            self.partition([node], rest)

    def heal(self) -> None:
        """Remove every cut and delay."""
        if self._cuts or self._delays:
            self._cuts.clear()
            self._delays.clear()
            self.version += 1

    # -- questions -------------------------------------------------------------------------

    def is_cut(self, src: str, dst: str) -> bool:
        # "broker-1/txn" is a second channel of node broker-1: faults apply to the node.
        return (_base(src), _base(dst)) in self._cuts

    def delay_ms(self, src: str, dst: str) -> int:
        return self._delays.get((_base(src), _base(dst)), 0)

    def links(self) -> list[dict[str, Any]]:
        """One row per directed link with a fault: src, dst, cut, delay_ms (sorted)."""
        faulty = sorted(self._cuts | set(self._delays))
        return [
            {"src": s, "dst": d, "cut": (s, d) in self._cuts, "delay_ms": self._delays.get((s, d), 0)}
            for s, d in faulty
        ]

    def __bool__(self) -> bool:  # "are there any faults?"
        return bool(self._cuts or self._delays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaultTable):
            return NotImplemented
        return (self.version, self._cuts, self._delays) == (
            other.version,
            other._cuts,
            other._delays,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"FaultTable(version={self.version}, cuts={sorted(self._cuts)}, delays={self._delays})"

    # -- sharing between processes ---------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "cuts": sorted([s, d] for s, d in self._cuts),
                "delays": sorted([s, d, ms] for (s, d), ms in self._delays.items()),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> FaultTable:
        """Parse to_json() output; ValueError naming the problem for anything else."""
        try:
            data = json.loads(text)
            table = cls()
            table.version = int(data["version"])
            table._cuts = {(_node(s), _node(d)) for s, d in data["cuts"]}
            for s, d, ms in data["delays"]:
                if not isinstance(ms, int) or ms <= 0:
                    raise ValueError(f"delay {ms!r} on {s}->{d} is not a positive integer")
                table._delays[(_node(s), _node(d))] = ms
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"not a FaultTable in JSON ({type(e).__name__}: {e}); "
                "expected the output of FaultTable.to_json()"
            ) from e
        return table

    def update_from(self, other: FaultTable) -> bool:
        """Adopt other's faults in place if it is newer; True if anything was adopted."""
        if other.version <= self.version:
            return False
        self._cuts = set(other._cuts)
        self._delays = dict(other._delays)
        self.version = other.version
        return True

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _pairs(a: str, b: str, one_way: bool) -> set[Link]:
        a, b = _node(a), _node(b)
        if a == b:
            raise ValueError(f"a link joins two different nodes; got {a!r} twice")
        return {(a, b)} if one_way else {(a, b), (b, a)}

    def _change(self, add_cuts: set[Link]) -> None:
        if not add_cuts <= self._cuts:
            self._cuts |= add_cuts
            self.version += 1
