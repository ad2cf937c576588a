"""Thin constructors for the common requests and responses, from plain Python values.

kio's dataclasses are exact but verbose (nested tuples, timedelta fields, error-code
enums). These helpers build them at the ZeroMQ versions (ZMQ_VERSIONS) from dicts, and
walk responses back into nested dicts keyed {topic: {partition: row}}. They do no work
beyond reshaping: records stay as the bytes of whole RecordBatches.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from kafkalab.protocol.apis import ZMQ_VERSIONS, request_class, response_class, schema_module
from kafkalab.protocol.errors import ErrorCode

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "fetch_request",
    "fetch_response",
    "fetch_results",
    "list_offsets_request",
    "list_offsets_response",
    "list_offsets_results",
    "metadata_request",
    "metadata_response",
    "metadata_results",
    "ms",
    "produce_request",
    "produce_response",
    "produce_results",
    "to_ms",
]

# ListOffsets special timestamps (Kafka's ListOffsetsRequest constants).
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

Records = bytes | memoryview | None


@cache  # the lab producer builds a Produce per batch: no import_module lookup each time
def _module(api_key: int, request: bool) -> Any:
    cls = (request_class if request else response_class)(api_key, ZMQ_VERSIONS[api_key])
    return schema_module(cls)


def ms(milliseconds: int | float) -> datetime.timedelta:
    """A kio duration field from milliseconds."""
    return datetime.timedelta(milliseconds=milliseconds)


def to_ms(duration: datetime.timedelta) -> int:
    """Milliseconds of a kio duration field."""
    return duration // datetime.timedelta(milliseconds=1)


def _code(code: ErrorCode | int) -> ErrorCode:
    try:
        return ErrorCode(int(code))
    except ValueError:
        raise ValueError(
            f"{code!r} is not a Kafka error code; use a kafkalab.protocol.errors.ErrorCode"
        ) from None


def _bytes(records: Records) -> bytes | None:
    return None if records is None else bytes(records)


# -- Produce ---------------------------------------------------------------------------------


def produce_request(
    acks: int,
    timeout_ms: int,
    topics: Mapping[str, Mapping[int, Records]],
    transactional_id: str | None = None,
) -> Any:
    """ProduceRequest: acks 0, 1 or -1 ("all"); topics {topic: {partition: batch bytes}}."""
    if acks not in (0, 1, -1):
        raise ValueError(f"acks must be 0, 1 or -1 (all), not {acks!r}")
    m = _module(0, True)
    return m.ProduceRequest(
        transactional_id=transactional_id,
        acks=acks,
        timeout=ms(timeout_ms),
        topic_data=tuple(
            m.TopicProduceData(
                name=topic,
                partition_data=tuple(
                    m.PartitionProduceData(index=p, records=_bytes(r)) for p, r in parts.items()
                ),
            )
            for topic, parts in topics.items()
        ),
    )


def produce_response(
    topics: Mapping[str, Mapping[int, Mapping[str, Any]]], throttle_ms: int = 0
) -> Any:
    """ProduceResponse from {topic: {partition: row}}; a row has error_code, base_offset and
    optionally log_start_offset, log_append_time_ms (-1 = none), error_message."""
    m = _module(0, False)
    return m.ProduceResponse(
        throttle_time=ms(throttle_ms),
        responses=tuple(
            m.TopicProduceResponse(
                name=topic,
                partition_responses=tuple(
                    m.PartitionProduceResponse(
                        index=p,
                        error_code=_code(row.get("error_code", 0)),
                        base_offset=row.get("base_offset", -1),
                        log_append_time=_datetime(row.get("log_append_time_ms", -1)),
                        log_start_offset=row.get("log_start_offset", -1),
                        record_errors=(),
                        error_message=row.get("error_message"),
                    )
                    for p, row in parts.items()
                ),
            )
            for topic, parts in topics.items()
        ),
    )


def produce_results(response: Any) -> dict[str, dict[int, dict[str, Any]]]:
    """{topic: {partition: {error_code, base_offset, log_start_offset, log_append_time_ms,
    error_message}}} from a ProduceResponse."""
    return {
        t.name: {
            p.index: {
                "error_code": p.error_code,
                "base_offset": p.base_offset,
                "log_start_offset": p.log_start_offset,
                "log_append_time_ms": _millis(p.log_append_time),
                "error_message": p.error_message,
            }
            for p in t.partition_responses
        }
        for t in response.responses
    }


def _datetime(millis: int) -> datetime.datetime | None:
    return None if millis < 0 else _EPOCH + datetime.timedelta(milliseconds=millis)


def _millis(when: datetime.datetime | None) -> int:
    return -1 if when is None else (when - _EPOCH) // datetime.timedelta(milliseconds=1)


# -- Fetch -----------------------------------------------------------------------------------


def fetch_request(
    partitions: Mapping[str, Mapping[int, int | Mapping[str, int]]],
    *,
    max_wait_ms: int = 500,
    min_bytes: int = 1,
    max_bytes: int = 52_428_800,
    partition_max_bytes: int = 1_048_576,
    isolation_level: int = 0,
    replica_id: int = -1,
    replica_epoch: int = -1,
    rack_id: str = "",
) -> Any:
    """FetchRequest from {topic: {partition: fetch_offset | {fetch_offset, current_leader_epoch,
    last_fetched_epoch, log_start_offset, partition_max_bytes}}}.

    Consumers leave replica_id at -1; a follower sends its broker id (and the fields a
    follower knows: current_leader_epoch, last_fetched_epoch, log_start_offset).
    isolation_level: 0 read_uncommitted, 1 read_committed. No fetch sessions (id 0, epoch -1).
    """
    del replica_epoch  # v12 has no ReplicaState; kept so callers need not change at v15+
    m = _module(1, True)

    def partition(p: int, spec: int | Mapping[str, int]) -> Any:
        if isinstance(spec, int):
            spec = {"fetch_offset": spec}
        unknown = set(spec) - {
            "fetch_offset",
            "current_leader_epoch",
            "last_fetched_epoch",
            "log_start_offset",
            "partition_max_bytes",
        }
        if unknown or "fetch_offset" not in spec:
            raise ValueError(
                f"fetch position for partition {p} must be an offset or a dict with "
                f"fetch_offset (and optional epochs, log_start_offset, partition_max_bytes); "
                f"got {dict(spec)!r}"
            )
        return m.FetchPartition(
            partition=p,
            current_leader_epoch=spec.get("current_leader_epoch", -1),
            fetch_offset=spec["fetch_offset"],
            last_fetched_epoch=spec.get("last_fetched_epoch", -1),
            log_start_offset=spec.get("log_start_offset", -1),
            partition_max_bytes=spec.get("partition_max_bytes", partition_max_bytes),
        )

    return m.FetchRequest(
        replica_id=replica_id,
        max_wait=ms(max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=isolation_level,
        session_id=0,
        session_epoch=-1,
        topics=tuple(
            m.FetchTopic(topic=t, partitions=tuple(partition(p, s) for p, s in parts.items()))
            for t, parts in partitions.items()
        ),
        forgotten_topics_data=(),
        rack_id=rack_id,
    )


def fetch_response(
    topics: Mapping[str, Mapping[int, Mapping[str, Any]]],
    error_code: ErrorCode | int = 0,
    throttle_ms: int = 0,
) -> Any:
    """FetchResponse from {topic: {partition: row}}; a row has error_code, high_watermark,
    records, and optionally last_stable_offset, log_start_offset, aborted_transactions
    [(producer_id, first_offset)], diverging_epoch (epoch, end_offset),
    current_leader (leader_id, leader_epoch), preferred_read_replica."""
    m = _module(1, False)

    def partition(p: int, row: Mapping[str, Any]) -> Any:
        aborted = row.get("aborted_transactions")
        extra: dict[str, Any] = {}
        if row.get("diverging_epoch") is not None:
            epoch, end_offset = row["diverging_epoch"]
            extra["diverging_epoch"] = m.EpochEndOffset(epoch=epoch, end_offset=end_offset)
        if row.get("current_leader") is not None:
            leader_id, leader_epoch = row["current_leader"]
            extra["current_leader"] = m.LeaderIdAndEpoch(
                leader_id=leader_id, leader_epoch=leader_epoch
            )
        return m.PartitionData(
            partition_index=p,
            error_code=_code(row.get("error_code", 0)),
            high_watermark=row.get("high_watermark", -1),
            last_stable_offset=row.get("last_stable_offset", -1),
            log_start_offset=row.get("log_start_offset", -1),
            aborted_transactions=None
            if aborted is None
            else tuple(
                m.AbortedTransaction(producer_id=pid, first_offset=first) for pid, first in aborted
            ),
            preferred_read_replica=row.get("preferred_read_replica", -1),
            records=_bytes(row.get("records")),
            **extra,
        )

    return m.FetchResponse(
        throttle_time=ms(throttle_ms),
        error_code=_code(error_code),
        session_id=0,
        responses=tuple(
            m.FetchableTopicResponse(
                topic=t, partitions=tuple(partition(p, row) for p, row in parts.items())
            )
            for t, parts in topics.items()
        ),
    )


def fetch_results(response: Any) -> dict[str, dict[int, dict[str, Any]]]:
    """{topic: {partition: {error_code, high_watermark, last_stable_offset, log_start_offset,
    aborted_transactions [(producer_id, first_offset)] | None, diverging_epoch (epoch, end)
    | None, current_leader (id, epoch), preferred_read_replica, records}}}."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for t in response.responses:
        rows = out.setdefault(t.topic, {})
        for p in t.partitions:
            d = p.diverging_epoch
            rows[p.partition_index] = {
                "error_code": p.error_code,
                "high_watermark": p.high_watermark,
                "last_stable_offset": p.last_stable_offset,
                "log_start_offset": p.log_start_offset,
                "aborted_transactions": None
                if p.aborted_transactions is None
                else [(a.producer_id, a.first_offset) for a in p.aborted_transactions],
                "diverging_epoch": None if d.epoch < 0 else (d.epoch, d.end_offset),
                "current_leader": (p.current_leader.leader_id, p.current_leader.leader_epoch),
                "preferred_read_replica": p.preferred_read_replica,
                "records": p.records,
            }
    return out


