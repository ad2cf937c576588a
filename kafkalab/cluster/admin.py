"""Kafka's admin APIs on topics, configs and records: the controller decides, brokers apply;
each call returns once the brokers show the change."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from kio.schema.create_partitions.v3 import request as cp_req
from kio.schema.create_topics.v7 import request as ct_req
from kio.schema.delete_records.v2 import request as dr_req
from kio.schema.delete_topics.v6 import request as dt_req
from kio.schema.describe_configs.v4 import request as dc_req
from kio.schema.elect_leaders.v2 import request as el_req
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1 import request as iac_req

from kafkalab.broker.admin import BROKER_RESOURCE, TOPIC_CONFIG, TOPIC_RESOURCE
from kafkalab.cluster.admin_client import AdminClient
from kafkalab.cluster.events import EventLog
from kafkalab.cluster.waiting import wait_until
from kafkalab.config import TOPIC_CONFIGS, config_str, resolve
from kafkalab.controller.topic_admin import DELETE, SET
from kafkalab.errors import KafkaLabError
from kafkalab.metrics import MetricsCollector
from kafkalab.protocol.errors import KafkaError


class TopicAdmin:
    """`running_brokers()`: the brokers the cluster believes running (the ones that must show a change)."""

    def __init__(self, client: AdminClient, events: EventLog, metrics: MetricsCollector,
                 running_brokers: Callable[[], list[int]]):
        self.client, self.events, self.metrics, self.running_brokers = client, events, metrics, running_brokers
        self.topic_configs: dict[str, dict[str, Any]] = {}  # what a mirror of a topic copies

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     config: dict[str, Any] | None, timeout: float) -> None:
        resolve(config or {}, TOPIC_CONFIGS, "topic")  # a typo fails here, naming the closest key
        req = ct_req.CreateTopicsRequest(topics=(ct_req.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=replication_factor, assignments=(),
            configs=tuple(ct_req.CreatableTopicConfig(name=k, value=config_str(v))
                          for k, v in (config or {}).items())),), timeout=datetime.timedelta(seconds=timeout))
        result = self.client.call(req, timeout).topics[0]
        if result.error_code == ErrorCode.topic_already_exists and self.client.retried:
            pass  # our first attempt was committed by a controller that died before answering
        elif result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or f"cannot create topic {name!r}")
        self.topic_configs[name] = dict(config or {})
        self.events.event("topic_created", f"{name}: {partitions} partitions, RF {replication_factor}")
        wait_until(lambda: self.topic_served(name), timeout, f"leaders of topic {name!r}")

    def topic_served(self, name: str) -> bool:
        """Every partition has a leader, and every leader has learned it leads (metadata
        reaches brokers by long-poll)."""
        t = self.client.metadata([name]).topics[0]
        if t.error_code != ErrorCode.none or any(p.leader_id < 0 for p in t.partitions):
            return False
        rows = self.metrics.latest_replica_rows()
        latest = {(r.get("topic"), r.get("partition"), r.get("broker")): r for r in rows}
        for p in t.partitions:
            r = latest.get((name, int(p.partition_index), int(p.leader_id)))
            if r is None or not r.get("is_leader") or int(r.get("leader_epoch", -1)) != int(p.leader_epoch):
                return False
        return bool(rows)

    def delete_topic(self, name: str, timeout: float) -> None:
        req = dt_req.DeleteTopicsRequest(topics=(dt_req.DeleteTopicState(name=name, topic_id=None),),
                                         timeout=datetime.timedelta(seconds=timeout))
        result = self.client.call(req, timeout).responses[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, f"cannot delete topic {name!r}")

    def list_topics(self) -> list[str]:
        return sorted(str(t.name) for t in self.client.metadata().topics)

    def describe_configs(self, topic: str | None, broker: int | None) -> Any:
        """Kafka's DescribeConfigs of a topic (asked of any running broker) or of one broker."""
        if (topic is None) == (broker is None):
            raise KafkaLabError("describe_configs(topic) or describe_configs(broker=ID): name one of them")
        target = broker if broker is not None else self._any_running_broker()
        req = dc_req.DescribeConfigsRequest(resources=(dc_req.DescribeConfigsResource(
            resource_type=TOPIC_RESOURCE if topic is not None else BROKER_RESOURCE,
            resource_name=topic if topic is not None else str(broker), configuration_keys=None),),
            include_synonyms=False, include_documentation=True)
        result = self.client.broker_call(target, req).results[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or "DescribeConfigs failed")
        return result

    def _any_running_broker(self) -> int:
        running = self.running_brokers()
        if not running:
            raise KafkaLabError("no broker is running: restart one first")
        return running[0]

    def alter_topic_config(self, name: str, config: dict[str, Any], timeout: float) -> None:
        resolve({k: v for k, v in config.items() if v is not None}, TOPIC_CONFIGS, "topic")  # typos fail here
        req = iac_req.IncrementalAlterConfigsRequest(resources=(iac_req.AlterConfigsResource(
            resource_type=TOPIC_RESOURCE, resource_name=name, configs=tuple(
                iac_req.AlterableConfig(name=k, config_operation=DELETE if v is None else SET,
                                        value=None if v is None else config_str(v)) for k, v in config.items())),),
            validate_only=False)
        result = self.client.call(req, timeout).responses[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or f"cannot alter topic {name!r}")
        self.events.event("topic_config", f"{name}: " + ", ".join(f"{k}={v}" for k, v in config.items()))
        wanted = {k: None if v is None else config_str(v) for k, v in config.items()}

        def applied() -> bool:
            return all(self.topic_config_shown(b, name, wanted) for b in self.running_brokers())
        wait_until(applied, timeout, f"brokers to apply the new config of topic {name!r}")

    def topic_config_shown(self, broker_id: int, name: str, wanted: dict[str, str | None]) -> bool:
        """Whether this broker's DescribeConfigs shows these overrides (None: no override)."""
        res = self.client.broker_call(broker_id, dc_req.DescribeConfigsRequest(resources=(
            dc_req.DescribeConfigsResource(resource_type=TOPIC_RESOURCE, resource_name=name,
                                           configuration_keys=tuple(wanted)),),
            include_synonyms=False, include_documentation=False)).results[0]
        got = {c.name: (c.value, int(c.config_source)) for c in res.configs}
        return all((got.get(k, (None, 0))[1] == TOPIC_CONFIG) == (v is not None)
                   and (v is None or got[k][0] == v) for k, v in wanted.items())

    def create_partitions(self, name: str, total: int, timeout: float) -> None:
        req = cp_req.CreatePartitionsRequest(topics=(cp_req.CreatePartitionsTopic(name=name, count=total,
                                                                                   assignments=None),),
                                             timeout=datetime.timedelta(seconds=timeout), validate_only=False)
        result = self.client.call(req, timeout).results[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or f"cannot add partitions to {name!r}")
        self.events.event("partitions_created", f"{name}: {total} partitions")
        wait_until(lambda: self.topic_served(name), timeout, f"leaders of the new partitions of {name!r}")

    def delete_records(self, name: str, offsets: dict[int, int], timeout: float) -> dict[int, int]:
        md = self.client.metadata([name]).topics[0]
        if md.error_code != ErrorCode.none:
            raise KafkaError(md.error_code, f"topic {name!r} does not exist")
        leaders = {int(p.partition_index): int(p.leader_id) for p in md.partitions}
        out: dict[int, int] = {}
        for partition, offset in offsets.items():
            if partition not in leaders:
                raise KafkaLabError(f"topic {name!r} has no partition {partition} (it has {len(leaders)})")
            if leaders[partition] < 0:
                raise KafkaError(ErrorCode.leader_not_available, f"{name}-{partition} has no leader now")
            req = dr_req.DeleteRecordsRequest(topics=(dr_req.DeleteRecordsTopic(name=name, partitions=(
                dr_req.DeleteRecordsPartition(partition_index=partition, offset=offset),)),),
                timeout=datetime.timedelta(seconds=timeout))
            result = self.client.broker_call(leaders[partition], req, timeout).topics[0].partitions[0]
            if result.error_code != ErrorCode.none:
                raise KafkaError(result.error_code, f"cannot delete records of {name}-{partition} below {offset}")
            out[partition] = int(result.low_watermark)
        self.events.event("delete_records", f"{name}: " + ", ".join(f"{p} < {o}" for p, o in out.items()))
        return out

    def elect_preferred_leaders(self) -> None:
        self.client.call(el_req.ElectLeadersRequest(election_type=0, topic_partitions=None,
                                                    timeout=datetime.timedelta(seconds=5)))
