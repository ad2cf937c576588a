"""The broker's data path: which replicas it hosts, and Produce / Fetch / ListOffsets on them.

Pure apart from the segment files its Logs write: requests come in with the current time and a
callback for the response; a request that must wait (acks=all until the ISR has the data, a
fetch until fetch.min.bytes are there) parks in a purgatory and completes when the data moves
or its deadline passes (`tick`).
"""

from __future__ import annotations

import datetime
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.fetch_session import DEFAULT_CACHE_SLOTS, FetchContext, FetchSessionCache
from kafkalab.broker.fetch_session_handler import FetchRequestData, FetchSessionHandler
from kafkalab.broker.partition import Partition
from kafkalab.broker.producer_state import ProducerStateManager
from kafkalab.clock import long_poll_deadline_ms
from kafkalab.config import topic_config
from kafkalab.errors import CorruptRecordError, OffsetOutOfRangeError
from kafkalab.metadata.image import MetadataImage
from kafkalab.protocol.apis import lazy_schema, schema_module
from kafkalab.records import encode_control_batch
from kafkalab.records.header import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    parse_header,
    set_log_append_time,
)
from kafkalab.records.scan import iter_batches
from kafkalab.storage import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_CHECKPOINT,
    CorruptCheckpointError,
    Log,
    OffsetCheckpointFile,
)
from kafkalab.storage.cleaner import Cleaner

ap_req = lazy_schema("kio.schema.alter_partition.v2.request")
fetch_req = lazy_schema("kio.schema.fetch.v12.request")
fetch_resp = lazy_schema("kio.schema.fetch.v12.response")
lo_req = lazy_schema("kio.schema.list_offsets.v7.request")
lo_resp = lazy_schema("kio.schema.list_offsets.v7.response")
ofle_req = lazy_schema("kio.schema.offset_for_leader_epoch.v4.request")
ofle_resp = lazy_schema("kio.schema.offset_for_leader_epoch.v4.response")
produce_req = lazy_schema("kio.schema.produce.v9.request")
produce_resp = lazy_schema("kio.schema.produce.v9.response")

log = logging.getLogger(__name__)

TP = tuple[str, int]
EARLIEST, LATEST, MAX_TIMESTAMP = -2, -1, -3
NO_THROTTLE = datetime.timedelta(0)


@dataclass
class DelayedProduce:
    acks: int
    deadline_ms: int
    # (topic, partition) -> [error, base_offset, required_offset, log_start_offset]
    results: dict[TP, list[int]]
    on_done: Callable[[produce_resp.ProduceResponse], None]
    respond: Callable[[DelayedProduce], None] | None = None  # a custom answer (txn markers)


@dataclass
class DelayedFetch:
    request: fetch_req.FetchRequest
    deadline_ms: int
    on_done: Callable[[fetch_resp.FetchResponse], None]
    replica_id: int = -1
    tps: list[TP] = field(default_factory=list)
    # For the Kafka listener's sendfile path: `records` holds a storage FileRegion (path,
    # position, length) instead of bytes, and the listener streams it from the file.
    zero_copy: bool = False
    session: FetchContext | None = None  # the request's fetch session (KIP-227)


