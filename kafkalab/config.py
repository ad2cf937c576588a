"""Configuration: Kafka's dotted key names, Kafka's modern defaults, and clear errors.

Each catalog is a dict of ConfigDef by Kafka's key. `resolve(user, catalog, what)` checks a
user's dict against a catalog and returns every key with its typed value; an unknown key or a
bad value raises ConfigError naming the key, the expected type and (for typos) the closest
valid key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafkalab.errors import ConfigError

_BOOL_WORDS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: type  # int, float, bool, str, list
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    check_doc: str = ""

    def coerce(self, raw: Any, what: str) -> Any:
        """Accept Python values and Kafka's string forms ("true", "1000")."""
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value: Any = raw
                elif isinstance(raw, str) and raw.lower() in _BOOL_WORDS:
                    value = _BOOL_WORDS[raw.lower()]
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(raw, bool):
                    raise ValueError
                value = int(raw) if not isinstance(raw, float) or raw.is_integer() else None
                if value is None:
                    raise ValueError
            elif self.type is float:
                value = float(raw)
            elif self.type is list:
                value = [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
            else:
                if not isinstance(raw, str):
                    raise ValueError
                value = raw
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} config {self.name!r} expects {self.type.__name__}, got {raw!r}"
            ) from None
        if self.choices is not None:
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if v not in self.choices]
            if bad:
                raise ConfigError(
                    f"{what} config {self.name!r}={raw!r} is not one of {list(self.choices)}"
                )
        if self.check is not None and not self.check(value):
            raise ConfigError(f"{what} config {self.name!r}={raw!r}: {self.check_doc}")
        return value


def closest_key(key: str, catalog: Mapping[str, ConfigDef]) -> str | None:
    import difflib  # only for the error message

    found = difflib.get_close_matches(key, list(catalog), n=1, cutoff=0.6)
    return found[0] if found else None


def resolve(user: Mapping[str, Any] | None, catalog: Mapping[str, ConfigDef], what: str) -> dict[str, Any]:
    """Every key of `catalog` with its value: the user's (checked) or the default."""
    out = {name: d.default for name, d in catalog.items()}
    for key, raw in (user or {}).items():
        d = catalog.get(key)
        if d is None:
            raise ConfigError(f"unknown {what} config {key!r}; did you mean {nearest_key(key, catalog)!r}?")
        out[key] = d.coerce(raw, what)
    if out.get("min.compaction.lag.ms", 0) > out.get("max.compaction.lag.ms", 0) > 0:
        # Kafka rejects this pair: a segment could never be both old enough and not too old.
        raise ConfigError(f"{what} config min.compaction.lag.ms={out['min.compaction.lag.ms']} is larger than "
                          f"max.compaction.lag.ms={out['max.compaction.lag.ms']}; raise max.compaction.lag.ms "
                          "or lower min.compaction.lag.ms")
    return out


