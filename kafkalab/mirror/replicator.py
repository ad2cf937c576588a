"""The replicator process: wires the pure rules of core.py to lab clients of two clusters.

One loop, one thread: consume a batch from the source, produce it to the same partitions of
the remote topics on the target (acks=all, flushed), then write the offset syncs the rule asks
for and the progress (Connect's offset storage, on the target). Progress goes last, so a kill
between the two re-copies a batch (at-least-once) and never skips one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafkalab.mirror import formats
from kafkalab.mirror.core import (
    CheckpointRule,
    Intervals,
    OffsetSync,
    OffsetSyncRule,
    OffsetSyncStore,
)
from kafkalab.mirror.policy import (
    HEARTBEATS_TOPIC,
    checkpoints_topic,
    offset_syncs_topic,
    offsets_topic,
    remote_topic,
)


def progress_key(source: str, topic: str, partition: int) -> bytes:
    # Connect's JsonConverter layout of a source offset's key: [connector, partition map]
    return json.dumps(["MirrorSourceConnector", {"cluster": source, "partition": partition, "topic": topic}],
                      separators=(",", ":")).encode()


def client_nodes(node: str, incarnation: int, groups: list[str]) -> list[str]:
    """The replicator's clients, each its own node on the lab network: a node name is a
    ZeroMQ identity, unique per broker connection, so a restarted replicator (a new
    incarnation) never reuses one a broker may still hold. Cutting the link cuts them all."""
    return [f"{node}-{incarnation}.{role}" for role in ("copy-in", "copy-out", "syncs", "reader",
                                                         *(f"group-{g}" for g in groups))]


def read_to_end(consumer: Any, tps: list[Any], timeout: float = 10.0) -> list[Any]:
    """Every record of `tps` from offset 0 up to the high watermarks read now."""
    from kafkalab.client.message import TopicPartition
    deadline = time.monotonic() + timeout
    while True:  # a leader not known yet answers -1: ask again rather than read nothing
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in tps}
        if all(e >= 0 for e in ends.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no end offset for {sorted(ends)} within {timeout}s")
        time.sleep(0.1)
    wanted = [TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0]
    if not wanted:
        return []
    consumer.assign(wanted)
    out = []
    while time.monotonic() < deadline:
        for m in consumer.consume(500, 0.2):
            if m.error() is None:
                out.append(m)
        positions = consumer.position(wanted)
        if all(p.offset >= ends[(p.topic, p.partition)] for p in positions):
            break
    consumer.unassign()
    return out


def replicator_main(*, parent_pid: int, node: str, incarnation: int, source_side: dict[str, Any], target_side: dict[str, Any],
                    topics: dict[str, int], groups: list[str], config: dict[str, Any],
                    consumer_config: dict[str, Any], producer_config: dict[str, Any]) -> None:
    import zmq

    from kafkalab.client import Consumer, Producer
    from kafkalab.client.context import ClientContext
    from kafkalab.client.message import TopicPartition
    from kafkalab.errors import KafkaLabError
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent, parent_alive
    from kafkalab.protocol.errors import KafkaError
    from kafkalab.transport.faults import FaultTable
    from kafkalab.transport.rpc import FaultSubscriber

    die_with_parent(parent_pid)
    source, target = source_side, target_side
    ctx = zmq.Context()
    subs = []
    contexts = {}
    metrics = MetricsPublisher(ctx, target["metrics_endpoint"], node)
    for side, c in (("source", source), ("target", target)):
        faults = FaultTable.from_json(c["faults_json"])
        subs.append(FaultSubscriber(ctx, c["fault_endpoint"], faults))
        contexts[side] = (c["brokers"], faults)

    def client(kind: Any, side: str, role: str, cfg: dict[str, Any]) -> Any:
        brokers, faults = contexts[side]
        return kind(cfg, ClientContext(node=f"{node}-{incarnation}.{role}", brokers=brokers, faults=faults, metrics=metrics))

    src_alias, dst_alias = source["name"], target["name"]
    plain = {**consumer_config, "enable.auto.commit": False}
    up = client(Consumer, "source", "copy-in", plain)
    down = client(Producer, "target", "copy-out", {**producer_config, "acks": "all"})
    syncs_out = client(Producer, "source", "syncs", {**producer_config, "acks": "all"})
    src_groups = {g: client(Consumer, "source", f"group-{g}", {**plain, "group.id": g}) for g in groups}
    dst_groups = {g: client(Consumer, "target", f"group-{g}", {**plain, "group.id": g}) for g in groups}

    def resume_state() -> tuple[dict[tuple[str, int], int], OffsetSyncStore]:
        """Progress from the target, offset syncs from the source."""
        start: dict[tuple[str, int], int] = {}
        reader = client(Consumer, "target", "reader", plain)
        try:
            for m in read_to_end(reader, [TopicPartition(offsets_topic(src_alias), 0)]):
                k, v = json.loads(m.key()), json.loads(m.value())
                start[(k[1]["topic"], int(k[1]["partition"]))] = int(v["offset"]) + 1
        finally:
            reader.close()
        store = OffsetSyncStore()
        reader = client(Consumer, "source", "reader", plain)
        try:
            for m in read_to_end(reader, [TopicPartition(offset_syncs_topic(dst_alias), 0)]):
                store.add(formats.decode_offset_sync(m.key(), m.value()))
        finally:
            reader.close()
        return start, store

    while True:  # a cluster down or cut off at start-up: wait for it, as a Connect worker would
        try:
            start, store = resume_state()
            break
        except (KafkaError, KafkaLabError, TimeoutError) as e:
            metrics.publish("mirror_event", {"event": "retry", "detail": f"{node}: {type(e).__name__}: {e}"})
            for s in subs:
                s.drain()
            if not parent_alive(parent_pid):
                return
            time.sleep(0.5)

    up.assign([TopicPartition(t, p, start.get((t, p), 0)) for t, n in topics.items() for p in range(n)])
    rule = OffsetSyncRule(int(config["offset.lag.max"]))
    checkpoints = CheckpointRule(src_alias)
    intervals = Intervals({"checkpoints": int(config["emit.checkpoints.interval.ms"]),
                           "sync": int(config["sync.group.offsets.interval.ms"])
                           if config["sync.group.offsets.enabled"] else -1,
                           "heartbeats": int(config["emit.heartbeats.interval.ms"]),
                           "metrics": 250})
    copied: dict[tuple[str, int], int] = {tp: o - 1 for tp, o in start.items()}
    metrics.publish("mirror_event", {"event": "started", "detail": f"{node}: resuming at {dict(start)}"})
    delivered: list[tuple[tuple[str, int], int, int]] = []
    errors: list[Any] = []

    batch_no = 0

    def on_delivery(err: Any, msg: Any, tp: tuple[str, int], upstream: int, no: int) -> None:
        if no != batch_no:
            return  # a late report of a batch already given up on (and copied again)
        if err is not None:
            errors.append(err)
        else:
            delivered.append((tp, upstream, msg.offset()))

    last_check = 0.0
    while True:
        now = time.monotonic()
        if now - last_check > 0.1:
            last_check = now
            for s in subs:
                s.drain()
            if not parent_alive(parent_pid):
                break
        try:
            batch = [m for m in up.consume(500, 0.1) if m.error() is None]
            if batch:
                delivered.clear()
                errors.clear()
                batch_no += 1
                for m in batch:
                    tp, upstream = (m.topic(), m.partition()), m.offset()
                    down.produce(remote_topic(src_alias, m.topic()), value=m.value(), key=m.key(),
                                 partition=m.partition(), timestamp=m.timestamp()[1], headers=m.headers(),
                                 on_delivery=lambda e, msg, tp=tp, u=upstream, no=batch_no:
                                 on_delivery(e, msg, tp, u, no))
                down.flush(30)
                if errors or len(delivered) < len(batch):
                    # not all acknowledged: rewind and copy again (duplicates, never a gap)
                    firsts: dict[tuple[str, int], int] = {}
                    for m in batch:
                        firsts.setdefault((m.topic(), m.partition()), m.offset())
                    for (t, p), o in firsts.items():
                        up.seek(TopicPartition(t, p, o))
                    continue
                for tp, upstream, downstream in sorted(delivered, key=lambda d: (d[0], d[1])):
                    if rule.update(tp, upstream, downstream):
                        sync = OffsetSync(tp[0], tp[1], upstream, downstream)
                        store.add(sync)
                        k, v = formats.encode_offset_sync(sync)
                        syncs_out.produce(offset_syncs_topic(dst_alias), key=k, value=v, partition=0)
                    copied[tp] = upstream
                syncs_out.poll(0)
                for (t, p) in {d[0] for d in delivered}:
                    down.produce(offsets_topic(src_alias), key=progress_key(src_alias, t, p),
                                 value=json.dumps({"offset": copied[(t, p)]}).encode(), partition=0)
                down.poll(0)
            now_ms = int(time.time() * 1000)
            if groups and intervals.due("checkpoints", now_ms):
                for g, c in src_groups.items():
                    try:
                        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
                        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=2)
                                     if tp.offset is not None and tp.offset >= 0}
                    except (KafkaError, TimeoutError):
                        continue  # the source is unreachable: the last checkpoints stand
                    for cp in checkpoints.checkpoints(g, committed, store):
                        k, v = formats.encode_checkpoint(cp)
                        down.produce(checkpoints_topic(src_alias), key=k, value=v, partition=0)
                down.poll(0)
            if groups and intervals.due("sync", now_ms):
                for g, c in dst_groups.items():
                    latest = checkpoints.latest(g)
                    if not latest:
                        continue
                    try:
                        tps = [TopicPartition(cp.topic, cp.partition) for cp in latest]
                        have = {(tp.topic, tp.partition): tp.offset if tp.offset is not None else -1
                                for tp in c.committed(tps, timeout=2)}
                        wanted = CheckpointRule.offsets_to_sync(latest, have)
                        if wanted:
                            c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(wanted.items())],
                                     asynchronous=False)
                            metrics.publish("mirror_event", {"event": "group_offsets_synced",
                                                             "detail": f"{g}: {sorted(wanted.items())}"})
                    except (KafkaError, TimeoutError):
                        continue  # members are active on the target (UNKNOWN_MEMBER_ID), or unreachable
            if intervals.due("heartbeats", now_ms):
                k, v = formats.encode_heartbeat(src_alias, dst_alias, now_ms)
                down.produce(HEARTBEATS_TOPIC, key=k, value=v, partition=0)
                down.poll(0)
            if intervals.due("metrics", now_ms):
                for t, n in topics.items():
                    for p in range(n):
                        o = copied.get((t, p), -1)
                        # the source's high watermark as of the last fetch: no request of its own
                        end = up.get_watermark_offsets(TopicPartition(t, p), cached=True)[1]
                        metrics.publish("mirror", {"source": src_alias, "target": dst_alias, "topic": t,
                                                   "partition": p, "copied_offset": o,
                                                   "source_end_offset": end,
                                                   "lag": max(0, end - o - 1) if end >= 0 else None})
        except (KafkaError, KafkaLabError, TimeoutError, BufferError) as e:
            # a cluster is down or cut off: go back to one past the last record the target
            # acknowledged and retry (at-least-once: some may be copied again, none skipped)
            metrics.publish("mirror_event", {"event": "retry", "detail": f"{node}: {type(e).__name__}: {e}"})
            for t, n in topics.items():
                for p in range(n):
                    up.seek(TopicPartition(t, p, copied.get((t, p), -1) + 1))
            time.sleep(0.5)
