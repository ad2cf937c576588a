"""Producer ids from blocks the controller hands out (Kafka's RPCProducerIdManager).

The controller owns the producer id space and gives each broker a block at a time
(AllocateProducerIds); the broker hands ids out from its block, one per InitProducerId (an
idempotent producer's here, a transactional one's through the transaction coordinator), and
asks for the next block before this one runs dry. One block per broker, so two brokers never
hand out the same id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from kio.schema.allocate_producer_ids.v0.request import AllocateProducerIdsRequest
from kio.schema.errors import ErrorCode

from kafkalab.broker.controller_channel import ControllerChannelManager

PREFETCH_WHEN_LEFT = 10  # ask for the next block while this many ids are left


class ProducerIdManager:
    def __init__(self, *, broker_id: int, broker_epoch: Callable[[], int], controller: ControllerChannelManager):
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch
        self.controller = controller
        self.next_id = 0
        self.end = 0  # [next_id, end) is what is left of the block
        self.allocating = False
        self.waiting: deque[Callable[[int], None]] = deque()

    @property
    def left(self) -> int:
        return self.end - self.next_id

    def try_next(self) -> int | None:
        """The next id, or None while a block is on its way (ask again later)."""
        if self.left <= PREFETCH_WHEN_LEFT:
            self._allocate()
        if self.left <= 0:
            return None
        self.next_id += 1
        return self.next_id - 1

    def generate(self, on_id: Callable[[int], None]) -> None:
        """on_id(producer id), now or once the controller has given a block."""
        self.waiting.append(on_id)
        self.answer_waiting()

    def answer_waiting(self) -> None:
        """Hand out ids to the waiting requests (also after a metadata change: a broker that
        was not registered yet can ask for a block now)."""
        while self.waiting:
            pid = self.try_next()
            if pid is None:
                return
            self.waiting.popleft()(pid)

    def _allocate(self) -> None:
        if self.allocating:
            return
        self.allocating = True
        self.controller.send(AllocateProducerIdsRequest(broker_id=self.broker_id, broker_epoch=self.broker_epoch()),
                             self._on_block, self._on_failed)

    def _on_block(self, resp: Any) -> None:
        self.allocating = False
        if resp.error_code == ErrorCode.none:
            start = int(resp.producer_id_start)
            self.next_id, self.end = start, start + int(resp.producer_id_len)
        self.answer_waiting()

    def _on_failed(self, _error: Any) -> None:
        self.allocating = False  # timed out, or sent to a controller this broker left
