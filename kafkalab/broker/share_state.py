"""The share coordinator: share-partition state kept in `__share_group_state` (KIP-932).

A share-partition's leader holds its record states in memory; what must survive the leader is
written here, the way Kafka does it: the leader sends WriteShareGroupState (SPSO and the
in-flight batches with their states and delivery counts) to the leader of the
`__share_group_state` partition that owns the key (group, topic id, partition), which appends a
ShareSnapshot record (acks=all) and only then answers; a new leader sends ReadShareGroupState
and starts from it. This class answers both requests and replays its partitions' records when
this broker becomes their leader; `ShareStateClient` is the share-partition leader's side
(a channel "broker-N/share" to the state partition's leader, or a local call).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.consumer_group import _carray
from kafkalab.broker.context import BrokerContext
from kafkalab.broker.group_coordinator import java_string_hashcode
from kafkalab.broker.internal_topic import InternalTopicService
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import lazy_schema
from kafkalab.records.batch import decode_batch
from kafkalab.transport.channel import Channel

read_req = lazy_schema("kio.schema.read_share_group_state.v0.request")
read_resp = lazy_schema("kio.schema.read_share_group_state.v0.response")
write_req = lazy_schema("kio.schema.write_share_group_state.v0.request")
write_resp = lazy_schema("kio.schema.write_share_group_state.v0.response")

STATE_TOPIC = "__share_group_state"
CHANNEL_SUFFIX = "/share"
Key = tuple[str, str, int]  # (group, topic id, partition)
State = tuple[int, int, list[tuple[int, int, int, int]]]  # (state epoch, SPSO, batches)


def state_partition(key: Key, num_partitions: int) -> int:
    """Kafka keys the share coordinator by "group:topicId:partition"."""
    return (java_string_hashcode(f"{key[0]}:{key[1]}:{key[2]}") & 0x7FFFFFFF) % num_partitions


def snapshot_record(key: Key, state: State, leader_epoch: int) -> tuple[bytes, bytes]:
    """ShareSnapshotKey (type 0) and ShareSnapshotValue v0 (flexible)."""
    g = key[0].encode()
    k = struct.pack(">hh", 0, len(g)) + g + uuid.UUID(key[1]).bytes + struct.pack(">i", key[2])
    state_epoch, spso, batches = state
    v = struct.pack(">hiiiq", 0, 0, state_epoch, leader_epoch, spso) + _carray(
        [struct.pack(">qqbh", f, last, st, c) + b"\x00" for f, last, st, c in batches]) + b"\x00"
    return k, v


def decode_snapshot(key: bytes, value: bytes | None) -> tuple[Key, State | None]:
    (n,) = struct.unpack_from(">h", key, 2)
    group = key[4:4 + n].decode()
    topic_id = str(uuid.UUID(bytes=key[4 + n:20 + n]))
    (partition,) = struct.unpack_from(">i", key, 20 + n)
    if value is None:
        return (group, topic_id, partition), None
    _v, _snap, state_epoch, _leader_epoch, spso = struct.unpack_from(">hiiiq", value, 0)
    pos, count, shift = 22, 0, 0
    while True:  # unsigned varint: batches + 1
        b = value[pos]
        pos += 1
        count |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    batches = []
    for _ in range(count - 1):
        f, last, st, c = struct.unpack_from(">qqbh", value, pos)
        batches.append((f, last, st, c))
        pos += 19 + 1  # the batch's (empty) tagged fields
    return (group, topic_id, partition), (state_epoch, spso, batches)


class ShareStateService(InternalTopicService):
    api_keys = frozenset({ApiKey.READ_SHARE_GROUP_STATE, ApiKey.WRITE_SHARE_GROUP_STATE})

    def __init__(self, broker: BrokerContext):
        cfg = broker.config
        super().__init__(broker, STATE_TOPIC, int(cfg.get("share.coordinator.state.topic.num.partitions", 50)))
        self.states: dict[Key, State] = {}

    def tick(self) -> None:
        for p in range(self.num_partitions):
            leads = self._leads(p)
            if leads and p not in self.loaded:
                self._load(p)
            elif not leads and p in self.loaded:
                self.loaded.discard(p)
                for key in [k for k in self.states if state_partition(k, self.num_partitions) == p]:
                    del self.states[key]

    def _load(self, p: int) -> None:
        plog = self.broker.rm.partitions[(STATE_TOPIC, p)].log
        for data, pos, _h in self._read_batches(p, plog.log_start_offset, plog.log_end_offset):
            for r in decode_batch(data, pos).records:
                if r.key is None:
                    continue
                key, state = decode_snapshot(bytes(r.key), None if r.value is None else bytes(r.value))
                if state is None:
                    self.states.pop(key, None)
                else:
                    self.states[key] = state
        self.loaded.add(p)

    def ready(self) -> bool:
        return self._ensure_internal_topic("share.coordinator.state.topic.replication.factor",
                                           lambda rf: {"cleanup.policy": "compact"})

    def handle(self, api_key: int, version: int, req: Any, reply: Any, now_ms: int) -> None:
        group = str(req.group_id)
        if api_key == ApiKey.READ_SHARE_GROUP_STATE:
            results = []
            for t in req.topics:
                parts = []
                for p in t.partitions:
                    key = (group, str(t.topic_id), int(p.partition))
                    code = self._code(key)
                    st = self.states.get(key) if code == ErrorCode.none else None
                    parts.append(read_resp.PartitionResult(
                        partition=key[2], error_code=code, error_message=None,
                        state_epoch=st[0] if st else 0, start_offset=st[1] if st else -1,
                        state_batches=tuple(read_resp.StateBatch(first_offset=f, last_offset=last, delivery_state=s,
                                                                 delivery_count=c) for f, last, s, c in
                                            (st[2] if st else []))))
                results.append(read_resp.ReadStateResult(topic_id=t.topic_id, partitions=tuple(parts)))
            reply(read_resp.ReadShareGroupStateResponse(results=tuple(results)))
            return
        t = req.topics[0]
        p = t.partitions[0]
        key = (group, str(t.topic_id), int(p.partition))
        state: State = (int(p.state_epoch), int(p.start_offset),
                        [(int(b.first_offset), int(b.last_offset), int(b.delivery_state), int(b.delivery_count))
                         for b in p.state_batches])

        def answer(code: Any) -> None:
            reply(write_resp.WriteShareGroupStateResponse(results=(write_resp.WriteStateResult(
                topic_id=t.topic_id, partitions=(write_resp.PartitionResult(
                    partition=key[2], error_code=code, error_message=None),)),)))

        code = self._code(key)
        if code != ErrorCode.none:
            answer(code)
            return

        def written(code: Any, _base: int = -1) -> None:
            if code == ErrorCode.none:
                self.states[key] = state
            answer(code)

        self._produce_records(state_partition(key, self.num_partitions),
                              [snapshot_record(key, state, int(p.leader_epoch))], written)

    def _code(self, key: Key) -> ErrorCode:
        p = state_partition(key, self.num_partitions)
        owned = self._owns(p)
        if owned == "yes":
            return ErrorCode.none
        return ErrorCode.coordinator_load_in_progress if owned == "loading" else ErrorCode.not_coordinator


class ShareStateClient:
    """The share-partition leader's side: Read/Write to whichever broker leads the key's
    `__share_group_state` partition (this one: a local call)."""

    def __init__(self, broker: BrokerContext, service: ShareStateService):
        self.broker, self.service = broker, service
        self.channels: dict[int, Channel] = {}

    def _call(self, key: Key, req: Any, done: Callable[[Any], None]) -> None:
        if not self.service.ready():
            done(None)
            return
        reg = self.broker.image.partition(STATE_TOPIC, state_partition(key, self.service.num_partitions))
        if reg is None or reg.leader < 0:
            done(None)
            return
        if reg.leader == self.broker.broker_id:
            api = ApiKey.READ_SHARE_GROUP_STATE if isinstance(req, read_req.ReadShareGroupStateRequest) \
                else ApiKey.WRITE_SHARE_GROUP_STATE
            self.service.handle(api, 0, req, done, self.broker.clock.wall_ms())
            return
        c = self.channels.get(reg.leader)
        if c is None:
            c = self.broker.channel_to(reg.leader, suffix=CHANNEL_SUFFIX)
            if c is None:
                done(None)
                return
            self.channels[reg.leader] = c
        c.send(req, done, lambda _error: done(None))  # None: timed out

    def read(self, key: Key, done: Callable[[ErrorCode, State | None], None]) -> None:
        req = read_req.ReadShareGroupStateRequest(group_id=key[0], topics=(read_req.ReadStateData(
            topic_id=uuid.UUID(key[1]), partitions=(read_req.PartitionData(partition=key[2], leader_epoch=0),)),))

        def got(resp: Any) -> None:
            if resp is None or isinstance(resp, Exception):
                done(ErrorCode.coordinator_not_available, None)
                return
            r = resp.results[0].partitions[0]
            if r.error_code != ErrorCode.none:
                done(ErrorCode(r.error_code), None)
            elif r.start_offset < 0:
                done(ErrorCode.none, None)
            else:
                done(ErrorCode.none, (int(r.state_epoch), int(r.start_offset),
                                      [(int(b.first_offset), int(b.last_offset), int(b.delivery_state),
                                        int(b.delivery_count)) for b in r.state_batches]))

        self._call(key, req, got)

    def write(self, key: Key, state: State, leader_epoch: int, done: Callable[[ErrorCode], None]) -> None:
        epoch, spso, batches = state
        req = write_req.WriteShareGroupStateRequest(group_id=key[0], topics=(write_req.WriteStateData(
            topic_id=uuid.UUID(key[1]), partitions=(write_req.PartitionData(
                partition=key[2], state_epoch=epoch, leader_epoch=leader_epoch, start_offset=spso,
                state_batches=tuple(write_req.StateBatch(first_offset=f, last_offset=last, delivery_state=s,
                                                         delivery_count=c) for f, last, s, c in batches)),)),))

        def got(resp: Any) -> None:
            if resp is None or isinstance(resp, Exception):
                done(ErrorCode.coordinator_not_available)
            else:
                done(ErrorCode(resp.results[0].partitions[0].error_code))

        self._call(key, req, got)

    def close(self) -> None:
        for c in self.channels.values():
            c.close()

