"""The metadata image: what the cluster knows about brokers, topics and partitions.

The controller writes every change as a metadata record to its `__cluster_metadata` log and
applies it here; brokers fetch the same records and apply them to their own copy, so both sides
share this one `apply`. Records are small JSON objects (readable with `kafkalab dump-log`; Kafka's
are binary) whose "type" is Kafka's record name, as written at metadata version 3.3-IV3 and later:
RegisterBrokerRecord; BrokerRegistrationChangeRecord for fencing, unfencing and controlled
shutdown (3.3-IV2 replaced FenceBrokerRecord/UnfenceBrokerRecord with its `fenced` flag);
TopicRecord, then one ConfigRecord per topic config the user set, then PartitionRecords;
PartitionChangeRecord, RemoveTopicRecord, ProducerIdsRecord.

A ConfigRecord's value is a string, as Kafka's (null removes the override); the image keeps the
strings too (Kafka's ConfigurationsImage does), and `topic_config` turns them into typed values
where a log is configured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kafkalab.config import config_str

NO_LEADER = -1
# BrokerRegistrationChangeRecord's flags (Kafka's BrokerRegistrationFencingChange and
# BrokerRegistrationInControlledShutdownChange): 0 means "no change".
FENCE, UNFENCE = 1, -1
IN_CONTROLLED_SHUTDOWN = 1
TOPIC_RESOURCE = 2  # ConfigRecord.resource_type of a topic (ConfigResource.Type.TOPIC)


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
    configs: dict[str, str]  # only the overrides the user gave, as strings (Kafka's DescribeConfigs shape)
    partitions: dict[int, PartitionRegistration] = field(default_factory=dict)


@dataclass(slots=True)
class MetadataImage:
    brokers: dict[int, BrokerRegistration] = field(default_factory=dict)
    topics: dict[str, TopicImage] = field(default_factory=dict)
    next_producer_id: int = 0
    offset: int = 0  # metadata log offset of the next record to apply

    def apply(self, record: dict[str, Any], offset: int | None = None) -> None:
        kind = record["type"]
        if kind == "RegisterBrokerRecord":
            self.brokers[record["broker_id"]] = BrokerRegistration(
                record["broker_id"], record["broker_epoch"], record["endpoint"], record["host"],
                record["port"], fenced=True,
            )
        elif kind == "BrokerRegistrationChangeRecord":
            b = self.brokers.get(record["broker_id"])
            if b is not None and b.epoch == record["broker_epoch"]:
                fenced = record.get("fenced", 0)
                if fenced:
                    b.fenced = fenced == FENCE
                    if fenced == UNFENCE:
                        b.in_controlled_shutdown = False
                if record.get("in_controlled_shutdown", 0) == IN_CONTROLLED_SHUTDOWN:
                    b.in_controlled_shutdown = True
        elif kind == "TopicRecord":
            self.topics[record["name"]] = TopicImage(record["name"], record["topic_id"], {})
        elif kind == "ConfigRecord":
            t = self.topics.get(record["resource_name"]) if record["resource_type"] == TOPIC_RESOURCE else None
            if t is not None:
                if record["value"] is None:
                    t.configs.pop(record["name"], None)
                else:  # a log written before values were strings holds typed ones
                    t.configs[record["name"]] = config_str(record["value"])
        elif kind == "RemoveTopicRecord":
            self.topics.pop(record["name"], None)
        elif kind == "PartitionRecord":
            self.topics[record["topic"]].partitions[record["partition"]] = PartitionRegistration(
                list(record["replicas"]), list(record["isr"]), record["leader"],
                record["leader_epoch"], record["partition_epoch"],
            )
        elif kind == "PartitionChangeRecord":
            p = self.topics[record["topic"]].partitions[record["partition"]]
            if "isr" in record:
                p.isr = list(record["isr"])
            if "leader" in record:
                p.leader = record["leader"]
                p.leader_epoch = record["leader_epoch"]
            p.partition_epoch = record["partition_epoch"]
        elif kind == "ProducerIdsRecord":
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


def config_record(resource_name: str, name: str, value: Any, resource_type: int = TOPIC_RESOURCE
                  ) -> dict[str, Any]:
    """A ConfigRecord setting `name` (value None: removing the override), its value a string."""
    return {"type": "ConfigRecord", "resource_type": resource_type, "resource_name": resource_name,
            "name": name, "value": config_str(value)}


def encode_record(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a metadata record in the log: the type, then the JSON body."""
    return record["type"].encode(), json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def decode_record(value: bytes) -> dict[str, Any]:
    return json.loads(value)
