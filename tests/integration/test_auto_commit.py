"""Auto commit gives at-least-once, as in Kafka's consumer: inside poll()/consume() it commits
the positions of records that EARLIER calls returned (the application has processed them by
the time it polls again), never those of the batch being collected or handed out. Committing
a batch's end before the application has it would skip its records after a crash."""

from __future__ import annotations

import time

import pytest

from kafkalab import TopicPartition
from kafkalab.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _committed(cluster, group):
    reader = cluster.consumer({"group.id": group})
    try:
        return reader.committed([TopicPartition("jobs", 0)], timeout=5)[0].offset
    finally:
        reader.close()


def _produce(cluster, first, last):
    producer = cluster.producer({"acks": "all"})
    for i in range(first, last):
        producer.produce("jobs", value=b"job-%d" % i)
    producer.flush(10)
    producer.close()


def test_auto_commit_commits_only_what_earlier_polls_returned(cluster):
    cluster.create_topic("jobs", partitions=1, replication_factor=1)
    _produce(cluster, 0, 10)
    # auto.commit.interval.ms=0: every poll commits, so a wrong commit cannot hide behind the interval.
    consumer = cluster.consumer({"group.id": "g", "auto.offset.reset": "earliest",
                                 "enable.auto.commit": True, "auto.commit.interval.ms": 0})
    consumer.subscribe(["jobs"])
    try:
        got = []
        wait_until(lambda: got.extend(consumer.consume(100, timeout=0.2)) or len(got) >= 10, 30, "10 records")
        wait_until(lambda: consumer.consume(1, timeout=0.1) == [] and _committed(cluster, "g") == 10, 10,
                   "the first 10 committed by the next polls")
        _produce(cluster, 10, 30)
        # 20 records for a call that wants 100: it collects them, then waits (and serves the
        # group) while holding them. Neither then nor when it returns may it commit them.
        batch = wait_until(lambda: consumer.consume(100, timeout=0.6), 30, "the next batch")
        time.sleep(1.0)  # time for any (asynchronous) commit to land
        assert batch[0].offset() == 10
        assert _committed(cluster, "g") == 10   # the batch just returned is not processed yet
        consumer.consume(100, timeout=0.2)       # the application polls again: now it is
        wait_until(lambda: _committed(cluster, "g") == batch[-1].offset() + 1, 10, "the batch committed")
    finally:
        consumer.close()
