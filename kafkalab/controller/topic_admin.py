"""The controller's admin decisions: topic config changes, new partitions, leader elections.

As in KRaft, the controller decides and writes metadata records (ConfigRecord, PartitionRecord,
PartitionChangeRecord); brokers apply them when they fetch the metadata log. Pure: functions of a
Controller that answer with error codes and commit records through it. The `*_response`
functions translate Kafka's request messages (AlterConfigs, IncrementalAlterConfigs,
CreatePartitions, ElectLeaders) to these calls and back.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.config import TOPIC_CONFIGS, config_str, nearest_key, topic_config
from kafkalab.controller.controller import Controller, Record, assign_replicas
from kafkalab.controller.requests import NO_THROTTLE
from kafkalab.errors import ConfigError
from kafkalab.metadata.image import NO_LEADER, TOPIC_RESOURCE, config_record

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3  # IncrementalAlterConfigs operations
PREFERRED, UNCLEAN = 0, 1  # ElectLeaders election types

Result = tuple[ErrorCode, str]
OK: Result = (ErrorCode.none, "")


# -- topic configs ----------------------------------------------------------------------------
def alter_topic_config(controller: Controller, topic: str, overrides: dict[str, Any],
                       validate_only: bool = False) -> Result:
    """Make `overrides` the topic's whole set of config overrides (AlterConfigs' meaning)."""
    if topic not in controller.image.topics:
        return ErrorCode.unknown_topic_or_partition, f"topic {topic!r} does not exist"
    try:
        topic_config(controller.config, overrides)
    except ConfigError as e:
        return ErrorCode.invalid_config, str(e)
    if not validate_only:
        # One ConfigRecord per key that changes; a null value removes an override (as Kafka's).
        current = controller.image.topics[topic].configs
        records: list[Record] = [config_record(topic, k, None) for k in sorted(set(current) - set(overrides))]
        records += [config_record(topic, k, v) for k, v in sorted(overrides.items())
                    if current.get(k) != config_str(v)]
        if records:
            controller.commit(records)
        controller.on_event("topic_config", {"topic": topic, "detail": _describe(overrides)})
    return OK


def incremental_overrides(controller: Controller, topic: str,
                          ops: list[tuple[str, int, str | None]]) -> tuple[Result, dict[str, Any]]:
    """The overrides after IncrementalAlterConfigs' operations (SET, DELETE, APPEND, SUBTRACT)."""
    current = dict(controller.image.topics[topic].configs)
    effective = topic_config(controller.config, current)
    for name, op, value in ops:
        d = TOPIC_CONFIGS.get(name)
        if d is None:
            return (ErrorCode.invalid_config,
                    f"unknown topic config {name!r}; did you mean {nearest_key(name, TOPIC_CONFIGS)!r}?"), current
        if op == SET:
            current[name] = value
        elif op == DELETE:
            current.pop(name, None)
        elif op in (APPEND, SUBTRACT):
            if d.type is not list:
                return (ErrorCode.invalid_config,
                        f"{'APPEND' if op == APPEND else 'SUBTRACT'} works on list configs; {name!r} is "
                        f"a {d.type.__name__}: use SET"), current
            items = list(effective[name] if name not in current else d.coerce(current[name], "topic"))
            given = [v.strip() for v in (value or "").split(",") if v.strip()]
            items = [*items, *(v for v in given if v not in items)] if op == APPEND else \
                [v for v in items if v not in given]
            current[name] = ",".join(items)
        else:
            return (ErrorCode.invalid_request, f"unknown config operation {op} for {name!r}"), current
    return OK, current


def _describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "defaults"


# -- partitions -------------------------------------------------------------------------------
def create_partitions(controller: Controller, topic: str, count: int,
                      assignments: list[list[int]] | None = None, validate_only: bool = False) -> Result:
    """Grow a topic to `count` partitions (Kafka never shrinks one: keys would move)."""
    t = controller.image.topics.get(topic)
    if t is None:
        return ErrorCode.unknown_topic_or_partition, f"topic {topic!r} does not exist"
    current = len(t.partitions)
    if count <= current:
        return ErrorCode.invalid_partitions, (
            f"topic {topic!r} has {current} partitions; the new count must be larger "
            "(a topic's partitions can be added, never removed)")
    rf = len(t.partitions[0].replicas)
    live = controller.image.live_brokers()
    if assignments:
        if len(assignments) != count - current:
            return ErrorCode.invalid_replica_assignment, (
                f"{len(assignments)} assignments given for {count - current} new partitions")
        for replicas in assignments:
            if len(replicas) != rf or len(set(replicas)) != rf or any(
                    b not in controller.image.brokers for b in replicas):
                return ErrorCode.invalid_replica_assignment, (
                    f"assignment {replicas} must name {rf} distinct registered brokers (the topic's RF)")
        new = dict(enumerate(assignments, start=current))
    else:
        if rf > len(live):
            return ErrorCode.invalid_replication_factor, (
                f"replication factor {rf} is larger than the {len(live)} available brokers")
        placed = assign_replicas(live, count, rf, controller.rng)
        new = {p: placed[p] for p in range(current, count)}
    if validate_only:
        return OK
    records: list[Record] = []
    for pid, replicas in new.items():
        isr = [b for b in replicas if controller._usable(b)]
        records.append({"type": "PartitionRecord", "topic": topic, "partition": pid, "replicas": list(replicas),
                        "isr": isr or list(replicas[:1]), "leader": isr[0] if isr else NO_LEADER,
                        "leader_epoch": 0, "partition_epoch": 0})
    controller.commit(records)
    controller.on_event("partitions_created", {"topic": topic, "detail": f"{current} → {count} partitions"})
    return OK


