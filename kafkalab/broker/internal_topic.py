"""What the group and transaction coordinators share: a compacted internal topic they create
on first use, whose partitions they own while this broker leads them, and appends to it with
acks=all through the broker's normal produce path."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

from kafkalab.broker.context import BrokerContext
from kafkalab.protocol.apis import lazy_schema
from kafkalab.records import BatchHeader, encode_batch
from kafkalab.records.scan import iter_batches

ct_req = lazy_schema("kio.schema.create_topics.v7.request")
produce_req = lazy_schema("kio.schema.produce.v9.request")

APPEND_TIMEOUT = datetime.timedelta(seconds=5)
CREATE_RETRY_S = 2.0


class InternalTopicService:
    def __init__(self, broker: BrokerContext, topic: str, num_partitions: int):
        self.broker = broker
        self.topic = topic
        self.num_partitions = num_partitions
        self.loaded: set[int] = set()
        self._creating_since: float | None = None

    # -- ownership -------------------------------------------------------------------------
    def _leads(self, p: int) -> bool:
        part = self.broker.rm.partitions.get((self.topic, p))
        return part is not None and part.is_leader

    def _owns(self, p: int) -> str:
        """"yes" once loaded, "loading" while leading but not loaded, else "no"."""
        if p in self.loaded and self._leads(p):
            return "yes"
        return "loading" if self._leads(p) else "no"

    def _ensure_internal_topic(self, replication_factor_key: str,
                               configs: Callable[[int], dict[str, str]]) -> bool:
        """True once the topic exists; otherwise ask the controller (at most every 2 s).
        configs(rf) gives the topic configs for the replication factor chosen."""
        if self.topic in self.broker.image.topics:
            return True
        now = self.broker.clock.monotonic()
        if self._creating_since is None or now - self._creating_since > CREATE_RETRY_S:
            self._creating_since = now
            live = len(self.broker.image.live_brokers())
            rf = max(1, min(int(self.broker.config[replication_factor_key]), live))
            req = ct_req.CreateTopicsRequest(topics=(ct_req.CreatableTopic(
                name=self.topic, num_partitions=self.num_partitions, replication_factor=rf, assignments=(),
                configs=tuple(ct_req.CreatableTopicConfig(name=k, value=v)
                              for k, v in configs(rf).items())),), timeout=APPEND_TIMEOUT)
            self.broker.controller.send(req, lambda resp: None)
        return False

    def _read_batches(self, p: int, start: int, end: int) -> Iterator[tuple[bytes, int, BatchHeader]]:
        """(data, position, header) of every whole batch of partition p in [start, end), in
        log order: what a coordinator replays when it loads or follows its partition."""
        plog = self.broker.rm.partitions[(self.topic, p)].log
        offset = start
        while offset < end:
            data = bytes(plog.read_bytes(offset, 1 << 20, max_offset=end))
            advanced = False
            for pos, h in iter_batches(data):
                if h.next_offset > end:
                    return
                yield data, pos, h
                offset, advanced = h.next_offset, True
            if not advanced:
                return

    # -- appends ---------------------------------------------------------------------------
    def _produce_batch(self, p: int, batch: bytes, on_done: Callable[[Any, int], None]) -> None:
        """Append with acks=all; on_done(error_code, base_offset) once the ISR has it."""
        req = produce_req.ProduceRequest(
            transactional_id=None, acks=-1, timeout=APPEND_TIMEOUT,
            topic_data=(produce_req.TopicProduceData(name=self.topic, partition_data=(
                produce_req.PartitionProduceData(index=p, records=batch),)),))

        def done(resp: Any) -> None:
            r = resp.responses[0].partition_responses[0]
            on_done(r.error_code, int(r.base_offset))

        self.broker.rm.produce(req, self.broker.clock.wall_ms(), done)

    def _produce_records(self, p: int, records: list[tuple[bytes, bytes | None]],
                         on_done: Callable[[Any, int], None]) -> None:
        now = self.broker.clock.wall_ms()
        self._produce_batch(p, encode_batch([(k, v, None, now) for k, v in records]), on_done)
