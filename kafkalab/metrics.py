"""Metrics: every process publishes its state on ZeroMQ; the notebook's collector keeps history.

Processes hold a `MetricsPublisher` (kafkalab.metrics_publisher: a PUB socket that
*connects* to the collector, so a restarted broker simply reconnects). The notebook holds one `MetricsCollector` (a SUB socket
bound on loopback, drained by a daemon thread into bounded per-kind deques). Widgets and labs
read pandas frames from it, or from a `MetricsSnapshot` saved to JSON for static rendering.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import zmq

from .lazy_pandas import pd

# The publishing half lives apart so lab processes need not import pandas; it is re-exported
# here so `from kafkalab.metrics import MetricsPublisher` keeps working.
from .metrics_publisher import (
    BROKER_NOT_NEWS,
    IDENTITY_KEYS,
    MetricsPublisher,
    NullPublisher,
    content,
    dumps,
    state_key,
)
from .metrics_publisher import _json_default as _json_default

__all__ = [
    "KIND_COLUMNS",
    "MetricsCollector",
    "MetricsPublisher",
    "MetricsSnapshot",
    "MetricsSource",
    "NullPublisher",
    "as_rows",
    "throughput_from_frames",
    "throughput_from_rows",
]

# The columns every named view returns, even when no row of that kind has arrived yet.
KIND_COLUMNS: dict[str, list[str]] = {
    "replica": [
        "time", "node", "broker", "topic", "partition", "is_leader", "leader", "leader_epoch",
        "log_start_offset", "log_end_offset", "high_watermark", "last_stable_offset", "isr",
        "segments", "size_bytes", "lag_offsets", "lag_ms",
    ],
    "broker": [
        "time", "node", "broker", "state", "bytes_in", "bytes_out", "messages_in",
        "produce_requests", "fetch_requests", "request_latency_ms_p50", "request_latency_ms_p99",
        "kafka_bytes_in", "kafka_bytes_out", "kafka_sendfile_bytes", "kafka_requests", "kafka_connections",
        "faults_version",
    ],
    "event": [
        "time", "node", "event", "detail", "topic", "partition", "broker", "isr", "leader",
        "leader_epoch", "group", "generation",
    ],
    "quorum": [
        "time", "node", "controller_id", "role", "epoch", "leader", "active", "high_watermark",
        "log_end_offset", "voter_end_offsets",
    ],
    "client": [
        "time", "node", "client_type", "records_sent", "bytes_sent", "batches_sent",
        "records_received", "bytes_received", "errors", "retries", "records_per_batch",
        "bytes_per_batch", "compression_ratio", "linger_waited_ms", "request_latency_ms_p50",
        "request_latency_ms_p99",
    ],
    "group": ["time", "group", "state", "generation", "members", "protocol", "assignment"],
    "lag": ["time", "group", "topic", "partition", "committed_offset", "log_end_offset", "lag"],
    "share_partition": [
        "time", "broker", "group", "topic", "partition", "start_offset", "end_offset", "high_watermark",
        "available", "acquired", "acknowledged", "archived", "not_yet_acquired", "acknowledged_total",
        "archived_total", "lock_expiries", "redeliveries", "next_lock_expiry_ms", "acquired_by", "accepted_by",
    ],
    "txn": ["time", "transactional_id", "state", "producer_id", "producer_epoch", "partitions"],
    "controller": ["time", "node", "controller_id", "active", "metadata_offset", "brokers"],
}

# Ids and epochs that only some rows of a kind carry: kept as integers (pandas' nullable
# Int64), so a table prints "broker 2", not "2.0" next to NaN.
INTEGER_COLUMNS: dict[str, list[str]] = {
    "event": ["partition", "broker", "leader", "leader_epoch", "generation"],
}

THROUGHPUT_COLUMNS = [
    "time", "records_in_per_s", "mb_in_per_s", "records_out_per_s", "mb_out_per_s",
    "broker_mb_in_per_s", "broker_mb_out_per_s",
]

_REPLICA_KEY = ("broker", "topic", "partition")


# --------------------------------------------------------------------------------------------
# Pure derivations over rows (shared by the live collector and saved snapshots). The views
# compute on these plain dicts, so a notebook that never asks for a frame never imports
# pandas; the frame methods are built from the same rows.


def _missing(value: Any) -> bool:
    """None, a float NaN, or pandas' NA/NaT (a frame turned back into rows)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def as_rows(data: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts from rows or a DataFrame (NaN and NA become None, numpy scalars
    Python ones), so the views' pure functions take either without importing pandas."""
    if data is None:
        return []
    if hasattr(data, "columns") and hasattr(data, "to_dict"):
        out = []
        for row in data.to_dict("records"):
            clean = {}
            for k, v in row.items():
                if hasattr(v, "item") and not isinstance(v, list | dict):
                    v = v.item()
                clean[k] = None if _missing(v) else v
            out.append(clean)
        return out
    return [r if isinstance(r, dict) else dict(r) for r in data]


