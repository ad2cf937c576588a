"""How a controller node tells its ActiveController what its RaftNode did (Kafka's
`KafkaRaftClient` calling its `RaftClient.Listener`), pure, so that the controller process and
the simulator wire the two the same way.

`hear` takes the Raft outputs gathered since it was last called and returns what the wiring
must do, in this order: persist the quorum state (a vote granted must survive a crash before
any reply leaves), send the messages, carry out the ActiveController's effects. The leader
change is told first: the node's state is final by now, so a deposed leader stops before any
commit is heard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kafkalab.controller.active import ActiveController, Effect, LeaderAndEpoch
from kafkalab.controller.quorum import read_committed
from kafkalab.controller.raft import (
    Committed,
    HighWatermarkMoved,
    Outbound,
    Output,
    PersistQuorumState,
    QuorumStateRecord,
    RaftNode,
    Role,
    RoleChanged,
    SnapshotLoaded,
)
from kafkalab.controller.raft_log import RaftLog


@dataclass
class Heard:
    leader: LeaderAndEpoch  # what the ActiveController now believes: pass it to the next call
    quorum_state: QuorumStateRecord | None = None  # the latest state to persist (None: unchanged)
    messages: list[Outbound] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    raft_events: list[RoleChanged | SnapshotLoaded] = field(default_factory=list)  # for the story


def leader_and_epoch(raft: RaftNode) -> LeaderAndEpoch:
    """Who leads which epoch, as the listener hears it (-1 while an election is on)."""
    leading = raft.role is Role.LEADER
    return LeaderAndEpoch(raft.leader_id if leading or raft.role is Role.FOLLOWER else -1, raft.epoch,
                          raft.epoch_start_offset if leading else -1)


def hear(raft: RaftNode, active: ActiveController, told: LeaderAndEpoch, outputs: Sequence[Output]) -> Heard:
    """`told`: the leader change the ActiveController was last given."""
    out = Heard(leader_and_epoch(raft))
    if out.leader != told:
        out.effects += active.handle_leader_change(out.leader)
    for o in outputs:
        hw = active.high_watermark
        batches = []
        for e in o.effects:
            if isinstance(e, PersistQuorumState):
                out.quorum_state = e.state  # each state is whole: the last one is enough
            elif isinstance(e, HighWatermarkMoved):
                hw = max(hw, e.high_watermark)
            elif isinstance(e, Committed):
                batches.extend(e.batches)
            elif isinstance(e, RoleChanged | SnapshotLoaded):
                out.raft_events.append(e)
        out.effects += active.handle_commit(batches, hw)
        out.messages += o.messages
    return out


def committed_read(log: RaftLog, offset: int, high_watermark: int, max_bytes: int = 1 << 20) -> bytes:
    """What a broker's metadata fetch at `offset` gets: whole committed batches only."""
    if not log.log_start_offset <= offset < high_watermark:
        return b""
    return read_committed(log.read(offset, max_bytes), high_watermark)
