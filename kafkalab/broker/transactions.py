"""TransactionService: the broker's wiring of the TransactionCoordinator. Thin.

It answers FindCoordinator (key_type 1, transactional ids), InitProducerId with a
transactional.id, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn (kio requests in, kio
responses out at the version asked); writes the coordinator's records to the replicated,
compacted `__transaction_state` topic through the ReplicaManager's produce path (acks=all),
creating the topic on first use; whenever the metadata image changes, loads the partitions of
that topic this broker has just become leader of (replaying their log, then finishing prepared
transactions) and drops those it no longer leads; sends WriteTxnMarkers to partition leaders
(itself directly, other brokers over ZeroMQ) and retries until every partition has its marker
(after a backoff, or when a partition without a leader gets one); wakes when the
coordinator's next deadline comes (a transaction timeout, an id expiry, a retry); keeps its own
the broker's block of producer ids (ProducerIdManager); publishes "txn" rows.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import fields
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.context import BrokerContext
from kafkalab.broker.internal_topic import InternalTopicService
from kafkalab.broker.txn_coordinator import TP, TRANSACTION_STATE_TOPIC, TransactionCoordinator
from kafkalab.broker.txn_markers import MarkerJob, marker_codes
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import ZMQ_VERSIONS, lazy_schema, response_class, schema_module
from kafkalab.records.batch import decode_batch
from kafkalab.transport.channel import Channel

wtm_req = lazy_schema("kio.schema.write_txn_markers.v1.request")

log = logging.getLogger(__name__)

NO_THROTTLE = datetime.timedelta(0)
LOAD_RETRY_S = 1.0  # a partition whose replay failed is loaded again after this
# Kafka's transaction.abort.timed.out.transaction.cleanup.interval.ms is 10 s; the lab looks
# more often so a timed-out transaction is aborted while the learner watches.
DEFAULT_ABORT_CHECK_MS = 500
MARKER_CHANNEL_SUFFIX = "/txn"


def _make(cls: type, **kw: Any) -> Any:
    """A kio entity from the fields this version has."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})