class ReplicaManager:
    def __init__(self, broker_id: int, data_dir: str, broker_config: dict[str, Any]):
        self.broker_id = broker_id
        self.data_dir = data_dir
        self.config = broker_config
        self.partitions: dict[TP, Partition] = {}
        self.image = MetadataImage()
        self.delayed_produce: list[DelayedProduce] = []
        self.delayed_fetch: list[DelayedFetch] = []
        self.on_event: Callable[[str, dict[str, Any]], None] = lambda e, d: None
        self.counters = {"bytes_in": 0, "bytes_out": 0, "messages_in": 0,
                         "produce_requests": 0, "fetch_requests": 0,
                         "fetch_sessions": 0, "fetch_session_evictions": 0, "incremental_fetch_requests": 0}
        os.makedirs(data_dir, exist_ok=True)
        # Kafka's per-log-dir checkpoints: where recovery may start, where each log starts,
        # and the high watermarks (so a restarted broker does not expose less than it had).
        self.checkpoints = {name: OffsetCheckpointFile(os.path.join(data_dir, name)) for name in
                            (RECOVERY_POINT_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT, REPLICATION_CHECKPOINT)}
        self._checkpointed = {name: self._read_checkpoint(name) for name in self.checkpoints}
        self.cleaner = Cleaner()
        self.fetch_sessions = FetchSessionCache(max_slots=int(broker_config.get(
            "max.incremental.fetch.session.cache.slots", DEFAULT_CACHE_SLOTS)))

    # -- metadata --------------------------------------------------------------------------
    def apply_metadata(self, image: MetadataImage, now_ms: int) -> dict[TP, str]:
        """Host the replicas the image assigns here; returns role changes by partition."""
        self.image = image
        changes: dict[TP, str] = {}
        for topic in image.topics.values():
            cfg = topic_config(self.config, topic.configs)
            for pid, reg in topic.partitions.items():
                tp = (topic.name, pid)
                if self.broker_id not in reg.replicas:
                    continue
                part = self.partitions.get(tp)
                if part is None:
                    part = self._open_partition(tp, cfg, now_ms)
                part.config = {**cfg, **self._replication_config()}
                part.log.config = cfg  # an altered topic config reaches the log (segments, retention)
                role = part.apply_registration(reg, now_ms)
                if role is not None:
                    changes[tp] = role
                    self.on_event("role_change", {"topic": tp[0], "partition": tp[1], "detail": role,
                                                  "leader": reg.leader, "leader_epoch": reg.leader_epoch})
        for tp in [tp for tp in self.partitions if tp[0] not in image.topics]:
            self._remove_partition(tp)
        self.try_complete(now_ms)
        return changes

    def _replication_config(self) -> dict[str, Any]:
        return {"replica.lag.time.max.ms": self.config["replica.lag.time.max.ms"],
                "request.timeout.ms": self.config["request.timeout.ms"]}

    def _read_checkpoint(self, name: str) -> dict[TP, int]:
        try:
            return self.checkpoints[name].read()
        except (CorruptCheckpointError, OSError) as e:
            log.warning("ignoring %s: %s (recovery will scan whole logs)", name, e)
            return {}

    def _open_partition(self, tp: TP, cfg: dict[str, Any], now_ms: int) -> Partition:
        path = os.path.join(self.data_dir, f"{tp[0]}-{tp[1]}")
        plog = Log(path, cfg, now_ms=now_ms,
                   recovery_point=self._checkpointed[RECOVERY_POINT_CHECKPOINT].get(tp, 0),
                   log_start_offset=self._checkpointed[LOG_START_OFFSET_CHECKPOINT].get(tp, 0))
        if not plog.recovery_report.clean:
            self.on_event("log_recovery", {"topic": tp[0], "partition": tp[1],
                                           "detail": f"truncated {plog.recovery_report.truncated_bytes} bytes"})
        part = Partition(tp[0], tp[1], self.broker_id, plog, cfg)
        part.producer_state = ProducerStateManager(
            producer_id_expiration_ms=self.config["producer.id.expiration.ms"])
        part.producer_state.reload(plog, now_ms)
        part.high_watermark = min(self._checkpointed[REPLICATION_CHECKPOINT].get(tp, 0), plog.log_end_offset)
        self.partitions[tp] = part
        return part

    def _remove_partition(self, tp: TP) -> None:
        part = self.partitions.pop(tp)
        part.log.close()
        import shutil  # here, not at import: it loads bz2 and lzma (~0.7 MB a process)
        shutil.rmtree(os.path.join(self.data_dir, f"{tp[0]}-{tp[1]}"), ignore_errors=True)

    def close(self) -> None:
        for part in self.partitions.values():
            try:
                part.producer_state.write_snapshot(part.log)
            except OSError as e:
                log.error("could not write the producer snapshot of %s-%d: %s", part.topic, part.partition, e)
            part.log.close()
        self.write_checkpoints()

    def write_checkpoints(self) -> None:
        """Flush every log and record recovery points, log starts and high watermarks."""
        values: dict[str, dict[TP, int]] = {name: {} for name in self.checkpoints}
        for tp, part in self.partitions.items():
            values[RECOVERY_POINT_CHECKPOINT][tp] = part.log.recovery_point
            values[LOG_START_OFFSET_CHECKPOINT][tp] = part.log_start_offset
            values[REPLICATION_CHECKPOINT][tp] = part.high_watermark
        for name, cp in self.checkpoints.items():
            try:
                cp.write(values[name])
            except OSError as e:
                log.error("could not write %s: %s", name, e)

    def flush_logs(self) -> None:
        for part in self.partitions.values():
            part.log.flush()
        self.write_checkpoints()

    def expire_producers(self, now_ms: int) -> None:
        for part in self.partitions.values():
            part.producer_state.remove_expired(now_ms)

    def clean_logs(self, now_ms: int) -> None:
        """The log cleaner's round: compaction, then retention (Kafka's order, see Cleaner.run)."""
        for tp, part in list(self.partitions.items()):
            plog = part.log
            try:
                # Like Kafka, retention does not wait for slow consumers: the log start offset
                # moves up and they get OFFSET_OUT_OF_RANGE.
                stats, result = self.cleaner.run(plog, now_ms, part.high_watermark, part.last_stable_offset)
                if stats is not None and stats.get("cleaned"):
                    self.on_event("compaction", {
                        "topic": tp[0], "partition": tp[1],
                        "detail": f"removed {stats['records_removed']} records "
                                  f"(dirty ratio {stats['dirty_ratio']:.2f}: {stats['dirty_bytes']} "
                                  f"dirty of {stats['clean_bytes'] + stats['dirty_bytes']} bytes)"})
                if result["deleted_segments"]:
                    self.on_event("retention", {"topic": tp[0], "partition": tp[1],
                                                "detail": f"deleted {len(result['deleted_segments'])} segments "
                                                          f"({', '.join(result['reasons'])})",
                                                "log_start_offset": plog.log_start_offset})
                plog.delete_expired_files(now_ms)
            except Exception:
                log.exception("log cleaning failed for %s-%d", tp[0], tp[1])

    # -- produce ---------------------------------------------------------------------------
    def produce(self, req: produce_req.ProduceRequest, now_ms: int,
                on_done: Callable[[produce_resp.ProduceResponse], None]) -> None:
        self.counters["produce_requests"] += 1
        acks = int(req.acks)
        results: dict[TP, list[int]] = {}
        for topic_data in req.topic_data:
            for pd in topic_data.partition_data:
                tp = (str(topic_data.name), int(pd.index))
                results[tp] = self._append(tp, pd.records or b"", acks, now_ms)
        timeout_ms = int(req.timeout.total_seconds() * 1000)
        op = DelayedProduce(acks, now_ms + timeout_ms, results, on_done)
        if acks == -1 and any(r[0] == ErrorCode.none for r in results.values()):
            self.delayed_produce.append(op)
        elif acks != 0:  # Kafka never answers acks=0: the producer is not listening
            on_done(self._produce_response(op))
        self.try_complete(now_ms)  # the new data may complete parked fetches (followers' first)

    def _append(self, tp: TP, records: bytes, acks: int, now_ms: int, control: bool = False,
                coordinator_epoch: int | None = None) -> list[int]:
        part = self.partitions.get(tp)
        if part is None:
            code = ErrorCode.unknown_topic_or_partition if self.image.partition(*tp) is None \
                else ErrorCode.not_leader_or_follower
            return [code, -1, -1, -1]
        err = part.check_leader(-1)
        if err == ErrorCode.none:
            err = part.check_min_isr(acks)
        if err != ErrorCode.none:
            return [err, -1, -1, -1]
        err = self._validate(part, records, control)
        if err != ErrorCode.none:
            return [err, -1, -1, -1]
        if control:
            verdict = part.producer_state.check(parse_header(records), coordinator_epoch=coordinator_epoch)
        else:
            verdict = part.producer_state.check_records(records)
        if verdict.duplicate is not None:
            # A retry of a batch we already have: answer with its original offsets.
            dup = verdict.duplicate
            return [ErrorCode.none, dup.first_offset, dup.last_offset + 1, part.log_start_offset]
        if not verdict.should_append:
            log.info("rejected batch for %s-%d: %s", tp[0], tp[1], verdict.message)
            return [verdict.error_code, -1, -1, -1]
        try:
            buf: bytes | bytearray | memoryview = records  # appended without a copy
            if part.config["message.timestamp.type"] == "LogAppendTime" and not control:
                # The broker's clock replaces the producer's (CRC recomputed per batch).
                buf = bytearray(records)
                for pos, _h in iter_batches(buf):
                    set_log_append_time(buf, now_ms, pos)
            base, last = part.append_as_leader(buf, now_ms)
        except CorruptRecordError as e:
            log.warning("rejected corrupt batch for %s-%d: %s", tp[0], tp[1], e)
            return [ErrorCode.corrupt_message, -1, -1, -1]
        self.counters["bytes_in"] += len(records)
        self.counters["messages_in"] += last - base + 1
        return [ErrorCode.none, base, last + 1, part.log_start_offset]

    def _validate(self, part: Partition, records: bytes, control: bool = False) -> ErrorCode:
        if len(records) < HEADER_SIZE:
            return ErrorCode.corrupt_message
        if len(records) > part.config["max.message.bytes"] + LOG_OVERHEAD:
            return ErrorCode.message_too_large
        pos = 0
        while pos < len(records):
            if len(records) - pos < HEADER_SIZE:
                return ErrorCode.corrupt_message
            h = parse_header(records, pos)
            if h.magic != MAGIC:
                return ErrorCode.unsupported_for_message_format
            if h.size > len(records) - pos or h.batch_length < HEADER_SIZE - LOG_OVERHEAD:
                return ErrorCode.corrupt_message
            if not control:
                # Kafka's LogValidator.validateBatch for a client's v2 batch, from the header
                # alone (the CRC is checked as the log appends): only transaction coordinators
                # write markers; the record count must match the offset range; a producer id
                # needs a sequence.
                if h.is_control:
                    return ErrorCode.invalid_record
                if h.records_count <= 0 or h.last_offset_delta + 1 != h.records_count:
                    return ErrorCode.invalid_record
                if h.producer_id >= 0 and h.base_sequence < 0:
                    return ErrorCode.invalid_record
            pos += h.size
        return ErrorCode.none

    def _produce_response(self, op: DelayedProduce) -> produce_resp.ProduceResponse:
        by_topic: dict[str, list[produce_resp.PartitionProduceResponse]] = {}
        for (topic, pid), (err, base, _required, lso) in op.results.items():
            by_topic.setdefault(topic, []).append(produce_resp.PartitionProduceResponse(
                index=pid, error_code=ErrorCode(err), base_offset=base, log_append_time=None,
                log_start_offset=lso, record_errors=(), error_message=None))
        return produce_resp.ProduceResponse(
            responses=tuple(produce_resp.TopicProduceResponse(name=t, partition_responses=tuple(ps))
                            for t, ps in by_topic.items()),
            throttle_time=NO_THROTTLE)

    def _produce_ready(self, op: DelayedProduce, now_ms: int) -> bool:
        done = True
        for tp, r in op.results.items():
            if r[0] != ErrorCode.none:
                continue
            tp = (tp[0].split(":", 1)[-1], tp[1])  # marker results are keyed "index:topic"
            part = self.partitions.get(tp)
            if part is None or not part.is_leader:
                r[0] = ErrorCode.not_leader_or_follower
                continue
            if part.high_watermark >= r[2]:
                # The ISR has it; Kafka still refuses if the ISR shrank below the minimum.
                if len(part.isr) < part.effective_min_isr:
                    r[0] = ErrorCode.not_enough_replicas_after_append
                continue
            if now_ms >= op.deadline_ms:
                r[0] = ErrorCode.request_timed_out
                continue
            done = False
        return done

    # -- fetch -----------------------------------------------------------------------------
    def fetch(self, req: fetch_req.FetchRequest, now_ms: int,
              on_done: Callable[[fetch_resp.FetchResponse], None], *, zero_copy: bool = False) -> None:
        self.counters["fetch_requests"] += 1
        # An incremental request (KIP-227) lists only what changed: the session fills in the rest.
        session = self.fetch_sessions.new_context(req, now_ms)
        if session.kind == "incremental":
            self.counters["incremental_fetch_requests"] += 1
        req = session.request
        replica_id = int(req.replica_id)
        if replica_id >= 0:
            for t in req.topics:
                for p in t.partitions:
                    part = self.partitions.get((str(t.topic), int(p.partition)))
                    # A follower whose log diverged has not got what its fetch offset claims:
                    # it must truncate before its offset counts (for the HW and the ISR).
                    if (part is not None and part.check_leader(int(p.current_leader_epoch)) == ErrorCode.none
                            and self._divergence(part, p) is None):
                        part.record_follower_fetch(replica_id, int(p.fetch_offset), now_ms)
            self.try_complete(now_ms)  # a follower's progress may complete acks=all produces
        wait_ms = int(req.max_wait.total_seconds() * 1000)
        deadline = now_ms + wait_ms if replica_id < 0 else long_poll_deadline_ms(now_ms, wait_ms)
        op = DelayedFetch(req, deadline, on_done, replica_id, zero_copy=zero_copy, session=session)
        resp, size, has_error = self._fetch_response(op)
        # Nothing to read (a session error, no partitions): answered at once, as Kafka does.
        if size >= int(req.min_bytes) or has_error or wait_ms <= 0 or not req.topics:
            self._fetch_done(op, resp, size, now_ms)
        else:
            self.delayed_fetch.append(op)

    def _fetch_done(self, op: DelayedFetch, resp: fetch_resp.FetchResponse, size: int, now_ms: int) -> None:
        self.counters["bytes_out"] += size
        if op.session is not None:
            resp = self.fetch_sessions.respond(op.session, resp, now_ms)
            self.counters["fetch_sessions"] = len(self.fetch_sessions.sessions)
            self.counters["fetch_session_evictions"] = self.fetch_sessions.evictions
        op.on_done(resp)

    def _fetch_may_complete(self, op: DelayedFetch) -> bool:
        """Could a parked fetch's response now carry records or an error? From offsets alone
        (as Kafka's DelayedFetch.tryComplete), without reading any log: when no partition has
        a readable offset past its fetch offset and none would answer an error, the response
        would be as empty as when the fetch was parked."""
        req = op.request
        for t in req.topics:
            for p in t.partitions:
                part = self.partitions.get((str(t.topic), int(p.partition)))
                if part is None or part.check_leader(int(p.current_leader_epoch)) != ErrorCode.none:
                    return True
                offset = int(p.fetch_offset)
                if not part.log_start_offset <= offset <= part.log_end_offset:
                    return True  # OFFSET_OUT_OF_RANGE
                if op.replica_id >= 0:
                    if part.log_end_offset > offset or self._divergence(part, p) is not None:
                        return True
                elif (part.last_stable_offset if int(req.isolation_level) == 1 else part.high_watermark) > offset:
                    return True
        return False

    @staticmethod
    def _divergence(part: Partition, p: fetch_req.FetchPartition) -> fetch_resp.EpochEndOffset | None:
        """Where a follower's log left ours: its last epoch ended earlier here, or never was."""
        last_epoch = int(p.last_fetched_epoch)
        if last_epoch < 0:
            return None
        epoch, end = part.end_offset_for_epoch(last_epoch)
        if epoch != last_epoch or end < int(p.fetch_offset):
            return fetch_resp.EpochEndOffset(epoch=epoch, end_offset=end)
        return None

    def _fetch_response(self, op: DelayedFetch) -> tuple[fetch_resp.FetchResponse, int, bool]:
        req = op.request
        total, budget, has_error = 0, int(req.max_bytes), False
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                pd, n = self._fetch_partition(str(t.topic), p, op.replica_id, int(req.isolation_level),
                                              max(0, min(int(p.partition_max_bytes), budget)) if total
                                              else int(p.partition_max_bytes), op.zero_copy)
                has_error |= pd.error_code != ErrorCode.none
                total += n
                budget -= n
                parts.append(pd)
            topics.append(fetch_resp.FetchableTopicResponse(topic=t.topic, partitions=tuple(parts)))
        return fetch_resp.FetchResponse(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, session_id=0,
                                        responses=tuple(topics)), total, has_error

    def _fetch_partition(self, topic: str, p: fetch_req.FetchPartition, replica_id: int,
                         isolation_level: int, max_bytes: int,
                         zero_copy: bool = False) -> tuple[fetch_resp.PartitionData, int]:
        pid = int(p.partition)
        part = self.partitions.get((topic, pid))

        # Records are empty, never null, as Kafka's MemoryRecords.EMPTY: librdkafka takes a null
        # records field for a protocol error and retries the same fetch in a tight loop.
        def error(code: ErrorCode, part: Partition | None = None) -> fetch_resp.PartitionData:
            leader = fetch_resp.LeaderIdAndEpoch(leader_id=part.leader if part else -1,
                                                 leader_epoch=part.leader_epoch if part else -1)
            return fetch_resp.PartitionData(partition_index=pid, error_code=code, high_watermark=-1,
                                            last_stable_offset=-1, log_start_offset=-1,
                                            current_leader=leader, aborted_transactions=None,
                                            records=b"")

        if part is None:
            code = ErrorCode.unknown_topic_or_partition if self.image.partition(topic, pid) is None \
                else ErrorCode.not_leader_or_follower
            return error(code), 0
        code = part.check_leader(int(p.current_leader_epoch))
        if code != ErrorCode.none:
            return error(code, part), 0
        fetch_offset = int(p.fetch_offset)
        diverging = self._divergence(part, p) if replica_id >= 0 else None
        hw = part.high_watermark
        lso = part.last_stable_offset
        if diverging is not None:
            return fetch_resp.PartitionData(
                partition_index=pid, error_code=ErrorCode.none, high_watermark=hw,
                last_stable_offset=lso, log_start_offset=part.log_start_offset,
                diverging_epoch=diverging, aborted_transactions=None, records=b""), 0
        # Followers read to the log end; consumers never past the high watermark, and
        # read_committed consumers never past the last stable offset.
        max_offset = None if replica_id >= 0 else (lso if isolation_level == 1 else hw)
        try:
            if zero_copy:
                region = part.log.read(fetch_offset, max_bytes, max_offset=max_offset)
                data: Any = region if region.length else b""
                size = region.length
            else:
                data = part.log.read_bytes(fetch_offset, max_bytes, max_offset=max_offset)
                size = len(data)
        except OffsetOutOfRangeError:
            return error(ErrorCode.offset_out_of_range, part), 0
        except CorruptRecordError as e:
            log.error("corrupt data in %s-%d: %s", topic, pid, e)
            return error(ErrorCode.corrupt_message, part), 0
        aborted = None
        if isolation_level == 1 and replica_id < 0:
            # The consumer drops records of these producers from first_offset on, until it
            # meets their abort marker.
            aborted = tuple(fetch_resp.AbortedTransaction(producer_id=a.producer_id, first_offset=a.first_offset)
                            for a in part.log.collect_aborted_transactions(fetch_offset, max_offset or hw))
        return fetch_resp.PartitionData(
            partition_index=pid, error_code=ErrorCode.none, high_watermark=hw,
            last_stable_offset=lso, log_start_offset=part.log_start_offset,
            aborted_transactions=aborted,
            records=data if zero_copy else bytes(data)), size

    # -- transaction markers ---------------------------------------------------------------
    def write_txn_markers(self, req: Any, resp_cls: Any, now_ms: int, on_done: Callable[[Any], None]) -> None:
        """Append COMMIT/ABORT control batches for the transaction coordinator; answer once
        the ISR has them (Kafka writes markers with acks=all)."""
        mod = schema_module(resp_cls)
        pending: list[tuple[int, str, int, list[int]]] = []  # (marker index, topic, partition, result)
        results: dict[TP, list[int]] = {}
        for i, m in enumerate(req.markers):
            batch = encode_control_batch("commit" if m.transaction_result else "abort",
                                         producer_id=int(m.producer_id), producer_epoch=int(m.producer_epoch),
                                         coordinator_epoch=int(m.coordinator_epoch), timestamp_ms=now_ms)
            for t in m.topics:
                for pid in t.partition_indexes:
                    tp = (str(t.name), int(pid))
                    r = self._append(tp, batch, -1, now_ms, control=True,
                                     coordinator_epoch=int(m.coordinator_epoch))
                    results[(f"{i}:{tp[0]}", tp[1])] = r
                    pending.append((i, tp[0], tp[1], r))

        def respond(_op: DelayedProduce) -> None:
            markers = []
            for i, m in enumerate(req.markers):
                by_topic: dict[str, list[Any]] = {}
                for j, topic, pid, r in pending:
                    if j == i:
                        by_topic.setdefault(topic, []).append(mod.WritableTxnMarkerPartitionResult(
                            partition_index=pid, error_code=ErrorCode(r[0])))
                markers.append(mod.WritableTxnMarkerResult(producer_id=m.producer_id, topics=tuple(
                    mod.WritableTxnMarkerTopicResult(name=t, partitions=tuple(ps)) for t, ps in by_topic.items())))
            on_done(resp_cls(markers=tuple(markers)))

        op = DelayedProduce(-1, now_ms + self.config["request.timeout.ms"], results, lambda _r: None, respond)
        self.delayed_produce.append(op)
        self.try_complete(now_ms)

    # -- ISR changes (the leader's AlterPartition) -----------------------------------------
    def alter_partition_requests(self, broker_epoch: int, now_ms: int, tps: Iterable[TP] | None = None,
                                 ) -> list[tuple[Partition, ap_req.AlterPartitionRequest]]:
        """The AlterPartition each led partition (of tps, None: all) should send the controller
        now (one change in flight per partition); a partition whose topic is gone from the
        image proposes none."""
        out = []
        for tp in self.partitions if tps is None else tps:
            part = self.partitions.get(tp)
            if part is None:
                continue
            proposal = part.isr_change_to_propose(now_ms)
            if proposal is None:
                continue
            topic = self.image.topics.get(tp[0])
            if topic is None:
                part.isr_change_failed()
                continue
            out.append((part, ap_req.AlterPartitionRequest(
                broker_id=self.broker_id, broker_epoch=broker_epoch,
                topics=(ap_req.TopicData(topic_id=uuid.UUID(topic.topic_id), partitions=(
                    ap_req.PartitionData(partition_index=tp[1], leader_epoch=part.leader_epoch,
                                         new_isr=tuple(proposal), partition_epoch=part.partition_epoch),)),))))
        return out

    def alter_partition_answered(self, part: Partition, resp: Any, now_ms: int) -> None:
        """The controller's answer to one partition's AlterPartition (None: no answer)."""
        p = resp.topics[0].partitions[0] if resp is not None and resp.topics else None
        if p is None or p.error_code != ErrorCode.none:
            part.isr_change_failed()
            return
        if part.isr_change_committed(int(p.leader_epoch), [int(b) for b in p.isr], int(p.partition_epoch)):
            self.try_complete(now_ms)  # a larger ISR may complete acks=all produces now

    # -- follower side ---------------------------------------------------------------------
    def follower_fetch_request(self, tps: set[TP], config: dict[str, Any],
                               session: FetchSessionHandler | None = None) -> fetch_req.FetchRequest | None:
        """The Fetch a follower sends its leader: its LEO as the fetch offset, and the epoch
        of its last batch so the leader can spot a divergent tail. With the fetch `session` to
        that leader (KIP-227), only what changed since the last request; without, everything.
        None: nothing to ask."""
        wanted: dict[TP, fetch_req.FetchPartition] = {}
        for tp in sorted(tps):
            part = self.partitions.get(tp)
            if part is None or part.is_leader:
                continue
            latest = part.latest_epoch
            wanted[tp] = fetch_req.FetchPartition(
                partition=tp[1], current_leader_epoch=part.leader_epoch,
                fetch_offset=part.log_end_offset, last_fetched_epoch=-1 if latest is None else latest,
                log_start_offset=part.log_start_offset,
                partition_max_bytes=config["replica.fetch.max.bytes"])
        data = FetchRequestData.sessionless(wanted) if session is None else session.build(wanted)
        if data.empty:
            return None
        return data.request(
            replica_id=self.broker_id,
            max_wait=datetime.timedelta(milliseconds=config["replica.fetch.wait.max.ms"]), min_bytes=1)

    def apply_fetch_response(self, leader: int, resp: fetch_resp.FetchResponse, now_ms: int,
                             session: FetchSessionHandler | None = None) -> bool:
        """A follower applies what its leader sent: truncate a divergent tail, or append.
        Returns True if some partition failed (the caller backs off). A partition the
        response leaves out (an incremental one answers only news) is left as it is; a
        response its `session` refuses is not applied, and the session starts over."""
        if session is not None and not session.handle_response(resp):
            return False  # as Kafka's fetcher: nothing applied, the next (full) request goes at once
        failed = False
        for t in resp.responses:
            for p in t.partitions:
                tp = (str(t.topic), int(p.partition_index))
                part = self.partitions.get(tp)
                if part is None or part.is_leader or part.leader != leader:
                    continue
                if p.error_code != ErrorCode.none:
                    failed = True
                    continue
                div = p.diverging_epoch
                if div is not None and int(div.end_offset) >= 0:
                    # Our log has a tail the leader never had: cut it before fetching on. As
                    # Kafka's fetcher: where the epoch the leader names ends here too, if that
                    # is sooner (else we would keep a later epoch's batches the leader never had).
                    target = min(int(div.end_offset), part.log_end_offset)
                    own_epoch, own_end = part.end_offset_for_epoch(int(div.epoch))
                    if own_epoch >= 0 and own_end >= 0:
                        target = min(target, own_end)
                    removed = part.truncate_to(target)
                    self.on_event("truncate", {"topic": tp[0], "partition": tp[1], "broker": self.broker_id,
                                               "detail": f"truncated {removed} offsets to {target}"})
                    continue
                if int(p.log_start_offset) > part.log_end_offset:
                    # The leader deleted what we miss (retention): start over at its log start.
                    part.log.truncate_fully_and_start_at(int(p.log_start_offset), now_ms=now_ms)
                elif int(p.log_start_offset) > part.log_start_offset:
                    part.log.increment_log_start_offset(int(p.log_start_offset))  # DeleteRecords
                try:
                    part.append_as_follower(bytes(p.records or b""), int(p.high_watermark), now_ms)
                except Exception:
                    log.exception("follower append failed for %s-%d", tp[0], tp[1])
                    failed = True
        return failed

    # -- purgatory -------------------------------------------------------------------------
    def try_complete(self, now_ms: int) -> None:
        if self.delayed_produce:
            still = []
            for op in self.delayed_produce:
                if self._produce_ready(op, now_ms):
                    if op.respond is not None:
                        op.respond(op)
                    else:
                        op.on_done(self._produce_response(op))
                else:
                    still.append(op)
            self.delayed_produce = still
        if self.delayed_fetch:
            still_f = []
            for op in self.delayed_fetch:
                if now_ms < op.deadline_ms and not self._fetch_may_complete(op):
                    still_f.append(op)  # nothing readable yet: not worth reading the logs
                    continue
                resp, size, has_error = self._fetch_response(op)
                if size >= int(op.request.min_bytes) or has_error or now_ms >= op.deadline_ms:
                    self._fetch_done(op, resp, size, now_ms)
                else:
                    still_f.append(op)
            self.delayed_fetch = still_f

    def next_deadline_ms(self) -> int | None:
        deadlines = [op.deadline_ms for op in self.delayed_produce] + [op.deadline_ms for op in self.delayed_fetch]
        return min(deadlines) if deadlines else None

    def next_check_ms(self) -> int | None:
        """When try_complete or alter_partition_requests next has something to do on time
        alone: a purgatory deadline, an ISR follower falling behind, a lost AlterPartition."""
        due = [t for t in (p.next_isr_check_ms() for p in self.partitions.values()) if t is not None]
        deadline = self.next_deadline_ms()
        if deadline is not None:
            due.append(deadline)
        return min(due) if due else None

    # -- offsets ---------------------------------------------------------------------------
    def list_offsets(self, req: lo_req.ListOffsetsRequest) -> lo_resp.ListOffsetsResponse:
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                pid = int(p.partition_index)
                part = self.partitions.get((str(t.name), pid))
                code, ts, off = ErrorCode.none, -1, -1
                if part is None:
                    code = ErrorCode.unknown_topic_or_partition if self.image.partition(str(t.name), pid) is None \
                        else ErrorCode.not_leader_or_follower
                else:
                    code = part.check_leader(int(p.current_leader_epoch))
                target = int(p.timestamp)
                if code == ErrorCode.none and target != EARLIEST and \
                        part.high_watermark < part.leader_epoch_start_offset:
                    # A new leader whose HW has not yet caught up with the records it inherited
                    # would answer an offset too low; Kafka answers "retry" until it has.
                    code = ErrorCode.offset_not_available
                if code == ErrorCode.none:
                    if target == EARLIEST:
                        off = part.log_start_offset
                    elif target in (LATEST, MAX_TIMESTAMP):
                        off = part.last_stable_offset if int(req.isolation_level) == 1 else part.high_watermark
                    else:
                        found = part.log.offset_for_timestamp(target)
                        off = -1 if found is None or found >= part.high_watermark else found
                        ts = target if off >= 0 else -1
                parts.append(lo_resp.ListOffsetsPartitionResponse(
                    partition_index=pid, error_code=code, timestamp=ts, offset=off,
                    leader_epoch=part.leader_epoch if part else -1))
            topics.append(lo_resp.ListOffsetsTopicResponse(name=t.name, partitions=tuple(parts)))
        return lo_resp.ListOffsetsResponse(throttle_time=NO_THROTTLE, topics=tuple(topics))

    def offset_for_leader_epoch(self, req: ofle_req.OffsetForLeaderEpochRequest) -> ofle_resp.OffsetForLeaderEpochResponse:
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                pid = int(p.partition)
                part = self.partitions.get((str(t.topic), pid))
                if part is None or not part.is_leader:
                    parts.append(ofle_resp.EpochEndOffset(partition=pid, error_code=ErrorCode.not_leader_or_follower,
                                                          leader_epoch=-1, end_offset=-1))
                    continue
                epoch, end = part.end_offset_for_epoch(int(p.leader_epoch))
                parts.append(ofle_resp.EpochEndOffset(partition=pid, error_code=ErrorCode.none,
                                                      leader_epoch=epoch, end_offset=end))
            topics.append(ofle_resp.OffsetForLeaderTopicResult(topic=t.topic, partitions=tuple(parts)))
        return ofle_resp.OffsetForLeaderEpochResponse(throttle_time=NO_THROTTLE, topics=tuple(topics))
