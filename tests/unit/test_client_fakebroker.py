"""A small fake broker for the client tests: RpcServers in one thread, answering from dicts.

Not a test module of its own (no tests here); test_client_producer/consumer import it.
It speaks Metadata, Produce, Fetch, ListOffsets and InitProducerId with Kafka's semantics,
and can be told to fail the next produce requests with given error codes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import zmq

from kafkalab.client.context import ClientContext
from kafkalab.protocol import build
from kafkalab.protocol.apis import ZMQ_VERSIONS, response_class
from kafkalab.protocol.errors import ErrorCode
from kafkalab.records import decode_batch, iter_batches
from kafkalab.records.header import set_base_offset
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.rpc import RpcServer


class FakeCluster:
    def __init__(self, broker_ids: tuple[int, ...] = (1,), topics: dict[str, int] | None = None):
        self.faults = FaultTable()
        self.zctx = zmq.Context()
        self.servers = {b: RpcServer(self.zctx, f"broker-{b}", 0, self.faults) for b in broker_ids}
        self.leaders: dict[tuple[str, int], int] = {}
        self.logs: dict[tuple[str, int], list[tuple[int, bytes]]] = defaultdict(list)  # (base, batch)
        self.log_start: dict[tuple[str, int], int] = defaultdict(int)
        self.produce_errors: dict[tuple[str, int], deque[int]] = defaultdict(deque)
        self.produce_delay_s = 0.0  # answer Produce this much later (a slow broker)
        self.requests: list[tuple[int, str, Any]] = []  # (broker, api name, body)
        self.lock = threading.Lock()
        self.next_pid = 1000
        for t, n in (topics or {}).items():
            self.create_topic(t, n)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def create_topic(self, topic: str, partitions: int) -> None:
        ids = sorted(self.servers)
        with self.lock:
            for p in range(partitions):
                self.leaders[(topic, p)] = ids[p % len(ids)]

    def context(self, node: str = "client-1", metrics: Any = None) -> ClientContext:
        return ClientContext(node, {b: s.endpoint for b, s in self.servers.items()}, self.faults, metrics)

    def end_offset(self, tp: tuple[str, int]) -> int:
        log = self.logs[tp]
        if not log:
            return self.log_start[tp]
        _, batch = log[-1]
        return [h for _, h in iter_batches(batch)][-1].next_offset

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        for s in self.servers.values():
            s.close()
        self.zctx.term()

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- serving --------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        for s in self.servers.values():
            poller.register(s.socket, zmq.POLLIN)
        delayed: list[tuple[float, int, Any, Any]] = []  # (due, broker, envelope, response)
        while not self._stop:
            poller.poll(10)
            now = time.monotonic()
            for b, s in self.servers.items():
                for env in s.receive(now):
                    handler: Callable[[int, Any], Any] = getattr(self, f"_{env.api_key}")
                    with self.lock:
                        self.requests.append((b, env.api_name, env.body))
                        resp = handler(b, env.body)
                    if resp is not None:
                        if isinstance(resp, tuple):  # (delay_s, response): fetch long poll
                            delayed.append((now + resp[0], b, env, resp[1]))
                        else:
                            s.reply(env, resp)
            for item in [d for d in delayed if d[0] <= now]:
                delayed.remove(item)
                self.servers[item[1]].reply(item[2], item[3])

    def _3(self, broker: int, req: Any) -> Any:  # Metadata
        names = {self_t for self_t, _ in self.leaders}
        wanted = names if req.topics is None else [t.name for t in req.topics]
        topics, errors = {}, {}
        for t in wanted:
            if t not in names:
                errors[t] = ErrorCode.unknown_topic_or_partition
                continue
            topics[t] = {p: {"leader_id": ld, "leader_epoch": 1, "replica_nodes": [ld], "isr_nodes": [ld]}
                         for (tn, p), ld in self.leaders.items() if tn == t}
        return build.metadata_response({b: ("127.0.0.1", 9092 + b) for b in self.servers}, topics,
                                       controller_id=min(self.servers), cluster_id="fake",
                                       topic_errors=errors)

    def _0(self, broker: int, req: Any) -> Any:  # Produce
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for t in req.topic_data:
            for pd in t.partition_data:
                tp = (t.name, pd.index)
                row = out.setdefault(t.name, {})[pd.index] = {}
                if self.leaders.get(tp) is None:
                    row["error_code"] = ErrorCode.unknown_topic_or_partition
                elif self.leaders[tp] != broker:
                    row["error_code"] = ErrorCode.not_leader_or_follower
                elif self.produce_errors[tp]:
                    row["error_code"] = self.produce_errors[tp].popleft()
                else:
                    batch = bytearray(pd.records)
                    base = self.end_offset(tp)
                    set_base_offset(batch, base)
                    self.logs[tp].append((base, bytes(batch)))
                    row.update(error_code=0, base_offset=base, log_start_offset=self.log_start[tp])
        if req.acks == 0:
            return None
        resp = build.produce_response(out)
        return (self.produce_delay_s, resp) if self.produce_delay_s else resp

    def _1(self, broker: int, req: Any) -> Any:  # Fetch
        out: dict[str, dict[int, dict[str, Any]]] = {}
        total = 0
        for t in req.topics:
            for fp in t.partitions:
                tp = (t.topic, fp.partition)
                hw = self.end_offset(tp)
                row = out.setdefault(t.topic, {})[fp.partition] = {"high_watermark": hw,
                                                                   "log_start_offset": self.log_start[tp],
                                                                   "last_stable_offset": hw}
                if self.leaders.get(tp) != broker:
                    row["error_code"] = ErrorCode.not_leader_or_follower
                elif not self.log_start[tp] <= fp.fetch_offset <= hw:
                    row["error_code"] = ErrorCode.offset_out_of_range
                else:
                    chunks = [b for base, b in self.logs[tp]
                              if [h for _, h in iter_batches(b)][-1].next_offset > fp.fetch_offset]
                    data = b"".join(chunks)[: fp.partition_max_bytes]
                    row["records"] = data
                    total += len(data)
        resp = build.fetch_response(out)
        min_bytes = req.min_bytes
        if total < min_bytes:
            return (build.to_ms(req.max_wait) / 1000.0, resp)
        return resp

    def _2(self, broker: int, req: Any) -> Any:  # ListOffsets
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for t in req.topics:
            for p in t.partitions:
                tp = (t.name, p.partition_index)
                if p.timestamp == -2:
                    off = self.log_start[tp]
                elif p.timestamp == -1:
                    off = self.end_offset(tp)
                else:
                    off = self.end_offset(tp)
                    for _base, b in self.logs[tp]:
                        hit = [r.offset for r in decode_batch(b).records if r.timestamp >= p.timestamp]
                        if hit:
                            off = hit[0]
                            break
                out.setdefault(t.name, {})[p.partition_index] = {"error_code": 0, "offset": off, "timestamp": -1}
        return build.list_offsets_response(out)

    def _22(self, broker: int, req: Any) -> Any:  # InitProducerId
        self.next_pid += 1
        cls = response_class(22, ZMQ_VERSIONS[22])
        return cls(throttle_time=build.ms(0), error_code=ErrorCode.none, producer_id=self.next_pid,
                   producer_epoch=0)


def wait_for(cond: Callable[[], Any], timeout_s: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)
