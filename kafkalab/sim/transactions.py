"""Transactions under the simulator: a consume-transform-produce copy, exactly once.

Each simulated broker runs the broker's `ReplicaManager` over its own logs in a temporary
directory; topic `in` (preloaded, plain records), topic `out` and `__consumer_offsets` have one
replica each, spread over the brokers. The `TransactionCoordinator` core runs on one broker over
an in-memory `__transaction_state` partition (failover: the next broker loads it under a higher
coordinator epoch, and finishes what its predecessor prepared); its markers go out over the
network as WriteTxnMarkers, retried until every partition has them. The `GroupCoordinator` core
runs on the broker that holds `__consumer_offsets` and follows the markers written there.

Transactional producers copy `in` to `out`: read a few records (read_committed), AddPartitionsToTxn,
Produce transactional batches (built with the records' BatchBuilder), AddOffsetsToTxn,
TxnOffsetCommit, EndTxn - commit, or now and then abort on purpose. Brokers crash and restart,
the coordinator moves, producers pause past transaction.timeout.ms, crash, or are fenced by a new
instance with the same transactional.id, or lose a link one way for a while. A read_committed
and a read_uncommitted consumer read `out` all along.

Invariants:
- no consumer reads past the high watermark, nor a read_committed one past the last stable offset
  (as the simulator tracks it: where the partition's first open transaction starts);
- read_committed returns only records of transactions whose commit is decided (so never an
  aborted one, and never past the last stable offset);
- a fenced producer's transaction never commits (no PrepareCommit for an epoch once a newer
  instance of its transactional.id holds a newer one);
- once the faults stop, every transaction completes; then the copy is exactly once: every input
  record below the committed input offset is in `out` (read_committed) once, and none above it.
"""

from __future__ import annotations

import datetime
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fr
from kio.schema.produce.v9 import request as pr
from kio.schema.txn_offset_commit.v3 import request as toc
from kio.schema.write_txn_markers.v1 import request as wr
from kio.schema.write_txn_markers.v1 import response as wresp

from kafkalab.broker.group_coordinator import OFFSETS_TOPIC, GroupCoordinator
from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.broker.txn_coordinator import (
    COMPLETE,
    TransactionCoordinator,
    TxnState,
    decode_txn_value,
)
from kafkalab.client.fetched import messages_from_fetch
from kafkalab.config import broker_config
from kafkalab.metadata.image import MetadataImage
from kafkalab.records.batch import encode_batch
from kafkalab.records.builder import BatchBuilder
from kafkalab.records.scan import iter_batches
from kafkalab.sim.invariants import RunSummary, Story
from kafkalab.sim.network import LinkFaults, Network
from kafkalab.sim.scheduler import Event, Scheduler

SCENARIO = "transactions"
IN, OUT = "in", "out"
GROUP = "copier"
TP = tuple[str, int]
TxnKey = tuple[str, int, int]  # (transactional.id, instance, transaction number)

TXN_TIMEOUT_MS = 1500
REQUEST_TIMEOUT_MS = 250
RETRY_MS = 20
RUN_MS = 10_000
STOP_TXNS_MS = RUN_MS - 2000  # producers begin no new transaction after this
QUIET_MS = RUN_MS - 3000  # no faults after this; what is down comes back
RECORDS_PER_INPUT = 60
POLL_MS = 40


def _ms(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)


def _value(key: TxnKey, ref: str) -> bytes:
    return f"{key[0]}|{key[1]}|{key[2]}|{ref}".encode()


def _parse(value: bytes) -> tuple[TxnKey, str]:
    tid, inst, txn, ref = value.decode().split("|")
    return (tid, int(inst), int(txn)), ref


@dataclass
class Broker:
    index: int
    node: str
    data_dir: str
    up: bool = True
    rm: ReplicaManager | None = None
    tc: TransactionCoordinator | None = None  # while it leads __transaction_state
    gc: GroupCoordinator | None = None  # while it leads __consumer_offsets
    offsets_followed: int = 0  # the next __consumer_offsets offset the group coordinator replays


