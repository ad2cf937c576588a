"""DeleteGroups and OffsetDelete: the group coordinator forgets a group, or some of its offsets.

Kafka's rules: only an empty group (no members) can be deleted; a group's offsets for a topic
can be deleted only when no member is consuming that topic (GROUP_SUBSCRIBED_TO_TOPIC). Either
way the coordinator writes tombstones to __consumer_offsets (acks=all) and forgets the state
once they are written, so a new coordinator replaying the log forgets it too. Pure functions
over a GroupCoordinator: requests in, the coordinator's `append` out, answers by callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.group_coordinator import (
    DEAD,
    EMPTY,
    GroupCoordinator,
    commit_error,
    group_metadata_key,
    offset_commit_key,
)
from kafkalab.protocol.consumer_protocol import decode_subscription

TP = tuple[str, int]


def delete_group(coord: GroupCoordinator, group_id: str, reply: Callable[[ErrorCode], None]) -> None:
    err = coord._check_owner(group_id)
    g = coord.groups.get(group_id)
    if err == ErrorCode.none and (g is None or g.state == DEAD):
        err = ErrorCode.group_id_not_found
    if err == ErrorCode.none and (g.members or g.state != EMPTY):
        err = ErrorCode.non_empty_group
    if err != ErrorCode.none:
        reply(err)
        return
    records = [(offset_commit_key(group_id, t, p), None) for t, p in sorted(g.offsets)]
    records.append((group_metadata_key(group_id), None))

    def written(code: ErrorCode, *_: Any) -> None:
        if code == ErrorCode.none and coord.groups.get(group_id) is g:
            g.state = DEAD
            del coord.groups[group_id]
            coord.publish("group", {"time": 0, "group": group_id, "state": DEAD, "generation": g.generation,
                                    "members": 0, "protocol": "", "assignment": {}})
        reply(commit_error(code))

    coord.append(coord.partition_of(group_id), records, written)


def subscribed_topics(coord: GroupCoordinator, group_id: str) -> set[str]:
    """The topics the group's members subscribe to (consumer protocol only)."""
    g = coord.groups.get(group_id)
    if g is None or g.protocol_type != "consumer":
        return set()
    topics: set[str] = set()
    for m in g.members.values():
        for _name, metadata in m.protocols:
            try:
                topics |= set(decode_subscription(metadata).topics)
            except Exception:  # noqa: BLE001 - a non-Kafka payload subscribes to nothing we know
                pass
    return topics


def delete_offsets(coord: GroupCoordinator, group_id: str, tps: list[TP],
                   reply: Callable[[ErrorCode, dict[TP, ErrorCode]], None]) -> None:
    """reply(group error, {partition: error})."""
    err = coord._check_owner(group_id)
    g = coord.groups.get(group_id)
    if err == ErrorCode.none and (g is None or g.state == DEAD):
        err = ErrorCode.group_id_not_found
    if err != ErrorCode.none:
        reply(err, {})
        return
    busy = subscribed_topics(coord, group_id) if g.members else set()
    results = {tp: ErrorCode.group_subscribed_to_topic if tp[0] in busy else ErrorCode.none for tp in tps}
    doomed = [tp for tp, code in results.items() if code == ErrorCode.none and tp in g.offsets]
    if not doomed:
        reply(ErrorCode.none, results)
        return

    def written(code: ErrorCode, *_: Any) -> None:
        if code == ErrorCode.none:
            for tp in doomed:
                g.offsets.pop(tp, None)
                g.offset_log_offsets.pop(tp, None)
            reply(ErrorCode.none, results)
        else:
            reply(commit_error(code), {})

    coord.append(coord.partition_of(group_id), [(offset_commit_key(group_id, t, p), None) for t, p in doomed],
                 written)
