"""The broker's wiring of the KIP-848 ConsumerGroupCoordinator, next to the classic one. Thin.

It answers ConsumerGroupHeartbeat and ConsumerGroupDescribe, appends the coordinator's records
to the group's `__consumer_offsets` partition (acks=all) before answering, fences silent
members on the GroupService's timer, and tells the classic side which group ids are
consumer-protocol groups (OffsetCommit checks the member epoch; ListGroups, DescribeGroups and
JoinGroup see the group's type). Offsets themselves stay in the classic coordinator's store:
both kinds of group commit and fetch them the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.consumer_group import ConsumerGroupCoordinator, Topic
from kafkalab.broker.group_coordinator import commit_error
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import response_class, schema_module

NO_THROTTLE = datetime.timedelta(0)


class ConsumerGroupService:
    api_keys = frozenset({ApiKey.CONSUMER_GROUP_HEARTBEAT, ApiKey.CONSUMER_GROUP_DESCRIBE})

    def __init__(self, groups: Any):
        self.groups = groups  # the GroupService: __consumer_offsets ownership and appends
        cfg = groups.broker.config
        assignors = cfg.get("group.consumer.assignors", ["uniform", "range"])
        if isinstance(assignors, str):
            assignors = [a.strip() for a in assignors.split(",") if a.strip()]
        self.coordinator = ConsumerGroupCoordinator(
            topics=self._topics, owns=self._owns, classic_state=self._classic_state,
            new_member_id=lambda: str(uuid.uuid4()),
            session_timeout_ms=int(cfg.get("group.consumer.session.timeout.ms", 45_000)),
            heartbeat_interval_ms=int(cfg.get("group.consumer.heartbeat.interval.ms", 5_000)),
            assignors=tuple(assignors), publish=groups._publish_now)

    # -- what the coordinator is injected with ---------------------------------------------
    def _topics(self) -> dict[str, Topic]:
        return {name: Topic(t.topic_id, name, len(t.partitions))
                for name, t in self.groups.broker.image.topics.items()}

    def _owns(self, group_id: str) -> str:
        return self.groups._owns(self.groups.coordinator.partition_of(group_id))

    def _classic_state(self, group_id: str) -> str:
        g = self.groups.coordinator.groups.get(group_id)
        if g is None:
            return "none"
        return "active" if g.members or g.pending else "empty"

    # -- requests ----------------------------------------------------------------------------
    def handle(self, api_key: int, version: int, req: Any, reply: Any, now_ms: int) -> None:
        cls = response_class(api_key, version)
        if api_key == ApiKey.CONSUMER_GROUP_HEARTBEAT:
            resp, records = self.coordinator.heartbeat(req, now_ms)
            self._append(str(req.group_id), records, lambda code: reply(self._heartbeat_response(
                cls, resp if code == ErrorCode.none else {**resp, "error_code": commit_error(code),
                                                          "error_message": "the group's record was not written"})))
        elif api_key == ApiKey.CONSUMER_GROUP_DESCRIBE:
            reply(self._describe(req, cls))

    def _append(self, group_id: str, records: list[tuple[bytes, bytes | None]], done: Any) -> None:
        if not records:
            done(ErrorCode.none)
            return
        self.groups._append(self.groups.coordinator.partition_of(group_id), records,
                            lambda code, *_: done(code))

    def _tps(self, cls: type, name: str, tps: list[tuple[str, int]], names: dict[str, str] | None = None
             ) -> tuple[Any, ...]:
        item = getattr(schema_module(cls), name)
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)
        extra = (lambda t: {"topic_name": names.get(t, "")}) if names is not None else (lambda t: {})
        return tuple(item(topic_id=uuid.UUID(t), partitions=tuple(ps), **extra(t))
                     for t, ps in sorted(by_topic.items()))

    def _heartbeat_response(self, cls: type, r: dict[str, Any]) -> Any:
        assignment = None
        if r["assignment"] is not None:
            assignment = schema_module(cls).Assignment(topic_partitions=self._tps(cls, "TopicPartitions", r["assignment"]))
        return cls(throttle_time=NO_THROTTLE, error_code=r["error_code"], error_message=r["error_message"],
                   member_id=r["member_id"], member_epoch=r["member_epoch"],
                   heartbeat_interval=datetime.timedelta(milliseconds=r["heartbeat_interval_ms"]),
                   assignment=assignment)

    def _describe(self, req: Any, cls: type) -> Any:
        group_cls, member_cls, assign_cls = (getattr(schema_module(cls), n) for n in ("DescribedGroup", "Member", "Assignment"))
        names = {t.topic_id: name for name, t in self._topics().items()}
        out = []
        for gid in req.group_ids:
            owned = self._owns(str(gid))
            if owned != "yes":
                code = ErrorCode.coordinator_load_in_progress if owned == "loading" else ErrorCode.not_coordinator
                d: dict[str, Any] = {"error_code": code, "error_message": None}
            else:
                d = self.coordinator.describe(str(gid), names)
            out.append(group_cls(
                error_code=d["error_code"], error_message=d.get("error_message"), group_id=str(gid),
                group_state=d.get("group_state", "Dead"), group_epoch=d.get("group_epoch", -1),
                assignment_epoch=d.get("assignment_epoch", -1), assignor_name=d.get("assignor_name", ""),
                authorized_operations=-2147483648, members=tuple(
                    member_cls(member_id=m["member_id"], instance_id=m["instance_id"], rack_id=m["rack_id"],
                               member_epoch=m["member_epoch"], client_id=m["client_id"],
                               client_host=m["client_host"], subscribed_topic_names=tuple(
                                   m["subscribed_topic_names"]),
                               subscribed_topic_regex=m["subscribed_topic_regex"],
                               assignment=assign_cls(topic_partitions=self._tps(
                                   cls, "TopicPartitions", m["assignment"], names)),
                               target_assignment=assign_cls(topic_partitions=self._tps(
                                   cls, "TopicPartitions", m["target_assignment"], names)),
                               member_type=1)  # 1: a consumer-protocol member (0: classic)
                    for m in d.get("members", []))))
        return cls(throttle_time=NO_THROTTLE, groups=tuple(out))

    # -- what the classic side asks ----------------------------------------------------------
    def check_commit(self, req: Any) -> tuple[ErrorCode | None, Any]:
        """(None, req) for a classic group; else (error, None) or (ErrorCode.none, the request
        as the classic store takes a checked commit: no member, no generation)."""
        epoch = int(getattr(req, "generation_id_or_member_epoch", getattr(req, "generation_id", -1)))
        code = self.coordinator.validate_commit(str(req.group_id), str(req.member_id or ""), epoch)
        if code is None:
            return None, req
        if code != ErrorCode.none:
            return code, None
        fields = {f.name for f in dataclasses.fields(req)}
        gen = "generation_id_or_member_epoch" if "generation_id_or_member_epoch" in fields else "generation_id"
        return code, dataclasses.replace(req, member_id="", **{gen: -1})

    def busy(self, group_id: str) -> bool:
        """A consumer group with members: classic members may not join it."""
        g = self.coordinator.groups.get(group_id)
        return g is not None and bool(g.members)

    def downgrade(self, group_id: str, then: Any) -> None:
        self._append(group_id, self.coordinator.downgrade(group_id), lambda code: then())

    def tick(self, now_ms: int) -> None:
        for gid, records in self.coordinator.tick(now_ms).items():
            self._append(gid, records, lambda code: None)

    def unload_partition(self, partition: int) -> None:
        pof = self.groups.coordinator.partition_of
        self.coordinator.unload(lambda gid: pof(gid) != partition)
