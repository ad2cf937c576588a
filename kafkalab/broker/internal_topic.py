"""What the group and transaction coordinators share: a compacted internal topic they create
on first use, whose partitions they own while this broker leads them, and appends to it with
acks=all through the broker's normal produce path."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any

from kio.schema.create_topics.v7 import request as ct_req
from kio.schema.produce.v9 import request as produce_req

from kafkalab.records import BatchHeader, encode_batch
from kafkalab.records.scan import iter_batches

APPEND_TIMEOUT = datetime.timedelta(seconds=5)
CREATE_RETRY_S = 2.0


class InternalTopicService:
    def __init__(self, server: Any, topic: str, num_partitions: int):
        self.server = server
        self.topic = topic
        self.num_partitions = num_partitions
        self.loaded: set[int] = set()
        self._creating_since = 0.0

    # -- ownership -------------------------------------------------------------------------
    def _leads(self, p: int) -> bool:
        part = self.server.rm.partitions.get((self.topic, p))
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
        if self.topic in self.server.image.topics:
            return True
        now = time.monotonic()
        if now - self._creating_since > CREATE_RETRY_S:
            self._creating_since = now
            live = len(self.server.image.live_brokers())
            rf = max(1, min(int(self.server.config[replication_factor_key]), live))
            req = ct_req.CreateTopicsRequest(topics=(ct_req.CreatableTopic(
                name=self.topic, num_partitions=self.num_partitions, replication_factor=rf, assignments=(),
                configs=tuple(ct_req.CreatableTopicConfig(name=k, value=v)
                              for k, v in configs(rf).items())),), timeout=APPEND_TIMEOUT)
            self.server._call_controller(req, lambda resp: None)
        return False

    def _read_batches(self, p: int, start: int, end: int) -> Iterator[tuple[bytes, int, BatchHeader]]:
        """(data, position, header) of every whole batch of partition p in [start, end), in
        log order: what a coordinator replays when it loads or follows its partition."""
        plog = self.server.rm.partitions[(self.topic, p)].log
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

        self.server.rm.produce(req, int(time.time() * 1000), done)
        self.server._send_fetches()  # followers fetch at once: acks=all waits for them

    def _produce_records(self, p: int, records: list[tuple[bytes, bytes | None]],
                         on_done: Callable[[Any, int], None]) -> None:
        now = int(time.time() * 1000)
        self._produce_batch(p, encode_batch([(k, v, None, now) for k, v in records]), on_done)
