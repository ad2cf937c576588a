"""The story in words: what changed between two moments of a cluster, as sentences.

`story_lines(before, after)` is pure: a *moment* is a plain dict a test can write by hand,

    {"brokers": {2: "killed", ...},                       # up, killed, paused, stopped, fenced
     "partitions": {"orders-0": {"leader": 1, "epoch": 3, "isr": [1, 3], "offline": False}},
     "links": [{"src", "dst", "cut", "delay_ms"}, ...],   # FaultTable.links()
     "groups": {"billing": {"generation": 4, "members": 3}},
     "active_controller": "controller-2"}

and the lines say effects, not clicks: `broker 2 killed`, `orders-0: leader 2 → 1 (epoch 3)`,
`orders-0: ISR [2, 1, 3] → [1, 3]`, `orders-1: OFFLINE (no live replica in the ISR)`,
`cut broker-1 ↔ broker-2`, `group billing: generation 4, 3 members`.
`observe(...)` builds a moment from a ClusterProbe reading and metrics rows.
"""

from __future__ import annotations

from typing import Any

from kafkalab.metrics import as_rows

from .base import current_leaders
from .network import isolated_nodes
from .timelines import member_count

DEAD = frozenset({"killed", "stopped"})  # a paused broker still holds its data: not dead
BROKER_VERBS = {
    ("up", "killed"): "killed", ("fenced", "killed"): "killed", ("paused", "killed"): "killed",
    ("up", "paused"): "paused", ("paused", "up"): "resumed", ("up", "stopped"): "stopped",
    ("fenced", "stopped"): "stopped", ("up", "fenced"): "fenced by the controller",
    ("paused", "fenced"): "fenced by the controller", ("fenced", "up"): "unfenced",
    ("killed", "up"): "restarted", ("stopped", "up"): "restarted",
    ("killed", "fenced"): "restarted (still fenced)", ("stopped", "fenced"): "restarted (still fenced)",
    ("paused", "stopped"): "stopped", ("fenced", "paused"): "paused",
}


def _broker_lines(before: dict[int, str], after: dict[int, str]) -> list[str]:
    lines = []
    for broker in sorted(after):
        old, new = before.get(broker), after[broker]
        if old is None or old == new:
            continue
        lines.append(f"broker {broker} {BROKER_VERBS.get((old, new), new)}")
    return lines


def _partition_key(name: str) -> tuple[str, int]:
    topic, _, partition = name.rpartition("-")
    return topic, int(partition) if partition.isdigit() else -1


