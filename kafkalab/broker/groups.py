"""GroupService: the broker's wiring of the GroupCoordinator. Thin.

It answers FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
TxnOffsetCommit, OffsetFetch, DescribeGroups and ListGroups (kio requests in, kio responses
out), writes the coordinator's records to the replicated, compacted `__consumer_offsets` topic
through the ReplicaManager's normal produce path (acks=all), creates that topic on first use,
and, whenever the metadata image changes, loads the groups of partitions this broker has just
become leader of (replaying their log) and drops those it no longer leads. Whenever a loaded
partition's high watermark moves it follows it for the transaction markers the transaction
coordinator writes there: they commit or drop transactional offset commits. The three
coordinators' clocks (sessions, rebalances, share acquisition locks) wake the loop exactly
when their next deadline comes (next_deadline), not on a fixed tick. It also publishes "group"
and "lag" metric rows (the cluster's describe_group reads them back: kafkalab/cluster/describe.py).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import fields
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.consumer_group_service import ConsumerGroupService
from kafkalab.broker.context import BrokerContext
from kafkalab.broker.group_coordinator import OFFSETS_TOPIC, GroupCoordinator, uuid_member_id
from kafkalab.broker.internal_topic import InternalTopicService
from kafkalab.broker.share_service import ShareService
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import response_class, schema_module

log = logging.getLogger(__name__)

NO_THROTTLE = datetime.timedelta(0)
LOAD_RETRY_S = 1.0  # a partition whose replay failed is loaded again after this


def _make(cls: type, **kw: Any) -> Any:
    """A kio entity from the fields this version has (versions add and drop fields)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})