# -- Metadata --------------------------------------------------------------------------------


def metadata_request(
    topics: Iterable[str] | None = None, allow_auto_topic_creation: bool = False
) -> Any:
    """MetadataRequest: topics None asks for every topic, [] for none (brokers only)."""
    if isinstance(topics, str):
        raise TypeError(f"topics is a list of names; did you mean [{topics!r}]?")
    m = _module(3, True)
    return m.MetadataRequest(
        topics=None
        if topics is None
        else tuple(m.MetadataRequestTopic(topic_id=None, name=t) for t in topics),
        allow_auto_topic_creation=allow_auto_topic_creation,
        include_topic_authorized_operations=False,
    )


def metadata_response(
    brokers: Mapping[int, tuple[str, int]],
    topics: Mapping[str, Mapping[int, Mapping[str, Any]]],
    *,
    controller_id: int = -1,
    cluster_id: str | None = None,
    topic_errors: Mapping[str, ErrorCode | int] | None = None,
    topic_ids: Mapping[str, uuid.UUID] | None = None,
    throttle_ms: int = 0,
) -> Any:
    """MetadataResponse from brokers {node_id: (host, port)} and topics {topic: {partition:
    {leader_id, leader_epoch, replica_nodes, isr_nodes, offline_replicas, error_code}}}.
    A topic in topic_errors (e.g. UNKNOWN_TOPIC_OR_PARTITION) is listed with that code."""
    m = _module(3, False)
    topic_errors = dict(topic_errors or {})
    topic_ids = topic_ids or {}
    names = list(topics) + [t for t in topic_errors if t not in topics]
    return m.MetadataResponse(
        throttle_time=ms(throttle_ms),
        brokers=tuple(
            m.MetadataResponseBroker(node_id=node, host=host, port=port, rack=None)
            for node, (host, port) in brokers.items()
        ),
        cluster_id=cluster_id,
        controller_id=controller_id,
        topics=tuple(
            m.MetadataResponseTopic(
                error_code=_code(topic_errors.get(t, 0)),
                name=t,
                topic_id=topic_ids.get(t),  # kio reads the all-zero id as None
                is_internal=t.startswith("__"),
                partitions=tuple(
                    m.MetadataResponsePartition(
                        error_code=_code(row.get("error_code", 0)),
                        partition_index=p,
                        leader_id=row.get("leader_id", -1),
                        leader_epoch=row.get("leader_epoch", -1),
                        replica_nodes=tuple(row.get("replica_nodes", ())),
                        isr_nodes=tuple(row.get("isr_nodes", ())),
                        offline_replicas=tuple(row.get("offline_replicas", ())),
                    )
                    for p, row in topics.get(t, {}).items()
                ),
            )
            for t in names
        ),
    )


