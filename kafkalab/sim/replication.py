"""The replication scenario: a controller (or a Raft quorum of three), 3-5 brokers with real logs, idempotent producers
(acks=all and acks=1) and consumers on one topic, under a seeded schedule of faults.

A run: the cluster starts and creates the topic (RF 3, min.insync.replicas 2, small segments);
clients produce and consume while faults strike (crashes and restarts, pauses, isolation,
one-way cuts, message loss, duplication and delay); then every fault heals, producers stop, the
cluster quiesces and the durability checks run on the final logs. The safety checks run after
every event.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from kafkalab.config import broker_config
from kafkalab.metadata.image import NO_LEADER, MetadataImage
from kafkalab.nodes import controller_node
from kafkalab.sim.broker_node import SimBroker, broker_node
from kafkalab.sim.clients import SimConsumer, SimProducer
from kafkalab.sim.controller_node import SimController
from kafkalab.sim.controller_quorum import QuorumChecks, SimQuorumController
from kafkalab.sim.invariants import RunSummary, Violation
from kafkalab.sim.network import LinkFaults, Network
from kafkalab.sim.node import Calls, SimNode
from kafkalab.sim.replication_checks import CONVERGED, Broken, Checks, Replica, read_log
from kafkalab.sim.scheduler import Event, Scheduler

TOPIC = "t"
PARTITIONS = 2
RUN_MS = 6_500  # faults and traffic
HEAL_MS = 5_500  # faults end by here; producers stop at STOP_MS
STOP_MS = 6_000
QUIESCE_MAX_MS = 8_000  # extra virtual time allowed for catching up after the heal

BROKER_OVERRIDES: dict[str, Any] = {
    "broker.heartbeat.interval.ms": 100,
    "broker.session.timeout.ms": 500,
    "replica.lag.time.max.ms": 600,
    "replica.fetch.wait.max.ms": 50,
    "replica.fetch.backoff.ms": 30,
    "metadata.fetch.max.wait.ms": 100,
    "request.timeout.ms": 500,
}


def _data_root() -> str | None:
    # tmpfs where there is one: the logs are real files, but fsync costs nothing.
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class ReplicationRun:
    def __init__(self, seed: int, *, brokers: int = 3, controllers: int = 1, trace: bool = False,
                 faults: bool = True) -> None:
        if not 3 <= brokers <= 5:
            raise ValueError(f"--brokers {brokers}: the replication scenario runs 3 to 5 brokers")
        if controllers not in (1, 3):
            raise ValueError(f"--controllers {controllers}: the replication scenario runs 1 or 3 controllers")
        self.seed = seed
        self.with_faults = faults
        self.sched = Scheduler(seed)
        rng = self.sched.fork
        self.fault_rng = rng()
        self.net = Network(self.sched, rng(), LinkFaults())
        self.calls = Calls()
        self.story: list[str] | None = [] if trace else None
        self.faults = 0
        self.acked: dict[tuple[str, int], dict[int, bytes]] = {}
        self.acked_records = 0
        self.checks = Checks()
        self.config = broker_config("lab", BROKER_OVERRIDES)
        self.root = tempfile.mkdtemp(prefix="kafkalab-sim-", dir=_data_root())
        self._leaders: dict[tuple[str, int], tuple[int, int]] = {}
        self._errors = _ErrorLog()
        # One controller: the Controller over a plain metadata log (SimController). Three: a Raft
        # quorum of voters, each the process's RaftNode + ActiveController (SimQuorumController).
        self.controller: SimController | None = None
        self.quorum: list[SimQuorumController] = []
        self.quorum_checks = QuorumChecks()
        if controllers == 1:
            self.controller = SimController(self.sched, self.net, self.calls, self.config, rng(),
                                            self._controller_event)
        else:
            voters = list(range(1, controllers + 1))
            self.quorum = [SimQuorumController(v, voters, controller_node, self.sched, self.net, self.calls,
                                               self.config, rng(), self._controller_event, self.quorum_checks)
                           for v in voters]
        self.controller_names = [n.name for n in self._controllers()]
        self.broker_ids = list(range(1, brokers + 1))
        self.brokers = {b: SimBroker(b, os.path.join(self.root, f"broker-{b}"), self.config, self.sched,
                                     self.net, self.calls, rng(), self._broker_event, self.controller_names,
                                     self.quorum_checks.broker_applies if self.quorum else None)
                        for b in self.broker_ids}
        self.producers = [SimProducer(i, acks, TOPIC, PARTITIONS, self.broker_ids, self.sched, self.net,
                                      self.calls, rng(), self._acked, self._failed, self.controller_names)
                          for i, acks in ((1, -1), (2, -1), (3, 1))]
        self.consumers = [SimConsumer(i, TOPIC, PARTITIONS, self.broker_ids, self.sched, self.net,
                                      self.calls, rng(), self._read) for i in (1, 2)]

    # -- the story ------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.story is not None:
            self.story.append(f"t={self.sched.now_ms / 1000:.3f}s {text}")

    def _controller_event(self, event: str, d: dict[str, Any]) -> None:
        if event == "leader_election":
            tp = (d["topic"], d["partition"])
            old = self._leaders.get(tp, (NO_LEADER, -1))[0]
            self._leaders[tp] = (d["leader"], d["leader_epoch"])
            new = "none" if d["leader"] == NO_LEADER else d["leader"]
            self.say(f"partition {tp[0]}-{tp[1]} leader {'none' if old == NO_LEADER else old}→{new} "
                     f"epoch {d['leader_epoch']} ({d['detail']}), ISR {d['isr']}")
        elif event == "isr_change":
            self.say(f"partition {d['topic']}-{d['partition']} ISR → {d['isr']}")
        elif event in ("broker_fenced", "broker_unfenced"):
            self.say(f"controller: broker {d['broker']} {event.split('_')[1]}"
                     + (f" ({d['detail']})" if d.get("detail") else ""))
        elif event == "quorum_role":
            self.say(f"controller {d['controller']} {d['role']} in epoch {d['epoch']}")
        elif event in ("controller_active", "controller_inactive"):
            self.say(f"controller {d['controller']} {'active' if event == 'controller_active' else 'no longer active'}"
                     f" (epoch {d['epoch']})")

    def _broker_event(self, broker: int, event: str, d: dict[str, Any]) -> None:
        if event in ("truncate", "log_recovery"):
            self.say(f"broker {broker} {d['topic']}-{d['partition']}: {event.replace('_', ' ')}, {d['detail']}")

    def _acked(self, p: SimProducer, tp: tuple[str, int], base: int, values: list[bytes]) -> None:
        if p.acks == -1:
            recs = self.acked.setdefault(tp, {})
            for i, v in enumerate(values):
                recs[base + i] = v
            self.acked_records += len(values)
        self.say(f"producer {p.producer} (acks={'all' if p.acks == -1 else p.acks}) acked {tp[0]}-{tp[1]} "
                 f"offsets {base}–{base + len(values) - 1}")

    def _failed(self, p: SimProducer, tp: tuple[str, int], error: str, values: list[bytes]) -> None:
        self.say(f"producer {p.producer} failed {values[0].decode()}…{values[-1].decode()} on {tp[0]}-{tp[1]} "
                 f"({error}): reported to the application; new producer id")

    def _read(self, c: SimConsumer, tp: tuple[str, int], hw: int, records: list[tuple[int, bytes]]) -> None:
        self.checks.consumer_read(c.name, tp, hw, records)

    # -- faults ---------------------------------------------------------------------------
    def _controllers(self) -> list[SimNode]:
        return [self.controller] if self.controller is not None else list(self.quorum)

    def _node(self, name: str) -> SimNode:
        for c in self._controllers():
            if c.name == name:
                return c
        return self.brokers[int(name.split("-")[1])]

    def _active(self) -> SimQuorumController | None:
        return next((c for c in self.quorum if c.is_active), None)

    def committed_image(self) -> MetadataImage:
        """The committed metadata: the controller's, or the most advanced quorum voter's."""
        if self.controller is not None:
            return self.controller.image
        best = max(self.quorum, key=lambda c: c.active.high_watermark if c.active is not None else -1)
        return best.active.committed if best.active is not None else MetadataImage()

    def _schedule_faults(self) -> None:
        rng = self.fault_rng
        self.net.faults = LinkFaults(delay_ms=(1, rng.randint(2, 12)), loss=rng.choice((0, 0.01, 0.03)),
                                     duplicate=rng.choice((0, 0.01, 0.03)))
        self.sched.at(rng.randint(500, 1000), "fault", self._fault)

    def _fault(self) -> None:
        """One fault at a time (RF 3 with min.insync.replicas 2 promises to survive one failure);
        the next comes a little after this one heals. Loss, duplication and delay stay on."""
        rng = self.fault_rng
        now = self.sched.now_ms
        duration = rng.randint(150, 1000)
        if now + duration >= HEAL_MS:
            return
        self.sched.at(now + duration + rng.randint(50, 400), "fault", self._fault)
        servers = self.controller_names + [broker_node(b) for b in self.broker_ids]
        name = rng.choice(servers)
        kind = rng.choice(("crash", "crash", "pause", "isolate", "cut", "cut"))
        node = self._node(name)
        self.faults += 1
        if kind == "crash":
            # A power loss takes the page cache with it (the unflushed tail is lost); on the last
            # member of an ISR that loses acknowledged records even in Kafka (KIP-966's case), so
            # there it is a process kill, which keeps the page cache.
            power_loss = isinstance(node, SimBroker) and not self._sole_isr_member(node.broker_id)
            if isinstance(node, SimBroker):
                node.lose_page_cache = power_loss
            node.crash()
            self.say(f"{name.replace('-', ' ')} crashed"
                     + ((" (power loss: unflushed tail lost)" if power_loss else " (process killed)")
                        if isinstance(node, SimBroker) else ""))
            self.sched.after(duration, "restart", lambda: self._restart(node))
        elif kind == "pause":
            node.pause()
            self.say(f"{name.replace('-', ' ')} paused")
            self.sched.after(duration, "resume", lambda: self._resume(node))
        elif kind == "isolate":
            others = [n for n in self.net.handlers if n != name]
            self.net.partition([name], others)
            self.say(f"{name.replace('-', ' ')} isolated from everyone")
            self.sched.after(duration, "heal", self._heal)
        else:
            other = rng.choice([n for n in servers if n != name])
            self.net.cut_one_way(name, other)
            self.say(f"cut {name} → {other} (one way)")
            self.sched.after(duration, "heal", self._heal)

    def _sole_isr_member(self, broker: int) -> bool:
        return any(p.isr == [broker] for t in self.committed_image().topics.values()
                   for p in t.partitions.values())

    def _restart(self, node: SimNode) -> None:
        node.start()
        self.say(f"{node.name.replace('-', ' ')} restarted")

    def _resume(self, node: SimNode) -> None:
        self.say(f"{node.name.replace('-', ' ')} resumed")
        node.resume()

    def _heal(self) -> None:
        if self.net.cut:
            self.net.heal()
            self.say("network healed")

    def _heal_all(self) -> None:
        self._heal()
        self.net.faults = LinkFaults()

    # -- running --------------------------------------------------------------------------
    def _create_topic(self) -> None:
        if self.quorum:
            self._create_topic_in_quorum()
            return
        if not self.controller.up or self.controller.paused or self.controller.core is None \
                or len(self.controller.image.live_brokers()) < len(self.broker_ids):
            self.sched.after(50, "create topic", self._create_topic)
            return
        code, msg = self.controller.admin(lambda c: c.create_topic(
            TOPIC, PARTITIONS, 3, {"min.insync.replicas": 2, "segment.bytes": 1024}))
        self.say(f"topic {TOPIC} created: {PARTITIONS} partitions, RF 3, min.insync.replicas 2 ({code.name})")
        self._topic_created()

    def _create_topic_in_quorum(self) -> None:
        """Ask the active controller until the topic is committed (a failover may lose an
        uncommitted creation, as it would a CreateTopics request's records)."""
        active = self._active()
        if active is not None and not active.paused and active.active is not None:
            if TOPIC in active.active.committed.topics:
                self.say(f"topic {TOPIC} created (committed): {PARTITIONS} partitions, RF 3, min.insync.replicas 2")
                self._topic_created()
                return
            working = active.active.image
            if TOPIC not in working.topics and len(working.live_brokers()) == len(self.broker_ids):
                active.admin(lambda c: c.create_topic(
                    TOPIC, PARTITIONS, 3, {"min.insync.replicas": 2, "segment.bytes": 1024}))
        self.sched.after(50, "create topic", self._create_topic)

    def _topic_created(self) -> None:
        for pid, reg in sorted(self.committed_image().topics[TOPIC].partitions.items()):
            self._leaders[(TOPIC, pid)] = (reg.leader, reg.leader_epoch)
            self.say(f"partition {TOPIC}-{pid} replicas {reg.replicas}, leader {reg.leader} epoch {reg.leader_epoch}")
        for p in self.producers:
            self.sched.after(100, "producer start", p.start)
        for c in self.consumers:
            self.sched.after(100, "consumer start", c.start)

    def _replicas(self) -> list[Replica]:
        out = []
        for b, node in self.brokers.items():
            if node.rm is not None:
                out.extend(Replica(b, node.incarnation, part) for part in node.rm.partitions.values())
        return out

    def _after_event(self, ev: Event) -> None:
        if self._errors.messages:
            raise self._violation("no unexpected errors", f"a core logged: {self._errors.messages[0]}")
        try:
            self.checks.after_event(self._replicas())
        except Broken as e:
            raise self._violation(e.invariant, e.detail) from None

    def _violation(self, invariant: str, detail: str) -> Violation:
        self.say(f"VIOLATION {invariant}: {detail}")
        return Violation(self.seed, self.sched.events_run, invariant, detail, self.story)

    def _quiet(self) -> bool:
        """Every producer idle, every partition led, and every replica at its leader's HW = LEO."""
        if not all(p.idle for p in self.producers):
            return False
        for tp in ((TOPIC, p) for p in range(PARTITIONS)):
            if self.quorum and self._active() is None:
                return False
            reg = self.committed_image().partition(*tp)
            if reg is None or reg.leader == NO_LEADER:
                return False
            leader = self.brokers[reg.leader].rm
            lp = leader.partitions.get(tp) if leader else None
            if lp is None or not lp.is_leader or lp.leader_epoch != reg.leader_epoch \
                    or lp.high_watermark != lp.log_end_offset or sorted(lp.isr) != sorted(reg.replicas):
                return False
            for b in reg.replicas:
                rm = self.brokers[b].rm
                fp = rm.partitions.get(tp) if rm else None
                if fp is None or fp.log_end_offset != lp.log_end_offset:
                    return False
        return True

    def run(self) -> RunSummary:
        # A core that logs an error (a follower append that failed, a checkpoint not written)
        # has met a case it does not handle: that is a finding. Warnings (log recovery) are
        # part of the story, not output.
        logger = logging.getLogger("kafkalab")
        saved = logger.propagate, logger.level
        logger.addHandler(self._errors)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        try:
            return self._run()
        finally:
            logger.removeHandler(self._errors)
            logger.propagate, logger.level = saved
            for node in self.brokers.values():
                if node.rm is not None:
                    for part in node.rm.partitions.values():
                        part.log.close(flush=False)
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self) -> RunSummary:
        s = self.sched
        for c in self._controllers():
            c.start()
        for b in self.brokers.values():
            s.after(5, "broker start", b.start)
        s.after(200, "create topic", self._create_topic)
        if self.with_faults:
            self._schedule_faults()
        s.at(HEAL_MS, "heal", self._heal_all)
        s.at(STOP_MS, "stop producers", lambda: [p.stop() for p in self.producers])
        try:
            s.run_until(RUN_MS, self._after_event)
            deadline = RUN_MS + QUIESCE_MAX_MS
            while not self._quiet():
                if s.now_ms >= deadline:
                    raise self._violation(CONVERGED, f"not quiet {QUIESCE_MAX_MS} ms after the heal")
                s.run_until(s.now_ms + 100, self._after_event)
        except Violation:
            raise
        except Broken as e:  # a check made inside an event (a consumer's read)
            raise self._violation(e.invariant, e.detail) from None
        except Exception as e:  # a core or client raising is a finding too
            raise self._violation("no unexpected errors", f"{type(e).__name__}: {e}") from e
        self.say("healed and quiet: checking the final logs")
        logs = {}
        for tp in ((TOPIC, p) for p in range(PARTITIONS)):
            reg = self.committed_image().partition(*tp)
            assert reg is not None
            rm = self.brokers[reg.leader].rm
            assert rm is not None
            logs[tp] = read_log(rm.partitions[tp])
        try:
            self.checks.final(logs, self.acked)
            active = self._active()
            if active is not None and active.active is not None:
                self.quorum_checks.final(active.log, active.active.high_watermark,
                                         {b: n.image.offset for b, n in self.brokers.items()})
        except Broken as e:
            raise self._violation(e.invariant, e.detail) from None
        return RunSummary("replication", self.seed, s.now_ms / 1000, s.events_run, self.faults,
                          self.acked_records, self.checks.checks + self.quorum_checks.checks, self.story)


def run(seed: int, *, brokers: int = 3, controllers: int = 1, trace: bool = False) -> RunSummary:
    """One seeded run of the replication scenario (raises `Violation`)."""
    return ReplicationRun(seed, brokers=brokers, controllers=controllers, trace=trace).run()
