"""The simulated single controller (`--controllers 1`): the real `Controller` core over a metadata
log that survives crashes (a quorum of three is `controller_quorum.SimQuorumController`).

Every committed record is appended to the log (its disk) and applied to the image; brokers fetch
the log from their image's offset and apply the same records (as Kafka's brokers fetch
`__cluster_metadata`). A fetch with nothing new waits until a record is committed or its
max wait passes. A restarted controller replays its log into a fresh image and starts a fresh
`Controller`: liveness is soft state, so every broker gets a new session.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from kafkalab.controller.controller import Controller, Record
from kafkalab.metadata.image import MetadataImage
from kafkalab.sim.network import Network
from kafkalab.sim.node import Calls, SimNode
from kafkalab.sim.scheduler import Scheduler

CONTROLLER = "controller"
TICK_MS = 50


class SimController(SimNode):
    def __init__(self, scheduler: Scheduler, network: Network, calls: Calls, config: dict[str, Any],
                 rng: random.Random, on_event: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(CONTROLLER, scheduler, network, calls)
        self.config = config
        self.rng = rng
        self.on_event = on_event
        self.log: list[Record] = []  # the metadata log: kept across crashes
        self.image = MetadataImage()
        self.core: Controller | None = None
        self._waiting: list[tuple[str, int, int, int]] = []  # (broker node, corr, offset, deadline)
        self._pids: list[int] = []

    def on_start(self) -> None:
        self.image = MetadataImage()
        for offset, record in enumerate(self.log):
            self.image.apply(record, offset)
        self.core = Controller(self.image, self._commit, self.config, rng=self.rng, on_event=self.on_event)
        self._waiting, self._pids = [], []
        self.timer(TICK_MS, "tick", self._tick)

    def on_crash(self) -> None:
        self.core = None

    def _commit(self, records: list[Record]) -> None:
        for r in records:
            self.log.append(copy.deepcopy(r))
            self.image.apply(r, len(self.log) - 1)

    def _tick(self) -> None:
        assert self.core is not None
        self.core.tick(self.sched.now_ms)
        self._answer_fetches()
        self.timer(TICK_MS, "tick", self._tick)

    def admin(self, fn: Callable[[Controller], Any]) -> Any:
        """An admin request made in the controller's process (create a topic)."""
        assert self.core is not None
        out = fn(self.core)
        self._answer_fetches()
        return out

    def handle(self, src: str, corr: int, body: Any) -> None:
        core = self.core
        assert core is not None
        if body[0] == "fetch_metadata":
            _, offset, max_wait_ms = body
            self._waiting.append((src, corr, offset, self.sched.now_ms + max_wait_ms))
        else:
            self.reply(src, corr, serve(core, src, body, self.sched.now_ms, self._pids))
        self._answer_fetches()

    def _answer_fetches(self) -> None:
        now = self.sched.now_ms
        still = []
        for src, corr, offset, deadline in self._waiting:
            if offset < len(self.log) or now >= deadline:
                self.reply(src, corr, (offset, self.log[offset:offset + 200]))
            else:
                still.append((src, corr, offset, deadline))
        self._waiting = still


def serve(core: Controller, src: str, body: Any, now_ms: int, pids: list[int]) -> Any:
    """The Controller's answer to a broker's or producer's request (the sim's tuples standing
    for BrokerRegistration, BrokerHeartbeat, AlterPartition and AllocateProducerIds). `pids`:
    this controller's block of producer ids still to hand out."""
    kind = body[0]
    if kind == "register":
        _, broker_id = body
        return core.register_broker(broker_id, f"sim://{src}", "sim", broker_id, now_ms)
    if kind == "heartbeat":
        _, broker_id, epoch, offset = body
        return core.heartbeat(broker_id, epoch, offset, False, now_ms)
    if kind == "alter_partition":
        _, broker_id, broker_epoch, topic, partition, leader_epoch, partition_epoch, isr = body
        code, reg = core.alter_partition(broker_id, broker_epoch, topic, partition, leader_epoch,
                                         partition_epoch, isr)
        return code, copy.deepcopy(reg)
    if kind == "init_producer_id":
        if not pids:
            start, n = core.allocate_producer_ids()
            pids.extend(range(start, start + n))
        return pids.pop(0)
    raise ValueError(f"{src}: {kind!r} is not a controller request")
