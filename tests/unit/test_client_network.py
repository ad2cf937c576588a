"""The lab client's network on Channels: a timeout names the link, the request and
request.timeout.ms; a dropped connection fails what was in flight at once, and what is sent
to that broker until it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from kafkalab.client.context import ClientContext
from kafkalab.client.network import ClientNetwork, Waker
from kafkalab.protocol import build
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.rpc import RequestTimeoutError, RpcServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def broker() -> Iterator[RpcServer]:
    """A broker that never answers."""
    ctx = zmq.Context()
    server = RpcServer(ctx, "broker-1", 0, FaultTable())
    yield server
    server.close()
    ctx.term()


@pytest.fixture
def net(broker: RpcServer) -> Iterator[ClientNetwork]:
    waker = Waker()
    network = ClientNetwork(ClientContext("client-1", {1: broker.endpoint}, FaultTable()), 200, waker)
    yield network
    network.close()
    waker.close()


def _poll_until(net: ClientNetwork, got: list[Any]) -> Any:
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        net.poll(0.05)
    assert got, "no callback ran"
    return got[0]


def test_a_request_unanswered_fails_naming_the_link_the_request_and_the_setting(net: ClientNetwork) -> None:
    got: list[Any] = []
    net.send(1, build.metadata_request([]), got.append, time.monotonic())
    assert net.in_flight(1) == 1 and got == []  # the callback runs from poll(), not send()
    error = _poll_until(net, got)
    assert isinstance(error, RequestTimeoutError) and net.in_flight(1) == 0
    assert str(error).endswith(
        "client-1 -> broker-1: no response to MetadataRequest in time (request.timeout.ms=200)")


def test_a_lost_connection_fails_what_was_in_flight_and_what_is_sent_next(
        net: ClientNetwork, broker: RpcServer) -> None:
    got: list[Any] = []
    net.send(1, build.metadata_request([]), got.append, time.monotonic(), timeout_s=10.0)
    deadline = time.monotonic() + 10
    while not broker.receive(time.monotonic()):  # connected: the request arrived
        assert time.monotonic() < deadline, "the request never reached the broker"
        broker.socket.poll(50)
        net.poll(0)
    broker.socket.close(linger=0)  # the broker dies: its TCP connections drop
    error = _poll_until(net, got)
    assert isinstance(error, KafkaError) and error.code == ErrorCode.network_exception
    assert "connection to broker-1 lost" in str(error) and net.in_flight(1) == 0
    # Until the broker is back, a request to it fails at once: the caller looks for a new leader.
    now_failed: list[Any] = []
    net.send(1, build.metadata_request([]), now_failed.append, time.monotonic())
    assert len(now_failed) == 1 and "broker-1 is not reachable" in str(now_failed[0])
    with pytest.raises(KafkaError, match="not reachable"):
        net.send(1, build.metadata_request([]), None, time.monotonic())  # acks=0
