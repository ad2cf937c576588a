"""Partition assignors: who in a consumer group reads which partition.

Pure functions a learner can read and replace. The group leader (a consumer, not the broker)
runs one after every JoinGroup round: it gets each member's Subscription and the partition
count of every topic, and returns each member's list of (topic, partition).

    range               per topic, consecutive blocks; the first members get one more
    roundrobin          all partitions of all topics dealt out in turn
    sticky              balanced, and keeps every partition where it already is when it can
    cooperative-sticky  sticky, but a partition that moves is only *revoked* in this round;
                        its new owner gets it in the follow-up round (incremental rebalancing)

A Python callable `fn(partitions_per_topic, subscriptions) -> {member: [(topic, p), ...]}`
works too (partition.assignment.strategy=[fn]); give it a `name` attribute to name its
protocol and `rebalance_protocol = "cooperative"` if it only moves revoked partitions.

Subscriptions and assignments travel as Kafka's consumer protocol bytes (an int16 version,
then ConsumerProtocolSubscription / ConsumerProtocolAssignment), so Kafka clients can join;
that codec is wire format and lives in kafkalab.protocol.consumer_protocol (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The bytes are wire format (the broker reads them too): kafkalab.protocol.consumer_protocol.
from kafkalab.protocol.consumer_protocol import (
    TP,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)

__all__ = [
    "ASSIGNORS",
    "COOPERATIVE",
    "EAGER",
    "TP",
    "Assignment",
    "Assignor",
    "Subscription",
    "assignor",
    "check_assignment",
    "cooperative_sticky_assign",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
    "protocol_name",
    "range_assign",
    "rebalance_protocol",
    "roundrobin_assign",
    "sticky_assign",
]

Assignment = dict[str, list[TP]]
Assignor = Callable[[Mapping[str, int], Mapping[str, "Subscription"]], Assignment]

EAGER, COOPERATIVE = "eager", "cooperative"


# ---- the assignors ----------------------------------------------------------------------

def _members_of(topic: str, subscriptions: Mapping[str, Subscription]) -> list[str]:
    return sorted(m for m, s in subscriptions.items() if topic in s.topics)


def range_assign(partitions_per_topic: Mapping[str, int],
                 subscriptions: Mapping[str, Subscription]) -> Assignment:
    """Per topic: n partitions over k subscribers in blocks; the first n % k get one more."""
    out: Assignment = {m: [] for m in subscriptions}
    for topic in sorted(partitions_per_topic):
        members = _members_of(topic, subscriptions)
        if not members:
            continue
        n = partitions_per_topic[topic]
        per, extra = divmod(n, len(members))
        start = 0
        for i, m in enumerate(members):
            count = per + (1 if i < extra else 0)
            out[m].extend((topic, p) for p in range(start, start + count))
            start += count
    return out


def roundrobin_assign(partitions_per_topic: Mapping[str, int],
                      subscriptions: Mapping[str, Subscription]) -> Assignment:
    """Every partition of every topic, sorted, dealt to the members in turn (skipping a
    member not subscribed to that partition's topic)."""
    out: Assignment = {m: [] for m in subscriptions}
    members = sorted(subscriptions)
    if not members:
        return out
    turn = 0
    for topic in sorted(partitions_per_topic):
        for p in range(partitions_per_topic[topic]):
            for _ in members:
                m = members[turn % len(members)]
                turn += 1
                if topic in subscriptions[m].topics:
                    out[m].append((topic, p))
                    break
    return out


def _valid_owned(partitions_per_topic: Mapping[str, int],
                 subscriptions: Mapping[str, Subscription]) -> Assignment:
    """What each member owns and may keep: the partition exists, the member still subscribes
    to its topic, and no member of a newer generation claims it too."""
    claims: dict[TP, tuple[int, str]] = {}
    for m in sorted(subscriptions):
        s = subscriptions[m]
        for tp in s.owned_partitions:
            if tp[0] not in s.topics or tp[1] >= partitions_per_topic.get(tp[0], 0):
                continue
            best = claims.get(tp)
            if best is None or s.generation > best[0]:
                claims[tp] = (s.generation, m)
    owned: Assignment = {m: [] for m in subscriptions}
    for tp, (_, m) in sorted(claims.items()):
        owned[m].append(tp)
    return owned


def sticky_assign(partitions_per_topic: Mapping[str, int],
                  subscriptions: Mapping[str, Subscription]) -> Assignment:
    """Balanced (member counts differ by at most one when all subscribe alike) while moving
    as few partitions as possible: each member keeps up to its quota of what it owns; the
    rest goes, in order, to the least-loaded member subscribed to the topic."""
    members = sorted(subscriptions)
    out: Assignment = {m: [] for m in members}
    if not members:
        return out
    all_tps = [(t, p) for t in sorted(partitions_per_topic) for p in range(partitions_per_topic[t])
               if any(t in subscriptions[m].topics for m in members)]
    base, extra = divmod(len(all_tps), len(members))
    owned = _valid_owned(partitions_per_topic, subscriptions)
    # Who may keep base+1: the members that already own the most (fewest moves), by id on ties.
    by_owned = sorted(members, key=lambda m: (-len(owned[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_owned)}
    for m in members:
        out[m] = sorted(owned[m])[:quota[m]]
    taken = {tp for tps in out.values() for tp in tps}
    for tp in all_tps:
        if tp in taken:
            continue
        eligible = [m for m in members if tp[0] in subscriptions[m].topics]
        under = [m for m in eligible if len(out[m]) < quota[m]] or eligible
        m = min(under, key=lambda m: (len(out[m]), m))
        out[m].append(tp)
    return {m: sorted(tps) for m, tps in out.items()}


def cooperative_sticky_assign(partitions_per_topic: Mapping[str, int],
                              subscriptions: Mapping[str, Subscription]) -> Assignment:
    """The sticky target, minus every partition still owned by another member: that owner
    is told to give it up (it is missing from the owner's new assignment) and rejoins; the
    next round hands it to its new member. No partition is ever owned twice."""
    target = sticky_assign(partitions_per_topic, subscriptions)
    owner = {tp: m for m, tps in _valid_owned(partitions_per_topic, subscriptions).items() for tp in tps}
    return {m: [tp for tp in tps if owner.get(tp, m) == m] for m, tps in target.items()}


ASSIGNORS: dict[str, Assignor] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
    "cooperative-sticky": cooperative_sticky_assign,
}


def protocol_name(strategy: str | Callable[..., Any]) -> str:
    if isinstance(strategy, str):
        if strategy not in ASSIGNORS:
            raise ValueError(f"unknown partition.assignment.strategy {strategy!r}; use one of "
                             f"{', '.join(ASSIGNORS)} or a callable")
        return strategy
    return str(getattr(strategy, "name", None) or getattr(strategy, "__name__", "custom"))


def rebalance_protocol(strategy: str | Callable[..., Any]) -> str:
    """EAGER (revoke everything before joining) or COOPERATIVE (revoke only what moves)."""
    if isinstance(strategy, str):
        return COOPERATIVE if strategy == "cooperative-sticky" else EAGER
    return str(getattr(strategy, "rebalance_protocol", EAGER))


def assignor(strategy: str | Callable[..., Any]) -> Assignor:
    return ASSIGNORS[protocol_name(strategy)] if isinstance(strategy, str) else strategy  # type: ignore[return-value]


def check_assignment(assignment: Mapping[str, Sequence[TP]], partitions_per_topic: Mapping[str, int],
                     subscriptions: Mapping[str, Subscription]) -> None:
    """Raise ValueError if a (custom) assignor gave a partition twice, to a member not
    subscribed to its topic, or one that does not exist."""
    seen: dict[TP, str] = {}
    for m, tps in assignment.items():
        if m not in subscriptions:
            raise ValueError(f"assignor returned unknown member {m!r}")
        for tp in tps:
            if tp[0] not in subscriptions[m].topics or not 0 <= tp[1] < partitions_per_topic.get(tp[0], 0):
                raise ValueError(f"assignor gave {tp[0]}-{tp[1]} to {m!r}, which does not subscribe to it "
                                 "or it does not exist")
            if tp in seen:
                raise ValueError(f"assignor gave {tp[0]}-{tp[1]} to both {seen[tp]!r} and {m!r}")
            seen[tp] = m
