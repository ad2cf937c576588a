"""The publishing half of metrics, for lab processes: no pandas here (it would cost every
broker a third of a second at start-up). The collecting half is kafkalab.metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import zmq

_PUBLISH_SNDHWM = 100  # a few seconds of state; older updates are worth nothing once dropped


def _json_default(value: Any) -> Any:
    """Encode numpy scalars and arrays, sets and tuples that process code may hand us."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    for method in ("item", "tolist"):  # numpy scalars, then arrays
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    return str(value)


def dumps(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, default=_json_default, separators=(",", ":")).encode()


class MetricsPublisher:
    """PUB socket a process uses to report its state; never blocks, drops when full.

    It connects to the collector (not the other way round), so a restarted process simply
    connects again. Thread-safe: client threads of one process may share it.
    """

    def __init__(self, ctx: zmq.Context | None, endpoint: str, node: str) -> None:
        self.node = node
        self.endpoint = endpoint
        self.dropped = 0
        self._lock = threading.Lock()
        self._socket: zmq.Socket | None = (ctx or zmq.Context.instance()).socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, _PUBLISH_SNDHWM)
        self._socket.connect(endpoint)

    def publish(self, kind: str, row: Mapping[str, Any]) -> None:
        message = dict(row)
        message.setdefault("time", time.time())
        message.setdefault("node", self.node)
        payload = dumps(message)
        with self._lock:
            if self._socket is None:
                return
            try:
                self._socket.send_multipart([kind.encode(), payload], flags=zmq.DONTWAIT)
            except zmq.Again:
                self.dropped += 1

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None

    def __enter__(self) -> MetricsPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullPublisher:
    """Stands in for a publisher when nobody collects (unit tests, scripts)."""

    node = ""
    endpoint = ""
    dropped = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def publish(self, kind: str, row: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def publisher_for(ctx: zmq.Context, endpoint: str | None, node: str) -> MetricsPublisher | NullPublisher:
    """A process's publisher: real when the cluster collects metrics, silent otherwise."""
    return MetricsPublisher(ctx, endpoint, node) if endpoint else NullPublisher()