def number(value: Any) -> float | None:
    """A value as a float, None when it is missing or not a number (pandas' to_numeric with
    errors="coerce")."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        return None if math.isnan(parsed) else parsed
    return None


def _sort_value(value: Any) -> tuple[bool, Any]:
    """A sort key that puts missing values last, as pandas does."""
    return (True, 0) if _missing(value) else (False, value)


def latest_rows(rows: Iterable[Mapping[str, Any]], keys: list[str] | tuple[str, ...]
                ) -> list[dict[str, Any]]:
    """The newest row per key, sorted by key (as `latest_by` on a frame)."""
    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["time"]):
        newest[tuple(row.get(k) for k in keys)] = dict(row)
    return [newest[k] for k in sorted(newest, key=lambda key: [_sort_value(v) for v in key])]


def _to_frame(rows: Iterable[Mapping[str, Any]], kind: str) -> pd.DataFrame:
    columns = KIND_COLUMNS.get(kind, ["time", "node"])
    rows = list(rows)
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame.from_records(rows)
    extras = [c for c in frame.columns if c not in columns]
    frame = frame.reindex(columns=columns + extras)
    for column in INTEGER_COLUMNS.get(kind, []):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.dropna().mod(1).eq(0).all():  # never round a real fraction away
            frame[column] = values.round().astype("Int64")
    return frame


def latest_by(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest row per key, sorted by key."""
    if frame.empty:
        return frame
    newest = frame.sort_values("time", kind="stable").drop_duplicates(keys, keep="last")
    return newest.sort_values(keys, kind="stable").reset_index(drop=True)


def _counter_increments(rows: list[dict[str, Any]], keys: list[str], counters: list[str]
                        ) -> list[dict[str, float]]:
    """Per-row increments of cumulative counters, per series identified by `keys`, in time order.

    A counter that goes down means its process restarted from zero, so the whole new value
    is the increment. A series' first row only establishes the baseline.
    """
    previous: dict[tuple[Any, ...], dict[str, float | None]] = {}
    out = []
    for row in sorted(rows, key=lambda r: float(r["time"])):
        series = tuple(row.get(k) for k in keys)
        before = previous.setdefault(series, {})
        step: dict[str, float] = {"time": float(row["time"])}
        for counter in counters:
            value, last = number(row.get(counter)), before.get(counter)
            if last is None or value is None:
                step[counter] = 0.0
            else:
                step[counter] = value - last if value - last >= 0 else value  # went down: restarted
            before[counter] = value
        out.append(step)
    return out


