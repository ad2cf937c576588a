"""The broker's lifecycle with the controller (Kafka's BrokerLifecycleManager).

Registration (BrokerRegistration, with a fresh incarnation id per process start, answered with
the broker epoch), heartbeats every broker.heartbeat.interval.ms (which carry how far this
broker has replayed the metadata log; the answer says whether it is fenced), a new
registration when the controller no longer knows the epoch, and controlled shutdown: heartbeats
that ask to shut down until the controller has moved leadership away and says so. As Kafka's,
a broker starting up heartbeats at once when registered and then 10 ms after each answer until
the controller says it has caught up with the metadata log (and unfences it): start-up does
not wait for the heartbeat interval.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from kio.schema.broker_heartbeat.v2.request import BrokerHeartbeatRequest
from kio.schema.errors import ErrorCode

from kafkalab.broker.controller_channel import ControllerChannelManager
from kafkalab.protocol.apis import lazy_schema

reg_req = lazy_schema("kio.schema.broker_registration.v4.request")

log = logging.getLogger(__name__)

CLUSTER_ID = "kafkalab"
# After "not controller" the next controller may be active at once; after another error, wait.
RETRY_NOT_CONTROLLER_S = 0.05
RETRY_ERROR_S = 0.2
STARTING_HEARTBEAT_S = 0.01  # Kafka's BrokerLifecycleManager while STARTING


class BrokerLifecycleManager:
    def __init__(self, *, broker_id: int, controller: ControllerChannelManager,
                 listeners: tuple[reg_req.Listener, ...], metadata_offset: Callable[[], int],
                 call_later: Callable[[float, Callable[[], Any]], Any],
                 incarnation_id: Callable[[], uuid.UUID] = uuid.uuid4):
        self.broker_id = broker_id
        self.controller = controller
        self.listeners = listeners
        self.metadata_offset = metadata_offset
        self.call_later = call_later
        self.incarnation_id = incarnation_id()  # one per process start: a restart is told apart
        self.broker_epoch = -1
        self.registered = False
        self.fenced = True
        self.caught_up = False  # Kafka's STARTING state until a heartbeat's answer says caught up
        self.want_shut_down = False
        self._registering = False
        self.on_registered: Callable[[], None] = lambda: None  # start following the metadata
        # Keep the metadata fetch going; its answer also names the active controller.
        self.ensure_metadata_fetch: Callable[[], None] = lambda: None
        self.on_shut_down: Callable[[], None] = lambda: None  # the controller let this broker go

    # -- registration ----------------------------------------------------------------------
    def register(self) -> None:
        self.registered = False
        self._registering = True
        req = reg_req.BrokerRegistrationRequest(
            broker_id=self.broker_id, cluster_id=CLUSTER_ID, incarnation_id=self.incarnation_id,
            listeners=self.listeners, features=(), rack=None)
        self.controller.send(req, self._on_registered, self._on_register_failed)

    def _on_register_failed(self, _error: Any) -> None:
        self._registering = False  # the next heartbeat tick registers again

    def _on_registered(self, resp: Any) -> None:
        self._registering = False
        if resp.error_code == ErrorCode.not_controller:
            self.controller.follow(None)  # not active: the next controller may be
            self.call_later(RETRY_NOT_CONTROLLER_S, self._register_unless_busy)
            return
        if resp.error_code != ErrorCode.none:
            self.call_later(RETRY_ERROR_S, self._register_unless_busy)
            return
        self.broker_epoch = int(resp.broker_epoch)
        self.registered = True
        self.caught_up = False
        self.on_registered()
        self.heartbeat()

    def _register_unless_busy(self) -> None:
        if not self.registered and not self._registering:
            self.register()

    # -- heartbeats ------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Every broker.heartbeat.interval.ms (and at once for a controlled shutdown)."""
        self.controller.check_silence()
        if not self.registered:
            self._register_unless_busy()
            return
        req = BrokerHeartbeatRequest(broker_id=self.broker_id, broker_epoch=self.broker_epoch,
                                     current_metadata_offset=self.metadata_offset(), want_fence=False,
                                     want_shut_down=self.want_shut_down)
        # A beat's answer is read at the broker's next wake-up, but while shutting down or
        # starting the answer is awaited: it wakes the broker.
        self.controller.send(req, self._on_heartbeat, heartbeat=self.caught_up and not self.want_shut_down)
        self.ensure_metadata_fetch()

    def heartbeat_soon(self) -> None:
        """A beat shortly, not at the next interval (a new controller followed; one that was
        not the active one), as Kafka's next communication after a failure."""
        self.call_later(RETRY_NOT_CONTROLLER_S, self._heartbeat_if_registered)

    def _heartbeat_if_registered(self) -> None:
        if self.registered:
            self.heartbeat()

    def _on_heartbeat(self, resp: Any) -> None:
        if resp.error_code == ErrorCode.not_controller:
            self.ensure_metadata_fetch()  # its answer names the active controller
            self.heartbeat_soon()
            return
        if resp.error_code == ErrorCode.stale_broker_epoch:
            self.register()
            return
        self.fenced = bool(resp.is_fenced)
        if not self.caught_up:
            if resp.is_caught_up:
                self.caught_up = True
            else:
                self.call_later(STARTING_HEARTBEAT_S, self._heartbeat_while_starting)
        if self.want_shut_down and resp.should_shut_down:
            self.on_shut_down()

    def _heartbeat_while_starting(self) -> None:
        if self.registered and not self.caught_up:
            self.heartbeat()

    def begin_controlled_shutdown(self) -> None:
        """SIGTERM: ask the controller to move leadership away before this broker exits."""
        self.want_shut_down = True
        self.heartbeat()
