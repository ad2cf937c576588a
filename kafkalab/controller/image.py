"""The metadata image: what the cluster knows about brokers, topics and partitions.

The controller writes every change as a metadata record to its `__cluster_metadata` log and
applies it here; brokers fetch the same records and apply them to their own copy, so both sides
share this one `apply`. Records are small JSON objects (readable with `kafkalab dump-log`) whose
"type" follows KRaft's record names: RegisterBroker, FenceBroker, UnfenceBroker, BrokerShutdown,
Topic, Partition, PartitionChange, RemoveTopic, TopicConfig, ProducerIds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

NO_LEADER = -1


@dataclass(slots=True)
class BrokerRegistration:
    broker_id: int
    epoch: int
    endpoint: str  # ZeroMQ endpoint of the broker's RPC server
    host: str
    port: int  # Kafka TCP listener port
    fenced: bool = True
    in_controlled_shutdown: bool = False


@dataclass(slots=True)
class PartitionRegistration:
    replicas: list[int]
    isr: list[int]
    leader: int
    leader_epoch: int
    partition_epoch: int


@dataclass(slots=True)
class TopicImage:
    name: str
    topic_id: str
    configs: dict[str, Any]  # only the overrides the user gave (Kafka's DescribeConfigs shape)
    partitions: dict[int, PartitionRegistration] = field(default_factory=dict)


@dataclass(slots=True)
class MetadataImage:
    brokers: dict[int, BrokerRegistration] = field(default_factory=dict)
    topics: dict[str, TopicImage] = field(default_factory=dict)
    next_producer_id: int = 0
    offset: int = 0  # metadata log offset of the next record to apply

    def apply(self, record: dict[str, Any], offset: int | None = None) -> None:
        kind = record["type"]
        if kind == "RegisterBroker":
            self.brokers[record["broker_id"]] = BrokerRegistration(
                record["broker_id"], record["epoch"], record["endpoint"], record["host"],
                record["port"], fenced=True,
            )
        elif kind in ("FenceBroker", "UnfenceBroker", "BrokerShutdown"):
            b = self.brokers.get(record["broker_id"])
            if b is not None:
                b.fenced = kind != "UnfenceBroker"
                b.in_controlled_shutdown = kind == "BrokerShutdown"
        elif kind == "Topic":
            self.topics[record["name"]] = TopicImage(record["name"], record["topic_id"], dict(record["configs"]))
        elif kind == "TopicConfig":
            self.topics[record["name"]].configs = dict(record["configs"])
        elif kind == "RemoveTopic":
            self.topics.pop(record["name"], None)
        elif kind == "Partition":
            self.topics[record["topic"]].partitions[record["partition"]] = PartitionRegistration(
                list(record["replicas"]), list(record["isr"]), record["leader"],
                record["leader_epoch"], record["partition_epoch"],
            )
        elif kind == "PartitionChange":
            p = self.topics[record["topic"]].partitions[record["partition"]]
            if "isr" in record:
                p.isr = list(record["isr"])
            if "leader" in record:
                p.leader = record["leader"]
                p.leader_epoch = record["leader_epoch"]
            p.partition_epoch = record["partition_epoch"]
        elif kind == "ProducerIds":
            self.next_producer_id = record["next_producer_id"]
        else:
            raise ValueError(f"unknown metadata record type {kind!r}")
        if offset is not None:
            self.offset = offset + 1

    def partition(self, topic: str, partition: int) -> PartitionRegistration | None:
        t = self.topics.get(topic)
        return None if t is None else t.partitions.get(partition)

    def live_brokers(self) -> list[int]:
        return sorted(b.broker_id for b in self.brokers.values() if not b.fenced)

    def topic_by_id(self, topic_id: str) -> TopicImage | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None


def encode_record(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a metadata record in the log: the type, then the JSON body."""
    return record["type"].encode(), json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def decode_record(value: bytes) -> dict[str, Any]:
    return json.loads(value)