def throughput_from_rows(clients: Iterable[Mapping[str, Any]], brokers: Iterable[Mapping[str, Any]],
                         window_s: float = 1.0) -> list[dict[str, float]]:
    """Rates per window: records/s and MB/s produced (in) and consumed (out).

    Client counters give the records; brokers' bytes_in/bytes_out (which include replication
    traffic) are reported alongside. `time` is the window start (epoch seconds); a window in
    which nothing was reported still happened and shows as zero.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    steps: list[dict[str, float]] = []
    for inc in _counter_increments(
            list(clients), ["node", "client_type"],
            ["records_sent", "bytes_sent", "records_received", "bytes_received"]):
        steps.append({"time": inc["time"], "records_in_per_s": inc["records_sent"],
                      "mb_in_per_s": inc["bytes_sent"] / 1e6,
                      "records_out_per_s": inc["records_received"],
                      "mb_out_per_s": inc["bytes_received"] / 1e6})
    running = [r for r in brokers if number(r.get("bytes_in")) is not None]
    for inc in _counter_increments(running, ["broker"], ["bytes_in", "bytes_out"]):
        steps.append({"time": inc["time"], "broker_mb_in_per_s": inc["bytes_in"] / 1e6,
                      "broker_mb_out_per_s": inc["bytes_out"] / 1e6})
    if not steps:
        return []
    columns = THROUGHPUT_COLUMNS[1:]
    sums: dict[int, dict[str, list[float]]] = {}
    for step in steps:
        bucket = sums.setdefault(int(step["time"] // window_s), {c: [] for c in columns})
        for column in columns:
            bucket[column].append(step.get(column, 0.0))
    # fsum: correctly rounded whatever the order (pandas' groupby sum differed in the last
    # digit between its sorted and unsorted paths).
    return [{"time": b * window_s,
             **{c: (math.fsum(sums[b][c]) if b in sums else 0.0) / window_s for c in columns}}
            for b in range(min(sums), max(sums) + 1)]


def throughput_from_frames(
    clients: pd.DataFrame, brokers: pd.DataFrame, window_s: float = 1.0
) -> pd.DataFrame:
    """`throughput_from_rows` over frames, as a frame (THROUGHPUT_COLUMNS)."""
    return pd.DataFrame(throughput_from_rows(as_rows(clients), as_rows(brokers), window_s),
                        columns=THROUGHPUT_COLUMNS)


def _int_keys(mapping: Any) -> Any:
    """JSON turns int keys into strings; give broker ids back their type."""
    if not isinstance(mapping, dict):
        return mapping
    return {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: v
            for k, v in mapping.items()}


class MetricsSource:
    """The read side shared by the live collector and saved snapshots.

    Subclasses provide `_rows(kind, since)`. `rows(kind)` and the other `*_rows` reads return
    fresh plain dicts (what the views compute on: no pandas); the frame reads (`replicas()`,
    `events()`, ...) build a fresh DataFrame from the same rows.
    """

    start_time: float = 0.0

    def _rows(self, kind: str, since: float | None) -> list[dict[str, Any]]:
        raise NotImplementedError

    @property
    def version(self) -> int:
        """Grows whenever a row arrives; views skip redraws when it has not moved."""
        return 0

    def kinds(self) -> list[str]:
        raise NotImplementedError

    def rows(self, kind: str, since: float | None = None) -> list[dict[str, Any]]:
        """Rows of `kind` (since `since`) as plain dicts, oldest first."""
        rows = self._rows(kind, since)
        if kind == "controller":
            for row in rows:
                row["brokers"] = _int_keys(row.get("brokers"))
        return rows

    def latest_replica_rows(self) -> list[dict[str, Any]]:
        """The newest row of every replica as plain dicts, sorted by broker, topic, partition."""
        return latest_rows(self._rows("replica", None), _REPLICA_KEY)

    def throughput_rows(self, window_s: float = 1.0, since: float | None = None) -> list[dict[str, float]]:
        """`throughput()` as plain dicts (THROUGHPUT_COLUMNS)."""
        # Read one row before the window too, so its first increment is not lost.
        lead_in = None if since is None else since - window_s
        return throughput_from_rows(self._rows("client", lead_in), self._rows("broker", lead_in),
                                    window_s)

    def frame(self, kind: str, since: float | None = None) -> pd.DataFrame:
        return _to_frame(self.rows(kind, since), kind)

    def replicas(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("replica", since)

    def latest_replicas(self) -> pd.DataFrame:
        return _to_frame(self.latest_replica_rows(), "replica")

    def brokers(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("broker", since)

    def events(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("event", since)

    def clients(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("client", since)

    def groups(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("group", since)

    def lag(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("lag", since)

    def transactions(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("txn", since)

    def controller(self, since: float | None = None) -> pd.DataFrame:
        return self.frame("controller", since)

    def throughput(self, window_s: float = 1.0, since: float | None = None) -> pd.DataFrame:
        return pd.DataFrame(self.throughput_rows(window_s, since), columns=THROUGHPUT_COLUMNS)

    def latest_time(self) -> float | None:
        """The newest row time over all kinds (None when empty)."""
        newest = [rows[-1]["time"] for k in self.kinds() if (rows := self._rows(k, None))]
        return max(newest) if newest else None

    def now(self) -> float:
        """The present as this source sees it: the clock when live, the last row when saved.

        Views measure windows and staleness from it, so a snapshot renders as it looked.
        """
        latest = self.latest_time()
        return self.start_time if latest is None else latest

    def snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot({k: self._rows(k, None) for k in self.kinds()},
                               start_time=self.start_time)


def _decode(at: float, payload: bytes) -> dict[str, Any]:
    row = json.loads(payload)
    row["time"] = at  # the sender may have left it out: the collector's arrival time
    return row


class MetricsCollector(MetricsSource):
    """Binds a SUB socket on 127.0.0.1 and keeps bounded history per kind.

    A daemon thread with its own ZeroMQ context drains the socket; reads copy the rows under
    the lock and build frames outside it. `changes` counts the rows that said something new
    (an event, or a state row unlike its predecessor; a heartbeat repeating it is no change),
    and listeners (add_listener) are called when it moves: a dashboard sleeps until then. History is kept as each row's JSON text, decoded when
    read: a replica row is ~360 bytes so, ~2.3 KB as a dict, and a 3-broker cluster sends tens
    of them a second, which over `history_seconds` came to tens of MB of the kernel's memory.
    """

    def __init__(self, port: int = 0, history_seconds: float = 600.0,
                 max_rows_per_kind: int = 200_000) -> None:
        self.history_seconds = float(history_seconds)
        self.max_rows_per_kind = int(max_rows_per_kind)
        self.start_time = time.time()
        self.malformed = 0
        self._lock = threading.Lock()
        self._rows_by_kind: dict[str, deque[tuple[float, bytes]]] = {}  # (time, JSON)
        self._latest_replica: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._version = 0
        self._changes = 0
        self._said: dict[tuple[Any, ...], dict[str, Any]] = {}  # identity -> its last content
        self._listeners: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._closed = False
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self._socket.bind(f"tcp://127.0.0.1:{port or '*'}")
        except zmq.ZMQError:
            self._socket.close()
            self._ctx.term()
            raise
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        # close() wakes the draining thread through this pair, so it can sleep until a row comes.
        wake = f"inproc://kafkalab-metrics-wake-{id(self)}"
        self._wake_in = self._ctx.socket(zmq.PAIR)
        self._wake_in.bind(wake)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        self._wake_out.connect(wake)
        self._thread = threading.Thread(target=self._drain, name="kafkalab-metrics", daemon=True)
        self._thread.start()

    # -- writing

    def record(self, kind: str, row: Mapping[str, Any]) -> None:
        """Add a row from this process (fault events, client counters)."""
        message = dict(row)
        message.setdefault("time", time.time())
        message.setdefault("node", "notebook")
        message["time"] = float(message["time"])
        if self._append(kind, message, dumps(message)):
            self._tell_listeners()

    def _append(self, kind: str, row: dict[str, Any], payload: bytes) -> bool:
        """Keep a row; returns whether it said something new."""
        at = row["time"]
        with self._lock:
            rows = self._rows_by_kind.get(kind)
            if rows is None:
                rows = self._rows_by_kind[kind] = deque(maxlen=self.max_rows_per_kind)
            rows.append((at, payload))
            cutoff = at - self.history_seconds
            while rows and rows[0][0] < cutoff:
                rows.popleft()
            if kind == "replica":
                key = tuple(row.get(k) for k in _REPLICA_KEY)
                held = self._latest_replica.get(key)
                if held is None or held["time"] <= row["time"]:
                    self._latest_replica[key] = row
            self._version += 1
            identity = state_key(kind, row, IDENTITY_KEYS)
            if identity is None:
                changed = True
            else:
                said = content(row)
                if kind == "broker":
                    said = {k: v for k, v in said.items() if k not in BROKER_NOT_NEWS}
                changed = self._said.get(identity) != said
                self._said[identity] = said
            if changed:
                self._changes += 1
            return changed

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call callback() (from the collector's thread; keep it short) whenever rows that
        say something new have arrived."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _tell_listeners(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback()
            except Exception:  # a broken listener must not stop the collector
                pass

    def _drain(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll():  # until a row comes or close() wakes us
                    continue
                changed = False
                while True:
                    try:
                        frames = self._socket.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    changed |= self._ingest(frames)
                if changed:
                    self._tell_listeners()
        finally:
            self._socket.close(linger=0)
            self._wake_in.close(linger=0)
            self._ctx.term()

    def _ingest(self, frames: list[bytes]) -> bool:
        """One message: (kind, row) pairs of frames (a process's tick sends its rows together)."""
        if not frames or len(frames) % 2:
            self.malformed += 1  # a broken sender must not stop the collector
            return False
        changed = False
        for i in range(0, len(frames), 2):
            payload = frames[i + 1]
            try:
                kind = frames[i].decode()
                row = json.loads(payload)
                if not isinstance(row, dict):
                    raise ValueError("row is not an object")
                row["time"] = float(row.get("time", time.time()))
            except (UnicodeDecodeError, ValueError, TypeError):
                self.malformed += 1
                continue
            changed |= self._append(kind, row, payload)
        return changed

    # -- reading

    @property
    def version(self) -> int:
        return self._version

    @property
    def changes(self) -> int:
        """Grows with every row that said something new (see the class's docstring)."""
        return self._changes

    def kinds(self) -> list[str]:
        with self._lock:
            return list(self._rows_by_kind)

    def _rows(self, kind: str, since: float | None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._rows_by_kind.get(kind)
            copied = list(rows) if rows else []
        if since is not None:
            copied = [entry for entry in copied if entry[0] >= since]
        return [_decode(at, payload) for at, payload in copied]

    def now(self) -> float:
        return time.time()

    def row_count(self, kind: str) -> int:
        with self._lock:
            rows = self._rows_by_kind.get(kind)
            return len(rows) if rows else 0

    def latest_replica_rows(self) -> list[dict[str, Any]]:
        """The newest row of every replica as plain dicts, sorted by broker, topic, partition
        (kept as rows arrive: no history to scan)."""
        with self._lock:
            rows = [dict(r) for r in self._latest_replica.values()]
        return latest_rows(rows, _REPLICA_KEY)

    def wait_for(self, predicate: Callable[[MetricsCollector], bool],
                 timeout: float = 10.0, interval: float = 0.05) -> bool:
        """Poll `predicate(self)` until it holds or `timeout` passes; returns whether it held."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            self._stop.wait(interval)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            self._wake_out.send(b"", flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the thread is gone already
        self._wake_out.close()  # before the join: the thread's ctx.term() waits for it
        self._thread.join(timeout=5.0)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> MetricsCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MetricsSnapshot(MetricsSource):
    """Saved rows with the same read methods, for static rendering (docs, nbval)."""

    FORMAT = "kafkalab-metrics-snapshot/1"

    def __init__(self, rows: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                 start_time: float | None = None) -> None:
        self._rows_by_kind = {
            kind: sorted((dict(r) for r in kind_rows), key=lambda r: r["time"])
            for kind, kind_rows in (rows or {}).items()
        }
        if start_time is None:
            times = [r[0]["time"] for r in self._rows_by_kind.values() if r]
            start_time = min(times) if times else 0.0
        self.start_time = float(start_time)

    def kinds(self) -> list[str]:
        return list(self._rows_by_kind)

    def _rows(self, kind: str, since: float | None) -> list[dict[str, Any]]:
        rows = self._rows_by_kind.get(kind, [])
        return [dict(r) for r in rows if since is None or r["time"] >= since]

    def add(self, kind: str, row: Mapping[str, Any]) -> None:
        """Append a row (tests and docs build snapshots by hand)."""
        message = dict(row)
        message.setdefault("time", time.time())
        # A new list, not an in-place sort: a dashboard thread may be reading the old one.
        rows = [*self._rows_by_kind.get(kind, []), message]
        self._rows_by_kind[kind] = sorted(rows, key=lambda r: r["time"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        document = {"format": self.FORMAT, "start_time": self.start_time,
                    "rows": self._rows_by_kind}
        path.write_text(json.dumps(document, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MetricsSnapshot:
        document = json.loads(Path(path).read_text())
        if not isinstance(document, dict) or document.get("format") != cls.FORMAT:
            raise ValueError(f"{path} is not a kafkalab metrics snapshot "
                             f"(expected format {cls.FORMAT!r}); save one with "
                             f"collector.snapshot().save(path)")
        return cls(document["rows"], start_time=document.get("start_time"))