def metadata_results(response: Any) -> dict[str, Any]:
    """{brokers: {node_id: (host, port)}, controller_id, cluster_id, topics: {topic:
    {error_code, topic_id, is_internal, partitions: {partition: {error_code, leader_id,
    leader_epoch, replica_nodes, isr_nodes, offline_replicas}}}}}."""
    return {
        "brokers": {b.node_id: (b.host, b.port) for b in response.brokers},
        "controller_id": response.controller_id,
        "cluster_id": response.cluster_id,
        "topics": {
            t.name: {
                "error_code": t.error_code,
                "topic_id": t.topic_id,
                "is_internal": t.is_internal,
                "partitions": {
                    p.partition_index: {
                        "error_code": p.error_code,
                        "leader_id": p.leader_id,
                        "leader_epoch": p.leader_epoch,
                        "replica_nodes": list(p.replica_nodes),
                        "isr_nodes": list(p.isr_nodes),
                        "offline_replicas": list(p.offline_replicas),
                    }
                    for p in t.partitions
                },
            }
            for t in response.topics
        },
    }


# -- ListOffsets -----------------------------------------------------------------------------


def list_offsets_request(
    partitions: Mapping[str, Mapping[int, int]],
    isolation_level: int = 0,
    replica_id: int = -1,
) -> Any:
    """ListOffsetsRequest from {topic: {partition: timestamp}}; timestamp is a time in ms or
    LATEST_TIMESTAMP (-1), EARLIEST_TIMESTAMP (-2), MAX_TIMESTAMP (-3)."""
    m = _module(2, True)
    return m.ListOffsetsRequest(
        replica_id=replica_id,
        isolation_level=isolation_level,
        topics=tuple(
            m.ListOffsetsTopic(
                name=t,
                partitions=tuple(
                    m.ListOffsetsPartition(partition_index=p, timestamp=ts)
                    for p, ts in parts.items()
                ),
            )
            for t, parts in partitions.items()
        ),
    )


