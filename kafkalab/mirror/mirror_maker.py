"""MirrorMaker: the notebook's handle on one replication flow, source -> target.

It checks the flow, creates what MM2 creates (remote topics with the source's partition
count and configs, the internal topics), starts the replicator process and breaks it on
request: kill, restart, pause, cut the link between the clusters.
"""

from __future__ import annotations

import atexit
import os
import signal
import weakref
from typing import Any

from kafkalab.config import client_config
from kafkalab.errors import KafkaLabError
from kafkalab.lazy_pandas import pd
from kafkalab.mirror import formats
from kafkalab.mirror.policy import (
    HEARTBEATS_TOPIC,
    checkpoints_topic,
    offset_syncs_topic,
    offsets_topic,
    remote_topic,
    topics_to_replicate,
)
from kafkalab.process import LabProcess, spawner

_live: weakref.WeakSet[MirrorMaker] = weakref.WeakSet()


def _close_all() -> None:
    for mm in list(_live):
        mm.close()


_registered = False


def _register_exit_handler() -> None:
    """An unclosed replicator is ended at exit before its clusters are (it would see their
    brokers vanish and retry until it died with this process). Exit handlers run
    last-registered-first, and ours is registered after the clusters' (a MirrorMaker needs two
    running clusters; kafkalab/cluster/open_clusters.py registers once, at the first start)."""
    global _registered
    if not _registered:
        atexit.register(_close_all)
        _registered = True

# Kafka's MM2 defaults, and the lab profile's shorter intervals (so a lab sees them in seconds).
DEFAULTS = {
    "kafka": {"offset.lag.max": 100, "emit.checkpoints.interval.ms": 60_000,
              "sync.group.offsets.enabled": False, "sync.group.offsets.interval.ms": 60_000,
              "emit.heartbeats.interval.ms": 1_000},
    "lab": {"offset.lag.max": 100, "emit.checkpoints.interval.ms": 500,
            "sync.group.offsets.enabled": False, "sync.group.offsets.interval.ms": 500,
            "emit.heartbeats.interval.ms": 500},
}
_COMPACT = {"cleanup.policy": "compact"}


def _config(profile: str, user: dict[str, Any] | None) -> dict[str, Any]:
    cfg = dict(DEFAULTS[profile])
    for key, value in (user or {}).items():
        if key not in cfg:
            raise KafkaLabError(f"unknown MirrorMaker config {key!r}: use one of {sorted(cfg)}")
        cfg[key] = value
    if isinstance(cfg["sync.group.offsets.enabled"], str):
        cfg["sync.group.offsets.enabled"] = cfg["sync.group.offsets.enabled"].lower() == "true"
    if int(cfg["offset.lag.max"]) < 0:
        raise KafkaLabError(f"offset.lag.max={cfg['offset.lag.max']!r} must be 0 or more")
    return cfg


def _ensure_topic(cluster: Any, name: str, partitions: int, config: dict[str, Any]) -> None:
    if name not in cluster.list_topics():
        cluster.create_topic(name, partitions=partitions, config=config)