def _partition_lines(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for name in sorted(after, key=_partition_key):
        old, new = before.get(name), after[name]
        if old is None:
            continue
        if new.get("offline"):
            if not old.get("offline"):
                lines.append(f"{name}: OFFLINE (no live replica in the ISR)")
            continue
        if new.get("leader") is None:
            continue  # an election under way: the next moment names the new leader
        if new["leader"] != old.get("leader") or (old.get("offline") and new["epoch"] != old["epoch"]):
            was = old.get("leader") if not old.get("offline") and old.get("leader") is not None else "none"
            lines.append(f"{name}: leader {was} → {new['leader']} (epoch {new['epoch']})")
        if set(new.get("isr") or []) != set(old.get("isr") or []) and old.get("isr") is not None:
            lines.append(f"{name}: ISR {list(old['isr'])} → {list(new['isr'])}")
    return lines


def _cuts(links: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(link["src"], link["dst"]) for link in links if link.get("cut")}


def _delays(links: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    return {(link["src"], link["dst"]): int(link["delay_ms"]) for link in links
            if link.get("delay_ms")}


def _link_lines(before: list[dict[str, Any]], after: list[dict[str, Any]],
                nodes: list[str]) -> list[str]:
    old_cuts, new_cuts = _cuts(before), _cuts(after)
    old_delays, new_delays = _delays(before), _delays(after)
    if (old_cuts or old_delays) and not (new_cuts or new_delays):
        return ["network healed: every link restored"]
    lines = []
    names = sorted(set(nodes) | {n for link in after for n in (link["src"], link["dst"])})
    newly_isolated = isolated_nodes(names, after) - isolated_nodes(names, before)
    for node in sorted(newly_isolated):
        lines.append(f"{node} isolated (cut from every other node)")
    added = {p for p in new_cuts - old_cuts if not set(p) & newly_isolated}
    done: set[tuple[str, str]] = set()
    for a, b in sorted(added):
        if (a, b) in done:
            continue
        if (b, a) in new_cuts:
            x, y = sorted((a, b))
            lines.append(f"cut {x} ↔ {y}")
            done |= {(a, b), (b, a)}
        else:
            lines.append(f"cut {a} → {b} (one way: {b} no longer hears {a})")
            done.add((a, b))
    restored = old_cuts - new_cuts
    seen: set[tuple[str, str]] = set()
    for a, b in sorted(restored):
        pair = tuple(sorted((a, b)))
        if pair not in seen:
            seen.add(pair)
            lines.append(f"restored {pair[0]} ↔ {pair[1]}")
    shown: set[tuple[str, str]] = set()
    for (a, b), ms in sorted(new_delays.items()):
        if old_delays.get((a, b)) == ms or tuple(sorted((a, b))) in shown:
            continue
        shown.add(tuple(sorted((a, b))))
        arrow = "↔" if new_delays.get((b, a)) == ms else "→"
        lines.append(f"delay {a} {arrow} {b}: {ms} ms")
    return lines


def _group_lines(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for group in sorted(after):
        old, new = before.get(group), after[group]
        if old is not None and new["generation"] == old["generation"]:
            continue
        n = new["members"]
        lines.append(f"group {group}: generation {new['generation']}, "
                     f"{n} member{'s' if n != 1 else ''}")
    return lines


def story_lines(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What happened between two moments, in plain words (none for the first moment)."""
    if before is None:
        return []
    lines = []
    if after.get("closed") and not before.get("closed"):
        return ["cluster closed"]
    old_active, new_active = before.get("active_controller"), after.get("active_controller")
    if new_active != old_active and new_active is not None:
        lines.append(f"{new_active} is the active controller")
    lines += _broker_lines(before.get("brokers", {}), after.get("brokers", {}))
    lines += _link_lines(before.get("links", []), after.get("links", []), after.get("nodes", []))
    lines += _partition_lines(before.get("partitions", {}), after.get("partitions", {}))
    lines += _group_lines(before.get("groups", {}), after.get("groups", {}))
    return lines


def partition_moments(latest: Any, brokers: dict[int, str],
                      before: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each partition's leader, epoch and ISR from the newest-epoch leader's report.

    A leader whose broker is dead no longer leads; if no replica in its ISR is alive the
    partition is OFFLINE, otherwise the election is under way and the last known state holds.
    """
    out: dict[str, Any] = {}
    latest = [r for r in as_rows(latest) if not str(r.get("topic")).startswith("__")]
    for row in current_leaders(latest):
        name = f"{row['topic']}-{int(row['partition'])}"
        isr = [int(b) for b in (row.get("isr") if isinstance(row.get("isr"), list) else [])]
        leader = int(row["broker"])
        epoch = int(row["leader_epoch"])
        alive = [b for b in isr if brokers.get(b, "up") not in DEAD]
        if brokers.get(leader, "up") not in DEAD:
            out[name] = {"leader": leader, "epoch": epoch, "isr": isr, "offline": False}
        elif not alive:
            out[name] = {"leader": None, "epoch": epoch, "isr": isr, "offline": True}
        elif before is not None and name in before:
            out[name] = before[name]
        else:
            out[name] = {"leader": leader, "epoch": epoch, "isr": isr, "offline": False}
    return out


def group_moments(groups: Any) -> dict[str, Any]:
    newest: dict[str, dict[str, Any]] = {}
    for row in sorted(as_rows(groups), key=lambda r: r["time"]):
        newest.pop(str(row.get("group")), None)  # the newest row's place, as drop_duplicates
        newest[str(row.get("group"))] = row
    return {group: {"generation": int(r["generation"]), "members": member_count(r.get("members"))}
            for group, r in newest.items() if r.get("generation") is not None}


def observe(probe_state: dict[str, Any], latest: Any, groups: Any,
            before: dict[str, Any] | None = None) -> dict[str, Any]:
    """A moment from a ClusterProbe reading, the latest replica rows and the group rows
    (plain dicts, or frames)."""
    brokers = dict(probe_state.get("brokers", {}))
    return {
        "closed": bool(probe_state.get("closed")),
        "brokers": brokers,
        "nodes": list(probe_state.get("nodes", [])),
        "links": list(probe_state.get("links", [])),
        "active_controller": probe_state.get("active_controller"),
        "partitions": partition_moments(latest, brokers,
                                        before.get("partitions") if before else None),
        "groups": group_moments(groups),
    }


class StoryFeed:
    """Accumulates story lines, newest first: `update(moment, time)` returns the new ones."""

    def __init__(self, max_lines: int = 200) -> None:
        self.max_lines = max_lines
        self.lines: list[tuple[float, str]] = []  # newest first
        self.moment: dict[str, Any] | None = None

    def update(self, moment: dict[str, Any], t: float) -> list[str]:
        new = story_lines(self.moment, moment)
        self.moment = moment
        for line in new:
            self.lines.insert(0, (t, line))
        del self.lines[self.max_lines:]
        return new