class TransactionService(InternalTopicService):
    api_keys = frozenset({ApiKey.ADD_PARTITIONS_TO_TXN, ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN})  # plus 10 and 22, shared

    def __init__(self, broker: BrokerContext):
        cfg = broker.config
        super().__init__(broker, TRANSACTION_STATE_TOPIC, int(cfg["transaction.state.log.num.partitions"]))
        abort_ms = cfg.get("transaction.abort.timed.out.transaction.cleanup.interval.ms", DEFAULT_ABORT_CHECK_MS)
        self.jobs: list[MarkerJob] = []
        self.channels: dict[int, Channel] = {}  # broker id -> marker channel
        self.coordinator = TransactionCoordinator(
            num_partitions=self.num_partitions, offsets_partitions=int(cfg["offsets.topic.num.partitions"]),
            append=self._append, send_markers=self._send_markers, owns=self._owns,
            next_producer_id=broker.producer_ids.try_next, publish=self._publish_now,
            max_timeout_ms=int(cfg["transaction.max.timeout.ms"]),
            id_expiration_ms=int(cfg["transactional.id.expiration.ms"]), complete_retry_ms=int(abort_ms))
        # The coordinator's clock looks no more often than the cleanup interval (as Kafka's
        # periodic check), but only when a deadline has come: an idle broker never wakes for it.
        self.abort_check_s = abort_ms / 1000
        self._ticked = -self.abort_check_s
        broker.loop.add_due_source(self._tick_due, self._tick_coordinator)
        broker.loop.add_due_source(self._markers_due, self._drive_markers)

    # -- dispatch ----------------------------------------------------------------------------
    def accepts(self, api_key: int, req: Any) -> bool:
        if api_key == ApiKey.INIT_PRODUCER_ID:
            return bool(getattr(req, "transactional_id", None))
        if api_key == ApiKey.FIND_COORDINATOR:
            return int(getattr(req, "key_type", 0)) == 1
        return api_key in self.api_keys

    def handle(self, api_key: int, version: int, req: Any, reply: Any, now_ms: int) -> None:
        cls = response_class(api_key, version)
        c = self.coordinator
        if api_key == ApiKey.FIND_COORDINATOR:
            reply(self._find_coordinator(req, cls))
        elif api_key == ApiKey.INIT_PRODUCER_ID:
            timeout_ms = int(req.transaction_timeout.total_seconds() * 1000)
            c.init_producer_id(str(req.transactional_id), timeout_ms, int(getattr(req, "producer_id", -1)),
                               int(getattr(req, "producer_epoch", -1)), now_ms,
                               lambda code, pid, epoch: reply(_make(
                                   cls, throttle_time=NO_THROTTLE, error_code=code, producer_id=pid,
                                   producer_epoch=epoch)))
        elif api_key == ApiKey.ADD_PARTITIONS_TO_TXN:
            self._add_partitions(req, cls, reply, now_ms)
        elif api_key == ApiKey.ADD_OFFSETS_TO_TXN:
            c.add_offsets(str(req.transactional_id), int(req.producer_id), int(req.producer_epoch),
                          str(req.group_id), now_ms,
                          lambda code: reply(_make(cls, throttle_time=NO_THROTTLE, error_code=code)))
        elif api_key == ApiKey.END_TXN:
            c.end_txn(str(req.transactional_id), int(req.producer_id), int(req.producer_epoch),
                      bool(req.committed), now_ms,
                      lambda code: reply(_make(cls, throttle_time=NO_THROTTLE, error_code=code)))

    def _add_partitions(self, req: Any, cls: type, reply: Any, now_ms: int) -> None:
        # v0-3 carry one transaction; kio names the fields v3_and_below_* from v3 on.
        tid = getattr(req, "v3_and_below_transactional_id", None) or getattr(req, "transactional_id", "")
        pid = getattr(req, "v3_and_below_producer_id", getattr(req, "producer_id", -1))
        epoch = getattr(req, "v3_and_below_producer_epoch", getattr(req, "producer_epoch", -1))
        topics = getattr(req, "v3_and_below_topics", None) or getattr(req, "topics", ())
        tps = [(str(t.name), int(p)) for t in topics for p in t.partitions]
        unknown = {tp for tp in tps if self.broker.image.partition(*tp) is None}
        topic_cls = schema_module(cls).AddPartitionsToTxnTopicResult
        part_cls = schema_module(cls).AddPartitionsToTxnPartitionResult

        def answer(code_of: Any) -> None:
            by_topic: dict[str, list[Any]] = {}
            for t, p in tps:
                by_topic.setdefault(t, []).append(_make(part_cls, partition_index=p,
                                                        partition_error_code=code_of((t, p))))
            results = tuple(_make(topic_cls, name=t, results_by_partition=tuple(ps)) for t, ps in by_topic.items())
            reply(_make(cls, throttle_time=NO_THROTTLE, results_by_topic_v3_and_below=results, results=results))

        if unknown:  # Kafka: the unknown ones fail, the others are not attempted
            answer(lambda tp: ErrorCode.unknown_topic_or_partition if tp in unknown
                   else ErrorCode.operation_not_attempted)
            return
        self.coordinator.add_partitions(str(tid), int(pid), int(epoch), tps, now_ms,
                                        lambda code: answer(lambda _tp: code))

    def _find_coordinator(self, req: Any, cls: type) -> Any:
        batched = hasattr(req, "coordinator_keys")
        keys = [str(k) for k in req.coordinator_keys] if batched else [str(req.key)]
        ready = self._ensure_topic()
        out = []
        for key in keys:
            code, node, host, port = ErrorCode.coordinator_not_available, -1, "", -1
            if ready:
                reg = self.broker.image.partition(TRANSACTION_STATE_TOPIC, self.coordinator.partition_of(key))
                b = self.broker.image.brokers.get(reg.leader) if reg is not None else None
                if b is not None and not b.fenced:
                    code, node, host, port = ErrorCode.none, reg.leader, b.host, b.port
            out.append((key, code, node, host, port))
        if not batched:
            _key, code, node, host, port = out[0]
            return _make(cls, throttle_time=NO_THROTTLE, error_code=code, error_message=None, node_id=node,
                         host=host, port=port)
        item = schema_module(cls).Coordinator
        return _make(cls, throttle_time=NO_THROTTLE, coordinators=tuple(
            _make(item, key=k, node_id=n, host=h, port=p, error_code=code, error_message=None)
            for k, code, n, h, p in out))

    def _ensure_topic(self) -> bool:
        # Compacted: only the latest state of each transactional.id matters.
        min_isr = int(self.broker.config["transaction.state.log.min.isr"])
        return self._ensure_internal_topic(
            "transaction.state.log.replication.factor",
            lambda rf: {"cleanup.policy": "compact", "min.insync.replicas": str(min(min_isr, rf))})

    # -- __transaction_state: ownership, loading, appends -----------------------------------
    def metadata_applied(self) -> None:
        """The image changed (the broker's metadata listener calls this): load the partitions
        this broker now leads (or leads at a new epoch), drop the others, and send the markers
        that waited for a partition to get a leader."""
        now = self.broker.clock.wall_ms()
        for p in range(self.num_partitions):
            leads = self._leads(p)
            epoch = self.broker.rm.partitions[(TRANSACTION_STATE_TOPIC, p)].leader_epoch if leads else None
            if leads and (p not in self.loaded or self.coordinator.coordinator_epochs.get(p) != epoch):
                self._load(p, now)
            elif not leads and p in self.loaded:
                self.loaded.discard(p)
                self.coordinator.unload_partition(p)
        self._drive_markers()

    def _tick_due(self, now: float) -> float | None:
        wall = self.broker.clock.wall_ms()
        due_ms = self.coordinator.next_deadline(wall)
        if due_ms is None:
            return None
        # +1 ms: tick() compares whole wall-clock ms, so it never runs a hair too early.
        return max(now + (due_ms + 1 - wall) / 1000, self._ticked + self.abort_check_s)

    def _tick_coordinator(self) -> None:
        self._ticked = self.broker.clock.monotonic()
        self.coordinator.tick(self.broker.clock.wall_ms())

    def _load(self, p: int, now_ms: int) -> None:
        part = self.broker.rm.partitions[(TRANSACTION_STATE_TOPIC, p)]
        plog = part.log
        records: list[tuple[bytes, bytes | None]] = []
        try:
            for data, pos, _h in self._read_batches(p, plog.log_start_offset, plog.log_end_offset):
                records.extend((r.key, r.value) for r in decode_batch(data, pos).records if r.key is not None)
        except Exception:
            log.exception("broker %s: loading %s-%d failed", self.broker.broker_id, TRANSACTION_STATE_TOPIC, p)
            self.broker.loop.call_later(LOAD_RETRY_S, self.metadata_applied)  # try again
            return
        self.loaded.add(p)  # before replaying: finishing prepared transactions needs ownership
        n = self.coordinator.load_partition(p, part.leader_epoch, records, now_ms)
        self._publish_now("event", {"event": "txn_load", "topic": TRANSACTION_STATE_TOPIC, "partition": p,
                                    "detail": f"replayed {n} records at coordinator epoch {part.leader_epoch}"})

    def _append(self, p: int, records: list[tuple[bytes, bytes | None]], on_done: Any) -> None:
        # Appends are often asked for from inside a ReplicaManager completion callback (a
        # marker or an earlier append just finished): run them from the loop instead, so the
        # purgatory is never re-entered.
        self.broker.loop.call_later(0, lambda: self._append_now(p, records, on_done))

    def _append_now(self, p: int, records: list[tuple[bytes, bytes | None]], on_done: Any) -> None:
        self._produce_records(p, records, lambda code, _offset: on_done(code))

    # -- markers ------------------------------------------------------------------------------
    def _send_markers(self, txn_partition: int, coordinator_epoch: int, producer_id: int, producer_epoch: int,
                      commit: bool, partitions: list[TP], on_done: Any) -> None:
        self.jobs.append(MarkerJob(txn_partition, coordinator_epoch, producer_id, producer_epoch, commit,
                                   set(partitions), on_done))
        self.broker.loop.call_later(0, self._drive_markers)  # not from inside a produce callback

    def _channel(self, broker_id: int) -> Channel | None:
        c = self.channels.get(broker_id)
        if c is None:
            # The follower fetcher to that broker already uses "broker-N": the marker channel
            # has a name of its own. On a cut link a marker fails at once and is retried.
            c = self.broker.channel_to(broker_id, suffix=MARKER_CHANNEL_SUFFIX, fail_fast_on_cut=True)
            if c is not None:
                self.channels[broker_id] = c
        return c

    def _markers_due(self, now: float) -> float | None:
        """When a marker job has partitions to send: its backoff's end (or now)."""
        due = [t for t in (job.next_send(self._leader_of) for job in self.jobs) if t is not None]
        return max(now, min(due)) if due else None

    def _drive_markers(self) -> None:
        now = self.broker.clock.monotonic()
        for job in list(self.jobs):
            if self.coordinator.coordinator_epochs.get(job.txn_partition) != job.coordinator_epoch:
                self.jobs.remove(job)  # no longer this broker's transaction: its successor resends
                continue
            for leader, tps in job.to_send(now, self._leader_of).items():
                self._send_marker(job, leader, tps)
            self._maybe_finish(job)

    def _leader_of(self, tp: TP) -> int | None:
        reg = self.broker.image.partition(*tp)
        return None if reg is None else reg.leader

    def _send_marker(self, job: MarkerJob, leader: int, tps: list[TP]) -> None:
        topics: dict[str, list[int]] = {}
        for t, p in tps:
            topics.setdefault(t, []).append(p)
        req = wtm_req.WriteTxnMarkersRequest(markers=(wtm_req.WritableTxnMarker(
            producer_id=job.producer_id, producer_epoch=job.producer_epoch, transaction_result=job.commit,
            coordinator_epoch=job.coordinator_epoch,
            topics=tuple(wtm_req.WritableTxnMarkerTopic(name=t, partition_indexes=tuple(ps))
                         for t, ps in topics.items())),))

        def done(resp: Any) -> None:
            # A KafkaError instead of a response: timed out, or the link is cut.
            codes = {} if isinstance(resp, BaseException) else marker_codes(resp)
            written = job.answered(tps, codes, self.broker.clock.monotonic())
            if job.fenced:
                log.warning("broker %s: a marker of producer %d was refused (fenced): dropping the "
                            "transaction's markers", self.broker.broker_id, job.producer_id)
                if job in self.jobs:
                    self.jobs.remove(job)
                return
            for tp in written:
                self._publish_now("event", {
                    "event": "txn_marker", "topic": tp[0], "partition": tp[1],
                    "detail": f"{'COMMIT' if job.commit else 'ABORT'} producer {job.producer_id} "
                              f"epoch {job.producer_epoch} written"})
            self._maybe_finish(job)

        if leader == self.broker.broker_id:
            self.broker.handle(ApiKey.WRITE_TXN_MARKERS, ZMQ_VERSIONS[ApiKey.WRITE_TXN_MARKERS], req, done)
            return
        c = self._channel(leader)
        if c is None:  # not registered (yet): as if it had not answered
            job.answered(tps, {}, self.broker.clock.monotonic())
            return
        c.send(req, done, done)

    def _maybe_finish(self, job: MarkerJob) -> None:
        if job.done and job in self.jobs:
            self.jobs.remove(job)
            self.broker.loop.call_later(0, lambda: job.on_done(self.broker.clock.wall_ms()))

    # -- metrics -------------------------------------------------------------------------------
    def _publish_now(self, kind: str, row: dict[str, Any]) -> None:
        self.broker.metrics.publish(kind, {**row, "broker": self.broker.broker_id})

    def publish_state(self) -> None:
        """The transactions' rows, on the broker's metrics tick."""
        for row in self.coordinator.describe():
            self._publish_now("txn", row)

    def close(self) -> None:
        for c in self.channels.values():
            c.close()
