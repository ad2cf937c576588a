"""The broker's admin APIs: what Kafka's AdminClient and tools ask a broker.

Served here, from this broker's own state: DescribeConfigs (topic and broker configs, with
each value's source), DeleteRecords (the leader moves its log start offset), DescribeLogDirs,
DescribeProducers (a leader's producer state), ListTransactions and DescribeTransactions (the
transaction coordinator's), DeleteGroups and OffsetDelete (the group coordinator's, in
kafkalab.broker.group_admin).
Forwarded to the controller, which decides and writes metadata records that every broker then
applies: AlterConfigs, IncrementalAlterConfigs, CreatePartitions, ElectLeaders (as KRaft
brokers forward them). The same service answers both transports (ZeroMQ and the Kafka listener).

The `describe_configs`, `delete_records` and `describe_log_dirs` functions are pure: a request
and state in, a response out.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kafkalab.config import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    ConfigDef,
    config_str,
    topic_config,
    topic_default_sources,
)
from kafkalab.metadata.image import MetadataImage
from kafkalab.protocol.api_keys import ApiKey

if TYPE_CHECKING:
    from kafkalab.broker.context import BrokerContext
    from kafkalab.broker.groups import GroupService
    from kafkalab.broker.transactions import TransactionService

TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
# Kafka's DescribeConfigs sources and types.
TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5
_TYPES = {bool: 1, str: 2, int: 5, float: 6, list: 7}

FORWARDED = frozenset({ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS, ApiKey.CREATE_PARTITIONS, ApiKey.ELECT_LEADERS})


def _module(resp_cls: Any) -> Any:
    return importlib.import_module(resp_cls.__module__)


def _is_set(d: ConfigDef, value: Any) -> bool:
    return value is not None and value != d.default


# -- DescribeConfigs ----------------------------------------------------------------------------
def describe_configs(req: Any, resp_cls: Any, image: MetadataImage, broker_config: dict[str, Any],
                     broker_id: int) -> Any:
    mod = _module(resp_cls)
    results = []
    for r in req.resources:
        name, kind = str(r.resource_name), int(r.resource_type)
        keys = None if r.configuration_keys is None else set(r.configuration_keys)
        code, msg, entries = ErrorCode.none, None, []
        if kind == TOPIC_RESOURCE:
            if name not in image.topics:
                code, msg = ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist"
            else:
                entries = _topic_entries(image.topics[name].configs, broker_config, keys, req)
        elif kind == BROKER_RESOURCE:
            if name not in ("", str(broker_id)):
                code, msg = ErrorCode.invalid_request, (
                    f"this is broker {broker_id}; send the request for broker {name} to that broker")
            else:
                entries = _broker_entries(broker_config, keys, req)
        else:
            code, msg = ErrorCode.invalid_request, f"resource type {kind} is not served (topics: 2, brokers: 4)"
        results.append(mod.DescribeConfigsResult(
            error_code=code, error_message=msg, resource_type=r.resource_type, resource_name=r.resource_name,
            configs=tuple(mod.DescribeConfigsResourceResult(**e, synonyms=tuple(
                mod.DescribeConfigsSynonym(name=n, value=v, source=s) for n, v, s in syn))
                for e, syn in entries)))
    return resp_cls(throttle_time=_td0(), results=tuple(results))


def _topic_entries(overrides: dict[str, Any], broker_config: dict[str, Any], keys: set[str] | None,
                   req: Any) -> list[tuple[dict[str, Any], list[tuple[str, str | None, int]]]]:
    effective = topic_config(broker_config, overrides)
    sources = topic_default_sources(broker_config)
    out = []
    for key, d in TOPIC_CONFIGS.items():
        if keys is not None and key not in keys:
            continue
        synonyms: list[tuple[str, str | None, int]] = []
        if key in overrides:
            synonyms.append((key, config_str(effective[key]), TOPIC_CONFIG))
        broker_key, broker_value = sources.get(key, (None, None))
        if broker_key is not None and _is_set(BROKER_CONFIGS[broker_key], broker_config.get(broker_key)):
            synonyms.append((broker_key, config_str(broker_config[broker_key]), STATIC_BROKER_CONFIG))
        synonyms.append((key, config_str(d.default), DEFAULT_CONFIG))
        source = synonyms[0][2]
        out.append((_entry(key, effective[key], source, False, d, req), synonyms if req.include_synonyms else []))
    return out


def _broker_entries(broker_config: dict[str, Any], keys: set[str] | None,
                    req: Any) -> list[tuple[dict[str, Any], list[tuple[str, str | None, int]]]]:
    out = []
    for key, d in BROKER_CONFIGS.items():
        if keys is not None and key not in keys:
            continue
        value = broker_config.get(key, d.default)
        source = STATIC_BROKER_CONFIG if _is_set(d, value) else DEFAULT_CONFIG
        synonyms = [(key, config_str(value), source)] + ([(key, config_str(d.default), DEFAULT_CONFIG)]
                                                         if source != DEFAULT_CONFIG else [])
        # Broker configs are fixed when the cluster starts: read-only, as Kafka's static ones.
        out.append((_entry(key, value, source, True, d, req), synonyms if req.include_synonyms else []))
    return out


def _entry(key: str, value: Any, source: int, read_only: bool, d: ConfigDef, req: Any) -> dict[str, Any]:
    return {"name": key, "value": config_str(value), "read_only": read_only, "config_source": source,
            "is_sensitive": False, "config_type": _TYPES.get(d.type, 0),
            "documentation": (d.doc or None) if req.include_documentation else None}


def _td0() -> Any:
    import datetime
    return datetime.timedelta(0)


# -- DeleteRecords ---------------------------------------------------------------------------------
def delete_records(req: Any, resp_cls: Any, partitions: dict[tuple[str, int], Any]) -> Any:
    """The leader moves each partition's log start offset up to the given offset (-1: the high
    watermark); whole segments below it go at the next retention check. Followers follow the
    leader's log start offset through their fetches."""
    mod = _module(resp_cls)
    topics = []
    for t in req.topics:
        results = []
        for p in t.partitions:
            part = partitions.get((str(t.name), int(p.partition_index)))
            offset = int(p.offset)
            if part is None:
                code, low = ErrorCode.unknown_topic_or_partition, -1
            elif not part.is_leader:
                code, low = ErrorCode.not_leader_or_follower, -1
            elif offset == -1 or 0 <= offset <= part.high_watermark:
                target = part.high_watermark if offset == -1 else offset
                code, low = ErrorCode.none, part.log.increment_log_start_offset(max(target, part.log_start_offset))
            else:
                # Above the high watermark: records not yet committed cannot be deleted.
                code, low = ErrorCode.offset_out_of_range, -1
            results.append(mod.DeleteRecordsPartitionResult(partition_index=p.partition_index,
                                                            low_watermark=low, error_code=code))
        topics.append(mod.DeleteRecordsTopicResult(name=t.name, partitions=tuple(results)))
    return resp_cls(throttle_time=_td0(), topics=tuple(topics))


