"""A controller's quorum peers: Raft's requests go out on Channels and their answers come back
to Raft, on the Clock the server is given (a test moves it)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from kafkalab.clock import ManualClock
from kafkalab.config import broker_config
from kafkalab.controller.quorum import QUORUM_TIMEOUTS
from kafkalab.controller.raft import RaftNode, Role
from kafkalab.controller.raft_log import InMemoryRaftLog
from kafkalab.controller.server import ControllerServer
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.rpc import Envelope, RpcServer

pytestmark = pytest.mark.timeout(30)
LAB = QUORUM_TIMEOUTS["lab"]


@pytest.fixture
def peer() -> Iterator[RpcServer]:
    ctx = zmq.Context()
    server = RpcServer(ctx, "controller-2", 0, FaultTable())
    yield server
    server.close()
    ctx.term()


def _received(peer: RpcServer) -> Envelope:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        peer.socket.poll(100)
        got = peer.receive(time.monotonic())
        if got:
            return got[0]
    raise AssertionError("the peer received no request")


def test_a_vote_answered_over_the_channel_elects_on_the_given_clock(tmp_path: Path, peer: RpcServer) -> None:
    clock = ManualClock()
    server = ControllerServer(node_id=1, voters={1: "tcp://127.0.0.1:1", 2: peer.endpoint}, port=0,
                              data_dir=str(tmp_path), config=broker_config("lab"),
                              fault_endpoint="tcp://127.0.0.1:1", metrics_endpoint=None, clock=clock)
    try:
        channel = server.peers[2]
        assert server.raft.role is Role.UNATTACHED and channel.in_flight == 0
        # The election timer runs on the server's clock: nothing happens until the test moves it.
        server._poll()
        assert server.raft.role is Role.UNATTACHED
        clock.advance(LAB["election_timeout_ms"][1] / 1000)
        server._poll()
        assert server.raft.role is Role.CANDIDATE and channel.in_flight == 1
        # The channel remembers the request twice as long as Raft, which times it out itself.
        now = clock.monotonic()
        assert channel.next_due(now) == pytest.approx(now + 2 * LAB["request_timeout_ms"] / 1000)

        vote = _received(peer)
        voter = RaftNode(2, [1, 2], InMemoryRaftLog(), rng=random.Random(2), cluster_id="kafkalab", **LAB)
        voter.start(0)
        answer = voter.handle_request(1, vote.correlation_id, vote.body, 0).messages[0]
        peer.reply(vote, answer.message)
        deadline = time.monotonic() + 10
        while server.raft.role is not Role.LEADER and time.monotonic() < deadline:
            channel.client.socket.poll(100)
            channel.poll()
        assert server.raft.role is Role.LEADER and server.raft.epoch == 1
    finally:
        server.close()
