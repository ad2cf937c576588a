"""The Raft → ActiveController wiring both the controller process and the simulator use
(kafkalab.controller.raft_listener): who leads is told first, commits in order, the quorum
state to persist, and only committed batches for a broker's metadata fetch."""

from __future__ import annotations

import random

from kafkalab.config import broker_config
from kafkalab.controller.active import (
    Activated,
    ActiveController,
    Deactivated,
    LeaderAndEpoch,
    Reply,
)
from kafkalab.controller.raft import Output, RaftNode, Role, RoleChanged
from kafkalab.controller.raft_listener import committed_read, hear, leader_and_epoch
from kafkalab.controller.raft_log import InMemoryRaftLog
from kafkalab.metadata.image import MetadataImage
from kafkalab.metadata.replay import apply_batches

CONFIG = broker_config("lab", {})


class Node:
    def __init__(self, voters: list[int]) -> None:
        self.log = InMemoryRaftLog()
        self.raft = RaftNode(voters[0], voters, self.log, rng=random.Random(0))
        self.outputs: list[Output] = []
        self.ac = ActiveController(voters[0], CONFIG, self.append, rng=random.Random(0))
        self.told = LeaderAndEpoch(-1, 0)

    def append(self, values: list[bytes]) -> int:
        last, out = self.raft.append(values, 0)
        self.outputs.append(out)
        assert isinstance(last, int)
        return last

    def hear(self, out: Output | None = None):  # type: ignore[no-untyped-def]
        outs, self.outputs = [*self.outputs, *([out] if out else [])], []
        heard = hear(self.raft, self.ac, self.told, outs)
        self.told = heard.leader
        return heard


def test_a_single_voter_is_told_it_leads_then_claims_on_its_own_commit() -> None:
    n = Node([0])
    heard = n.hear(n.raft.start(0))
    assert heard.leader == LeaderAndEpoch(0, 1, 0) == leader_and_epoch(n.raft)
    assert heard.quorum_state is not None and heard.quorum_state.leader_id == 0  # persisted before any send
    assert heard.effects == [Activated(1)]
    assert any(isinstance(e, RoleChanged) and e.role is Role.LEADER for e in heard.raft_events)
    assert n.hear().effects == [] and n.hear().quorum_state is None  # nothing new: nothing told twice

    epoch = n.ac.controller.register_broker(7, "sim://b", "h", 1, 0)  # type: ignore[union-attr]
    assert n.ac.respond("req", epoch) == []  # held: not committed as far as the listener knows
    assert n.hear().effects == [Reply("req", epoch)]

    image = MetadataImage()
    data = committed_read(n.log, 0, n.ac.high_watermark)
    assert apply_batches(data, image, 0) == n.log.log_end_offset and 7 in image.brokers
    before = MetadataImage()  # with the high watermark at 1, only the LEADER_CHANGE batch goes
    assert apply_batches(committed_read(n.log, 0, 1), before, 0) == 1 and not before.brokers
    assert committed_read(n.log, 0, 0) == b""


def test_a_leader_of_three_is_not_active_until_a_follower_fetched_and_a_resign_deactivates() -> None:
    n = Node([1, 2, 3])
    n.hear(n.raft.start(0))
    heard = n.hear(n.raft.poll(1_000))  # the election timeout: a candidate asks for votes
    assert n.raft.role is Role.CANDIDATE and heard.leader.leader_id == -1
    assert {m.destination for m in heard.messages} == {2, 3}
    assert heard.quorum_state is not None and heard.quorum_state.voted_id == 1
    vote = next(m for m in heard.messages if m.destination == 2)
    voter = RaftNode(2, [1, 2, 3], InMemoryRaftLog(), rng=random.Random(1))
    voter.start(0)
    answer = voter.handle_request(1, vote.correlation_id, vote.message, 1_000).messages[0]
    heard = n.hear(n.raft.handle_response(2, vote.correlation_id, answer.message, 1_001))
    assert n.raft.role is Role.LEADER and heard.leader.leader_id == 1
    assert heard.effects == []  # LEADER_CHANGE not committed yet: not active
    heard = n.hear(n.raft.resign(1_002))
    assert heard.leader.leader_id == -1 and heard.effects == []  # never active: nothing to deactivate
    assert not n.ac.active and Deactivated not in map(type, heard.effects)
