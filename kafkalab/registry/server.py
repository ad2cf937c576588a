"""The schema registry process: Confluent's REST API on a loopback HTTP port, its state in
the compacted `_schemas` topic of the cluster.

On start it writes a NOOP record and reads `_schemas` from offset 0 up to that record, applying
every record to the core (as Confluent's KafkaStore does to know it has caught up); only then
does it serve. Each change the core asks for is written with acks=all and applied after the
brokers acknowledge it, under one lock: this process is the single leader every write goes
through. (Confluent runs several registries: they elect a leader through the Kafka group
protocol, the others forward writes to it and keep their state by tailing `_schemas`; one
process is enough to teach the idea.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kafkalab.registry import rest
from kafkalab.registry.core import STORE_ERROR, STORE_TIMEOUT, SchemaRegistry
from kafkalab.registry.records import TOPIC, Record, noop_key

NODE = "schema-registry"


class StoreError(Exception):
    """`_schemas` could not take a write (or be read): the request fails with 50001/50002."""

    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code = error_code


class RegistryService:
    """The core behind one lock, with the store that makes its records durable.

    A write that fails or times out may still land in `_schemas` later (a request already on
    its way to the broker). So after a failed write the state is stale, and before the next
    request the service reads `_schemas` up to a fresh NOOP (`store.catch_up`) — the same
    idempotent producer writes that NOOP to the same partition, so an earlier record lands
    before it or never. Until that succeeds, reads are served from what is known and writes
    are refused (ids must never be handed out twice)."""

    def __init__(self, registry: SchemaRegistry, store: Any):
        self.registry = registry
        self._store = store
        self._lock = threading.Lock()
        self.stale = False

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes | None) -> tuple[int, Any]:
        with self._lock:
            if self.stale:
                try:
                    self._store.catch_up(self.registry.apply)
                    self.stale = False
                except StoreError as e:
                    if method != "GET":
                        return 500, {"error_code": e.error_code, "message": str(e)}
            resp = rest.handle(self.registry, method, path, query, body)
            if resp.records:
                try:
                    self._store.write(resp.records)
                except StoreError as e:
                    self.stale = True
                    return 500, {"error_code": e.error_code, "message": str(e)}
                for record in resp.records:
                    self.registry.apply(record)
            return resp.status, resp.body


class KafkaStore:
    """`_schemas` through the lab's own Kafka clients (node "schema-registry" on the lab
    network, so cuts between it and the brokers apply)."""

    def __init__(self, ctx: Any, producer_config: dict[str, Any], consumer_config: dict[str, Any],
                 timeout_s: float = 10.0):
        from kafkalab.client import Consumer, Producer
        self._producer = Producer(producer_config, ctx)
        # Each client is its own node on the lab network (a shared name would share a socket
        # identity at the brokers): the reader that replays the topic is "schema-registry-reader".
        self._consumer_factory = lambda: Consumer(consumer_config, replace(ctx, node=ctx.node + "-reader"))
        self._consumer: Any = None
        self.position = 0  # the next offset of `_schemas` to read
        self.timeout_s = timeout_s

    def write(self, records: list[Record]) -> list[int]:
        """Produce with acks=all and wait for every acknowledgement; the records' offsets."""
        results: list[Any] = [None] * len(records)

        def delivered(i: int) -> Callable[[Any, Any], None]:
            def cb(err: Any, msg: Any) -> None:
                results[i] = err if err is not None else msg.offset()
            return cb
        try:
            for i, record in enumerate(records):
                key, value = record.encode()
                self._producer.produce(TOPIC, key=key, value=value, partition=0, on_delivery=delivered(i))
            self._producer.flush(self.timeout_s)
        except Exception as e:  # noqa: BLE001 - any client failure is a store error for the caller
            raise StoreError(STORE_ERROR, f"Error in the backend data store: cannot write to {TOPIC}: {e}") from None
        if any(r is None for r in results):
            raise StoreError(STORE_TIMEOUT, f"Operation timed out: {TOPIC} did not acknowledge the write "
                                            f"within {self.timeout_s:g} s; are its brokers reachable?")
        failed = [r for r in results if not isinstance(r, int)]
        if failed:
            raise StoreError(STORE_ERROR, f"Error in the backend data store: write to {TOPIC} failed: {failed[0]}")
        if results and results[0] == self.position:  # nothing between: no need to read these back
            self.position = results[-1] + 1
        return results

    def catch_up(self, apply: Callable[[Record], None]) -> int:
        """Read `_schemas` from where the last read stopped (offset 0 at start) up to a NOOP
        written now, applying every record; returns how many. Re-applying a record the
        registry already applied changes nothing: each sets the latest state of its key."""
        from kafkalab.client import TopicPartition
        last = self.write([Record(noop_key(), None)])[-1]
        if self._consumer is None:
            self._consumer = self._consumer_factory()
        consumer = self._consumer
        consumer.assign([TopicPartition(TOPIC, 0, self.position)])
        deadline = time.monotonic() + self.timeout_s
        count = 0
        while self.position <= last:
            if time.monotonic() > deadline:
                raise StoreError(STORE_TIMEOUT, f"Operation timed out: reading {TOPIC} stopped at offset "
                                                f"{self.position} before reaching {last}")
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is not None:
                    continue
                self.position = msg.offset() + 1
                try:
                    record = Record.decode(msg.key(), msg.value())
                except ValueError:
                    continue  # not ours: Confluent's reader skips it too
                apply(record)
                count += 1
        return count


def _handler(service: RegistryService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kafkalab-schema-registry"

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            status, answer = service.handle(method, url.path, dict(parse_qsl(url.query)), body)
            data = rest.json_bytes(answer)
            self.send_response(status)
            self.send_header("Content-Type", rest.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # a notebook shows a child's stderr: no access log there

    return Handler


def registry_main(*, parent_pid: int, port: int, brokers: dict[int, str], fault_endpoint: str,
                  faults_json: str, metrics_endpoint: str, producer_config: dict[str, Any],
                  consumer_config: dict[str, Any]) -> None:
    import zmq

    from kafkalab.client.context import ClientContext
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent, parent_alive
    from kafkalab.transport.faults import FaultTable
    from kafkalab.transport.rpc import FaultSubscriber

    die_with_parent(parent_pid)
    zctx = zmq.Context()
    faults = FaultTable.from_json(faults_json)
    sub = FaultSubscriber(zctx, fault_endpoint, faults)
    metrics = MetricsPublisher(zctx, metrics_endpoint, NODE)
    store = KafkaStore(ClientContext(node=NODE, brokers=brokers, faults=faults, metrics=metrics),
                       producer_config, consumer_config)
    registry = SchemaRegistry()
    store.catch_up(registry.apply)
    service = RegistryService(registry, store)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(service))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="schema-registry-http", daemon=True).start()
    while parent_alive(parent_pid):
        sub.drain()
        time.sleep(0.1)