# -- DescribeLogDirs ---------------------------------------------------------------------------------
def describe_log_dirs(req: Any, resp_cls: Any, log_dir: str, partitions: dict[tuple[str, int], Any]) -> Any:
    mod = _module(resp_cls)
    wanted = None if req.topics is None else {(str(t.topic), int(p)) for t in req.topics for p in t.partitions}
    by_topic: dict[str, list[Any]] = {}
    for (topic, pid), part in sorted(partitions.items()):
        if wanted is None or (topic, pid) in wanted:
            by_topic.setdefault(topic, []).append(mod.DescribeLogDirsPartition(
                partition_index=pid, partition_size=part.log.size_bytes, offset_lag=0, is_future_key=False))
    try:
        import shutil  # here, not at import: it loads bz2 and lzma (~0.7 MB a process)
        usage = shutil.disk_usage(log_dir)
        total, usable = usage.total, usage.free
    except OSError:
        total = usable = -1
    extra = {"total_bytes": total, "usable_bytes": usable} if "total_bytes" in mod.DescribeLogDirsResult.__dataclass_fields__ else {}
    result = mod.DescribeLogDirsResult(error_code=ErrorCode.none, log_dir=log_dir, topics=tuple(
        mod.DescribeLogDirsTopic(name=t, partitions=tuple(ps)) for t, ps in by_topic.items()), **extra)
    return resp_cls(throttle_time=_td0(), error_code=ErrorCode.none, results=(result,))


