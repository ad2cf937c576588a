"""The broker's channel to the controller (Kafka's NodeToControllerChannelManager).

Everything the broker asks the controller (registration, heartbeats, the metadata fetch,
AlterPartition, producer id blocks, forwarded CreateTopics/DeleteTopics ...) goes through
`send`, to the controller this broker follows. With one controller there is one channel and
nothing to choose; with a quorum the broker follows the active one: it turns to the one a
"not controller" answer names, or to the next in turn when the one it follows is silent for
too long. Requests in flight to a controller it leaves fail with NOT_CONTROLLER. This is the
only place the broker knows how many controllers there are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafkalab.clock import Clock
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.transport.channel import Channel, OnError, OnResponse


class ControllerChannelManager:
    def __init__(self, channels: dict[int, Channel], clock: Clock, silence_s: float):
        if not channels:
            raise ValueError("a broker needs at least one controller to talk to")
        self.channels = dict(sorted(channels.items()))
        self.clock = clock
        self.active_id = next(iter(self.channels))
        # Heartbeats are answered at once, so this long a silence means the controller is gone.
        self.silence_s = silence_s
        self._heard = clock.monotonic()
        self.on_follow: Callable[[], None] = lambda: None  # a new controller is followed

    @property
    def quorum(self) -> bool:
        return len(self.channels) > 1

    def send(self, request: Any, on_response: OnResponse, on_error: OnError | None = None) -> int:
        controller = self.active_id

        def answered(response: Any) -> None:
            if controller == self.active_id:
                self._heard = self.clock.monotonic()
            on_response(response)

        return self.channels[controller].send(request, answered, on_error)

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
        self.channels[old].fail_all(KafkaError(
            ErrorCode.not_controller, f"the broker turned from controller {old} to {target}"))
        self.on_follow()

    def attach(self, loop: Any) -> None:
        for channel in self.channels.values():
            channel.attach(loop)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
