"""What a new user meets in the first hour: a re-run Cluster() cell, a client of a closed cluster,
bootstrap.servers in a lab client's config, broker-level topic defaults, a missing topic."""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterator

import pytest

from kafkalab import Cluster
from kafkalab.cluster import wait_until
from kafkalab.errors import ClusterAlreadyRunningWarning, ConfigError, KafkaLabError
from kafkalab.protocol.errors import KafkaError

pytestmark = pytest.mark.integration


FIRST_CONFIG = {"log.segment.bytes": 1024, "num.partitions": 2, "log.retention.minutes": 10}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(brokers=1, config=dict(FIRST_CONFIG))
    try:
        yield c
    finally:
        c.close()


@pytest.mark.slow
def test_a_cluster_started_again_warns_and_a_different_or_named_one_does_not(cluster: Cluster) -> None:
    with pytest.warns(ClusterAlreadyRunningWarning, match=r"an identical Cluster is still running "
                                                          r"in this process: <Cluster 1 brokers.*close\(\)"):
        second = Cluster(brokers=1, config=dict(FIRST_CONFIG))   # the same cell, run again
    try:
        producer = second.producer()
    finally:
        second.close()
    with pytest.raises(KafkaLabError, match=r"closed producer \(its cluster was closed: <Cluster 1 brokers"):
        producer.produce("t", b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusterAlreadyRunningWarning)
        Cluster(brokers=1, config=dict(FIRST_CONFIG), name="east").close()
        Cluster(brokers=1).close()


def test_bootstrap_servers_of_this_cluster_is_accepted_and_another_refused(cluster: Cluster) -> None:
    cluster.producer({"bootstrap.servers": cluster.bootstrap_servers}).close()
    with pytest.raises(ConfigError, match="does not name this cluster"):
        cluster.consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"})


def test_broker_topic_defaults_reach_created_and_auto_created_topics(cluster: Cluster) -> None:
    from confluent_kafka import Producer

    cluster.create_topic("made", partitions=1)
    lab = cluster.producer({"linger.ms": 0})
    for _ in range(40):
        lab.produce("made", value=b"x" * 100, partition=0)
        lab.flush(10)
    segments = glob.glob(os.path.join(cluster.data_dir, "broker-1", "made-0", "*.log"))
    assert len(segments) > 1  # log.segment.bytes=1024 rolled the segment

    with pytest.raises(KafkaError, match="auto.create.topics.enable=true"):
        lab.produce("auto", value=b"x")   # the lab producer refuses; the message says why
    kafka = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0})
    for _ in range(40):
        kafka.produce("auto", value=b"y" * 100, key=b"k")
        kafka.flush(10)
    wait_until(lambda: len(glob.glob(os.path.join(cluster.data_dir, "broker-1", "auto-*", "*.log"))) > 2,
               10, "segments of the auto-created topic")
    assert sorted(os.path.basename(d) for d in glob.glob(os.path.join(cluster.data_dir, "broker-1", "auto-*"))) \
        == ["auto-0", "auto-1"]  # num.partitions=2