# -- DescribeProducers ------------------------------------------------------------------------------
def describe_producers(req: Any, resp_cls: Any, partitions: dict[tuple[str, int], Any]) -> Any:
    """The producers a partition leader tracks: id, epoch, last sequence and the offset where
    each one's open transaction began (what `kafka-transactions.sh find-hanging` reads)."""
    mod = _module(resp_cls)
    topics = []
    for t in req.topics:
        rows = []
        for pid in t.partition_indexes:
            part = partitions.get((str(t.name), int(pid)))
            code, msg, active = ErrorCode.none, None, []
            if part is None:
                code, msg = ErrorCode.unknown_topic_or_partition, f"{t.name}-{pid} is not hosted here"
            elif not part.is_leader:
                code, msg = ErrorCode.not_leader_or_follower, f"broker {part.broker_id} does not lead {t.name}-{pid}"
            else:
                active = [mod.ProducerState(
                    producer_id=st.producer_id, producer_epoch=st.producer_epoch, last_sequence=st.last_seq,
                    last_timestamp=st.last_timestamp, coordinator_epoch=st.coordinator_epoch,
                    current_txn_start_offset=st.current_txn_first_offset)
                    for st in sorted(part.producer_state.producers.values(), key=lambda s: s.producer_id)]
            rows.append(mod.PartitionResponse(partition_index=pid, error_code=code, error_message=msg,
                                              active_producers=tuple(active)))
        topics.append(mod.TopicResponse(name=t.name, partitions=tuple(rows)))
    return resp_cls(throttle_time=_td0(), topics=tuple(topics))


# -- ListTransactions, DescribeTransactions ---------------------------------------------------------
def _owned_txns(coordinator: Any) -> list[Any]:
    return [m for tid, m in sorted(coordinator.txns.items())
            if coordinator.owns(coordinator.partition_of(tid)) == "yes"]


def list_transactions(req: Any, resp_cls: Any, coordinator: Any, now_ms: int) -> Any:
    from kafkalab.broker.txn_coordinator import TxnState

    mod = _module(resp_cls)
    labels = {s.label for s in TxnState}
    states = set(req.state_filters or ())
    producers = {int(p) for p in (req.producer_id_filters or ())}
    min_ms = int(getattr(req, "duration_filter", -1))
    rows = [mod.TransactionState(transactional_id=m.transactional_id, producer_id=m.producer_id,
                                 transaction_state=m.state.label)
            for m in _owned_txns(coordinator)
            if (not states or m.state.label in states) and (not producers or m.producer_id in producers)
            and (min_ms < 0 or (m.start_ms >= 0 and now_ms - m.start_ms >= min_ms))]
    return resp_cls(throttle_time=_td0(), error_code=ErrorCode.none,
                    unknown_state_filters=tuple(sorted(states - labels)), transaction_states=tuple(rows))


def describe_transactions(req: Any, resp_cls: Any, coordinator: Any) -> Any:
    import datetime

    mod = _module(resp_cls)
    out = []
    for tid in req.transactional_ids:
        tid = str(tid)
        m = coordinator.txns.get(tid)
        code = coordinator._check_owner(tid)
        if code == ErrorCode.none and m is None:
            code = ErrorCode.transactional_id_not_found
        by_topic: dict[str, list[int]] = {}
        for topic, p in sorted(m.partitions if m and code == ErrorCode.none else ()):
            by_topic.setdefault(topic, []).append(p)
        ok = code == ErrorCode.none and m is not None
        out.append(mod.TransactionState(
            error_code=code, transactional_id=tid, transaction_state=m.state.label if ok else "",
            transaction_timeout=datetime.timedelta(milliseconds=m.timeout_ms if ok else 0),
            transaction_start_time=datetime.datetime.fromtimestamp(
                (m.start_ms if ok else -1) / 1000, tz=datetime.UTC),
            producer_id=m.producer_id if ok else -1, producer_epoch=m.producer_epoch if ok else -1,
            topics=tuple(mod.TopicData(topic=t, partitions=tuple(ps)) for t, ps in by_topic.items())))
    return resp_cls(throttle_time=_td0(), transaction_states=tuple(out))


