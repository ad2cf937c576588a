"""A lost acknowledgement makes a duplicate; the idempotent producer makes none.

The leader's responses to the producer are dropped for a while (a one-way cut): the producer
times out (request.timeout.ms) and sends the batches again. Without idempotence the broker
appends them twice; with it, the broker recognises the sequence numbers and answers with the
original offsets — also when the retry reaches a new leader.
"""

from __future__ import annotations

import collections
import time

import pytest

from kafkalab import TopicPartition
from kafkalab.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(cluster, idempotent: bool, kill_leader: bool) -> collections.Counter:
    topic = f"dup-{int(idempotent)}-{int(kill_leader)}"
    cluster.create_topic(topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    producer = cluster.producer({"acks": "all", "enable.idempotence": idempotent, "linger.ms": 100,
                                 "request.timeout.ms": 1000, "retries": 100,
                                 "max.in.flight.requests.per.connection": 1 if not idempotent else 5})
    leader = int(cluster.describe_topic(topic).iloc[0].leader)
    acked: list[bytes] = []
    errors: list = []

    def cb(err, msg):
        (errors.append(err) if err is not None else acked.append(msg.value()))
    for i in range(20):
        producer.produce(topic, value=f"before-{i}".encode(), on_delivery=cb)
    assert producer.flush(20) == 0
    # Responses from the leader to this producer vanish; the requests themselves arrive.
    cluster.cut(leader, producer.node, one_way=True)
    for i in range(20):
        producer.produce(topic, value=f"during-{i}".encode(), on_delivery=cb)
    # Wait until the leader has appended what it will never be able to acknowledge.
    wait_until(lambda: cluster.describe_topic(topic).iloc[0].high_watermark >= 40, 10,
               "the unacknowledged records to be replicated")
    if kill_leader:
        cluster.kill_broker(leader)
    def retries() -> int:
        rows = cluster.metrics.clients()
        rows = rows[rows.node == producer.node] if not rows.empty else rows
        return 0 if rows.empty else int(rows.retries.fillna(0).max())
    # After request.timeout.ms the producer gives up on the lost responses and sends again.
    wait_until(lambda: retries() >= 1, 15, "the producer to retry the unacknowledged batch")
    cluster.heal()
    assert producer.flush(30) == 0
    producer.close()
    assert not errors and len(acked) == 40
    consumer = cluster.consumer({"auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: collections.Counter = collections.Counter()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for m in consumer.consume(500, 0.3):
            seen[m.value()] += 1
        if set(acked) <= set(seen) and consumer.consume(500, 0.3) == []:
            break
    consumer.close()
    assert set(acked) <= set(seen), "an acknowledged record was lost"
    return seen


@pytest.mark.parametrize("kill_leader", [False, True], ids=["same leader", "across a leader change"])
def test_lost_acks_duplicate_without_idempotence_and_not_with_it(cluster, kill_leader):
    plain = _run(cluster, idempotent=False, kill_leader=kill_leader)
    duplicated = [v for v, n in plain.items() if n > 1]
    assert duplicated, "without idempotence, the retried batches should have been appended twice"
    if kill_leader:
        cluster.restart_broker([b for b in cluster.broker_ids if cluster.broker_state(b) != "running"][0])
    idem = _run(cluster, idempotent=True, kill_leader=kill_leader)
    assert all(n == 1 for n in idem.values()), f"duplicates: {[v for v, n in idem.items() if n > 1]}"
