"""The controller's logic: broker membership, topic creation, leader election and ISR changes.

Pure: every method takes the current time (ms) and returns what to answer; every state change
is a metadata record handed to `commit`, which the process persists to `__cluster_metadata`
and then applies to the image (tests pass a commit that only applies). The controller never
acts on state it has not committed, so a restarted controller that replays its log is the same
controller.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.config import TOPIC_CONFIGS, check_topic_segment_bytes, resolve, topic_config
from kafkalab.errors import ConfigError
from kafkalab.metadata.image import (
    FENCE,
    IN_CONTROLLED_SHUTDOWN,
    NO_LEADER,
    UNFENCE,
    MetadataImage,
    PartitionRegistration,
    config_record,
)

Record = dict[str, Any]

# Internal topics are created by brokers on first use and hidden from nothing: learners see them.
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")
PRODUCER_ID_BLOCK = 1000


@dataclass(slots=True)
class HeartbeatResult:
    error: ErrorCode
    is_caught_up: bool
    is_fenced: bool
    should_shut_down: bool


class Controller:
    def __init__(
        self,
        image: MetadataImage,
        commit: Callable[[list[Record]], None],
        config: dict[str, Any],
        *,
        rng: random.Random | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        self.image = image
        self._commit = commit
        self.config = config
        self.rng = rng or random.Random(0)
        self.on_event = on_event or (lambda event, detail: None)
        # Liveness is soft state: a restarted controller gives every broker a fresh session.
        self.last_heartbeat_ms: dict[int, int] = {}
        self.registration_offset: dict[int, int] = {}

    # -- plumbing -------------------------------------------------------------------------
    def commit(self, records: list[Record]) -> None:
        if records:
            self._commit(records)

    @property
    def session_timeout_ms(self) -> int:
        return self.config["broker.session.timeout.ms"]

    def topic_configs(self, topic: str) -> dict[str, Any]:
        return topic_config(self.config, self.image.topics[topic].configs)

    # -- brokers ---------------------------------------------------------------------------
    def register_broker(self, broker_id: int, endpoint: str, host: str, port: int, now_ms: int) -> int:
        """A broker (re)joins: new epoch, fenced until it has caught up with the metadata."""
        old = self.image.brokers.get(broker_id)
        if old is not None and not old.fenced:
            # Restarted before its session expired: what it led and its place in the ISRs
            # belong to the old process, whose unflushed tail may be gone. Move them away first,
            # as Kafka does for a broker coming back from an unclean shutdown; left alone, it
            # would lead again in the same epoch and its followers would truncate to its log.
            self.fence_broker(broker_id, reason="registered again (a new process)")
        epoch = self.image.offset  # like KRaft, the broker epoch is the registration's offset
        self.commit([{"type": "RegisterBrokerRecord", "broker_id": broker_id, "broker_epoch": epoch,
                      "endpoint": endpoint, "host": host, "port": port}])
        self.registration_offset[broker_id] = self.image.offset
        self.last_heartbeat_ms[broker_id] = now_ms
        return epoch

    def heartbeat(self, broker_id: int, epoch: int, metadata_offset: int, want_shut_down: bool,
                  now_ms: int) -> HeartbeatResult:
        reg = self.image.brokers.get(broker_id)
        if reg is None or reg.epoch != epoch:
            return HeartbeatResult(ErrorCode.stale_broker_epoch, False, True, False)
        self.last_heartbeat_ms[broker_id] = now_ms
        caught_up = metadata_offset >= self.registration_offset.get(broker_id, 0)
        if want_shut_down:
            if not reg.in_controlled_shutdown:
                self._controlled_shutdown(broker_id)
            still_leads = any(
                p.leader == broker_id for t in self.image.topics.values() for p in t.partitions.values()
            )
            return HeartbeatResult(ErrorCode.none, caught_up, True, not still_leads)
        fenced = reg.fenced
        if fenced and caught_up:
            self.commit([{"type": "BrokerRegistrationChangeRecord", "broker_id": broker_id,
                          "broker_epoch": epoch, "fenced": UNFENCE}])
            self.on_event("broker_unfenced", {"broker": broker_id})
            self._elect_offline_partitions()
            fenced = False  # the answer tells the state this heartbeat led to, as Kafka's does
        return HeartbeatResult(ErrorCode.none, caught_up, fenced, False)

    def tick(self, now_ms: int) -> None:
        """Fence every broker whose session expired, then re-elect what it led."""
        for broker_id, reg in sorted(self.image.brokers.items()):
            last = self.last_heartbeat_ms.get(broker_id)
            if last is None:
                # Known from the log but not heard from since this controller started.
                self.last_heartbeat_ms[broker_id] = now_ms
                continue
            if not reg.fenced and now_ms - last > self.session_timeout_ms:
                self.fence_broker(broker_id, reason="session timed out")

    def next_tick_ms(self) -> int | None:
        """When tick() next has something to do: the earliest unfenced broker's session end,
        or at once for a broker not heard from since this controller started."""
        due = []
        for broker_id, reg in self.image.brokers.items():
            last = self.last_heartbeat_ms.get(broker_id)
            if last is None:
                return 0
            if not reg.fenced:
                due.append(last + self.session_timeout_ms + 1)
        return min(due) if due else None

    def fence_broker(self, broker_id: int, reason: str) -> None:
        reg = self.image.brokers[broker_id]
        self.commit([{"type": "BrokerRegistrationChangeRecord", "broker_id": broker_id,
                      "broker_epoch": reg.epoch, "fenced": FENCE}])
        self.on_event("broker_fenced", {"broker": broker_id, "detail": reason})
        self._remove_from_isr_and_reelect(broker_id)

    def _controlled_shutdown(self, broker_id: int) -> None:
        reg = self.image.brokers[broker_id]
        # Kafka marks the broker in controlled shutdown and fences it once its leaderships have
        # moved; kafkalab does both in one record, so it leads and joins nothing from here on.
        self.commit([{"type": "BrokerRegistrationChangeRecord", "broker_id": broker_id,
                      "broker_epoch": reg.epoch, "fenced": FENCE,
                      "in_controlled_shutdown": IN_CONTROLLED_SHUTDOWN}])
        self.on_event("broker_fenced", {"broker": broker_id, "detail": "controlled shutdown"})
        self._remove_from_isr_and_reelect(broker_id)

    def _usable(self, broker_id: int) -> bool:
        reg = self.image.brokers.get(broker_id)
        return reg is not None and not reg.fenced and not reg.in_controlled_shutdown

    def _remove_from_isr_and_reelect(self, broker_id: int) -> None:
        records: list[Record] = []
        for topic in self.image.topics.values():
            for pid, p in sorted(topic.partitions.items()):
                if broker_id not in p.isr and p.leader != broker_id:
                    continue
                # KRaft keeps the last ISR member even when it is down, so that a clean
                # election is still possible when it returns.
                new_isr = [b for b in p.isr if b != broker_id] or list(p.isr)
                change = self._change(topic.name, pid, p, new_isr=new_isr)
                if p.leader == broker_id or p.leader == NO_LEADER:
                    change.update(self._election(topic.name, p, new_isr))
                records.append(change)
        self.commit(records)
        self._emit_changes(records)

    def _elect_offline_partitions(self) -> None:
        records: list[Record] = []
        for topic in self.image.topics.values():
            for pid, p in sorted(topic.partitions.items()):
                if p.leader == NO_LEADER:
                    elected = self._election(topic.name, p, p.isr)
                    if elected.get("leader", NO_LEADER) != NO_LEADER:
                        change = self._change(topic.name, pid, p, new_isr=elected.pop("isr", p.isr))
                        change.update(elected)
                        records.append(change)
        self.commit(records)
        self._emit_changes(records)

    def _election(self, topic: str, p: PartitionRegistration, isr: list[int]) -> Record:
        """Pick a leader: the first live ISR member in replica order; unclean if allowed."""
        for b in p.replicas:
            if b in isr and self._usable(b):
                return {"leader": b, "leader_epoch": p.leader_epoch + 1, "election": "clean"}
        if self.topic_configs(topic)["unclean.leader.election.enable"]:
            for b in p.replicas:
                if self._usable(b):
                    # An out-of-sync replica wins: whatever only the old ISR had is lost.
                    return {"leader": b, "leader_epoch": p.leader_epoch + 1, "isr": [b],
                            "election": "unclean"}
        return {"leader": NO_LEADER, "leader_epoch": p.leader_epoch + 1, "election": "none"}

    @staticmethod
    def _change(topic: str, pid: int, p: PartitionRegistration, new_isr: list[int]) -> Record:
        return {"type": "PartitionChangeRecord", "topic": topic, "partition": pid, "isr": list(new_isr),
                "partition_epoch": p.partition_epoch + 1}

    def _emit_changes(self, records: list[Record]) -> None:
        for r in records:
            if "leader" in r:
                self.on_event("leader_election", {
                    "topic": r["topic"], "partition": r["partition"], "leader": r["leader"],
                    "leader_epoch": r["leader_epoch"], "isr": r["isr"],
                    "detail": r.get("election", "clean")})
            else:
                self.on_event("isr_change", {"topic": r["topic"], "partition": r["partition"],
                                             "isr": r["isr"]})
        for r in records:
            r.pop("election", None)

    # -- topics ----------------------------------------------------------------------------
    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: dict[str, Any] | None = None,
                     assignments: dict[int, list[int]] | None = None) -> tuple[ErrorCode, str]:
        if not name or len(name) > 249 or any(not (c.isalnum() or c in "._-") for c in name):
            return ErrorCode.invalid_topic_exception, (
                f"topic name {name!r} is invalid: use 1-249 characters from [a-zA-Z0-9._-]")
        if name in self.image.topics:
            return ErrorCode.topic_already_exists, f"topic {name!r} already exists"
        if num_partitions == -1:
            num_partitions = self.config["num.partitions"]
        if replication_factor == -1:
            replication_factor = self.config["default.replication.factor"]
        if num_partitions < 1:
            return ErrorCode.invalid_partitions, "partitions must be at least 1"
        try:
            check_topic_segment_bytes(self.config, resolve(configs or {}, TOPIC_CONFIGS, "topic"))
        except ConfigError as e:
            return ErrorCode.invalid_config, str(e)
        live = self.image.live_brokers()
        if assignments is None:
            if replication_factor < 1 or replication_factor > len(live):
                return ErrorCode.invalid_replication_factor, (
                    f"replication factor {replication_factor} is larger than the "
                    f"{len(live)} available brokers; lower it or start more brokers")
            assignments = assign_replicas(live, num_partitions, replication_factor, self.rng)
        records: list[Record] = [{"type": "TopicRecord", "name": name,
                                  "topic_id": str(uuid.UUID(int=self.rng.getrandbits(128)))}]
        records += [config_record(name, k, v) for k, v in (configs or {}).items()]
        for pid in range(num_partitions):
            replicas = assignments[pid]
            isr = [b for b in replicas if self._usable(b)]
            leader = isr[0] if isr else NO_LEADER
            records.append({"type": "PartitionRecord", "topic": name, "partition": pid,
                            "replicas": replicas, "isr": isr or replicas[:1], "leader": leader,
                            "leader_epoch": 0, "partition_epoch": 0})
        self.commit(records)
        self.on_event("topic_created", {"topic": name, "detail": f"{num_partitions} partitions, RF {replication_factor}"})
        return ErrorCode.none, ""

    def delete_topic(self, name: str) -> ErrorCode:
        if name not in self.image.topics:
            return ErrorCode.unknown_topic_or_partition
        self.commit([{"type": "RemoveTopicRecord", "name": name}])
        return ErrorCode.none

    # -- ISR changes (AlterPartition) ------------------------------------------------------
    def alter_partition(self, broker_id: int, broker_epoch: int, topic: str, partition: int,
                        leader_epoch: int, partition_epoch: int, new_isr: list[int]) -> tuple[ErrorCode, PartitionRegistration | None]:
        reg = self.image.brokers.get(broker_id)
        if reg is None or (broker_epoch != -1 and reg.epoch != broker_epoch):
            return ErrorCode.stale_broker_epoch, None
        p = self.image.partition(topic, partition)
        if p is None:
            return ErrorCode.unknown_topic_or_partition, None
        if p.leader != broker_id:
            return ErrorCode.not_leader_or_follower, p
        if leader_epoch != p.leader_epoch:
            return ErrorCode.fenced_leader_epoch, p
        if partition_epoch != p.partition_epoch:
            return ErrorCode.invalid_update_version, p
        if broker_id not in new_isr or any(b not in p.replicas for b in new_isr):
            return ErrorCode.invalid_request, p
        # A fenced broker may not be added back to the ISR (KRaft's rule).
        added = [b for b in new_isr if b not in p.isr]
        if any(not self._usable(b) for b in added):
            return ErrorCode.ineligible_replica, p
        change = self._change(topic, partition, p, new_isr=new_isr)
        self.commit([change])
        self._emit_changes([change])
        return ErrorCode.none, self.image.partition(topic, partition)

    def elect_preferred_leaders(self) -> int:
        """Move leadership back to each partition's first replica where it is in the ISR."""
        records: list[Record] = []
        for topic in self.image.topics.values():
            for pid, p in sorted(topic.partitions.items()):
                preferred = p.replicas[0]
                if p.leader != preferred and preferred in p.isr and self._usable(preferred):
                    change = self._change(topic.name, pid, p, new_isr=p.isr)
                    change.update({"leader": preferred, "leader_epoch": p.leader_epoch + 1,
                                   "election": "preferred"})
                    records.append(change)
        self.commit(records)
        self._emit_changes(records)
        return len(records)

    def allocate_producer_ids(self) -> tuple[int, int]:
        start = self.image.next_producer_id
        self.commit([{"type": "ProducerIdsRecord", "next_producer_id": start + PRODUCER_ID_BLOCK}])
        return start, PRODUCER_ID_BLOCK


def assign_replicas(brokers: list[int], partitions: int, rf: int, rng: random.Random) -> dict[int, list[int]]:
    """Kafka's rack-unaware placement: leaders round-robin from a random start, followers
    shifted so that replicas of consecutive partitions spread over different brokers."""
    n = len(brokers)
    start = rng.randrange(n)
    shift = rng.randrange(n)
    out: dict[int, list[int]] = {}
    for p in range(partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (start + p) % n
        replicas = [brokers[first]]
        for j in range(rf - 1):
            step = 1 + (shift + j) % (n - 1) if n > 1 else 0
            replicas.append(brokers[(first + step) % n])
        out[p] = replicas
    return out
