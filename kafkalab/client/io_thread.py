"""IoThread: the one thread of a client that owns its ZeroMQ sockets. Thin wiring.

Subclasses (the producer's Sender, the consumer's Fetcher) implement `step(now)`, which does
the role's work and returns how long it may sleep. Other threads hand work over with
`submit(fn)` (fn runs on the I/O thread with the ClientNetwork; its result or exception lands
in the returned Future) and wake it through the Waker pipe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from kafkalab.client.context import ClientContext
from kafkalab.client.network import ClientNetwork, Waker
from kafkalab.errors import KafkaLabError
from kafkalab.protocol.build import metadata_request, metadata_results
from kafkalab.protocol.errors import ErrorCode, KafkaError

METRICS_INTERVAL_S = 0.25


class ClientClosedError(KafkaLabError, RuntimeError):
    """The client was closed (or its I/O thread stopped): create a new one."""


class IoThread(threading.Thread):
    client_type = "client"

    def __init__(self, ctx: ClientContext, request_timeout_ms: int, name: str):
        super().__init__(name=name, daemon=True)
        self.ctx = ctx
        self.waker = Waker()
        self.request_timeout_ms = request_timeout_ms
        self.net: ClientNetwork | None = None
        self.failure: BaseException | None = None
        self.started_ok = threading.Event()
        self._stop_flag = False
        self._calls: deque[tuple[Callable[[ClientNetwork], Any], Future]] = deque()
        self._next_metrics = 0.0

    # ---- other threads --------------------------------------------------------------
    def submit(self, fn: Callable[[ClientNetwork], Any]) -> Future:
        fut: Future = Future()
        if self._stop_flag or not self.is_alive():
            fut.set_exception(ClientClosedError(f"{self.ctx.node}: the client is closed"))
            return fut
        self._calls.append((fn, fut))
        self.waker.wake()
        return fut

    def request(self, node_id: int | None, make: Callable[[], Any],
                parse: Callable[[Any], Any] | None = None) -> Future:
        """Send make() to a broker (None: any) from the I/O thread. The Future gets
        parse(response) (parse runs on the I/O thread), or the error."""
        outer: Future = Future()

        tries = [0]

        def go(net: ClientNetwork) -> None:
            def done(resp: Any) -> None:
                if isinstance(resp, BaseException):
                    # "Any broker" means any: a dead bootstrap broker is skipped, as a Kafka
                    # client tries the next address when a connection fails.
                    if (node_id is None and is_network_error(resp)
                            and tries[0] < len(self.ctx.brokers)):
                        tries[0] += 1
                        # Not from inside this callback: it runs while the network walks
                        # its connections, and a retry may open a new one.
                        self.submit(go).add_done_callback(failed)
                        return
                    outer.set_exception(resp)
                    return
                try:
                    outer.set_result(parse(resp) if parse else resp)
                except BaseException as e:
                    outer.set_exception(e)

            net.send(net.any_broker() if node_id is None else node_id, make(), done, time.monotonic())

        def failed(f: Future) -> None:
            if f.exception() is not None and not outer.done():
                outer.set_exception(f.exception())

        self.submit(go).add_done_callback(failed)
        return outer

    def list_metadata(self, topics: list[str] | None) -> Future:
        """Metadata for `topics` (None: all), applied to the cache too; Future of results."""
        def parse(resp: Any) -> dict[str, Any]:
            results = metadata_results(resp)
            assert self.net is not None
            self.net.metadata.update(results, time.monotonic())
            self.on_metadata(results)
            return results

        return self.request(None, lambda: metadata_request(topics), parse)

    def stop(self) -> None:
        self._stop_flag = True
        self.waker.wake()

    def check(self) -> None:
        """Raise if the I/O thread died, so a failure never goes unnoticed."""
        if self.failure is not None:
            raise ClientClosedError(
                f"{self.ctx.node}: the client's I/O thread failed ({self.failure!r}); "
                "close it and create a new one") from self.failure

    # ---- the thread -----------------------------------------------------------------
    def run(self) -> None:
        try:
            self.net = ClientNetwork(self.ctx, self.request_timeout_ms, self.waker)
        except BaseException as e:
            self.failure = e
            self.started_ok.set()
            return
        self.started_ok.set()
        try:
            while not self._stop_flag:
                now = time.monotonic()
                while self._calls:
                    fn, fut = self._calls.popleft()
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(fn(self.net))
                        except BaseException as e:
                            fut.set_exception(e)
                sleep_s = self.step(now)
                if self.ctx.metrics is not None and now >= self._next_metrics:
                    self._next_metrics = now + METRICS_INTERVAL_S
                    self._publish_metrics()
                if self.ctx.metrics is not None:
                    sleep_s = min(sleep_s, max(0.0, self._next_metrics - now))
                if self._stop_flag or self._calls:
                    sleep_s = 0.0
                self.net.poll(sleep_s)
            self.on_stop()
        except BaseException as e:
            self.failure = e
            self.on_failure(e)
        finally:
            while self._calls:
                _, fut = self._calls.popleft()
                if not fut.done():
                    fut.set_exception(ClientClosedError(f"{self.ctx.node}: the client is closed"))
            try:
                if self.ctx.metrics is not None:
                    self._publish_metrics()
            except Exception:
                pass
            self.net.close()
            self.waker.close()

    def _publish_metrics(self) -> None:
        row = {"node": self.ctx.node, "client_type": self.client_type, "cumulative": True,
               "time": time.time(), **self.counters()}
        self.ctx.metrics.publish("client", row)

    # ---- for subclasses ---------------------------------------------------------------
    def step(self, now: float) -> float:
        """Do the role's work; return seconds the thread may wait for sockets."""
        return 0.25

    def on_metadata(self, results: dict[str, Any]) -> None:
        pass

    def counters(self) -> dict[str, int]:
        return {}

    def on_stop(self) -> None:
        pass

    def on_failure(self, error: BaseException) -> None:
        pass


def is_network_error(e: BaseException) -> bool:
    return isinstance(e, KafkaError) and e.code == ErrorCode.network_exception
