"""BrokerContext: what the broker's services (groups, transactions, share groups, admin) are
given to work with, instead of the whole server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kafkalab.broker.controller_channel import ControllerChannelManager
from kafkalab.broker.producer_id_manager import ProducerIdManager
from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.clock import Clock
from kafkalab.metadata.image import MetadataImage
from kafkalab.transport.channel import Channel
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop


class Publisher(Protocol):
    def publish(self, kind: str, row: dict[str, Any]) -> None: ...


class Connect(Protocol):
    def __call__(self, broker_id: int, endpoint: str, *, suffix: str = "",
                 fail_fast_on_cut: bool = False) -> Channel:
        """A channel to broker_id, attached to the loop. suffix: a ZeroMQ identity of its own
        ("broker-1/txn": a ROUTER knows a peer by identity, and "broker-1" is the follower
        fetcher's); the fault table treats it as this broker's."""
        ...


@dataclass(frozen=True)
class BrokerContext:
    broker_id: int
    node: str
    config: dict[str, Any]
    clock: Clock
    loop: EventLoop
    faults: FaultTable
    rm: ReplicaManager
    image: MetadataImage
    metrics: Publisher
    controller: ControllerChannelManager
    producer_ids: ProducerIdManager
    connect: Connect
    # Serve a request as if it had come in on the broker's socket (a marker for this broker).
    handle: Callable[[int, int, Any, Callable[[Any], None]], Any]

    def channel_to(self, broker_id: int, *, suffix: str = "", fail_fast_on_cut: bool = False) -> Channel | None:
        """A new channel to a registered broker, or None while it is unknown."""
        reg = self.image.brokers.get(broker_id)
        if reg is None:
            return None
        return self.connect(broker_id, reg.endpoint, suffix=suffix, fail_fast_on_cut=fail_fast_on_cut)