class GroupService(InternalTopicService):
    api_keys = frozenset({ApiKey.FIND_COORDINATOR, ApiKey.JOIN_GROUP, ApiKey.HEARTBEAT, ApiKey.LEAVE_GROUP, ApiKey.SYNC_GROUP,
                          ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH, ApiKey.DESCRIBE_GROUPS, ApiKey.LIST_GROUPS, ApiKey.TXN_OFFSET_COMMIT}
                         | ConsumerGroupService.api_keys | ShareService.api_keys)

    def __init__(self, broker: BrokerContext):
        cfg = broker.config
        super().__init__(broker, OFFSETS_TOPIC, int(cfg["offsets.topic.num.partitions"]))
        self.scanned: dict[int, int] = {}  # loaded partition -> next offset to follow from
        self.followed_hw: dict[int, int] = {}  # loaded partition -> high watermark last followed to
        self.coordinator = GroupCoordinator(
            num_partitions=self.num_partitions, append=self._append, owns=self._owns,
            publish=self._publish_now, append_batch=self._append_batch, producer_entry=self._producer_entry,
            new_member_id=uuid_member_id,
            initial_rebalance_delay_ms=int(cfg.get("group.initial.rebalance.delay.ms", 0)),
            min_session_timeout_ms=int(cfg.get("group.min.session.timeout.ms", 100)),
            max_session_timeout_ms=int(cfg.get("group.max.session.timeout.ms", 1_800_000)))
        self.consumer = ConsumerGroupService(self)  # KIP-848 groups, side by side with classic ones
        self.coordinator.load_other = self.consumer.coordinator.load_record
        self.share = ShareService(self)  # KIP-932 share groups: membership here, records at leaders
        broker.loop.add_due_source(self._follow_due, self._follow_all)
        broker.loop.add_due_source(self._tick_due, self._tick)

    # -- ownership and loading ---------------------------------------------------------------
    def metadata_applied(self) -> None:
        """The image changed (the broker's metadata listener calls this): load the partitions
        this broker now leads, drop those it no longer leads; the share service likewise."""
        now = self.broker.clock.wall_ms()
        for p in range(self.num_partitions):
            leads = self._leads(p)
            if leads and p not in self.loaded:
                self._load(p, now)
            elif not leads and p in self.loaded:
                self.loaded.discard(p)
                self.scanned.pop(p, None)
                self.followed_hw.pop(p, None)
                self.coordinator.unload_partition(p)
                self.consumer.unload_partition(p)
        self.share.metadata_applied()

    def _tick_due(self, now: float) -> float | None:
        """Loop time of the coordinators' next deadline (wall-clock ms, as tick() compares)."""
        wall = self.broker.clock.wall_ms()
        due = [d for d in (self.coordinator.next_deadline(wall), self.consumer.coordinator.next_deadline(wall),
                           self.share.next_deadline(wall)) if d is not None]
        # +1 ms: tick() compares whole wall-clock ms, so it never runs a hair too early.
        return now + (min(due) + 1 - wall) / 1000 if due else None

    def _tick(self) -> None:
        now = self.broker.clock.wall_ms()
        self.coordinator.tick(now)
        self.consumer.tick(now)
        self.share.tick(now)

    def _follow_due(self, now: float) -> float | None:
        """Now, when a loaded partition's high watermark moved since it was last followed."""
        rm = self.broker.rm
        for p in self.loaded:
            part = rm.partitions.get((OFFSETS_TOPIC, p))
            if part is not None and part.high_watermark != self.followed_hw.get(p):
                return now
        return None

    def _follow_all(self) -> None:
        now = self.broker.clock.wall_ms()
        for p in list(self.loaded):
            if self._leads(p):
                self._follow(p, now)

    def _follow(self, p: int, now_ms: int) -> None:
        """Replay the transactional batches and markers appended since the last look, up to
        the high watermark (markers are written with acks=all, so they count from there)."""
        part = self.broker.rm.partitions[(OFFSETS_TOPIC, p)]
        offset, hw = self.scanned.get(p, part.log_end_offset), part.high_watermark
        self.followed_hw[p] = hw  # followed once per move, even if the replay fails
        try:
            for data, pos, h in self._read_batches(p, offset, hw):
                self.coordinator.load_batch(data, pos, now_ms, txn_only=True)
                offset = h.next_offset
        except Exception:
            log.exception("broker %s: following __consumer_offsets-%d failed", self.broker.broker_id, p)
        self.scanned[p] = offset

    def _load(self, p: int, now_ms: int) -> None:
        plog = self.broker.rm.partitions[(OFFSETS_TOPIC, p)].log
        offset, count = plog.log_start_offset, 0
        try:
            for data, pos, h in self._read_batches(p, offset, plog.log_end_offset):
                self.coordinator.load_batch(data, pos, now_ms)
                count += h.last_offset_delta + 1
                offset = h.next_offset
        except Exception:
            log.exception("broker %s: loading __consumer_offsets-%d failed", self.broker.broker_id, p)
            self.broker.loop.call_later(LOAD_RETRY_S, self.metadata_applied)  # try again
            return
        self.loaded.add(p)
        self.scanned[p] = offset
        self.broker.metrics.publish("event", {"event": "group_load", "broker": self.broker.broker_id,
                                              "topic": OFFSETS_TOPIC, "partition": p,
                                              "detail": f"replayed {count} records"})

    def _append(self, p: int, records: list[tuple[bytes, bytes | None]], on_done: Any) -> None:
        self._produce_records(p, records, on_done)

    def _append_batch(self, p: int, batch: bytes, on_done: Any) -> None:
        """A TxnOffsetCommit's transactional batch, as the producer's own (acks=all)."""
        self._produce_batch(p, batch, on_done)

    def _producer_entry(self, p: int, producer_id: int) -> Any:
        part = self.broker.rm.partitions.get((OFFSETS_TOPIC, p))
        return None if part is None else part.producer_state.last_entry(producer_id)

    def _ensure_offsets_topic(self) -> bool:
        return self._ensure_internal_topic("offsets.topic.replication.factor",
                                           lambda rf: {"cleanup.policy": "compact"})

    # -- requests ----------------------------------------------------------------------------
    def handle(self, api_key: int, version: int, req: Any, reply: Any, now_ms: int) -> None:
        cls = response_class(api_key, version)
        c = self.coordinator
        if api_key in self.consumer.api_keys:
            self.consumer.handle(api_key, version, req, reply, now_ms)
        elif api_key in self.share.api_keys:
            self.share.handle(api_key, version, req, reply, now_ms)
        elif api_key == ApiKey.JOIN_GROUP and self.consumer.busy(str(req.group_id)):
            reply(self._join_response(cls, {"error_code": ErrorCode.inconsistent_group_protocol}))
        elif api_key == ApiKey.JOIN_GROUP and self.consumer.coordinator.is_consumer_group(str(req.group_id)):
            # An empty consumer group turns classic again when a classic member joins it.
            self.consumer.downgrade(str(req.group_id), lambda: c.join_group(
                req, now_ms, lambda r: reply(self._join_response(cls, r))))
        elif api_key == ApiKey.FIND_COORDINATOR:
            reply(self._find_coordinator(req, cls))
        elif api_key == ApiKey.JOIN_GROUP:
            c.join_group(req, now_ms, lambda r: reply(self._join_response(cls, r)))
        elif api_key == ApiKey.SYNC_GROUP:
            c.sync_group(req, now_ms, lambda r: reply(_make(
                cls, throttle_time=NO_THROTTLE, error_code=r["error_code"], protocol_type=r.get("protocol_type"),
                protocol_name=r.get("protocol_name"), assignment=r.get("assignment", b""))))
        elif api_key == ApiKey.HEARTBEAT:
            reply(_make(cls, throttle_time=NO_THROTTLE, error_code=c.heartbeat(req, now_ms)))
        elif api_key == ApiKey.LEAVE_GROUP:
            reply(self._leave(req, cls, now_ms))
        elif api_key == ApiKey.OFFSET_COMMIT:
            code, checked = self.consumer.check_commit(req)  # a consumer group checks member epochs
            if checked is None:
                reply(self._commit_response(cls, {(str(t.name), int(p.partition_index)): code
                                                  for t in req.topics for p in t.partitions}))
            else:
                c.commit_offsets(checked, now_ms, lambda r: reply(self._commit_response(cls, r)))
        elif api_key == ApiKey.TXN_OFFSET_COMMIT:
            c.txn_commit_offsets(req, now_ms, lambda r: reply(self._txn_commit_response(cls, r)))
        elif api_key == ApiKey.OFFSET_FETCH:
            reply(self._offset_fetch(req, cls))
        elif api_key == ApiKey.DESCRIBE_GROUPS:
            reply(self._describe(req, cls))
        elif api_key == ApiKey.LIST_GROUPS:
            states = {str(s) for s in getattr(req, "states_filter", ())}
            types = {str(t).lower() for t in getattr(req, "types_filter", ())}
            item = schema_module(cls).ListedGroup
            listed = {g: (pt, st, "classic") for g, pt, st in c.list_groups(states)}
            for g, st in self.consumer.coordinator.list_groups():  # a consumer group is listed as one
                listed.pop(g, None)
                if not states or st in states:
                    listed[g] = ("consumer", st, "consumer")
            for g, st in self.share.coordinator.list_groups():
                if not states or st in states:
                    listed[g] = ("share", st, "share")
            reply(_make(cls, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, groups=tuple(
                _make(item, group_id=g, protocol_type=pt, group_state=st, group_type=kind)
                for g, (pt, st, kind) in sorted(listed.items()) if not types or kind in types)))

    def _find_coordinator(self, req: Any, cls: type) -> Any:
        keys = [str(k) for k in req.coordinator_keys] if hasattr(req, "coordinator_keys") else [str(req.key)]
        ready = self._ensure_offsets_topic()
        item = schema_module(cls).Coordinator if hasattr(req, "coordinator_keys") else None
        out = []
        for key in keys:
            code, node, host, port = ErrorCode.coordinator_not_available, -1, "", -1
            if int(getattr(req, "key_type", 0)) != 0:
                pass  # transactional ids: the transaction coordinator's job, not served here
            elif ready:
                reg = self.broker.image.partition(OFFSETS_TOPIC, self.coordinator.partition_of(key))
                b = self.broker.image.brokers.get(reg.leader) if reg is not None else None
                if b is not None and not b.fenced:
                    code, node, host, port = ErrorCode.none, reg.leader, b.host, b.port
            out.append((key, code, node, host, port))
        if item is None:
            key, code, node, host, port = out[0]
            return _make(cls, throttle_time=NO_THROTTLE, error_code=code, error_message=None, node_id=node,
                         host=host, port=port)
        return _make(cls, throttle_time=NO_THROTTLE, coordinators=tuple(
            _make(item, key=k, node_id=n, host=h, port=p, error_code=code, error_message=None)
            for k, code, n, h, p in out))

    def _join_response(self, cls: type, r: dict[str, Any]) -> Any:
        member = schema_module(cls).JoinGroupResponseMember
        return _make(cls, throttle_time=NO_THROTTLE, error_code=r["error_code"],
                     generation_id=r.get("generation_id", -1), protocol_type=r.get("protocol_type"),
                     protocol_name=r.get("protocol_name"), leader=r.get("leader", ""), skip_assignment=False,
                     member_id=r.get("member_id", ""),
                     members=tuple(_make(member, member_id=m, group_instance_id=i, metadata=md)
                                   for m, i, md in r.get("members", [])))

    def _leave(self, req: Any, cls: type, now_ms: int) -> Any:
        if not hasattr(req, "members"):  # LeaveGroup v0-2: one member id
            code, _ = self.coordinator.leave_group(_LegacyLeave(req), now_ms)
            return _make(cls, throttle_time=NO_THROTTLE, error_code=code)
        code, results = self.coordinator.leave_group(req, now_ms)
        item = schema_module(cls).MemberResponse
        return _make(cls, throttle_time=NO_THROTTLE, error_code=code, members=tuple(
            _make(item, member_id=m, group_instance_id=i, error_code=e) for m, i, e in results))

    def _commit_response(self, cls: type, r: dict[tuple[str, int], ErrorCode]) -> Any:
        topic_cls, part_cls = schema_module(cls).OffsetCommitResponseTopic, schema_module(cls).OffsetCommitResponsePartition
        by_topic: dict[str, list[Any]] = {}
        for (t, p), code in r.items():
            by_topic.setdefault(t, []).append(_make(part_cls, partition_index=p, error_code=code))
        return _make(cls, throttle_time=NO_THROTTLE, topics=tuple(
            _make(topic_cls, name=t, partitions=tuple(ps)) for t, ps in by_topic.items()))

    def _txn_commit_response(self, cls: type, r: dict[tuple[str, int], ErrorCode]) -> Any:
        topic_cls = schema_module(cls).TxnOffsetCommitResponseTopic
        part_cls = schema_module(cls).TxnOffsetCommitResponsePartition
        by_topic: dict[str, list[Any]] = {}
        for (t, p), code in r.items():
            by_topic.setdefault(t, []).append(_make(part_cls, partition_index=p, error_code=code))
        return _make(cls, throttle_time=NO_THROTTLE, topics=tuple(
            _make(topic_cls, name=t, partitions=tuple(ps)) for t, ps in by_topic.items()))

    def _offset_fetch(self, req: Any, cls: type) -> Any:
        groups = req.groups if hasattr(req, "groups") else [req]
        stable = bool(getattr(req, "require_stable", False))
        out = []
        for g in groups:
            tps = None if g.topics is None else [(str(t.name), int(p)) for t in g.topics for p in t.partition_indexes]
            code, offsets = self.coordinator.fetch_offsets(str(g.group_id), tps)
            unstable = self.coordinator.unstable_offsets(str(g.group_id), tps) \
                if stable and code == ErrorCode.none else set()
            out.append((str(g.group_id), code, offsets, unstable))
        if not hasattr(req, "groups"):  # OffsetFetch v0-7: one group
            gid, code, offsets, unstable = out[0]
            return _make(cls, throttle_time=NO_THROTTLE, error_code=code,
                         topics=self._fetch_topics(cls, "OffsetFetchResponseTopic", "OffsetFetchResponsePartition",
                                                   offsets, unstable))
        group_cls = schema_module(cls).OffsetFetchResponseGroup
        return _make(cls, throttle_time=NO_THROTTLE, groups=tuple(
            _make(group_cls, group_id=gid, error_code=code,
                  topics=self._fetch_topics(cls, "OffsetFetchResponseTopics", "OffsetFetchResponsePartitions",
                                            offsets, unstable))
            for gid, code, offsets, unstable in out))

    def _fetch_topics(self, cls: type, topic_name: str, part_name: str, offsets: dict,
                      unstable: set[tuple[str, int]]) -> tuple:
        topic_cls, part_cls = getattr(schema_module(cls), topic_name), getattr(schema_module(cls), part_name)
        by_topic: dict[str, list[Any]] = {}
        for (t, p), (o, e, md) in sorted({**offsets, **{tp: (-1, -1, None) for tp in unstable}}.items()):
            # Kafka answers a partition with a pending transactional commit: no offset, retry.
            code = ErrorCode.unstable_offset_commit if (t, p) in unstable else ErrorCode.none
            if code != ErrorCode.none:
                o, e, md = -1, -1, None
            by_topic.setdefault(t, []).append(_make(part_cls, partition_index=p, committed_offset=o,
                                                    committed_leader_epoch=e, metadata=md, error_code=code))
        return tuple(_make(topic_cls, name=t, partitions=tuple(ps)) for t, ps in by_topic.items())

    def _describe(self, req: Any, cls: type) -> Any:
        group_cls, member_cls = schema_module(cls).DescribedGroup, schema_module(cls).DescribedGroupMember
        out = []
        for gid in req.groups:
            if self.consumer.coordinator.is_consumer_group(str(gid)):
                # As Kafka: DescribeGroups describes classic groups; ConsumerGroupDescribe the rest.
                out.append(_make(group_cls, error_code=ErrorCode.group_id_not_found, group_id=str(gid),
                                 error_message=f"Group {gid} is not a classic group.", group_state="Dead",
                                 protocol_type="", protocol_data="", members=()))
                continue
            d = self.coordinator.describe(str(gid))
            out.append(_make(group_cls, error_code=d["error_code"], group_id=d["group_id"],
                             group_state=d["group_state"], protocol_type=d["protocol_type"],
                             protocol_data=d["protocol_data"], members=tuple(
                                 _make(member_cls, member_id=m, group_instance_id=i, client_id=c, client_host="",
                                       member_metadata=md, member_assignment=a)
                                 for m, i, c, md, a in d["members"])))
        return _make(cls, throttle_time=NO_THROTTLE, groups=tuple(out))

    def close(self) -> None:
        self.share.close()

    # -- metrics -------------------------------------------------------------------------------
    def _publish_now(self, kind: str, row: dict[str, Any]) -> None:
        self.broker.metrics.publish(kind, {**row, "broker": self.broker.broker_id})

    def publish_state(self) -> None:
        """The groups' and share partitions' rows, on the broker's metrics tick."""
        now = self.broker.clock.wall_ms()
        rm = self.broker.rm
        cg = self.consumer.coordinator
        for kind, row in self.share.metric_rows(now):
            self._publish_now(kind, row)
        for gid, new in list(cg.groups.items()):  # consumer groups that have committed nothing yet
            if gid not in self.coordinator.groups and cg.is_consumer_group(gid) and cg.owns(gid) == "yes":
                self._publish_now("group", cg.group_row(new, now))
        for g in list(self.coordinator.groups.values()):
            if self._owns(self.coordinator.partition_of(g.group_id)) != "yes":
                continue
            new = cg.groups.get(g.group_id) if cg.is_consumer_group(g.group_id) else None
            row = self.coordinator.group_row(g, now) if new is None else cg.group_row(new, now)
            # The committed offsets as they are now: a deleted offset (OffsetDelete, expiry)
            # leaves this map, while the "lag" rows below are history.
            committed = {f"{topic}-{p}": offset for (topic, p), (offset, _e, _md) in sorted(g.offsets.items())}
            self._publish_now("group", {**row, "committed": committed})
            for (topic, p), (offset, _e, _md) in sorted(g.offsets.items()):
                part = rm.partitions.get((topic, p))
                # Lag against the high watermark (what a consumer can read) of the replica
                # this broker hosts; None when it hosts none of that partition.
                end = part.high_watermark if part is not None else None
                self._publish_now("lag", {"group": g.group_id, "topic": topic, "partition": p,
                                          "committed_offset": offset, "log_end_offset": end,
                                          "lag": None if end is None else max(0, end - offset)})


class _LegacyLeave:
    def __init__(self, req: Any):
        self.group_id = req.group_id
        self.members = [type("M", (), {"member_id": req.member_id, "group_instance_id": None})()]


