"""A fresh client right after a broker dies: it asks another broker, and waits out the election."""

from __future__ import annotations

import pytest

from kafkalab import Cluster, TopicPartition

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]


def test_fresh_consumer_reads_watermarks_while_a_leader_is_being_replaced():
    with Cluster(brokers=3) as cluster:
        cluster.create_topic("t", partitions=3, replication_factor=3)
        producer = cluster.producer({"acks": "all"})
        for p in range(3):
            producer.produce("t", value=b"x", partition=p)
        assert producer.flush(30) == 0
        producer.close()
        dead = int(cluster.describe_topic("t").iloc[0].leader)
        cluster.kill_broker(dead)  # no waiting: the election may not have happened yet
        for _ in range(3):  # each fresh client walks the bootstrap list from a new place
            reader = cluster.consumer({})
            try:
                assert "t" in reader.list_topics(timeout=10).topics
                assert [reader.get_watermark_offsets(TopicPartition("t", p), timeout=10) for p in range(3)] \
                    == [(0, 1)] * 3
            finally:
                reader.close()
        assert int(cluster.describe_topic("t").iloc[0].leader) != dead
