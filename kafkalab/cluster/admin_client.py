"""Admin requests over the lab transport, as Kafka's AdminClient sends them: to the active
controller (found again after a failover) or to one broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import zmq
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12 import request as md_req

from kafkalab.clock import SYSTEM_CLOCK
from kafkalab.cluster.supervisor import Supervisor
from kafkalab.cluster.topology import Topology
from kafkalab.nodes import CONTROLLER_NODE, broker_node, controller_node
from kafkalab.protocol.errors import KafkaError
from kafkalab.transport.channel import Channel
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.rpc import RequestTimeoutError, RpcClient


def not_controller(resp: Any, asked: int) -> bool:
    """Whether a quorum controller's answer means "ask the active controller instead"."""
    if hasattr(resp, "controller_id") and hasattr(resp, "brokers"):  # Metadata
        return int(resp.controller_id) != asked
    for field in ("topics", "responses", "results"):
        items = getattr(resp, field, None)
        if items and getattr(items[0], "error_code", None) == ErrorCode.not_controller:
            return True
    return getattr(resp, "error_code", None) == ErrorCode.not_controller


class AdminClient:
    """One RpcClient per controller (in a Channel, for the probes sent to all at once) and per
    broker (a ZeroMQ identity is reused), all on the node "admin", so network faults on "admin"
    apply to them."""

    # A request the active controller did not answer in this long goes to whoever is active
    # now: a controller failover takes a fraction of a second in the lab profile.
    QUORUM_ATTEMPT_S = 0.5
    # How long to wait for the controllers to say who is active before trying anyway.
    PROBE_S = 0.3

    def __init__(self, ctx: zmq.Context, faults: FaultTable, topology: Topology, supervisor: Supervisor,
                 lock: threading.RLock, check_open: Callable[[], None]):
        self.ctx, self.faults, self.topology, self.supervisor = ctx, faults, topology, supervisor
        self.lock, self.check_open = lock, check_open
        self.retried = False  # the last quorum call needed another attempt
        self.active: int | None = None
        self.controllers: dict[int, Channel] = {}
        self.brokers: dict[int, RpcClient] = {}
        self.single = None if topology.quorum else RpcClient(ctx, "admin", CONTROLLER_NODE,
                                                             topology.controller_endpoint, faults)

    def call(self, request: Any, timeout: float = 10.0) -> Any:
        """One request to the (active) controller."""
        with self.lock:
            self.check_open()
            if self.single is not None:
                return self.single.call(request, timeout)
            return self._quorum_call(request, timeout)

    def broker_call(self, broker_id: int, request: Any, timeout: float = 10.0) -> Any:
        """One request to one broker."""
        with self.lock:
            self.check_open()
            self.topology.check_broker(broker_id)
            if broker_id not in self.brokers:
                self.brokers[broker_id] = RpcClient(self.ctx, "admin", broker_node(broker_id),
                                                    self.topology.broker_endpoints[broker_id], self.faults)
            return self.brokers[broker_id].call(request, timeout)

    def metadata(self, topics: list[str] | None = None) -> Any:
        """The controller's Metadata: every topic (None), some, or none ([]: only the brokers)."""
        req = md_req.MetadataRequest(
            topics=None if topics is None else tuple(md_req.MetadataRequestTopic(topic_id=None, name=t) for t in topics),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False)
        return self.call(req)

    def controller_state(self, controller_id: int) -> str:
        return self.supervisor.state(controller_node(controller_id))

    def _quorum_call(self, request: Any, timeout: float) -> Any:
        """Send to the active controller; on NOT_CONTROLLER or silence find it again and retry.
        Sets self.retried when the answer came from a retry (a CreateTopics that the old
        controller committed before dying then answers TOPIC_ALREADY_EXISTS)."""
        deadline = time.monotonic() + timeout
        self.retried = False
        while True:
            target = self.active
            if target is None or self.controller_state(target) != "running":
                target = self._find_active(deadline)
            if target is not None:
                try:
                    resp = self._controller(target).client.call(
                        request, max(0.05, min(self.QUORUM_ATTEMPT_S, deadline - time.monotonic())))
                except KafkaError:
                    self.reset(target)  # drop what is queued for a dead controller
                    resp = None
                if resp is not None and not not_controller(resp, target):
                    return resp
                self.active = None
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(f"no active controller answered {type(request).__name__} "
                                          f"within {timeout:g} s; is a majority of the controllers up?")
            self.retried = True
            time.sleep(0.02)

    def _controller(self, controller_id: int) -> Channel:
        channel = self.controllers.get(controller_id)
        if channel is None:
            channel = self.controllers[controller_id] = Channel(RpcClient(
                self.ctx, "admin", controller_node(controller_id),
                self.topology.controller_endpoints[controller_id], self.faults), SYSTEM_CLOCK, self.PROBE_S)
        return channel

    def reset(self, controller_id: int) -> None:
        """Drop the client of a controller (it died, or restarts): what it queued goes with it."""
        channel = self.controllers.pop(controller_id, None)
        if channel is not None:
            channel.close()

    def _find_active(self, deadline: float) -> int | None:
        """Ask every running controller who is active (Metadata's controller_id) at once:
        the one that names itself, else (after PROBE_S) one that another named."""
        probe = md_req.MetadataRequest(topics=(), allow_auto_topic_creation=False,
                                       include_topic_authorized_operations=False)
        ids = self.topology.controller_ids
        named: dict[int, int] = {}  # controller -> the active controller it named
        asked: dict[int, tuple[Channel, int]] = {}
        for c in ids:
            if self.controller_state(c) == "running":
                channel = self._controller(c)
                asked[c] = channel, channel.send(
                    probe, lambda resp, c=c: named.__setitem__(c, int(resp.controller_id)))
        end = min(deadline, time.monotonic() + self.PROBE_S)
        poller = zmq.Poller()
        for channel, _ in asked.values():
            poller.register(channel.client.socket, zmq.POLLIN)
        active = None
        while active is None and len(named) < len(asked) and time.monotonic() < end:
            poller.poll(max(1, int((end - time.monotonic()) * 1000)))
            for channel, _ in asked.values():
                channel.poll()
            active = next((c for c, said in named.items() if said == c), None)
        for c, (channel, corr) in asked.items():
            if c not in named:
                channel.cancel(corr)
        if active is not None:
            self.active = active
            return active
        return next((said for said in reversed(named.values()) if said in ids), None)

    def close(self) -> None:
        for closable in [*([self.single] if self.single else []), *self.controllers.values(), *self.brokers.values()]:
            closable.close()
