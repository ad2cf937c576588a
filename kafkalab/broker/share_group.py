"""ShareGroupCoordinator: share groups' membership (KIP-932), as a plain class (pure).

Members heartbeat (ShareGroupHeartbeat) with their subscription; the coordinator assigns the
subscribed partitions to members with Kafka's `simple` idea: with fewer members than
partitions each partition goes to one member; with more members than partitions, members
share partitions (many consumers on one partition is what share groups are for). There is no
revocation protocol: records are acquired per fetch, so a member's assignment is replaced
outright and the group epoch counts the changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.consumer_group import Topic

TP = tuple[str, int]  # (topic id, partition)


def simple_assign(members: dict[str, set[str]], partitions: dict[str, int]) -> dict[str, set[TP]]:
    out: dict[str, set[TP]] = {m: set() for m in members}
    for t, n in sorted(partitions.items()):
        subs = sorted(m for m, s in members.items() if t in s)
        if not subs:
            continue
        if len(subs) <= n:
            for p in range(n):
                out[subs[p % len(subs)]].add((t, p))
        else:
            for i, m in enumerate(subs):
                out[m].add((t, i % n))
    return out


@dataclass
class ShareMember:
    member_id: str
    topics: list[str]
    member_epoch: int = 0
    session_deadline_ms: int = 0


@dataclass
class ShareGroup:
    group_id: str
    group_epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    assignment: dict[str, set[TP]] = field(default_factory=dict)
    topics_seen: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"


class ShareGroupCoordinator:
    def __init__(self, *, topics: Callable[[], dict[str, Topic]], owns: Callable[[str], str],
                 other_group: Callable[[str], str | None], session_timeout_ms: int = 45_000,
                 heartbeat_interval_ms: int = 5_000):
        self.topics, self.owns, self.other_group = topics, owns, other_group
        self.session_timeout_ms, self.heartbeat_interval_ms = session_timeout_ms, heartbeat_interval_ms
        self.groups: dict[str, ShareGroup] = {}

    def heartbeat(self, req: Any, now_ms: int) -> dict[str, Any]:
        group_id, member_id, epoch = str(req.group_id), str(req.member_id or ""), int(req.member_epoch)

        def error(code: ErrorCode, message: str) -> dict[str, Any]:
            return {"error_code": code, "error_message": message, "member_id": member_id or None,
                    "member_epoch": -1, "heartbeat_interval_ms": 0, "assignment": None}

        if not group_id or not member_id:
            return error(ErrorCode.invalid_request, "GroupId and MemberId (the client's UUID) are required")
        owned = self.owns(group_id)
        if owned != "yes":
            return error(ErrorCode.coordinator_load_in_progress if owned == "loading" else ErrorCode.not_coordinator,
                         "ask FindCoordinator again")
        kind = self.other_group(group_id)
        if kind is not None:
            return error(ErrorCode.group_id_not_found,
                         f"group {group_id!r} is a {kind} group; give the share group another group.id")
        g = self.groups.get(group_id)
        if epoch == -1:
            if g is None or member_id not in g.members:
                return error(ErrorCode.unknown_member_id, f"member {member_id} is not in share group {group_id}")
            del g.members[member_id]
            self._assign(g)
            return {"error_code": ErrorCode.none, "error_message": None, "member_id": member_id,
                    "member_epoch": -1, "heartbeat_interval_ms": 0, "assignment": None}
        if g is None:
            g = self.groups[group_id] = ShareGroup(group_id)
        m = g.members.get(member_id)
        if epoch == 0:
            if req.subscribed_topic_names is None:
                return error(ErrorCode.invalid_request, "a joining member names the topics it subscribes to")
            if m is None:
                m = g.members[member_id] = ShareMember(member_id, sorted(map(str, req.subscribed_topic_names)))
                self._assign(g)
        elif m is None:
            return error(ErrorCode.unknown_member_id,
                         f"member {member_id} is not in share group {group_id}; rejoin with member epoch 0")
        elif epoch > m.member_epoch:
            return error(ErrorCode.fenced_member_epoch,
                         f"member epoch {epoch} is not the current {m.member_epoch}; rejoin with epoch 0")
        m.session_deadline_ms = now_ms + self.session_timeout_ms
        if req.subscribed_topic_names is not None and sorted(map(str, req.subscribed_topic_names)) != m.topics:
            m.topics = sorted(map(str, req.subscribed_topic_names))
            self._assign(g)
        if self._partitions(g) != g.topics_seen:
            self._assign(g)
        send = m.member_epoch != g.group_epoch or epoch != m.member_epoch or epoch == 0
        m.member_epoch = g.group_epoch
        return {"error_code": ErrorCode.none, "error_message": None, "member_id": member_id,
                "member_epoch": m.member_epoch, "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "assignment": sorted(g.assignment.get(member_id, set())) if send else None}

    def _partitions(self, g: ShareGroup) -> dict[str, int]:
        names = {n for m in g.members.values() for n in m.topics}
        return {t.topic_id: t.partitions for n, t in self.topics().items() if n in names}

    def _assign(self, g: ShareGroup) -> None:
        topics = self.topics()
        g.topics_seen = self._partitions(g)
        subs = {mid: {topics[n].topic_id for n in m.topics if n in topics} for mid, m in g.members.items()}
        g.assignment = simple_assign(subs, g.topics_seen)
        g.group_epoch += 1

    def tick(self, now_ms: int) -> list[tuple[str, str]]:
        """Members silent past the session timeout leave; returns (group, member) gone."""
        gone = []
        for g in self.groups.values():
            if self.owns(g.group_id) != "yes":
                continue
            late = [mid for mid, m in g.members.items() if now_ms > m.session_deadline_ms]
            for mid in late:
                del g.members[mid]
                gone.append((g.group_id, mid))
            if late:
                self._assign(g)
        return gone

    def next_deadline(self, now_ms: int) -> int | None:
        """When tick() next drops a silent member (the first ms past its session timeout), in
        the groups this broker coordinates; None when there is none."""
        return min((m.session_deadline_ms + 1 for g in self.groups.values() if self.owns(g.group_id) == "yes"
                    for m in g.members.values()), default=None)

    def describe(self, group_id: str) -> dict[str, Any]:
        """ShareGroupDescribe's fields for one group; assignments as (topic id, partition)."""
        g = self.groups.get(group_id)
        owned = self.owns(group_id)
        if owned != "yes":
            code = ErrorCode.coordinator_load_in_progress if owned == "loading" else ErrorCode.not_coordinator
            return {"error_code": code, "error_message": None}
        if g is None:
            kind = self.other_group(group_id)
            return {"error_code": ErrorCode.group_id_not_found,
                    "error_message": f"group {group_id!r} is " + (f"a {kind} group, not a share group"
                                                                  if kind else "not a share group")}
        return {"error_code": ErrorCode.none, "error_message": None, "group_state": g.state,
                "group_epoch": g.group_epoch, "assignment_epoch": g.group_epoch, "assignor_name": "simple",
                "members": [{"member_id": mid, "member_epoch": m.member_epoch, "subscribed_topic_names": m.topics,
                             "assignment": sorted(g.assignment.get(mid, set()))}
                            for mid, m in sorted(g.members.items())]}

    def list_groups(self) -> list[tuple[str, str]]:
        return [(gid, g.state) for gid, g in sorted(self.groups.items()) if self.owns(gid) == "yes"]