def list_offsets_response(
    topics: Mapping[str, Mapping[int, Mapping[str, Any]]], throttle_ms: int = 0
) -> Any:
    """ListOffsetsResponse from {topic: {partition: {error_code, offset, timestamp,
    leader_epoch}}}."""
    m = _module(2, False)
    return m.ListOffsetsResponse(
        throttle_time=ms(throttle_ms),
        topics=tuple(
            m.ListOffsetsTopicResponse(
                name=t,
                partitions=tuple(
                    m.ListOffsetsPartitionResponse(
                        partition_index=p,
                        error_code=_code(row.get("error_code", 0)),
                        timestamp=row.get("timestamp", -1),
                        offset=row.get("offset", -1),
                        leader_epoch=row.get("leader_epoch", -1),
                    )
                    for p, row in parts.items()
                ),
            )
            for t, parts in topics.items()
        ),
    )


def list_offsets_results(response: Any) -> dict[str, dict[int, dict[str, Any]]]:
    """{topic: {partition: {error_code, offset, timestamp, leader_epoch}}}."""
    return {
        t.name: {
            p.partition_index: {
                "error_code": p.error_code,
                "offset": p.offset,
                "timestamp": p.timestamp,
                "leader_epoch": p.leader_epoch,
            }
            for p in t.partitions
        }
        for t in response.topics
    }
