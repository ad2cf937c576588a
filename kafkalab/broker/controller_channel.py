"""The broker's channel to the controller (Kafka's NodeToControllerChannelManager).

Everything the broker asks the controller (registration, heartbeats, the metadata fetch,
AlterPartition, producer id blocks, forwarded CreateTopics/DeleteTopics ...) goes through
`send`, to the controller this broker follows. With one controller there is one channel and
nothing to choose; with a quorum the broker follows the active one: it turns to the one a
"not controller" answer names, or to the next in turn when the one it follows is silent for
too long. Requests in flight to a controller it leaves fail with NOT_CONTROLLER. This is the
only place the broker knows how many controllers there are.

Heartbeats may go on channels of their own (`heartbeat_channels`, a second socket to each
controller, named "<broker>/heartbeat" so the fault table treats it as the broker's): their
answers never wake the broker, which reads them at its next wake-up, the next beat at the
latest. A broker heartbeating ten times a second then wakes ten times a second for them, not
twenty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafkalab.clock import Clock
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.transport.channel import Channel, OnError, OnResponse


class ControllerChannelManager:
    def __init__(self, channels: dict[int, Channel], clock: Clock, silence_s: float,
                 heartbeat_channels: dict[int, Channel] | None = None):
        if not channels:
            raise ValueError("a broker needs at least one controller to talk to")
        if heartbeat_channels is not None and set(heartbeat_channels) != set(channels):
            raise ValueError(f"heartbeat channels to controllers {sorted(heartbeat_channels)} "
                             f"must match the channels to {sorted(channels)}")
        self.channels = dict(sorted(channels.items()))
        self.heartbeat_channels = dict(sorted((heartbeat_channels or {}).items()))
        self.clock = clock
        self.active_id = next(iter(self.channels))
        # Heartbeats are answered at once, so this long a silence means the controller is gone.
        self.silence_s = silence_s
        self._heard = clock.monotonic()
        self.on_follow: Callable[[], None] = lambda: None  # a new controller is followed

    @property
    def quorum(self) -> bool:
        return len(self.channels) > 1

    def send(self, request: Any, on_response: OnResponse, on_error: OnError | None = None,
             *, heartbeat: bool = False) -> int:
        """Send to the controller followed; heartbeat: on its heartbeat channel, if any."""
        controller = self.active_id

        def answered(response: Any) -> None:
            if controller == self.active_id:
                self._heard = self.clock.monotonic()
            on_response(response)

        channels = self.heartbeat_channels if heartbeat and self.heartbeat_channels else self.channels
        return channels[controller].send(request, answered, on_error)

    def check_silence(self) -> None:
        """Killed, paused or cut off: a quorum broker tries the next controller."""
        if self.quorum and self.clock.monotonic() - self._heard > self.silence_s:
            self.follow(None)

    def follow(self, target: int | None) -> None:
        """Turn to controller `target` (None: the next one in turn). Requests in flight to
        the old one fail; the new active controller knows this broker's committed
        registration and gives it a fresh session."""
        if not self.quorum:
            return
        ids = list(self.channels)
        if target not in self.channels:
            target = ids[(ids.index(self.active_id) + 1) % len(ids)]
        self._heard = self.clock.monotonic()
        old = self.active_id
        if target == old:
            return
        self.active_id = target
        for channels in (self.channels, self.heartbeat_channels):
            if old in channels:
                channels[old].fail_all(KafkaError(
                    ErrorCode.not_controller, f"the broker turned from controller {old} to {target}"))
        self.on_follow()

    def attach(self, loop: Any) -> None:
        for channel in self.channels.values():
            channel.attach(loop)
        for channel in self.heartbeat_channels.values():
            channel.attach(loop, wake=False)

    def close(self) -> None:
        for channel in (*self.channels.values(), *self.heartbeat_channels.values()):
            channel.close()
