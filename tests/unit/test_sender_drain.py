"""The sender drains every ready batch it may send in one wake-up (one Produce request per
batch of a partition, as Kafka's drain), up to max.in.flight.requests.per.connection, and
leaves a batch that is still lingering alone."""

from __future__ import annotations

import threading

from kafkalab.client.accumulator import RecordAccumulator
from kafkalab.client.config import producer_config
from kafkalab.client.context import ClientContext
from kafkalab.client.sender import ReportQueue, Sender
from kafkalab.transport.faults import FaultTable


class _Metadata:
    def leader_for(self, topic: str, partition: int) -> int:
        return 1


class _Net:
    """Stands for ClientNetwork: records each request sent, answers none."""

    def __init__(self) -> None:
        self.metadata = _Metadata()
        self.sent: list[object] = []

    def in_flight(self, node: int) -> int:
        return len(self.sent)

    def send(self, node: int, request: object, callback: object, now: float) -> int:
        self.sent.append(request)
        return len(self.sent)


def _sender(max_in_flight: int, batches: int) -> tuple[Sender, _Net, RecordAccumulator]:
    cfg = producer_config({"acks": 1, "linger.ms": 60_000, "batch.size": 200, "enable.idempotence": False,
                           "max.in.flight.requests.per.connection": max_in_flight})
    acc = RecordAccumulator(batch_size=200, linger_ms=60_000, buffer_memory=1 << 20, delivery_timeout_ms=120_000,
                            retry_backoff_ms=100, max_request_size=1 << 20)
    for _ in range(batches * 2 + 1):  # two 40-byte records fill a 200-byte batch; one more lingers
        acc.try_append("t", 0, None, b"v" * 40, None, 1000, None, 0.0)
    lock = threading.Lock()
    sender = Sender(ClientContext("client-1", {1: "tcp://127.0.0.1:1"}, FaultTable()), cfg, acc, lock,
                    threading.Condition(lock), threading.Condition(), ReportQueue())
    net = _Net()
    sender.net = net  # type: ignore[assignment]
    return sender, net, acc


def test_one_wake_up_sends_every_full_batch_and_keeps_the_lingering_one() -> None:
    sender, net, acc = _sender(max_in_flight=5, batches=3)
    sender.step(0.0)
    assert len(net.sent) == 3  # the three full batches, one request each, in one step
    assert [len(r.topic_data[0].partition_data) for r in net.sent] == [1, 1, 1]
    assert [b.record_count for b in acc.batches[("t", 0)]] == [1]  # the open batch lingers on


def test_max_in_flight_bounds_the_requests_of_one_wake_up() -> None:
    sender, net, acc = _sender(max_in_flight=2, batches=4)
    sender.step(0.0)
    assert len(net.sent) == 2
    assert [b.record_count for b in acc.batches[("t", 0)]] == [2, 2, 1]