# -- leader elections ---------------------------------------------------------------------------
def elect_leaders(controller: Controller, election_type: int,
                  partitions: list[tuple[str, int]] | None) -> dict[tuple[str, int], Result]:
    """Kafka's ElectLeaders: PREFERRED moves leadership to the first replica when it is in the
    ISR; UNCLEAN gives a leaderless partition any live replica (losing what only the old ISR
    had). None: every partition (only those that changed are reported, as Kafka does)."""
    everything = partitions is None
    if partitions is None:
        partitions = [(t.name, p) for t in controller.image.topics.values() for p in sorted(t.partitions)]
    results: dict[tuple[str, int], Result] = {}
    records: list[Record] = []
    for topic, pid in partitions:
        p = controller.image.partition(topic, pid)
        if p is None:
            results[(topic, pid)] = (ErrorCode.unknown_topic_or_partition, f"{topic}-{pid} does not exist")
            continue
        if election_type == PREFERRED:
            preferred = p.replicas[0]
            if p.leader == preferred:
                results[(topic, pid)] = (ErrorCode.election_not_needed, f"{preferred} already leads")
                continue
            if preferred not in p.isr or not controller._usable(preferred):
                results[(topic, pid)] = (ErrorCode.preferred_leader_not_available,
                                         f"preferred replica {preferred} is not a live ISR member")
                continue
            change = controller._change(topic, pid, p, new_isr=p.isr)
            change.update({"leader": preferred, "leader_epoch": p.leader_epoch + 1, "election": "preferred"})
        elif election_type == UNCLEAN:
            if p.leader != NO_LEADER:
                results[(topic, pid)] = (ErrorCode.election_not_needed, f"{p.leader} leads")
                continue
            live = [b for b in p.replicas if controller._usable(b)]
            if not live:
                results[(topic, pid)] = (ErrorCode.eligible_leaders_not_available, "no replica is alive")
                continue
            leader = next((b for b in live if b in p.isr), live[0])
            change = controller._change(topic, pid, p, new_isr=[leader])
            change.update({"leader": leader, "leader_epoch": p.leader_epoch + 1, "election": "unclean"})
        else:
            results[(topic, pid)] = (ErrorCode.invalid_request, f"unknown election type {election_type}")
            continue
        records.append(change)
        results[(topic, pid)] = OK
    controller.commit(records)
    controller._emit_changes(records)
    if everything:
        results = {tp: r for tp, r in results.items() if r[0] == ErrorCode.none}
    return results


# -- Kafka's messages ----------------------------------------------------------------------------
def _module(resp_cls: Any) -> Any:
    import importlib
    return importlib.import_module(resp_cls.__module__)


def alter_configs_response(controller: Controller, req: Any, resp_cls: Any, incremental: bool) -> Any:
    mod = _module(resp_cls)
    out = []
    for r in req.resources:
        name = str(r.resource_name)
        if int(r.resource_type) != TOPIC_RESOURCE:
            code, msg = ErrorCode.invalid_request, (
                "only topic configs can be changed on a running lab cluster; broker configs are set "
                "when it starts: Cluster(config={...})")
        elif name not in controller.image.topics:
            code, msg = ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist"
        else:
            if incremental:
                (code, msg), overrides = incremental_overrides(
                    controller, name, [(str(c.name), int(c.config_operation), c.value) for c in r.configs])
            else:
                code, msg = OK
                overrides = {str(c.name): c.value for c in r.configs if c.value is not None}
            if code == ErrorCode.none:
                code, msg = alter_topic_config(controller, name, overrides, bool(req.validate_only))
        out.append(mod.AlterConfigsResourceResponse(error_code=code, error_message=msg or None,
                                                    resource_type=r.resource_type, resource_name=r.resource_name))
    return resp_cls(throttle_time=NO_THROTTLE, responses=tuple(out))


def create_partitions_response(controller: Controller, req: Any, resp_cls: Any) -> Any:
    mod = _module(resp_cls)
    out = []
    for t in req.topics:
        assignments = [[int(b) for b in a.broker_ids] for a in (t.assignments or ())] or None
        code, msg = create_partitions(controller, str(t.name), int(t.count), assignments, bool(req.validate_only))
        out.append(mod.CreatePartitionsTopicResult(name=t.name, error_code=code, error_message=msg or None))
    return resp_cls(throttle_time=NO_THROTTLE, results=tuple(out))


def elect_leaders_response(controller: Controller, req: Any, resp_cls: Any) -> Any:
    mod = _module(resp_cls)
    wanted = None if req.topic_partitions is None else [
        (str(t.topic), int(p)) for t in req.topic_partitions for p in t.partitions]
    results = elect_leaders(controller, int(req.election_type), wanted)
    by_topic: dict[str, list[Any]] = {}
    for (topic, pid), (code, msg) in results.items():
        by_topic.setdefault(topic, []).append(mod.PartitionResult(
            partition_id=pid, error_code=code, error_message=msg or None))
    return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, replica_election_results=tuple(
        mod.ReplicaElectionResult(topic=t, partition_result=tuple(ps)) for t, ps in by_topic.items()))