def config_str(value: Any) -> str | None:
    """A config value the way Kafka keeps and shows it: "true", "delete,compact", "604800000"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _defs(*defs: ConfigDef) -> dict[str, ConfigDef]:
    return {d.name: d for d in defs}


def _nonneg(v: Any) -> bool:
    return v >= 0


def _positive(v: Any) -> bool:
    return v > 0


def _ms_or_unlimited(v: Any) -> bool:
    return v >= -1


SEGMENT_BYTES_MIN = 1_048_576  # Kafka 4.x: log.segment.bytes and segment.bytes are at least 1 MiB

# Per-topic configs (Kafka's topic-level names and defaults).
TOPIC_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("cleanup.policy", list, ["delete"], "delete, compact or both",
              choices=("delete", "compact")),
    ConfigDef("compression.type", str, "producer", "codec the broker stores",
              choices=("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")),
    ConfigDef("delete.retention.ms", int, 86_400_000, "how long tombstones survive compaction",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("file.delete.delay.ms", int, 60_000, "delay before a deleted segment's files go",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("index.interval.bytes", int, 4096, "bytes between offset index entries",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("max.compaction.lag.ms", int, 9_223_372_036_854_775_807, "",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("max.message.bytes", int, 1_048_588, "largest record batch the topic accepts",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("message.timestamp.type", str, "CreateTime", "",
              choices=("CreateTime", "LogAppendTime")),
    ConfigDef("min.cleanable.dirty.ratio", float, 0.5, "dirty share of the log before cleaning",
              check=lambda v: 0.0 <= v <= 1.0, check_doc="must be between 0 and 1"),
    ConfigDef("min.compaction.lag.ms", int, 0, "", check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("min.insync.replicas", int, 1, "replicas that must have a write for acks=all",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("retention.bytes", int, -1, "size limit per partition (-1: none)",
              check=_ms_or_unlimited, check_doc="must be >= -1"),
    ConfigDef("retention.ms", int, 604_800_000, "age limit (-1: none)",
              check=_ms_or_unlimited, check_doc="must be >= -1"),
    ConfigDef("segment.bytes", int, 1_073_741_824, "roll the active segment at this size",
              check=lambda v: v >= 14, check_doc="must be >= 14"),
    ConfigDef("segment.index.bytes", int, 10_485_760, "largest offset index per segment",
              check=lambda v: v >= 8, check_doc="must be >= 8"),
    ConfigDef("segment.ms", int, 604_800_000, "roll the active segment at this age",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("unclean.leader.election.enable", bool, False,
              "let an out-of-sync replica become leader (and lose data)"),
)


# Broker (and controller) configs. Two profiles: "kafka" keeps Kafka's real defaults, "lab"
# shortens timeouts so that failures show their effects within a second or two.
BROKER_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("broker.heartbeat.interval.ms", int, 2000, "broker -> controller heartbeat period",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("broker.session.timeout.ms", int, 9000, "controller fences a silent broker after this",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("replica.lag.time.max.ms", int, 30000, "a follower not caught up for this long leaves the ISR",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("replica.fetch.wait.max.ms", int, 500, "follower fetch long-poll",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("replica.fetch.max.bytes", int, 1_048_576, "", check=_positive, check_doc="must be > 0"),
    ConfigDef("replica.fetch.backoff.ms", int, 1000, "pause after a failed follower fetch",
              check=_nonneg, check_doc="must be >= 0"),
    # kafkalab's own key: how long a broker's metadata Fetch waits at the controller for new
    # records (Kafka's KafkaRaftClient.MAX_FETCH_WAIT_MS, a constant 500 ms). Kafka's
    # metadata.max.idle.interval.ms is something else: the controller's no-op record interval.
    ConfigDef("metadata.fetch.max.wait.ms", int, 500, "broker -> controller metadata long-poll",
              check=_positive, check_doc="must be > 0"),
    # kafkalab's own key: the smallest segment.bytes a topic may set. Kafka 4.1 refuses topic
    # segment.bytes below 1 MiB (KIP-1030; 4.0 did so for the broker's log.segment.bytes); the
    # lab profile lowers the floor so that a few records fill a segment and segments show.
    ConfigDef("segment.bytes.min", int, SEGMENT_BYTES_MIN, "smallest segment.bytes a topic may set",
              check=lambda v: v >= 14, check_doc="must be >= 14"),
    ConfigDef("auto.create.topics.enable", bool, True, "create unknown topics on Metadata"),
    ConfigDef("num.partitions", int, 1, "partitions of an auto-created topic", check=_positive,
              check_doc="must be >= 1"),
    ConfigDef("default.replication.factor", int, 1, "replicas of an auto-created topic",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("min.insync.replicas", int, 1, "default for topics", check=_positive, check_doc="must be >= 1"),
    ConfigDef("unclean.leader.election.enable", bool, False, "default for topics"),
    ConfigDef("log.retention.check.interval.ms", int, 300_000, "how often the cleaner looks",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("log.cleaner.backoff.ms", int, 15_000, "", check=_positive, check_doc="must be > 0"),
    ConfigDef("log.flush.interval.ms", int, -1, "fsync period (-1: leave it to the OS, as Kafka)",
              check=_ms_or_unlimited, check_doc="must be >= -1"),
    ConfigDef("socket.request.max.bytes", int, 104_857_600, "largest request frame",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("offsets.topic.num.partitions", int, 50, "", check=_positive, check_doc="must be >= 1"),
    ConfigDef("offsets.topic.replication.factor", int, 3, "", check=_positive, check_doc="must be >= 1"),
    ConfigDef("transaction.state.log.num.partitions", int, 50, "", check=_positive, check_doc="must be >= 1"),
    ConfigDef("request.timeout.ms", int, 30_000, "broker -> controller request timeout",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("metrics.publish.interval.ms", int, 1000, "how often processes publish metrics",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("fetch.sendfile.enable", bool, True, "send Fetch record data with os.sendfile"),
    ConfigDef("max.incremental.fetch.session.cache.slots", int, 1000, "fetch sessions (KIP-227) a broker keeps",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("group.initial.rebalance.delay.ms", int, 3000, "wait for more members before the first rebalance",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("group.min.session.timeout.ms", int, 6000, "", check=_positive, check_doc="must be > 0"),
    ConfigDef("group.max.session.timeout.ms", int, 1_800_000, "", check=_positive, check_doc="must be > 0"),
    # KIP-848 (group.protocol=consumer): the broker owns the session, the heartbeat pace and
    # the assignor; the first assignor in the list is the default.
    ConfigDef("group.consumer.session.timeout.ms", int, 45_000, "fence a consumer-protocol member silent this long",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("group.consumer.heartbeat.interval.ms", int, 5_000, "how often consumer-protocol members heartbeat",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("group.consumer.assignors", list, ["uniform", "range"], "server-side assignors (first: default)",
              choices=("uniform", "range"), check=bool, check_doc="must name at least one assignor"),
    # KIP-932 share groups: how long a consumer holds an acquired record, how often a record is
    # delivered before it is archived, how many records may be in flight per share-partition.
    ConfigDef("group.share.record.lock.duration.ms", int, 30_000, "acquisition lock of a share consumer's record",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("group.share.delivery.count.limit", int, 5, "deliveries before a record is archived",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("group.share.partition.max.record.locks", int, 2000, "in-flight records per share-partition",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("group.share.session.timeout.ms", int, 45_000, "fence a share-group member silent this long",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("group.share.heartbeat.interval.ms", int, 5_000, "how often share-group members heartbeat",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("share.coordinator.state.topic.num.partitions", int, 50, "partitions of __share_group_state",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("share.coordinator.state.topic.replication.factor", int, 3, "", check=_positive,
              check_doc="must be >= 1"),
    ConfigDef("share.auto.offset.reset", str, "latest", "where a new share-partition starts (Kafka: a group "
              "config; here the brokers' default for every share group)", choices=("latest", "earliest")),
    ConfigDef("producer.id.expiration.ms", int, 86_400_000, "forget an idle producer's state after this",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("producer.id.expiration.check.interval.ms", int, 600_000, "",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("transactional.id.expiration.ms", int, 604_800_000, "forget an idle transactional.id",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("transaction.abort.timed.out.transaction.cleanup.interval.ms", int, 10_000,
              "how often the coordinator looks for expired transactions", check=_positive,
              check_doc="must be > 0"),
    ConfigDef("transaction.state.log.replication.factor", int, 3, "", check=_positive, check_doc="must be >= 1"),
    ConfigDef("transaction.state.log.min.isr", int, 2, "", check=_positive, check_doc="must be >= 1"),
    ConfigDef("transaction.max.timeout.ms", int, 900_000, "largest transaction.timeout.ms a producer may ask",
              check=_positive, check_doc="must be > 0"),
)

PROFILES: dict[str, dict[str, Any]] = {
    "kafka": {},
    # Every override is listed, with Kafka's value, in the README's "Profiles" table.
    "lab": {
        # A killed broker is fenced within 1.5 s (Kafka: 9 s). Beats every 500 ms leave a second
        # for a stalled beat (250/1000 left 750 ms) and cost an idle learner ~0.3% of a core
        # less; a starting broker beats every 10 ms until caught up, as Kafka's.
        "broker.heartbeat.interval.ms": 500,
        "broker.session.timeout.ms": 1500,
        "replica.lag.time.max.ms": 1500,
        "replica.fetch.backoff.ms": 100,
        "segment.bytes.min": 14,
        "log.retention.check.interval.ms": 1000,
        "log.cleaner.backoff.ms": 1000,
        "offsets.topic.num.partitions": 6,
        "transaction.state.log.num.partitions": 6,
        "group.initial.rebalance.delay.ms": 0,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
        "group.min.session.timeout.ms": 100,
        "group.consumer.session.timeout.ms": 1500,
        "group.consumer.heartbeat.interval.ms": 150,
        "group.share.record.lock.duration.ms": 2000,
        "share.coordinator.state.topic.num.partitions": 6,
        "group.share.session.timeout.ms": 1500,
        "group.share.heartbeat.interval.ms": 150,
        "request.timeout.ms": 2000,
        # Twice a second: what changed reaches the views within half a second, and describe_*
        # asks every process for its rows at once instead of waiting for a tick.
        "metrics.publish.interval.ms": 500,
    },
}


# Client defaults per profile, under whatever the learner passes. In Kafka a request lost on a
# cut link waits request.timeout.ms (30 s) before its retry; the lab profile shortens that so a
# healed network shows recovery within seconds.
CLIENT_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "kafka": {"producer": {}, "consumer": {}},
    "lab": {
        "producer": {"request.timeout.ms": 2000, "metadata.max.age.ms": 5000},
        "consumer": {"request.timeout.ms": 2000, "metadata.max.age.ms": 5000,
                     "session.timeout.ms": 1500, "heartbeat.interval.ms": 150},
    },
}


def client_config(profile: str, kind: str, user: Mapping[str, Any] | None) -> dict[str, Any]:
    """The learner's client config on top of the profile's client defaults."""
    return {**CLIENT_PROFILES[profile][kind], **(user or {})}


def broker_config(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Resolved broker config for a profile ("lab" or "kafka") plus the user's overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    merged = dict(PROFILES[profile])
    merged.update(overrides or {})
    cfg = resolve(merged, BROKER_CONFIGS, "broker")
    if cfg.get("log.segment.bytes", SEGMENT_BYTES_MIN) < cfg["segment.bytes.min"]:
        raise ConfigError(_segment_too_small("broker config log.segment.bytes", cfg["log.segment.bytes"],
                                             cfg["segment.bytes.min"], profile))
    return cfg


def _segment_too_small(what: str, value: int, floor: int, profile: str) -> str:
    fix = ("Kafka 4.x refuses segments below 1 MiB (KIP-1030); the lab profile allows tiny ones"
           if profile == "kafka" else "raise it")
    return f"{what}={value} is below the minimum of {floor} bytes in the {profile!r} profile: {fix}"


def check_topic_segment_bytes(broker: Mapping[str, Any], topic: Mapping[str, Any]) -> None:
    """Refuse a topic's segment.bytes below the broker's floor (1 MiB as in Kafka 4.1, unless
    the lab profile lowered it)."""
    floor = broker["segment.bytes.min"]
    if "segment.bytes" in topic and topic["segment.bytes"] < floor:
        profile = "kafka" if floor >= SEGMENT_BYTES_MIN else "lab"
        raise ConfigError(_segment_too_small("topic config segment.bytes", topic["segment.bytes"], floor, profile))


def topic_config(broker: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A topic's effective config: topic defaults, broker-level defaults, then its overrides."""
    merged = broker_topic_defaults(broker)
    merged.update(overrides or {})
    return resolve(merged, TOPIC_CONFIGS, "topic")


