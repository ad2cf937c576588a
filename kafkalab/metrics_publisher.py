"""The publishing half of metrics, for lab processes: no pandas here (it would cost every
broker a third of a second at start-up). The collecting half is kafkalab.metrics.

Processes publish their state on a timer (metrics.publish.interval.ms), but a state row that
says what its last one said is not sent again until HEARTBEAT_S has passed (`ChangeFilter`):
a quiet cluster sends a row per replica, group, lag or transaction about once a second, which
is enough for the views to tell a live replica from a silent one (they call a report older than
3 s stale). A broker decides about its own "broker" row the same way (its counters move with
the replicas' long polls: not news). A `describe_*` call that waits for rows newer than itself
asks every process to publish now, through the Cluster's fault channel (`batch(force=True)`).

A message is one or more (kind, row) pairs of frames: what a process publishes on one tick goes
out as one message (`batch()`), one wake-up of ZeroMQ's I/O threads and of the collector
instead of one per row; an idle process's cost is its wake-ups.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import zmq

_PUBLISH_SNDHWM = 100  # a few seconds of state; older updates are worth nothing once dropped

# An unchanged state row is sent again after this long, so the collector knows its sender is
# alive; the views' staleness thresholds (widgets: 3 s) allow two of them to be lost.
HEARTBEAT_S = 1.0
# What identifies the thing a row of each state kind describes (besides the sending node).
# Kinds not listed are always sent: events; "broker" and "group" rows, which are their
# process's and group's keep-alives (describe_topic and describe_group wait for one newer
# than their call); anything new.
STATE_KEYS: dict[str, tuple[str, ...]] = {
    "replica": ("broker", "topic", "partition"),
    "lag": ("group", "topic", "partition"),
    "txn": ("transactional_id",),
    "share_partition": ("broker", "group", "topic", "partition"),
    "quorum": ("controller_id",),
    "controller": ("controller_id",),
    "client": ("client_type",),
    "group": ("group",),
}
# Every kind whose rows describe a lasting thing, by what identifies it: the collector counts
# a row that repeats its predecessor as no change (what a dashboard waits for).
IDENTITY_KEYS: dict[str, tuple[str, ...]] = {**STATE_KEYS, "broker": ("broker",)}
# Fields that move with the clock alone (ms since a follower caught up): not a change.
VOLATILE_FIELDS = frozenset({"time", "lag_ms", "follower_lag_ms"})
# Broker row fields that the replicas' own long polls move while nothing happens: sent, but
# not news (for the broker deciding to send its row, and for a dashboard waiting for a change).
BROKER_NOT_NEWS = frozenset({"fetch_requests", "incremental_fetch_requests", "request_latency_ms_p50",
                             "request_latency_ms_p99"})


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


def state_key(kind: str, row: Mapping[str, Any],
              table: Mapping[str, tuple[str, ...]] = STATE_KEYS) -> tuple[Any, ...] | None:
    """(kind, node, ids...) of a state row; None for a kind not in `table` (always sent)."""
    keys = table.get(kind)
    if keys is None:
        return None
    return (kind, row.get("node"), *(_hashable(row.get(k)) for k in keys))


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def content(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a row says, without the fields that only tell the time."""
    return {k: v for k, v in row.items() if k not in VOLATILE_FIELDS}


class ChangeFilter:
    """Which rows to send: a state row that changed, or whose last copy was sent at least
    `heartbeat_s` ago; every row of any other kind. Pure: the caller passes the time."""

    def __init__(self, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.heartbeat_s = heartbeat_s
        self._last: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}  # key -> (sent at, content)
        self.suppressed = 0  # rows not sent because they said nothing new

    def due(self, kind: str, row: Mapping[str, Any], now: float) -> bool:
        key = state_key(kind, row)
        if key is None:
            return True
        said = content(row)
        last = self._last.get(key)
        if last is not None and last[1] == said and now - last[0] < self.heartbeat_s:
            self.suppressed += 1
            return False
        self._last[key] = (now, said)
        return True


class MetricsPublisher:
    """PUB socket a process uses to report its state; never blocks, drops when full.

    It connects to the collector (not the other way round), so a restarted process simply
    connects again. Thread-safe: client threads of one process may share it. State rows that
    repeat themselves are held back (ChangeFilter) until their heartbeat is due.
    """

    def __init__(self, ctx: zmq.Context | None, endpoint: str, node: str,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.node = node
        self.endpoint = endpoint
        self.dropped = 0
        self.changes = ChangeFilter(heartbeat_s)
        self._lock = threading.Lock()
        self._held: list[bytes] | None = None  # frames kept for one message, inside batch()
        self._forced = False  # inside batch(force=True): every row goes out
        self._socket: zmq.Socket | None = (ctx or zmq.Context.instance()).socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, _PUBLISH_SNDHWM)
        self._socket.connect(endpoint)

    def publish(self, kind: str, row: Mapping[str, Any]) -> None:
        message = dict(row)
        message.setdefault("time", time.time())
        message.setdefault("node", self.node)
        with self._lock:
            if self._socket is None:
                return
            if self._forced:
                self.changes.due(kind, message, time.monotonic())  # sent: its keep-alive restarts
            elif not self.changes.due(kind, message, time.monotonic()):
                return
            frames = [kind.encode(), dumps(message)]
            if self._held is not None:
                self._held += frames
            else:
                self._send(frames)

    @contextlib.contextmanager
    def batch(self, force: bool = False) -> Iterator[None]:
        """Rows published inside go out together as one message when it ends (not nested);
        force: every row, also those that say what their last copy said."""
        with self._lock:
            self._held, self._forced = [], force
        try:
            yield
        finally:
            with self._lock:
                frames, self._held, self._forced = self._held, None, False
                if frames and self._socket is not None:
                    self._send(frames)

    def _send(self, frames: list[bytes]) -> None:
        try:
            self._socket.send_multipart(frames, flags=zmq.DONTWAIT)  # type: ignore[union-attr]
        except zmq.Again:
            self.dropped += len(frames) // 2

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

    @contextlib.contextmanager
    def batch(self, force: bool = False) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass

    def __enter__(self) -> NullPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def publisher_for(ctx: zmq.Context, endpoint: str | None, node: str) -> MetricsPublisher | NullPublisher:
    """A process's publisher: real when the cluster collects metrics, silent otherwise."""
    return MetricsPublisher(ctx, endpoint, node) if endpoint else NullPublisher()
