"""Producer load as a worker process, for the dashboard's load panel and the labs: the code
that runs inside the worker (the cluster starts and stops it: kafkalab/cluster/load.py). Like
every lab process it never loads pandas.

A worker is a fresh interpreter with its own lab producer; it is a node of the lab network
("load-N"), so network cuts apply to it, and it publishes its client metrics like any process.
"""

from __future__ import annotations

import random
import time
from typing import Any

KEY_DISTRIBUTIONS = ("uniform", "hot", "none")


def producer_worker_main(*, parent_pid: int, node: str, brokers: dict[int, str], fault_endpoint: str,
                         faults_json: str, metrics_endpoint: str, topic: str, rate: float,
                         config: dict[str, Any], keys: str, key_count: int, value_bytes: int,
                         seed: int) -> None:
    import zmq

    from kafkalab.client import Producer
    from kafkalab.client.context import ClientContext
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent, parent_alive
    from kafkalab.transport.faults import FaultTable
    from kafkalab.transport.rpc import FaultSubscriber

    die_with_parent(parent_pid)
    ctx = zmq.Context()
    faults = FaultTable.from_json(faults_json)
    sub = FaultSubscriber(ctx, fault_endpoint, faults)
    metrics = MetricsPublisher(ctx, metrics_endpoint, node)
    producer = Producer(config, ClientContext(node=node, brokers=brokers, faults=faults, metrics=metrics))
    rng = random.Random(seed)
    value = bytes(rng.getrandbits(8) for _ in range(value_bytes))
    interval = 1.0 / rate if rate > 0 else 0.0
    next_send = time.monotonic()
    last_check = 0.0
    i = 0
    while True:
        now = time.monotonic()
        if now - last_check > 0.1:
            last_check = now
            sub.drain()
            if not parent_alive(parent_pid):
                break
        if interval and now < next_send:
            producer.poll(min(next_send - now, 0.05))
            continue
        if keys == "none":
            key = None
        elif keys == "hot" and rng.random() < 0.8:
            key = b"hot-key"
        else:
            key = f"key-{rng.randrange(key_count)}".encode()
        try:
            producer.produce(topic, value=value, key=key)
            i += 1
            next_send += interval
            if next_send < now - 1.0:  # fell behind (a pause, a cut): do not burst to catch up
                next_send = now
        except BufferError:
            producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
