"""Simulated clients: idempotent producers and consumers speaking Kafka's Produce and Fetch.

A producer builds real record batches (producer id, epoch, sequence), sends one batch at a time
(max.in.flight 1, so order and sequences are simple), retries a batch with the same sequence on
every retriable error or timeout, and records what the broker acknowledged: offset and value.
A consumer fetches every partition from its leader and hands each record it reads to the run's
checks. Values are unique ("p1-17"), which is what makes duplicates and losses visible.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_req
from kio.schema.produce.v9 import request as produce_req

from kafkalab.records import BatchBuilder
from kafkalab.records.batch import decode_batch
from kafkalab.records.scan import iter_batches
from kafkalab.sim.broker_node import broker_node
from kafkalab.sim.controller_node import CONTROLLER
from kafkalab.sim.network import Network
from kafkalab.sim.node import Calls, SimNode
from kafkalab.sim.scheduler import Scheduler

TP = tuple[str, int]
REQUEST_TIMEOUT_MS = 600
RETRIABLE = {ErrorCode.not_leader_or_follower, ErrorCode.not_enough_replicas,
             ErrorCode.not_enough_replicas_after_append, ErrorCode.request_timed_out,
             ErrorCode.unknown_topic_or_partition, ErrorCode.fenced_leader_epoch,
             ErrorCode.unknown_leader_epoch, ErrorCode.leader_not_available}
# Fatal for the batch (Kafka's producer does not retry the next sequence on these): it fails to
# the application and the producer starts over with a new producer id. The batch may still be in
# the log (written on another replica whose answer was lost): resending it could duplicate it.
REINIT = {ErrorCode.out_of_order_sequence_number, ErrorCode.unknown_producer_id}


@dataclass
class Pending:
    tp: TP
    values: list[bytes]
    attempts: int = 0


class SimClient(SimNode):
    def __init__(self, name: str, brokers: list[int], scheduler: Scheduler, network: Network,
                 calls: Calls, rng: random.Random) -> None:
        super().__init__(name, scheduler, network, calls)
        self.brokers = brokers
        self.rng = rng
        self.leaders: dict[TP, tuple[int, int]] = {}
        self._refreshing = False

    def refresh_metadata(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        b = self.rng.choice(self.brokers)
        self.call(broker_node(b), ("metadata",), self._on_metadata, REQUEST_TIMEOUT_MS)

    def _on_metadata(self, leaders: dict[TP, tuple[int, int]] | None) -> None:
        self._refreshing = False
        if leaders:
            self.leaders = leaders


@dataclass
class ProducerStats:
    acked: dict[TP, dict[int, bytes]] = field(default_factory=dict)  # offset -> value


class SimProducer(SimClient):
    """An idempotent producer. `stop()` ends new sends; what is pending is still retried."""

    def __init__(self, producer: int, acks: int, topic: str, partitions: int, brokers: list[int],
                 scheduler: Scheduler, network: Network, calls: Calls, rng: random.Random,
                 on_ack: Callable[[SimProducer, TP, int, list[bytes]], None],
                 on_fail: Callable[[SimProducer, TP, str, list[bytes]], None],
                 controllers: list[str] | None = None) -> None:
        super().__init__(f"producer-{producer}", brokers, scheduler, network, calls, rng)
        self.producer = producer
        self.acks = acks
        self.topic = topic
        self.partitions = partitions
        self.on_ack = on_ack
        self.on_fail = on_fail
        self.controllers = controllers or [CONTROLLER]
        self._ctrl = 0
        self.failed = 0
        self.acked = 0
        self.producer_id = -1
        self.producer_epoch = 0
        self.sequences: dict[TP, int] = {}
        self.pending: Pending | None = None
        self.in_flight = False
        self.sent = 0
        self.stopped = False

    def on_start(self) -> None:
        self.refresh_metadata()
        self._init_producer_id()
        self.timer(self.rng.randint(1, 20), "send", self._send)

    def stop(self) -> None:
        self.stopped = True

    @property
    def idle(self) -> bool:
        return self.pending is None and not self.in_flight

    def _init_producer_id(self) -> None:
        self.call(self.controllers[self._ctrl], ("init_producer_id",), self._on_producer_id, REQUEST_TIMEOUT_MS)

    def _on_producer_id(self, pid: int | tuple[str, int] | None) -> None:
        if not isinstance(pid, int):
            # No answer, or not the active controller: ask the next voter.
            self._ctrl = (self._ctrl + 1) % len(self.controllers)
            self.timer(50, "init producer id retry", self._init_producer_id)
            return
        self.producer_id, self.producer_epoch, self.sequences = pid, 0, {}

    def _send(self) -> None:
        if self.in_flight:
            return
        if self.pending is None and not self.stopped:
            tp = (self.topic, self.rng.randrange(self.partitions))
            n = self.rng.randint(1, 4)
            self.pending = Pending(tp, [f"p{self.producer}-{self.sent + i}".encode() for i in range(n)])
            self.sent += n
        if self.pending is None:
            return
        leader = self.leaders.get(self.pending.tp)
        if self.producer_id < 0 or leader is None or leader[0] < 0:
            self.refresh_metadata()
            self.timer(30, "send", self._send)
            return
        p = self.pending
        builder = BatchBuilder(1 << 20)
        for v in p.values:
            builder.append(v[-4:], v, None, self.sched.now_ms)
        tp = p.tp
        batch = builder.build(producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                              base_sequence=self.sequences.get(tp, 0))
        req = produce_req.ProduceRequest(acks=self.acks, timeout=datetime.timedelta(milliseconds=500), topic_data=(
            produce_req.TopicProduceData(name=tp[0], partition_data=(
                produce_req.PartitionProduceData(index=tp[1], records=batch),)),))
        self.in_flight = True
        p.attempts += 1
        self.call(broker_node(leader[0]), ("produce", req), self._on_produce, REQUEST_TIMEOUT_MS)

    def _on_produce(self, resp: Any) -> None:
        self.in_flight = False
        p = self.pending
        assert p is not None
        code = ErrorCode.request_timed_out if resp is None else \
            resp.responses[0].partition_responses[0].error_code
        if code == ErrorCode.none:
            base = int(resp.responses[0].partition_responses[0].base_offset)
            self.sequences[p.tp] = self.sequences.get(p.tp, 0) + len(p.values)
            self.pending = None
            self.acked += len(p.values)
            self.on_ack(self, p.tp, base, p.values)
            self.timer(self.rng.randint(5, 30), "send", self._send)
        elif code in REINIT:
            self.pending = None
            self.failed += len(p.values)
            self.on_fail(self, p.tp, code.name, p.values)
            self.producer_id = -1
            self._init_producer_id()
            self.timer(30, "send", self._send)
        else:
            if code not in RETRIABLE:
                raise RuntimeError(f"{self.name}: unexpected produce error {code.name}")
            self.refresh_metadata()
            self.timer(self.rng.randint(20, 60), "send", self._send)


class SimConsumer(SimClient):
    """Reads every partition from offset 0 with Fetch (read_uncommitted)."""

    def __init__(self, consumer: int, topic: str, partitions: int, brokers: list[int],
                 scheduler: Scheduler, network: Network, calls: Calls, rng: random.Random,
                 on_read: Callable[[SimConsumer, TP, int, list[tuple[int, bytes]]], None]) -> None:
        super().__init__(f"consumer-{consumer}", brokers, scheduler, network, calls, rng)
        self.consumer = consumer
        self.topic = topic
        self.partitions = partitions
        self.on_read = on_read
        self.positions: dict[TP, int] = {(topic, p): 0 for p in range(partitions)}
        self._in_flight: set[TP] = set()

    def on_start(self) -> None:
        self.refresh_metadata()
        self.timer(self.rng.randint(1, 30), "poll", self._poll)

    def _poll(self) -> None:
        for tp in sorted(self.positions):
            leader = self.leaders.get(tp)
            if tp in self._in_flight:
                continue
            if leader is None or leader[0] < 0:
                self.refresh_metadata()
                continue
            req = fetch_req.FetchRequest(
                replica_id=-1, max_wait=datetime.timedelta(milliseconds=100), min_bytes=1,
                topics=(fetch_req.FetchTopic(topic=tp[0], partitions=(fetch_req.FetchPartition(
                    partition=tp[1], current_leader_epoch=leader[1], fetch_offset=self.positions[tp],
                    partition_max_bytes=1 << 16),)),),
                forgotten_topics_data=())
            self._in_flight.add(tp)
            self.call(broker_node(leader[0]), ("fetch", req),
                      lambda resp, tp=tp: self._on_fetch(tp, resp), REQUEST_TIMEOUT_MS)
        self.timer(40, "poll", self._poll)

    def _on_fetch(self, tp: TP, resp: Any) -> None:
        self._in_flight.discard(tp)
        if resp is None:
            return
        p = resp.responses[0].partitions[0]
        if p.error_code == ErrorCode.offset_out_of_range:
            # Its position is past the leader's log end: it read records this leader never had.
            self.on_read(self, tp, -1, [(self.positions[tp] - 1, b"")])
            return
        if p.error_code != ErrorCode.none:
            self.refresh_metadata()
            return
        data = bytes(p.records or b"")
        got: list[tuple[int, bytes]] = []
        pos = self.positions[tp]
        for at, h in iter_batches(data):
            if h.last_offset < pos:
                continue
            for r in decode_batch(data[at:at + h.size]).records:
                if r.offset >= pos:
                    got.append((r.offset, r.value or b""))
        if got:
            self.on_read(self, tp, int(p.high_watermark), got)
            self.positions[tp] = got[-1][0] + 1
