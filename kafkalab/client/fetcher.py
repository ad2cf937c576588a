"""Fetcher: the consumer's I/O thread. Pipelines Fetch requests per leader into a bounded queue.

One Fetch at a time per broker (as Kafka's consumer does), for every assigned, unpaused
partition that broker leads and whose position is known. Positions still symbolic
(OFFSET_BEGINNING, OFFSET_END, or none yet) are resolved with ListOffsets first;
OFFSET_OUT_OF_RANGE applies auto.offset.reset. Decoded Messages go to `queue`, which the
application's poll()/consume() drains; a partition is not fetched while the queue is full.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from kafkalab.client.context import ClientContext
from kafkalab.client.fetched import messages_from_fetch
from kafkalab.client.io_thread import IoThread
from kafkalab.client.message import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, Message
from kafkalab.client.metadata import METADATA_ERRORS
from kafkalab.protocol.build import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    fetch_request,
    fetch_results,
    list_offsets_request,
    list_offsets_results,
)
from kafkalab.protocol.errors import ErrorCode, KafkaError

TP = tuple[str, int]


@dataclass
class PartitionState:
    position: int  # next offset to fetch; < 0: OFFSET_BEGINNING / OFFSET_END / not known yet
    paused: bool = False
    version: int = 0  # bumped by seek/pause: answers to requests sent before are dropped
    in_flight: bool = False
    high_watermark: int = OFFSET_INVALID
    log_start_offset: int = OFFSET_INVALID
    last_stable_offset: int = OFFSET_INVALID
    retry_at: float = 0.0
    failed: bool = False  # auto.offset.reset=none and no offset: wait for seek()
    # The fetch position once every message before it is in the queue: offsets between the
    # last message and it hold only control batches or aborted records, never handed out.
    delivered_to: int = OFFSET_INVALID


class MessageQueue:
    """Fetched messages waiting for poll()/consume(), with a condition to wait on."""

    def __init__(self) -> None:
        self.items: deque[Message] = deque()
        self.cond = threading.Condition(threading.Lock())

    def put_many(self, msgs: list[Message]) -> None:
        if msgs:
            with self.cond:
                self.items.extend(msgs)
                self.cond.notify_all()

    def holds(self, tp: TP) -> bool:
        with self.cond:
            return any(m.topic() == tp[0] and m.partition() == tp[1] for m in self.items)

    def drop(self, tps: set[TP]) -> None:
        with self.cond:
            keep = [m for m in self.items if (m.topic(), m.partition()) not in tps]
            self.items.clear()
            self.items.extend(keep)


class Fetcher(IoThread):
    client_type = "consumer"

    def __init__(self, ctx: ClientContext, cfg: dict[str, Any], lock: threading.Lock,
                 assignment: dict[TP, PartitionState], queue: MessageQueue, group: Any = None):
        super().__init__(ctx, cfg["request.timeout.ms"], name=f"kafkalab-fetcher-{ctx.node}")
        self.cfg = cfg
        self.lock = lock
        self.assignment = assignment
        self.queue = queue
        self.read_committed = cfg["isolation.level"] == "read_committed"
        self.reset = cfg["auto.offset.reset"]
        self.backoff_s = cfg["retry.backoff.ms"] / 1000.0
        self.max_queued = cfg["queued.max.messages"]
        self.need_metadata = True
        self._metadata_not_before = 0.0
        self._next_metadata = 0.0
        self._fetching: set[int] = set()  # brokers with a Fetch out
        self.records_received = self.bytes_received = self.errors = 0
        self._notified_seq = 0
        self.group = group  # a GroupDriver when the consumer subscribes (membership.py)

    def counters(self) -> dict[str, int]:
        return {"records_received": self.records_received, "bytes_received": self.bytes_received,
                "errors": self.errors}

    def step(self, now: float) -> float:
        wait = self._step_fetch(now)
        if self.group is not None:
            wait = min(wait, self.group.step(self.net, now))
            seq = self.group.member.seq
            if seq != self._notified_seq or self.group.member.error is not None:
                self._notified_seq = seq
                with self.queue.cond:  # the application thread has callbacks to run
                    self.queue.cond.notify_all()
        return wait

    def _step_fetch(self, now: float) -> float:
        assert self.net is not None
        md = self.net.metadata
        with self.lock:
            topics = sorted({t for t, _ in self.assignment})
            todo = [(tp, st.position, st.version) for tp, st in self.assignment.items()
                    if not st.paused and not st.in_flight and not st.failed and now >= st.retry_at]
        if topics and ((self.need_metadata and now >= self._metadata_not_before) or now >= self._next_metadata
                       or any(t not in md.topics for t in topics)):
            if self.net.refresh_metadata(topics, now, self._metadata_done):
                self.need_metadata = False
                self._metadata_not_before = now + self.backoff_s
                self._next_metadata = now + self.cfg["metadata.max.age.ms"] / 1000.0
        full = len(self.queue.items) >= self.max_queued
        resets: dict[int, dict[TP, tuple[int, int]]] = {}
        fetches: dict[int, dict[TP, tuple[int, int]]] = {}
        for tp, pos, version in todo:
            leader = md.leader_for(*tp)
            if leader is None:
                self.need_metadata = True
                continue
            if pos < 0:
                resets.setdefault(leader, {})[tp] = (pos, version)
            elif not full and leader not in self._fetching:
                fetches.setdefault(leader, {})[tp] = (pos, version)
        for leader, parts in resets.items():
            self._list_offsets(leader, parts, now)
        for leader, parts in fetches.items():
            self._fetch(leader, parts, now)
        return self.backoff_s if self.need_metadata else 0.25

    def _metadata_done(self, results: Any) -> None:
        if isinstance(results, Exception) or any(t["error_code"] for t in results["topics"].values()):
            self.need_metadata = True

    def _mark(self, parts: dict[TP, tuple[int, int]], in_flight: bool) -> None:
        with self.lock:
            for tp, (_, version) in parts.items():
                st = self.assignment.get(tp)
                if st is not None and st.version == version:
                    st.in_flight = in_flight

    def _current(self, tp: TP, version: int) -> PartitionState | None:
        st = self.assignment.get(tp)
        return st if st is not None and st.version == version else None

    # ---- resolving symbolic positions ----------------------------------------------------
    def _list_offsets(self, leader: int, parts: dict[TP, tuple[int, int]], now: float) -> None:
        assert self.net is not None
        spec: dict[str, dict[int, int]] = {}
        for (topic, p), (pos, _) in parts.items():
            if pos == OFFSET_BEGINNING:
                ts = EARLIEST_TIMESTAMP
            elif pos == OFFSET_END:
                ts = LATEST_TIMESTAMP
            elif self.reset == "earliest":
                ts = EARLIEST_TIMESTAMP
            elif self.reset == "latest":
                ts = LATEST_TIMESTAMP
            else:
                self._fail_no_offset((topic, p), parts[(topic, p)][1], "has no offset to start from")
                continue
            spec.setdefault(topic, {})[p] = ts
        if not spec:
            return
        self._mark(parts, True)
        req = list_offsets_request(spec, isolation_level=1 if self.read_committed else 0)

        def done(resp: Any) -> None:
            self._mark(parts, False)
            if isinstance(resp, Exception):
                self._backoff(parts, resp)
                return
            results = list_offsets_results(resp)
            with self.lock:
                for tp, (_, version) in parts.items():
                    row = results.get(tp[0], {}).get(tp[1])
                    st = self._current(tp, version)
                    if st is None or row is None:
                        continue
                    if row["error_code"]:
                        st.retry_at = time.monotonic() + self.backoff_s
                        if row["error_code"] in METADATA_ERRORS:
                            self.need_metadata = True
                        continue
                    st.position = row["offset"]
            self.waker.wake()

        self.net.send(leader, req, done, now)

    def _fail_no_offset(self, tp: TP, version: int, why: str) -> None:
        with self.lock:
            st = self._current(tp, version)
            if st is None:
                return
            st.failed = True
        self.errors += 1
        self.queue.put_many([Message(tp[0], tp[1], OFFSET_INVALID, error=KafkaError(
            ErrorCode.offset_out_of_range,
            f"{tp[0]}[{tp[1]}] {why} and auto.offset.reset='none': seek() to an offset, or set "
            "auto.offset.reset to 'earliest' or 'latest'"))])

    def _backoff(self, parts: dict[TP, tuple[int, int]], err: Exception) -> None:
        self.need_metadata = True
        with self.lock:
            for tp, (_, version) in parts.items():
                st = self._current(tp, version)
                if st is not None:
                    st.retry_at = time.monotonic() + self.backoff_s

    # ---- fetching ---------------------------------------------------------------------
    def _fetch(self, leader: int, parts: dict[TP, tuple[int, int]], now: float) -> None:
        assert self.net is not None
        md = self.net.metadata
        spec: dict[str, dict[int, dict[str, int]]] = {}
        for (topic, p), (pos, _) in parts.items():
            spec.setdefault(topic, {})[p] = {"fetch_offset": pos,
                                             "current_leader_epoch": md.leader_epoch(topic, p)}
        req = fetch_request(spec, max_wait_ms=self.cfg["fetch.max.wait.ms"],
                            min_bytes=self.cfg["fetch.min.bytes"], max_bytes=self.cfg["fetch.max.bytes"],
                            partition_max_bytes=self.cfg["max.partition.fetch.bytes"],
                            isolation_level=1 if self.read_committed else 0)
        self._mark(parts, True)
        self._fetching.add(leader)

        def done(resp: Any) -> None:
            self._fetching.discard(leader)
            self._mark(parts, False)
            if isinstance(resp, Exception):
                self._backoff(parts, resp)
                return
            if resp.error_code:
                self._backoff(parts, KafkaError(resp.error_code))
                return
            self._apply_fetch(parts, fetch_results(resp))

        self.net.send(leader, req, done, now)

    def _apply_fetch(self, parts: dict[TP, tuple[int, int]], results: dict[str, Any]) -> None:
        out: list[Message] = []
        advanced: list[tuple[TP, int, int]] = []
        for tp, (pos, version) in parts.items():
            row = results.get(tp[0], {}).get(tp[1])
            if row is None:
                continue
            code = row["error_code"]
            if code == ErrorCode.offset_out_of_range:
                self._out_of_range(tp, pos, version, row)
                continue
            if code:
                with self.lock:
                    st = self._current(tp, version)
                    if st is not None:
                        st.retry_at = time.monotonic() + self.backoff_s
                if code in METADATA_ERRORS:
                    self.need_metadata = True
                else:
                    self.errors += 1
                    out.append(Message(tp[0], tp[1], pos, error=KafkaError(code)))
                continue
            records = row["records"]
            try:
                msgs, next_offset = messages_from_fetch(
                    tp[0], tp[1], records, pos, read_committed=self.read_committed,
                    aborted_transactions=row["aborted_transactions"], check_crcs=self.cfg["check.crcs"])
            except Exception as e:  # a corrupt batch: report it, do not kill the thread
                self.errors += 1
                out.append(Message(tp[0], tp[1], pos, error=KafkaError(
                    ErrorCode.corrupt_message, f"{tp[0]}[{tp[1]}] at offset {pos}: {e}")))
                continue
            with self.lock:
                st = self._current(tp, version)
                if st is None or st.position != pos:
                    continue  # seeked or paused meanwhile: these records are stale
                st.high_watermark = row["high_watermark"]
                st.log_start_offset = row["log_start_offset"]
                st.last_stable_offset = row["last_stable_offset"]
                st.position = next_offset
            self.records_received += len(msgs)
            self.bytes_received += len(records or b"")
            out.extend(msgs)
            advanced.append((tp, version, next_offset))
        self.queue.put_many(out)
        with self.lock:  # only now: the messages before these offsets are queued
            for tp, version, next_offset in advanced:
                st = self._current(tp, version)
                if st is not None and st.position == next_offset:
                    st.delivered_to = next_offset

    def _out_of_range(self, tp: TP, pos: int, version: int, row: dict[str, Any]) -> None:
        if self.reset == "none":
            self._fail_no_offset(tp, version, f"offset {pos} is out of range "
                                 f"[{row['log_start_offset']}, {row['high_watermark']}]")
            return
        with self.lock:
            st = self._current(tp, version)
            if st is not None and st.position == pos:
                st.position = OFFSET_BEGINNING if self.reset == "earliest" else OFFSET_END
