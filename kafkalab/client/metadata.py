"""The client's view of the cluster: leaders and partition counts from Metadata responses. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kafkalab.protocol.errors import ErrorCode, KafkaError


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    id: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isrs: tuple[int, ...]
    error: Any = None


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    topic: str
    partitions: dict[int, PartitionMetadata]
    error: Any = None


@dataclass(frozen=True, slots=True)
class BrokerMetadata:
    id: int
    host: str
    port: int


@dataclass
class ClusterMetadata:
    """What list_topics() returns, shaped like confluent-kafka's ClusterMetadata."""

    cluster_id: str | None = None
    controller_id: int = -1
    brokers: dict[int, BrokerMetadata] = field(default_factory=dict)
    topics: dict[str, TopicMetadata] = field(default_factory=dict)
    orig_broker_id: int = -1


class MetadataCache:
    """Latest metadata per topic; `leader_for` is what the accumulator and fetcher ask."""

    def __init__(self) -> None:
        self.brokers: dict[int, BrokerMetadata] = {}
        self.topics: dict[str, TopicMetadata] = {}
        self.cluster_id: str | None = None
        self.controller_id = -1
        self.updated_at = float("-inf")

    def update(self, results: dict[str, Any], now: float) -> None:
        """Apply metadata_results(response). Topics in the response replace what we had."""
        self.brokers = {n: BrokerMetadata(n, h, p) for n, (h, p) in results["brokers"].items()}
        self.cluster_id = results["cluster_id"]
        self.controller_id = results["controller_id"]
        for name, t in results["topics"].items():
            parts = {
                i: PartitionMetadata(
                    i, p["leader_id"], p["leader_epoch"], tuple(p["replica_nodes"]),
                    tuple(p["isr_nodes"]),
                    KafkaError(p["error_code"]) if p["error_code"] else None,
                )
                for i, p in t["partitions"].items()
            }
            err = KafkaError(t["error_code"]) if t["error_code"] else None
            self.topics[name] = TopicMetadata(name, parts, err)
        self.updated_at = now

    def leader_for(self, topic: str, partition: int) -> int | None:
        t = self.topics.get(topic)
        if t is None:
            return None
        p = t.partitions.get(partition)
        if p is None or p.leader < 0:
            return None
        return p.leader

    def leader_epoch(self, topic: str, partition: int) -> int:
        t = self.topics.get(topic)
        p = t.partitions.get(partition) if t else None
        return p.leader_epoch if p else -1

    def partition_info(self, topic: str) -> tuple[int, tuple[int, ...]] | None:
        """(partition count, partitions with a leader) or None if the topic is not known."""
        t = self.topics.get(topic)
        if t is None or not t.partitions:
            return None
        available = tuple(sorted(i for i, p in t.partitions.items() if p.leader >= 0))
        return len(t.partitions), available

    def topic_error(self, topic: str) -> Any:
        t = self.topics.get(topic)
        return t.error if t else None

    def invalidate(self, topic: str) -> None:
        self.topics.pop(topic, None)

    def snapshot(self, topics: list[str] | None = None) -> ClusterMetadata:
        chosen = self.topics if topics is None else {t: self.topics[t] for t in topics if t in self.topics}
        return ClusterMetadata(self.cluster_id, self.controller_id, dict(self.brokers), dict(chosen))


METADATA_ERRORS = frozenset({
    ErrorCode.not_leader_or_follower,
    ErrorCode.fenced_leader_epoch,
    ErrorCode.unknown_leader_epoch,
    ErrorCode.unknown_topic_or_partition,
    ErrorCode.leader_not_available,
    ErrorCode.not_enough_replicas,
    ErrorCode.kafka_storage_error,
})