class AdminService:
    """Wires the admin APIs into the broker."""

    api_keys = frozenset({ApiKey.DESCRIBE_CONFIGS, ApiKey.DELETE_RECORDS, ApiKey.DESCRIBE_LOG_DIRS, ApiKey.DESCRIBE_PRODUCERS,
                          ApiKey.DESCRIBE_TRANSACTIONS, ApiKey.LIST_TRANSACTIONS, ApiKey.DELETE_GROUPS, ApiKey.OFFSET_DELETE}) | FORWARDED

    def __init__(self, broker: BrokerContext, groups: GroupService, transactions: TransactionService):
        self.broker, self.groups, self.transactions = broker, groups, transactions

    def handle(self, api_key: int, version: int, req: Any, reply: Any, now_ms: int) -> None:
        from kafkalab.protocol.apis import response_class

        s = self.broker
        resp_cls = response_class(api_key, version)
        if api_key in FORWARDED:
            s.controller.send(req, reply)
        elif api_key == ApiKey.DESCRIBE_CONFIGS:
            reply(describe_configs(req, resp_cls, s.image, s.config, s.broker_id))
        elif api_key == ApiKey.DELETE_RECORDS:
            reply(delete_records(req, resp_cls, s.rm.partitions))
        elif api_key == ApiKey.DESCRIBE_LOG_DIRS:
            reply(describe_log_dirs(req, resp_cls, s.rm.data_dir, s.rm.partitions))
        elif api_key == ApiKey.DESCRIBE_PRODUCERS:
            reply(describe_producers(req, resp_cls, s.rm.partitions))
        elif api_key == ApiKey.LIST_TRANSACTIONS:
            reply(list_transactions(req, resp_cls, self.transactions.coordinator, now_ms))
        elif api_key == ApiKey.DESCRIBE_TRANSACTIONS:
            reply(describe_transactions(req, resp_cls, self.transactions.coordinator))
        elif api_key == ApiKey.DELETE_GROUPS:
            self._delete_groups(req, resp_cls, reply)
        elif api_key == ApiKey.OFFSET_DELETE:
            self._offset_delete(req, resp_cls, reply)

    def _delete_groups(self, req: Any, resp_cls: Any, reply: Any) -> None:
        from kafkalab.broker.group_admin import delete_group

        mod = _module(resp_cls)
        names = [str(g) for g in req.groups_names]
        codes: dict[str, ErrorCode] = {}

        def one(name: str) -> Any:
            def done(code: ErrorCode) -> None:
                codes[name] = code
                if len(codes) == len(names):
                    reply(resp_cls(throttle_time=_td0(), results=tuple(
                        mod.DeletableGroupResult(group_id=n, error_code=codes[n]) for n in names)))
            return done
        if not names:
            reply(resp_cls(throttle_time=_td0(), results=()))
        for name in names:
            delete_group(self.groups.coordinator, name, one(name))

    def _offset_delete(self, req: Any, resp_cls: Any, reply: Any) -> None:
        from kafkalab.broker.group_admin import delete_offsets

        mod = _module(resp_cls)
        tps = [(str(t.name), int(p.partition_index)) for t in req.topics for p in t.partitions]

        def done(code: ErrorCode, results: dict[tuple[str, int], ErrorCode]) -> None:
            by_topic: dict[str, list[Any]] = {}
            for (topic, p), c in results.items():
                by_topic.setdefault(topic, []).append(
                    mod.OffsetDeleteResponsePartition(partition_index=p, error_code=c))
            reply(resp_cls(error_code=code, throttle_time=_td0(), topics=tuple(
                mod.OffsetDeleteResponseTopic(name=t, partitions=tuple(ps)) for t, ps in by_topic.items())))
        delete_offsets(self.groups.coordinator, str(req.group_id), tps, done)