class MirrorMaker:
    """Replicate `topics` (and `groups`' offsets) from `source` to `target`, as MM2 does:
    `orders` on west becomes `west.orders` on east, copied record by record."""

    def __init__(self, source: Any, target: Any, topics: list[str], groups: list[str] | tuple = (),
                 config: dict[str, Any] | None = None, *, start: bool = True):
        if source is target:
            raise KafkaLabError("source and target are the same cluster: mirror between two clusters, "
                                "e.g. MirrorMaker(source=west, target=east, ...)")
        for role, c in (("source", source), ("target", target)):
            if not getattr(c, "name", None):
                raise KafkaLabError(f"the {role} cluster has no name: remote topics are named after "
                                    "their source, so start both with Cluster(name='west') / Cluster(name='east')")
        try:
            self.topics = topics_to_replicate(source.name, target.name, list(topics),
                                              set(source.list_topics()))
        except ValueError as e:
            raise KafkaLabError(str(e)) from None
        self.source, self.target = source, target
        self.groups = list(groups)
        self.config = _config(source.profile, config)
        self.node = f"mirrormaker-{source.name}-{target.name}"
        self._proc: LabProcess | None = None
        self._state = "new"
        self._cut = False
        self._incarnation = 0
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MirrorMaker:
        if self._proc is not None:
            return self
        src, dst = self.source, self.target
        self.partitions = {}
        for t in self.topics:
            n = len(src.describe_topic(t, fresh=False))
            self.partitions[t] = n
            _ensure_topic(dst, remote_topic(src.name, t), n, src.topic_configs.get(t, {}))
        _ensure_topic(src, offset_syncs_topic(dst.name), 1, _COMPACT)
        _ensure_topic(dst, checkpoints_topic(src.name), 1, _COMPACT)
        _ensure_topic(dst, offsets_topic(src.name), 1, _COMPACT)
        _ensure_topic(dst, HEARTBEATS_TOPIC, 1, _COMPACT)
        self._spawn()
        return self

    def _side(self, c: Any) -> dict[str, Any]:
        return {"name": c.name, "brokers": c.broker_endpoints, "fault_endpoint": c.fault_endpoint,
                "faults_json": c.faults.to_json(), "metrics_endpoint": c.metrics.endpoint}

    def _spawn(self) -> None:
        from kafkalab.mirror.replicator import replicator_main
        profile = self.source.profile
        self._incarnation += 1
        self._proc = spawner().spawn(
            replicator_main, self.node, parent_pid=os.getpid(), node=self.node, incarnation=self._incarnation,
            source_side=self._side(self.source), target_side=self._side(self.target), topics=dict(self.partitions),
            groups=self.groups, config=self.config,
            consumer_config=client_config(profile, "consumer", None),
            producer_config=client_config(profile, "producer", None))
        self._state = "running"
        _live.add(self)
        _register_exit_handler()
        if self._cut:  # a cut link stays cut for the new incarnation's clients too
            self._set_link(True)
        self._event("mirror_start", f"{self.node}: {', '.join(self.topics)} -> "
                                    f"{', '.join(remote_topic(self.source.name, t) for t in self.topics)}")

    def _event(self, event: str, detail: str) -> None:
        for c in (self.source, self.target):
            if c.metrics is not None and not c.closed:
                c.record_event(event, detail)

    def close(self) -> None:
        """Stop the replicator (idempotent). The topics it made stay."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
            self._proc = None
            self._event("mirror_stop", self.node)
        self._state = "closed"
        _live.discard(self)

    def __enter__(self) -> MirrorMaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> str:
        if self._state in ("running", "paused") and self._proc is not None and not self._proc.is_alive():
            return "crashed"
        return self._state

    # -- faults ------------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL the replicator: it writes nothing more; restart() resumes from its progress."""
        if self._proc is None or not self._proc.is_alive():
            raise KafkaLabError(f"{self.node} is not running ({self.state}): restart() it")
        self._proc.kill()
        self._proc.join(timeout=5)
        self._state = "killed"
        self._event("mirror_kill", self.node)

    def restart(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            raise KafkaLabError(f"{self.node} is running: kill() it first")
        self._proc = None
        self._spawn()

    def pause(self) -> None:
        if self.state != "running":
            raise KafkaLabError(f"{self.node} is {self.state}, not running")
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._state = "paused"
        self._event("mirror_pause", self.node)

    def resume(self) -> None:
        if self._state != "paused":
            raise KafkaLabError(f"{self.node} is {self.state}, not paused: resume() follows pause()")
        os.kill(self._proc.pid, signal.SIGCONT)
        self._state = "running"
        self._event("mirror_resume", self.node)

    def cut(self) -> None:
        """Cut the link between the clusters: the replicator reaches neither side's brokers."""
        self._set_link(True)

    def heal(self) -> None:
        self._set_link(False)

    def _set_link(self, cut: bool) -> None:
        from kafkalab.mirror.replicator import client_nodes
        for c in (self.source, self.target):
            if c.closed:
                continue
            c.cut_from_brokers(client_nodes(self.node, self._incarnation, self.groups), cut,
                               f"{self.node} {'cut from' if cut else 'reconnected to'} {c.name}")
        self._cut = cut

    # -- what it did -------------------------------------------------------------------------
    def copied_offsets(self) -> dict[tuple[str, int], int]:
        """The last source offset copied per partition, as the replicator last reported it."""
        rows = self.target.metrics.frame("mirror") if not self.target.closed else pd.DataFrame()
        if rows.empty:
            return {}
        rows = rows[rows["node"] == self.node].sort_values("time")
        return {(r.topic, int(r.partition)): int(r.copied_offset) for r in rows.itertuples()
                if int(r.copied_offset) >= 0}

    def describe(self) -> pd.DataFrame:
        """A row per source partition: the source's end offset, how far the replicator copied,
        the remote topic's end offset, and the replication lag (records not yet copied)."""
        copied = self.copied_offsets()
        rows = []
        for t in self.topics:
            src_end = _ends(self.source, t)
            dst_end = _ends(self.target, remote_topic(self.source.name, t))
            for p in range(self.partitions[t]):
                done = copied.get((t, p), -1) + 1
                end = src_end.get(p)
                rows.append({"topic": t, "partition": p, "remote_topic": remote_topic(self.source.name, t),
                             "source_end_offset": end, "copied_offset": done,
                             "target_end_offset": dst_end.get(p),
                             "lag": None if end is None else max(0, end - done)})
        return pd.DataFrame(rows)

    def wait_caught_up(self, timeout: float = 30.0) -> pd.DataFrame:
        """Wait until every partition's lag is 0; returns describe()."""
        from kafkalab.cluster import wait_until

        def caught_up() -> Any:
            d = self.describe()
            return (d,) if (d["lag"].notna().all() and (d["lag"] == 0).all()) else None
        return wait_until(caught_up, timeout, f"{self.node} to copy everything")[0]

    def offset_syncs(self) -> pd.DataFrame:
        """The offset-syncs topic on the source, decoded: one row per sync record."""
        return self._read(self.source, offset_syncs_topic(self.target.name), formats.decode_offset_sync,
                          ["topic", "partition", "upstream_offset", "downstream_offset"])

    def checkpoints(self) -> pd.DataFrame:
        """The checkpoints topic on the target, decoded: one row per checkpoint record."""
        return self._read(self.target, checkpoints_topic(self.source.name), formats.decode_checkpoint,
                          ["group", "topic", "partition", "upstream_offset", "downstream_offset", "metadata"])

    def _read(self, cluster: Any, topic: str, decode: Any, columns: list[str]) -> pd.DataFrame:
        from kafkalab.client.message import TopicPartition
        from kafkalab.mirror.replicator import read_to_end
        consumer = cluster.consumer({"enable.auto.commit": False})
        try:
            records = read_to_end(consumer, [TopicPartition(topic, 0)])
        finally:
            consumer.close()
        return pd.DataFrame([vars(decode(m.key(), m.value())) for m in records], columns=columns)

    def __repr__(self) -> str:
        return f"<MirrorMaker {self.source.name} -> {self.target.name} {self.topics}, {self.state}>"


def _ends(cluster: Any, topic: str) -> dict[int, int]:
    if cluster.closed:
        return {}
    alive = [b for b in cluster.broker_ids if cluster.broker_state(b) == "running"]
    if not alive:
        return {}
    try:
        d = cluster.describe_topic(topic)  # fresh: a lag read right after a write counts it
    except Exception:  # noqa: BLE001 - a cluster without a leader has no end offset to show
        return {}
    return {int(r.partition): int(r.high_watermark) for r in d.itertuples() if int(r.leader) >= 0}
