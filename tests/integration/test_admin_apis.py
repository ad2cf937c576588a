"""Kafka's admin APIs on the Kafka listener, driven by confluent-kafka's AdminClient and
kafka-python's KafkaAdminClient, and the Cluster methods that send the same messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kafkalab import Cluster
from kafkalab import TopicPartition as LabTopicPartition
from kafkalab.cluster import wait_until
from kafkalab.protocol.errors import KafkaError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_APIS = {21: "DeleteRecords", 32: "DescribeConfigs", 33: "AlterConfigs", 35: "DescribeLogDirs",
              37: "CreatePartitions", 42: "DeleteGroups", 43: "ElectLeaders", 44: "IncrementalAlterConfigs",
              47: "OffsetDelete", 61: "DescribeProducers", 65: "DescribeTransactions", 66: "ListTransactions"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(brokers=3, config={"log.retention.hours": 48})
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def confluent_admin(cluster: Cluster) -> Iterator[Any]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})  # kept while futures resolve
    yield admin


@pytest.fixture(scope="module")
def kafka_python_admin(cluster: Cluster) -> Iterator[Any]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=10_000)
    try:
        yield admin
    finally:
        admin.close()


def _topic(cluster: Cluster, partitions: int = 2, records: int = 10) -> str:
    name = f"a-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(name, partitions=partitions, replication_factor=3)
    producer = cluster.producer({"linger.ms": 0})
    for i in range(records * partitions):
        producer.produce(name, value=b"v%d" % i, partition=i % partitions)
    assert producer.flush(10) == 0
    producer.close()
    return name


def _results(futures: dict) -> dict:
    return {k: f.result(15) for k, f in futures.items()}


def test_api_versions_advertise_the_admin_apis(kafka_python_admin: Any) -> None:
    served = {int(k) for k in kafka_python_admin.api_versions()}
    missing = {name for key, name in ADMIN_APIS.items() if key not in served}
    assert not missing


def test_describe_configs_gives_values_and_sources(cluster: Cluster, confluent_admin: Any) -> None:
    from confluent_kafka.admin import ConfigResource, ConfigSource

    name = _topic(cluster)
    cluster.alter_topic_config(name, {"segment.bytes": 1_000_000})
    configs = next(iter(_results(confluent_admin.describe_configs([ConfigResource("topic", name)])).values()))
    assert configs["segment.bytes"].value == "1000000"
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].value == str(48 * 3_600_000)    # from log.retention.hours
    assert configs["retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    broker = next(iter(_results(confluent_admin.describe_configs([ConfigResource("broker", "2")])).values()))
    assert broker["log.retention.hours"].value == "48" and broker["log.retention.hours"].is_read_only
    with pytest.raises(Exception, match="does not exist"):
        _results(confluent_admin.describe_configs([ConfigResource("topic", "no-such-topic")]))


def test_alter_configs_incremental_and_whole_reach_every_broker(cluster: Cluster, confluent_admin: Any) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    name = _topic(cluster)
    _results(confluent_admin.incremental_alter_configs([ConfigResource("topic", name, incremental_configs=[
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])]))
    want = {"retention.ms": "60000", "cleanup.policy": "delete,compact"}
    wait_until(lambda: all(cluster._topic_admin().topic_config_shown(b, name, want) for b in cluster.broker_ids), 10,
               "every broker to apply the change")
    with pytest.raises(Exception, match="did you mean 'retention.ms'"):
        _results(confluent_admin.incremental_alter_configs([ConfigResource("topic", name, incremental_configs=[
            ConfigEntry("retention.msx", "1", incremental_operation=AlterConfigOpType.SET)])]))
    # Non-incremental AlterConfigs replaces the whole set of overrides, as in Kafka.
    with pytest.warns(DeprecationWarning):  # confluent-kafka prefers the incremental API
        _results(confluent_admin.alter_configs([ConfigResource("topic", name, set_config={"segment.ms": "3600000"})]))
    want = {"segment.ms": "3600000", "retention.ms": None, "cleanup.policy": None}
    wait_until(lambda: all(cluster._topic_admin().topic_config_shown(b, name, want) for b in cluster.broker_ids), 10,
               "every broker to apply the replacement")


def test_create_partitions_adds_partitions_with_leaders(cluster: Cluster, confluent_admin: Any,
                                                        kafka_python_admin: Any) -> None:
    from confluent_kafka.admin import NewPartitions
    from kafka.admin import NewPartitions as KpNewPartitions

    name = _topic(cluster)
    _results(confluent_admin.create_partitions([NewPartitions(name, 4)]))
    wait_until(lambda: len(cluster.describe_topic(name)) == 4 and (cluster.describe_topic(name).leader > 0).all(),
               10, "4 partitions with leaders")
    kafka_python_admin.create_partitions({name: KpNewPartitions(total_count=5)})
    wait_until(lambda: len(cluster.describe_topic(name)) == 5, 10, "5 partitions")
    with pytest.raises(Exception, match="must be larger"):
        _results(confluent_admin.create_partitions([NewPartitions(name, 3)]))
    cluster.create_partitions(name, 6)
    assert len(cluster.describe_topic(name)) == 6


def test_delete_records_moves_the_log_start_offset(cluster: Cluster, confluent_admin: Any,
                                                   kafka_python_admin: Any) -> None:
    from confluent_kafka import TopicPartition
    from kafka import TopicPartition as KpTopicPartition

    name = _topic(cluster, partitions=3, records=10)
    deleted = _results(confluent_admin.delete_records([TopicPartition(name, 0, 4)]))
    assert next(iter(deleted.values())).low_watermark == 4
    got = kafka_python_admin.delete_records({KpTopicPartition(name, 1): 7})
    assert got[KpTopicPartition(name, 1)]["low_watermark"] == 7
    assert cluster.delete_records(name, {2: -1}) == {2: 10}   # -1: up to the high watermark
    reader = cluster.consumer({"auto.offset.reset": "earliest"})
    reader.assign([LabTopicPartition(name, 0, 0)])
    first = reader.consume(1, timeout=5)
    reader.close()
    assert first and first[0].offset() == 4
    with pytest.raises(KafkaError, match="OFFSET_OUT_OF_RANGE"):
        cluster.delete_records(name, {0: 11})


def test_elect_leaders_and_describe_log_dirs(cluster: Cluster, confluent_admin: Any,
                                             kafka_python_admin: Any) -> None:
    from confluent_kafka import ElectionType, TopicPartition

    name = _topic(cluster, partitions=1)
    leader = int(cluster.describe_topic(name).iloc[0].leader)
    result = confluent_admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(name, 0)]).result(15)
    assert result[TopicPartition(name, 0)] is not None    # ELECTION_NOT_NEEDED: the preferred one leads
    assert "ELECTION_NOT_NEEDED" in str(result[TopicPartition(name, 0)])
    assert int(cluster.describe_topic(name).iloc[0].leader) == leader
    dirs = kafka_python_admin.describe_log_dirs(brokers=[leader])
    sizes = {(t["name"], p["partition_index"]): p["partition_size"]
             for b in dirs for d in b["log_dirs"] for t in d["topics"] for p in t["partitions"]}
    assert dirs[0]["broker"] == leader and sizes[(name, 0)] > 0


def test_producers_and_transactions_are_described(cluster: Cluster, kafka_python_admin: Any) -> None:
    from confluent_kafka import Producer
    from kafka import TopicPartition as KpTopicPartition

    name = _topic(cluster, partitions=1, records=0)
    tid = f"tx-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": tid})
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(name, value=b"open", partition=0)
    producer.flush(15)
    try:
        states = kafka_python_admin.describe_producers([KpTopicPartition(name, 0)])
        (active,) = states[KpTopicPartition(name, 0)].active_producers
        assert active.current_transaction_start_offset == 0    # an open transaction began at offset 0
        listed = [t for per_broker in kafka_python_admin.list_transactions().values() for t in per_broker]
        assert [(t.transactional_id, t.state.value) for t in listed if t.transactional_id == tid] == [(tid, "Ongoing")]
        described = kafka_python_admin.describe_transactions([tid])[tid]
        assert described.producer_id == active.producer_id
        assert described.topic_partitions == {KpTopicPartition(name, 0)}
    finally:
        producer.abort_transaction(15)


def test_groups_and_their_offsets_are_deleted_only_when_unused(cluster: Cluster, kafka_python_admin: Any) -> None:
    from kafka import TopicPartition as KpTopicPartition
    from kafka.errors import GroupSubscribedToTopicError, NonEmptyGroupError

    name = _topic(cluster, partitions=1, records=5)
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = cluster.consumer({"group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([name])
    got: list[Any] = []
    # commit() needs consumed positions: wait for the records, not only the assignment
    wait_until(lambda: got.extend(consumer.consume(5, timeout=0.5)) or len(got) >= 5, 20, "the consumer's records")
    consumer.commit(asynchronous=False)
    assert kafka_python_admin.delete_groups([group])[group] == NonEmptyGroupError.__name__
    busy = kafka_python_admin.delete_group_offsets(group, [KpTopicPartition(name, 0)])
    assert busy[KpTopicPartition(name, 0)] is GroupSubscribedToTopicError
    consumer.close()   # leaves the group: now it is empty
    wait_until(lambda: (cluster.describe_group(group).state == "Empty").all(), 10, "the group to be empty")

    kafka_python_admin.delete_group_offsets(group, [KpTopicPartition(name, 0)])
    left = kafka_python_admin.list_group_offsets(group)   # OffsetFetch: the coordinator's word
    assert all(o.offset < 0 for tp, o in left.items() if tp == KpTopicPartition(name, 0)), left

    def offset_gone() -> bool:  # describe_group shows the coordinator's offsets as they are now
        d = cluster.describe_group(group)
        return not ((d["topic"] == name) & d["committed_offset"].notna()).any()
    wait_until(offset_gone, 10, "describe_group to drop the deleted offset")
    assert kafka_python_admin.delete_groups([group])[group] == "OK"
    assert group not in {g.group for g in kafka_python_admin.list_groups()}