# ---- Broker-level topic defaults ----------------------------------------------------------
# Kafka sets every topic config's default on the broker under another name (log.retention.hours
# for retention.ms ...). A topic's own config wins; else the broker's; else Kafka's default.
# Kafka leaves log.retention.ms/minutes and log.roll.ms unset (None) so that the coarser key
# applies: ms over minutes over hours.
_NO_LIMIT = "must be >= -1 (-1: no limit)"

BROKER_TOPIC_DEFAULT_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("log.retention.ms", int, None, "default retention.ms (wins over minutes and hours)",
              check=_ms_or_unlimited, check_doc=_NO_LIMIT),
    ConfigDef("log.retention.minutes", int, None, "default retention.ms in minutes (wins over hours)",
              check=_ms_or_unlimited, check_doc=_NO_LIMIT),
    ConfigDef("log.retention.hours", int, 168, "default retention.ms in hours",
              check=_ms_or_unlimited, check_doc=_NO_LIMIT),
    ConfigDef("log.retention.bytes", int, -1, "default retention.bytes", check=_ms_or_unlimited,
              check_doc=_NO_LIMIT),
    ConfigDef("log.segment.bytes", int, 1_073_741_824, "default segment.bytes",
              check=lambda v: v >= 14, check_doc="must be >= 14"),
    ConfigDef("log.roll.ms", int, None, "default segment.ms (wins over log.roll.hours)",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("log.roll.hours", int, 168, "default segment.ms in hours", check=_positive,
              check_doc="must be >= 1"),
    ConfigDef("log.cleanup.policy", list, ["delete"], "default cleanup.policy",
              choices=("delete", "compact")),
    ConfigDef("compression.type", str, "producer", "default compression.type",
              choices=("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")),
    ConfigDef("message.max.bytes", int, 1_048_588, "default max.message.bytes", check=_nonneg,
              check_doc="must be >= 0"),
    ConfigDef("log.cleaner.min.cleanable.ratio", float, 0.5, "default min.cleanable.dirty.ratio",
              check=lambda v: 0.0 <= v <= 1.0, check_doc="must be between 0 and 1"),
    ConfigDef("log.cleaner.delete.retention.ms", int, 86_400_000, "default delete.retention.ms",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("log.cleaner.min.compaction.lag.ms", int, 0, "default min.compaction.lag.ms",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("log.cleaner.max.compaction.lag.ms", int, 9_223_372_036_854_775_807,
              "default max.compaction.lag.ms", check=_positive, check_doc="must be > 0"),
    ConfigDef("log.index.interval.bytes", int, 4096, "default index.interval.bytes", check=_nonneg,
              check_doc="must be >= 0"),
    ConfigDef("log.index.size.max.bytes", int, 10_485_760, "default segment.index.bytes",
              check=lambda v: v >= 8, check_doc="must be >= 8"),
    ConfigDef("log.segment.delete.delay.ms", int, 60_000, "default file.delete.delay.ms",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("log.message.timestamp.type", str, "CreateTime", "default message.timestamp.type",
              choices=("CreateTime", "LogAppendTime")),
)
BROKER_CONFIGS.update(BROKER_TOPIC_DEFAULT_CONFIGS)

# broker key -> topic key, for the defaults that are one value under another name
BROKER_TO_TOPIC: dict[str, str] = {
    "log.retention.bytes": "retention.bytes",
    "log.segment.bytes": "segment.bytes",
    "log.cleanup.policy": "cleanup.policy",
    "compression.type": "compression.type",
    "message.max.bytes": "max.message.bytes",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.index.size.max.bytes": "segment.index.bytes",
    "log.segment.delete.delay.ms": "file.delete.delay.ms",
    "log.message.timestamp.type": "message.timestamp.type",
    "min.insync.replicas": "min.insync.replicas",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
}


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def broker_topic_defaults(broker: Mapping[str, Any]) -> dict[str, Any]:
    """Topic configs (by topic key) as this broker's config sets their defaults, each with the
    broker key it came from (`topic_default_sources`) - Kafka's DEFAULT_BROKER_CONFIG source."""
    return {topic_key: value for topic_key, (_, value) in topic_default_sources(broker).items()}


def topic_default_sources(broker: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """topic key -> (the broker key that sets it, value), Kafka's precedence applied."""
    def get(key: str) -> Any:
        return broker.get(key, BROKER_CONFIGS[key].default)

    def unlimited(ms: int) -> int:
        return -1 if ms < 0 else ms

    out = {topic_key: (key, get(key)) for key, topic_key in BROKER_TO_TOPIC.items()}
    retention = _first_set(*((k, get(k) * f) if get(k) is not None else None for k, f in (
        ("log.retention.ms", 1), ("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000))))
    out["retention.ms"] = (retention[0], unlimited(retention[1]))
    out["segment.ms"] = _first_set(*((k, get(k) * f) if get(k) is not None else None for k, f in (
        ("log.roll.ms", 1), ("log.roll.hours", 3_600_000))))
    return out


def nearest_key(key: str, catalog: Mapping[str, Any]) -> str:
    """The catalog key closest to a typo - always one, so a config error always names a fix."""
    import difflib  # only for the error message

    return closest_key(key, catalog) or max(catalog, key=lambda k: difflib.SequenceMatcher(None, key, k).ratio())