@dataclass
class Instance:
    """One run of a transactional producer (a process with this transactional.id)."""

    tid: str
    number: int
    rng: random.Random
    inputs: list[int]  # the input partitions this transactional.id copies
    alive: bool = True
    paused_until: int = -1
    producer_id: int = -1
    epoch: int = -1
    coordinator: int = 0
    positions: dict[int, int] = field(default_factory=dict)
    sequences: dict[TP, int] = field(default_factory=dict)
    txn: int = 0
    batches: dict[TP, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    reading: int = -1  # the input partition of the open transaction
    read_to: int = -1  # the input offset after what the open transaction copies
    commit: bool = True
    inflight: dict[int, Event] = field(default_factory=dict)
    fenced: bool = False


class TransactionsSim(Story):
    def __init__(self, seed: int, *, brokers: int = 3, faults: bool = True, trace: bool = False) -> None:
        self.seed = seed
        self.sched = Scheduler(seed)
        self.net_rng = self.sched.fork()
        self.fault_rng = self.sched.fork()
        self.faults_on = faults
        self.net = Network(self.sched, self.net_rng, LinkFaults(delay_ms=(1, 6), loss=0.01 if faults else 0.0))
        self.trace: list[str] | None = [] if trace else None
        # Logs in memory where the system offers it: a run fsyncs on every crash and restart.
        shm = "/dev/shm"
        self.tmp = tempfile.mkdtemp(prefix="kafkalab-sim-", dir=shm if os.path.isdir(shm) else None)
        self.config = broker_config("lab", {"request.timeout.ms": 1000})
        n = max(brokers, 1)
        self.brokers = [Broker(i, f"broker-{i}", os.path.join(self.tmp, f"broker-{i}")) for i in range(n)]
        self.partitions = self.fault_rng.randint(2, 4)
        self.image = self._image(n)
        self.txn_log: list[tuple[bytes, bytes | None]] = []
        self.txn_owner = 0
        self.txn_append_done_ms = 0  # when the last __transaction_state append in flight is acknowledged
        self.coordinator_epoch = 0
        self.next_pid = 1000
        self.seq = 0
        self.pending: dict[int, tuple[Callable[[Any], None], Event]] = {}  # requests awaiting replies
        producers = min(self.partitions, self.fault_rng.randint(2, 3))
        self.tids = [f"copier-{k}" for k in range(producers)]
        self.inputs = {tid: [p for p in range(self.partitions) if p % producers == k]
                       for k, tid in enumerate(self.tids)}
        self.instances: dict[str, Instance] = {}
        self.instance_count: dict[str, int] = {}
        # what the invariants remember
        self.current_txn: dict[tuple[int, int], TxnKey] = {}  # (producer id, epoch) -> its open txn
        self.committed: set[TxnKey] = set()  # PrepareCommit logged
        self.latest_epoch: dict[str, tuple[int, int]] = {}  # tid -> (producer id, epoch) handed out
        self.newest_instance: dict[str, int] = {}  # tid -> the latest instance that got an epoch
        self.open_txns: dict[tuple[TP, int], int] = {}  # (partition, producer id) -> its first offset
        self.closed_at: dict[tuple[TP, int], int] = {}  # (partition, producer id) -> its last marker
        self.copied: Counter[str] = Counter()  # input refs the read_committed consumer saw in `out`
        self.positions: dict[str, dict[int, int]] = {"read_committed": {}, "read_uncommitted": {}}
        self.faults = self.checks = 0
        for b in self.brokers:
            self._start_broker(b)
        self._preload()
        self.brokers[0].tc = self._new_tc(self.brokers[0])
        self.brokers[0].tc.load_partition(0, self.coordinator_epoch, [], 0)

    # -- cluster --------------------------------------------------------------------------------
    def leader_of(self, tp: TP) -> int:
        return 0 if tp[0] == OFFSETS_TOPIC else tp[1] % len(self.brokers)

    def _image(self, n: int) -> MetadataImage:
        image = MetadataImage()
        for i, (topic, count) in enumerate(((IN, self.partitions), (OUT, self.partitions), (OFFSETS_TOPIC, 1))):
            image.apply({"type": "TopicRecord", "name": topic, "topic_id": f"00000000-0000-0000-0000-00000000000{i}"})
            for p in range(count):
                leader = self.leader_of((topic, p))
                image.apply({"type": "PartitionRecord", "topic": topic, "partition": p, "replicas": [leader],
                             "isr": [leader], "leader": leader, "leader_epoch": 0, "partition_epoch": 0})
        return image

    def _start_broker(self, b: Broker) -> None:
        b.up = True
        b.rm = ReplicaManager(b.index, b.data_dir, self.config)
        b.rm.apply_metadata(self.image, self.sched.now_ms)
        self.net.attach(b.node, lambda src, msg, b=b: self._broker_receive(b, src, msg))
        if b.index == 0:
            self._load_groups(b)

    def _preload(self) -> None:
        for p in range(self.partitions):
            rm = self.brokers[self.leader_of((IN, p))].rm
            assert rm is not None
            batch = encode_batch([(None, f"in-{p}@{o}".encode(), None, 0) for o in range(RECORDS_PER_INPUT)])
            rm.produce(pr.ProduceRequest(transactional_id=None, acks=1, timeout=_ms(1000), topic_data=(
                pr.TopicProduceData(name=IN, partition_data=(pr.PartitionProduceData(index=p, records=batch),)),)),
                0, lambda resp: None)

    def _new_tc(self, b: Broker) -> TransactionCoordinator:
        def append(p: int, records: list[tuple[bytes, bytes | None]], done: Callable[[ErrorCode], None]) -> None:
            me = b.tc

            def land() -> None:
                if not (b.up and self.txn_owner == b.index and b.tc is me):
                    done(ErrorCode.not_leader_or_follower)
                    return
                for _key, value in records:
                    if value is not None:
                        self._txn_record(decode_txn_value(value))
                self.txn_log.extend(records)
                done(ErrorCode.none)

            # A partition's appends complete in the order they were made.
            self.txn_append_done_ms = max(self.txn_append_done_ms, self.sched.now_ms + self.net_rng.randint(1, 4))
            self.sched.at(self.txn_append_done_ms, f"{b.node} appends to __transaction_state", land)

        def next_pid() -> int:
            self.next_pid += 1
            return self.next_pid

        return TransactionCoordinator(
            num_partitions=1, offsets_partitions=1, append=append,
            send_markers=lambda *args: self._send_markers(b, *args),
            owns=lambda p: "yes" if b.up and self.txn_owner == b.index else "no", next_producer_id=next_pid,
            max_timeout_ms=60_000)

    def _txn_record(self, v: dict[str, Any]) -> None:
        """What __transaction_state says, as it lands: the fencing invariant's evidence."""
        self.checks += 1
        pid, epoch, state = v["producer_id"], v["producer_epoch"], v["state"]
        tid = next((t for t, (lp, _) in self.latest_epoch.items() if lp == pid), None)
        if state == TxnState.PREPARE_COMMIT:
            latest = self.latest_epoch.get(tid) if tid else None
            if latest is not None and latest[1] > epoch:
                raise self.violation("a fenced producer's writes never commit",
                                     f"PrepareCommit for producer {pid} epoch {epoch}, fenced by epoch {latest[1]}")
            key = self.current_txn.get((pid, epoch))
            if key is not None:
                self.committed.add(key)
                self.say(f"{key[0]}#{key[1]} transaction {key[2]} will commit")

    # -- groups on broker 0 -----------------------------------------------------------------------
    def _load_groups(self, b: Broker) -> None:
        assert b.rm is not None
        part = b.rm.partitions[(OFFSETS_TOPIC, 0)]

        def append_batch(p: int, batch: bytes, done: Callable[..., None]) -> None:
            self._local_produce(b, gc, (OFFSETS_TOPIC, 0), batch, done)

        def append(p: int, records: list[tuple[bytes, bytes | None]], done: Callable[..., None]) -> None:
            append_batch(p, encode_batch([(k, v, None, self.sched.now_ms) for k, v in records]), done)

        gc = GroupCoordinator(num_partitions=1, append=append, append_batch=append_batch,
                              owns=lambda p: "yes" if b.up and b.gc is gc else "no",
                              producer_entry=lambda p, pid: part.producer_state.last_entry(pid),
                              new_member_id=lambda client_id: f"{client_id}-sim")
        b.offsets_followed = part.log_start_offset
        self._follow(b, gc, part.log_end_offset, txn_only=False)
        b.gc = gc

    def _follow(self, b: Broker, gc: GroupCoordinator, end: int, txn_only: bool = True) -> None:
        """The group coordinator replays its partition's new batches (the markers, mostly)."""
        assert b.rm is not None
        plog = b.rm.partitions[(OFFSETS_TOPIC, 0)].log
        while b.offsets_followed < end:
            data = bytes(plog.read_bytes(b.offsets_followed, 1 << 20, max_offset=end))
            advanced = False
            for pos, h in iter_batches(data):
                if h.next_offset > end:
                    break
                gc.load_batch(data, pos, self.sched.now_ms, txn_only=txn_only)
                b.offsets_followed, advanced = h.next_offset, True
            if not advanced:
                return

    def _local_produce(self, b: Broker, gc: GroupCoordinator, tp: TP, batch: bytes,
                       done: Callable[..., None]) -> None:
        def land() -> None:
            if not b.up or b.gc is not gc or b.rm is None:
                done(ErrorCode.not_leader_or_follower, -1)
                return
            rm = b.rm

            def answered(resp: Any) -> None:
                r = resp.responses[0].partition_responses[0]
                if r.error_code == ErrorCode.none:
                    self._follow(b, gc, rm.partitions[tp].high_watermark)
                done(r.error_code, int(r.base_offset))

            rm.produce(pr.ProduceRequest(transactional_id=None, acks=-1, timeout=_ms(1000), topic_data=(
                pr.TopicProduceData(name=tp[0], partition_data=(pr.PartitionProduceData(index=tp[1], records=batch),)),)),
                self.sched.now_ms, answered)

        self.sched.after(1, f"{b.node} appends to {tp[0]}-{tp[1]}", land)

    # -- markers ----------------------------------------------------------------------------------
    def _send_markers(self, b: Broker, txn_partition: int, coordinator_epoch: int, pid: int, epoch: int,
                      commit: bool, partitions: list[TP], on_done: Callable[[], None]) -> None:
        left = set(partitions)
        tc = b.tc

        def attempt() -> None:
            if not (b.up and b.tc is tc and self.txn_owner == b.index):
                return  # this coordinator is gone: the next one sends them again
            by_broker: dict[int, list[TP]] = {}
            for tp in sorted(left):
                by_broker.setdefault(self.leader_of(tp), []).append(tp)
            for target, tps in by_broker.items():
                topics: dict[str, list[int]] = {}
                for t, p in tps:
                    topics.setdefault(t, []).append(p)
                req = wr.WriteTxnMarkersRequest(markers=(wr.WritableTxnMarker(
                    producer_id=pid, producer_epoch=epoch, transaction_result=commit,
                    coordinator_epoch=coordinator_epoch,
                    topics=tuple(wr.WritableTxnMarkerTopic(name=t, partition_indexes=tuple(ps))
                                 for t, ps in topics.items())),))
                self._request(b.node, self.brokers[target].node, "markers", req,
                              lambda resp: answered(resp), lambda: None)
            self.sched.after(REQUEST_TIMEOUT_MS, "markers retry", retry)

        finished = [False]

        def answered(resp: Any) -> None:
            for m in resp.markers:
                for t in m.topics:
                    for p in t.partitions:
                        if p.error_code == ErrorCode.none:
                            left.discard((str(t.name), int(p.partition_index)))
            if not left and not finished[0]:
                finished[0] = True
                on_done()

        def retry() -> None:
            if left:
                attempt()

        self.sched.after(0, "markers", attempt)

    # -- requests over the network ----------------------------------------------------------------
    def _request(self, src: str, dst: str, kind: str, req: Any, on_reply: Callable[[Any], None],
                 on_timeout: Callable[[], None]) -> None:
        self.seq += 1
        seq = self.seq

        def timed_out() -> None:
            if self.pending.pop(seq, None) is not None:
                on_timeout()

        self.pending[seq] = (on_reply, self.sched.after(REQUEST_TIMEOUT_MS, f"{src} {kind} times out", timed_out))
        self.net.send(src, dst, ("req", seq, kind, req))

    def _reply_arrived(self, msg: Any) -> None:
        _, seq, _kind, result = msg
        entry = self.pending.pop(seq, None)
        if entry is not None:
            entry[1].cancelled = True
            entry[0](result)

    def _broker_receive(self, b: Broker, src: str, msg: Any) -> None:
        if msg[0] == "resp":
            self._reply_arrived(msg)
            return
        _, seq, kind, req = msg

        def reply(result: Any) -> None:
            if b.up:
                self.net.send(b.node, src, ("resp", seq, kind, result))

        now = self.sched.now_ms
        rm, tc, gc = b.rm, b.tc, b.gc
        assert rm is not None
        if kind == "produce":
            rm.produce(req, now, lambda resp: self._produced(req, resp, reply))
        elif kind == "fetch":
            rm.fetch(req, now, lambda resp: self._fetched(b, req, resp, reply))
        elif kind == "markers":
            rm.write_txn_markers(req, wresp.WriteTxnMarkersResponse, now,
                                 lambda resp: self._markers_written(b, req, resp, reply))
        elif kind in ("init", "add", "offsets", "end"):
            if tc is None:
                reply(ErrorCode.not_coordinator if kind != "init" else (ErrorCode.not_coordinator, -1, -1))
            elif kind == "init":
                tc.init_producer_id(*req, now, lambda code, pid, epoch: self._initialised(src, code, pid, epoch, reply))
            elif kind == "add":
                tc.add_partitions(*req, now, reply)
            elif kind == "offsets":
                tc.add_offsets(*req, now, reply)
            else:
                tc.end_txn(*req, now, reply)
        elif kind in ("txn_offsets", "offset_fetch"):
            if gc is None:
                reply({"error": ErrorCode.not_coordinator})
            elif kind == "txn_offsets":
                gc.txn_commit_offsets(req, now, lambda codes: reply({"error": next(iter(codes.values()))}))
            else:
                err, offsets = gc.fetch_offsets(GROUP, req)
                unstable = gc.unstable_offsets(GROUP, req)
                reply({"error": ErrorCode.unstable_offset_commit if unstable else err,
                       "offsets": {tp: o[0] for tp, o in offsets.items()}})

    def _initialised(self, node: str, code: ErrorCode, pid: int, epoch: int, reply: Callable[[Any], None]) -> None:
        """InitProducerId answered: the instance that asked now holds the newest epoch; one that
        an instance started after it had already fenced must never get an epoch again."""
        tid, number = node.split("#")
        if code == ErrorCode.none:
            self.checks += 1
            newest = self.newest_instance.get(tid, 0)
            if int(number) < newest:
                raise self.violation("a fenced producer's writes never commit",
                                     f"{node} got producer {pid} epoch {epoch} after {tid}#{newest} had fenced it")
            self.newest_instance[tid] = int(number)
            self.latest_epoch[tid] = (pid, epoch)
        reply((code, pid, epoch))

    def _produced(self, req: Any, resp: Any, reply: Callable[[Any], None]) -> None:
        """Where each open transaction starts in each partition: the sim's own last stable offset."""
        r = resp.responses[0].partition_responses[0]
        tp = (str(resp.responses[0].name), int(r.index))
        if req.transactional_id is not None and r.error_code == ErrorCode.none:
            pid = next(iter_batches(bytes(req.topic_data[0].partition_data[0].records)))[1].producer_id
            if int(r.base_offset) > self.closed_at.get((tp, pid), -1):  # not a late copy of an ended one
                self.open_txns.setdefault((tp, pid), int(r.base_offset))
        reply(resp)

    def _markers_written(self, b: Broker, req: Any, resp: Any, reply: Callable[[Any], None]) -> None:
        assert b.rm is not None
        pid = int(req.markers[0].producer_id)
        for t in resp.markers[0].topics:
            for p in t.partitions:
                tp = (str(t.name), int(p.partition_index))
                if p.error_code == ErrorCode.none and (tp, pid) in self.open_txns:
                    del self.open_txns[(tp, pid)]
                    self.closed_at[(tp, pid)] = b.rm.partitions[tp].log_end_offset - 1
        if b.gc is not None:
            self._follow(b, b.gc, b.rm.partitions[(OFFSETS_TOPIC, 0)].high_watermark)
        reply(resp)

    def _fetched(self, b: Broker, req: Any, resp: Any, reply: Callable[[Any], None]) -> None:
        """No consumer reads past the high watermark, nor read_committed past the last stable
        offset (the first offset of a transaction still open there), checked where the answer
        is made."""
        assert b.rm is not None
        for t in resp.responses:
            for p in t.partitions:
                if not p.records:
                    continue
                part = b.rm.partitions[(str(t.topic), int(p.partition_index))]
                last = -1
                for _pos, h in iter_batches(bytes(p.records)):
                    last = h.last_offset
                self.checks += 1
                if last >= part.high_watermark:
                    raise self.violation("no consumer reads past the high watermark",
                                         f"{t.topic}-{p.partition_index}: got offset {last}, "
                                         f"high watermark {part.high_watermark}")
                tp = (str(t.topic), int(p.partition_index))
                lso = min([part.high_watermark, *(o for (otp, _), o in self.open_txns.items() if otp == tp)])
                if int(req.isolation_level) == 1 and last >= lso:
                    raise self.violation("no read_committed consumer reads past the last stable offset",
                                         f"{t.topic}-{p.partition_index}: got offset {last}, last stable offset {lso}")
        reply(resp)

    # -- transactional producers ------------------------------------------------------------------
    def _start_instance(self, tid: str) -> None:
        number = self.instance_count.get(tid, 0) + 1
        self.instance_count[tid] = number
        inst = Instance(tid, number, self.sched.fork(), self.inputs[tid], coordinator=self.txn_owner)
        node = f"{tid}#{number}"
        self.instances[node] = inst
        self.net.attach(node, lambda src, msg: self._reply_arrived(msg))
        self.say(f"{node} starts")
        self._init(inst)

    def node(self, inst: Instance) -> str:
        return f"{inst.tid}#{inst.number}"

    def _live(self, inst: Instance, step: Callable[[], None]) -> bool:
        """May the instance act now? A paused one acts when it wakes up; a dead one never."""
        if not inst.alive or inst.fenced:
            return False
        if self.sched.now_ms < inst.paused_until:
            self.sched.at(inst.paused_until, f"{self.node(inst)} wakes up", step)
            return False
        return True

    def _call(self, inst: Instance, dst: int, kind: str, req: Any, on_reply: Callable[[Any], None],
              on_timeout: Callable[[], None]) -> None:
        def replied(result: Any) -> None:
            if self._live(inst, lambda: replied(result)):
                on_reply(result)

        def timed_out() -> None:
            if self._live(inst, timed_out):
                on_timeout()

        self._request(self.node(inst), self.brokers[dst].node, kind, req, replied, timed_out)

    def _later(self, inst: Instance, step: Callable[[], None], ms: int = RETRY_MS) -> None:
        self.sched.after(ms, f"{self.node(inst)} retries", lambda: self._live(inst, step) and step())

    def _fenced(self, inst: Instance, why: str) -> None:
        if not inst.fenced:
            inst.fenced = True
            self.say(f"{self.node(inst)} is fenced ({why})")

    def _init(self, inst: Instance) -> None:
        inst.coordinator = self.txn_owner

        def answered(r: tuple[ErrorCode, int, int]) -> None:
            code, pid, epoch = r
            if code == ErrorCode.none:
                inst.producer_id, inst.epoch, inst.sequences = pid, epoch, {}
                self.say(f"{self.node(inst)} has producer {pid} epoch {epoch}")
                self._fetch_offsets(inst)
            elif code == ErrorCode.producer_fenced:
                self._fenced(inst, "InitProducerId")
            else:
                self._later(inst, lambda: self._init(inst))

        self._call(inst, inst.coordinator, "init", (inst.tid, TXN_TIMEOUT_MS, inst.producer_id, inst.epoch),
                   answered, lambda: self._init(inst))

    def _fetch_offsets(self, inst: Instance) -> None:
        tps = [(IN, p) for p in inst.inputs]

        def answered(r: dict[str, Any]) -> None:
            if r["error"] != ErrorCode.none:
                self._later(inst, lambda: self._fetch_offsets(inst))  # unstable: a transaction is ending
                return
            inst.positions = {p: max(r["offsets"][(IN, p)], 0) for p in inst.inputs}
            self._begin(inst)

        self._call(inst, 0, "offset_fetch", tps, answered, lambda: self._fetch_offsets(inst))

    def _begin(self, inst: Instance) -> None:
        todo = [p for p in inst.inputs if inst.positions[p] < RECORDS_PER_INPUT]
        if not todo or self.sched.now_ms >= STOP_TXNS_MS:
            return  # done (or the run is ending): no transaction open
        p = inst.rng.choice(todo)
        req = fr.FetchRequest(replica_id=-1, max_wait=_ms(0), min_bytes=0, max_bytes=1 << 20, isolation_level=1,
                              topics=(fr.FetchTopic(topic=IN, partitions=(fr.FetchPartition(
                                  partition=p, fetch_offset=inst.positions[p], partition_max_bytes=1 << 20),)),),
                              forgotten_topics_data=())

        def answered(resp: Any) -> None:
            pd = resp.responses[0].partitions[0]
            if pd.error_code != ErrorCode.none or not pd.records:
                self._later(inst, lambda: self._begin(inst), 50)
                return
            msgs, _ = messages_from_fetch(IN, p, bytes(pd.records), inst.positions[p], read_committed=True,
                                          aborted_transactions=[(int(a.producer_id), int(a.first_offset))
                                                                for a in pd.aborted_transactions or ()])
            msgs = msgs[:inst.rng.randint(1, 5)]
            if not msgs:
                self._later(inst, lambda: self._begin(inst), 50)
                return
            inst.txn += 1
            key = (inst.tid, inst.number, inst.txn)
            self.current_txn[(inst.producer_id, inst.epoch)] = key
            inst.reading, inst.read_to = p, msgs[-1].offset() + 1
            inst.commit = inst.rng.random() >= 0.15  # now and then abort on purpose
            inst.batches = {}
            for msg in msgs:
                tp = (OUT, inst.rng.randrange(self.partitions))
                inst.batches.setdefault(tp, []).append((msg.key() or b"", _value(key, msg.value().decode())))
            self._add_partitions(inst)

        self._call(inst, self.leader_of((IN, p)), "fetch", req, answered, lambda: self._begin(inst))

    def _txn_error(self, inst: Instance, code: ErrorCode, step: Callable[[], None]) -> None:
        if code in (ErrorCode.producer_fenced, ErrorCode.invalid_producer_epoch, ErrorCode.invalid_producer_id_mapping,
                    ErrorCode.transactional_id_authorization_failed):
            self._fenced(inst, code.name)
        elif code in (ErrorCode.concurrent_transactions, ErrorCode.coordinator_load_in_progress):
            self._later(inst, step)
        elif code in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available):
            inst.coordinator = self.txn_owner
            self._later(inst, step)
        else:  # the transaction cannot go on: abort it
            inst.commit = False
            self._later(inst, lambda: self._end(inst))

    def _add_partitions(self, inst: Instance) -> None:
        def answered(code: ErrorCode) -> None:
            if code == ErrorCode.none:
                self._produce(inst, sorted(inst.batches), 0)
            else:
                self._txn_error(inst, code, lambda: self._add_partitions(inst))

        self._call(inst, inst.coordinator, "add",
                   (inst.tid, inst.producer_id, inst.epoch, sorted(inst.batches)), answered,
                   lambda: self._txn_error(inst, ErrorCode.not_coordinator, lambda: self._add_partitions(inst)))

    def _produce(self, inst: Instance, tps: list[TP], attempt: int) -> None:
        if not tps:
            self._add_offsets(inst)
            return
        tp = tps[0]
        seq = inst.sequences.get(tp, 0)
        b = BatchBuilder(1 << 20)
        for k, v in inst.batches[tp]:
            b.append(k, v, None, self.sched.now_ms)
        batch = b.build(producer_id=inst.producer_id, producer_epoch=inst.epoch, base_sequence=seq, transactional=True)
        req = pr.ProduceRequest(transactional_id=inst.tid, acks=-1, timeout=_ms(1000), topic_data=(
            pr.TopicProduceData(name=tp[0], partition_data=(pr.PartitionProduceData(index=tp[1], records=batch),)),))

        def answered(resp: Any) -> None:
            code = resp.responses[0].partition_responses[0].error_code
            if code == ErrorCode.none:
                inst.sequences[tp] = seq + len(inst.batches[tp])
                self._produce(inst, tps[1:], 0)
            elif code in (ErrorCode.invalid_producer_epoch, ErrorCode.producer_fenced):
                self._fenced(inst, f"Produce to {tp[0]}-{tp[1]}")
            else:
                retry()

        def retry() -> None:
            if attempt < 5:  # the same batch again: the partition drops a duplicate
                self._later(inst, lambda: self._produce(inst, tps, attempt + 1), 50)
            else:
                inst.commit = False
                inst.sequences.clear()  # unknown whether it landed: a new epoch after the abort
                self._end(inst)

        self._call(inst, self.leader_of(tp), "produce", req, answered, retry)

    def _add_offsets(self, inst: Instance) -> None:
        def answered(code: ErrorCode) -> None:
            if code == ErrorCode.none:
                self._txn_offsets(inst)
            else:
                self._txn_error(inst, code, lambda: self._add_offsets(inst))

        self._call(inst, inst.coordinator, "offsets", (inst.tid, inst.producer_id, inst.epoch, GROUP), answered,
                   lambda: self._txn_error(inst, ErrorCode.not_coordinator, lambda: self._add_offsets(inst)))

    def _txn_offsets(self, inst: Instance) -> None:
        req = toc.TxnOffsetCommitRequest(
            transactional_id=inst.tid, group_id=GROUP, producer_id=inst.producer_id, producer_epoch=inst.epoch,
            generation_id=-1, member_id="", group_instance_id=None, topics=(toc.TxnOffsetCommitRequestTopic(
                name=IN, partitions=(toc.TxnOffsetCommitRequestPartition(
                    partition_index=inst.reading, committed_offset=inst.read_to, committed_leader_epoch=-1,
                    committed_metadata=""),)),))

        def answered(r: dict[str, Any]) -> None:
            code = r["error"]
            if code == ErrorCode.none:
                self._end(inst)
            elif code in (ErrorCode.invalid_producer_epoch, ErrorCode.producer_fenced):
                self._fenced(inst, "TxnOffsetCommit")
            elif code in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                          ErrorCode.coordinator_load_in_progress, ErrorCode.request_timed_out,
                          ErrorCode.not_enough_replicas):
                self._later(inst, lambda: self._txn_offsets(inst), 50)
            else:
                inst.commit = False
                self._end(inst)

        self._call(inst, 0, "txn_offsets", req, answered, lambda: self._later(inst, lambda: self._txn_offsets(inst)))

    def _end(self, inst: Instance) -> None:
        commit = inst.commit

        def answered(code: ErrorCode) -> None:
            if code == ErrorCode.none:
                if commit:
                    inst.positions[inst.reading] = inst.read_to
                self.say(f"{self.node(inst)} transaction {inst.txn} {'committed' if commit else 'aborted'}")
                if commit and inst.sequences:
                    self._begin(inst)
                else:
                    self._init(inst)  # after an abort: a new epoch, sequences from 0, offsets again
            elif code == ErrorCode.invalid_txn_state:
                self._init(inst)  # the coordinator already ended it (transaction.timeout.ms)
            else:
                self._txn_error(inst, code, lambda: self._end(inst))

        self._call(inst, inst.coordinator, "end", (inst.tid, inst.producer_id, inst.epoch, commit), answered,
                   lambda: self._txn_error(inst, ErrorCode.not_coordinator, lambda: self._end(inst)))

    # -- consumers --------------------------------------------------------------------------------
    def _consume(self, level: str) -> None:
        self.sched.after(POLL_MS, f"{level} consumer polls", lambda: self._consume(level))
        positions = self.positions[level]
        committed = level == "read_committed"
        for p in range(self.partitions):
            tp = (OUT, p)
            req = fr.FetchRequest(replica_id=-1, max_wait=_ms(0), min_bytes=0, max_bytes=1 << 20,
                                  isolation_level=1 if committed else 0,
                                  topics=(fr.FetchTopic(topic=OUT, partitions=(fr.FetchPartition(
                                      partition=p, fetch_offset=positions.get(p, 0),
                                      partition_max_bytes=1 << 20),)),), forgotten_topics_data=())
            at = positions.get(p, 0)
            self._request(f"consumer-{level}", self.brokers[self.leader_of(tp)].node, "fetch", req,
                          lambda resp, p=p, at=at: self._consumed(level, p, at, resp), lambda: None)

    def _consumed(self, level: str, p: int, at: int, resp: Any) -> None:
        pd = resp.responses[0].partitions[0]
        positions = self.positions[level]
        if pd.error_code != ErrorCode.none or positions.get(p, 0) != at:
            return
        committed = level == "read_committed"
        msgs, nxt = messages_from_fetch(OUT, p, bytes(pd.records or b""), at, read_committed=committed,
                                        aborted_transactions=[(int(a.producer_id), int(a.first_offset))
                                                              for a in pd.aborted_transactions or ()])
        positions[p] = nxt
        if not committed:
            return
        for m in msgs:
            self.checks += 1
            key, ref = _parse(m.value())
            if key not in self.committed:
                raise self.violation("read_committed returns only committed transactions",
                                     f"{OUT}-{p}@{m.offset()} ({ref}) of {key[0]}#{key[1]} transaction {key[2]}, "
                                     "which has not committed")
            self.copied[ref] += 1

    # -- faults -----------------------------------------------------------------------------------
    def _fault(self) -> None:
        if self.sched.now_ms >= QUIET_MS:
            return
        self.sched.after(self.fault_rng.randint(300, 1200), "fault", self._fault)
        r = self.fault_rng
        kind = r.choice(["broker crash", "coordinator moves", "producer pause", "producer crash", "fence", "cut"])
        self.faults += 1
        if kind == "broker crash":
            b = r.choice(self.brokers)
            if b.up:
                self._crash_broker(b)
                self.sched.after(r.randint(200, 1200), f"{b.node} restarts", lambda: self._restart_broker(b))
        elif kind == "coordinator moves":
            self._move_coordinator(f"leadership moves from {self.brokers[self.txn_owner].node}")
        else:
            tid = r.choice(self.tids)
            inst = next((i for i in self.instances.values() if i.tid == tid and i.alive and not i.fenced), None)
            if inst is None:
                return
            if kind == "producer pause":
                d = r.randint(300, 3000)
                self.say(f"{self.node(inst)} pauses for {d} ms (transaction.timeout.ms {TXN_TIMEOUT_MS})")
                inst.paused_until = self.sched.now_ms + d
            elif kind == "cut":
                broker = self.brokers[r.choice([self.txn_owner, 0, r.randrange(len(self.brokers))])].node
                link = (self.node(inst), broker) if r.random() < 0.5 else (broker, self.node(inst))
                d = r.randint(200, 2000)
                self.say(f"the link {link[0]} -> {link[1]} is cut for {d} ms")
                self.net.cut_one_way(*link)
                self.sched.after(d, "link heals", lambda: self.net.cut.discard(link))
            elif kind == "producer crash":
                self.say(f"{self.node(inst)} crashes")
                inst.alive = False
                self.sched.after(r.randint(100, 800), f"{tid} restarts", lambda: self._start_instance(tid))
            else:
                self.say(f"a new instance of {tid} starts while {self.node(inst)} still runs")
                self._start_instance(tid)

    def _crash_broker(self, b: Broker) -> None:
        self.say(f"{b.node} crashes")
        b.up = False
        self.net.crash(b.node)
        if b.rm is not None:
            for part in b.rm.partitions.values():
                part.log.close()  # no checkpoints: what is on disk is what a restart finds
        b.rm, b.gc = None, None
        if self.txn_owner == b.index:
            self._move_coordinator(f"{b.node} crashed")
        b.tc = None

    def _restart_broker(self, b: Broker) -> None:
        if b.up:
            return
        self._start_broker(b)
        self.say(f"{b.node} restarts")

    def _move_coordinator(self, why: str) -> None:
        others = [b for b in self.brokers if b.up and b.index != self.txn_owner]
        if not others:
            return
        new = self.fault_rng.choice(others)
        old = self.brokers[self.txn_owner]
        if old.tc is not None:
            old.tc.unload_partition(0)
            old.tc = None
        self.txn_owner = new.index
        self.coordinator_epoch += 1
        new.tc = self._new_tc(new)
        n = new.tc.load_partition(0, self.coordinator_epoch, list(self.txn_log), self.sched.now_ms)
        self.say(f"the transaction coordinator moves to {new.node} ({why}; {n} records replayed)")

    def _tick(self) -> None:
        self.sched.after(50, "coordinators tick", self._tick)
        for b in self.brokers:
            if b.up and b.tc is not None:
                b.tc.tick(self.sched.now_ms)
            if b.up and b.rm is not None:
                b.rm.try_complete(self.sched.now_ms)

    def _quiet(self) -> None:
        self.net.faults.loss = 0.0
        for b in self.brokers:
            self._restart_broker(b)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        self.say(f"{len(self.brokers)} brokers; {self.partitions} partitions of {IN} ({RECORDS_PER_INPUT} records each) "
                 f"and {OUT}; transactional ids {', '.join(f'{t} copies {IN} {self.inputs[t]}' for t in self.tids)}")
        try:
            for tid in self.tids:
                self._start_instance(tid)
            for level in ("read_committed", "read_uncommitted"):
                self.net.attach(f"consumer-{level}", lambda src, msg: self._reply_arrived(msg))
                self.sched.after(10, "consumer", lambda level=level: self._consume(level))
            self.sched.after(50, "tick", self._tick)
            if self.faults_on:
                self.sched.after(self.fault_rng.randint(300, 1000), "fault", self._fault)
            self.sched.at(QUIET_MS, "quiet", self._quiet)
            self.sched.run_until(RUN_MS)
            self._check_exactly_once()
        finally:
            for b in self.brokers:
                if b.rm is not None:
                    for part in b.rm.partitions.values():
                        part.log.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return RunSummary(SCENARIO, self.seed, RUN_MS / 1000, self.sched.events_run, self.faults,
                          len(self.committed), self.checks, self.trace)

    def committed_offsets(self) -> dict[int, int]:
        gc = self.brokers[0].gc
        assert gc is not None
        _, offsets = gc.fetch_offsets(GROUP, [(IN, p) for p in range(self.partitions)])
        return {p: max(offsets[(IN, p)][0], 0) for p in range(self.partitions)}

    def _check_exactly_once(self) -> None:
        """At the end (faults stopped a while ago): every transaction has completed, each input
        record below the committed offset is in the output once, and nothing above it."""
        tc = self.brokers[self.txn_owner].tc
        assert tc is not None
        open_txns = [f"{m.transactional_id} ({(m.pending or m.state).label})" for m in tc.txns.values()
                     if m.pending is not None or m.state not in (TxnState.EMPTY, *COMPLETE)]
        self.checks += 1
        if open_txns:
            raise self.violation("once the faults stop, every transaction completes",
                                 f"still open at the end: {', '.join(open_txns)}")
        committed = self.committed_offsets()
        for p, upto in committed.items():
            for o in range(RECORDS_PER_INPUT):
                self.checks += 1
                n = self.copied.get(f"in-{p}@{o}", 0)
                if n != (1 if o < upto else 0):
                    raise self.violation("a consume-transform-produce copy is exactly once",
                                         f"in-{p}@{o} is in {OUT} {n} times (committed input offset {upto})")


def run(seed: int, *, brokers: int = 3, controllers: int = 1, trace: bool = False) -> RunSummary:
    """One seeded run of transactional copying; raises Violation when an invariant fails.
    `controllers` is accepted for the CLI's sake (the coordinator's failover is simulated here)."""
    return TransactionsSim(seed, brokers=brokers, trace=trace).run()
