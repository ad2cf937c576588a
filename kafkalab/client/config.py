"""Producer and consumer configuration: Kafka's keys and modern defaults.

Learners paste confluent-kafka (librdkafka) dicts, so besides Kafka's Java names this accepts:
- bootstrap.servers and client.id, ignored: the cluster already knows its brokers (a Cluster
  first checks that bootstrap.servers names its own brokers: `check_bootstrap_servers`);
- librdkafka aliases of Java keys (queue.buffering.max.ms -> linger.ms ...), renamed;
- Python callables confluent takes in the dict (on_delivery, error_cb; a partitioner).
Any other key is rejected with the closest valid one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kafkalab.config import ConfigDef, nearest_key, resolve
from kafkalab.errors import ConfigError

IGNORED_KEYS = frozenset({"bootstrap.servers", "client.id"})

_JAVA_PARTITIONERS = {
    "org.apache.kafka.clients.producer.RoundRobinPartitioner": "round_robin",
    # The 2.4-3.2 sticky classes (removed in 4.0) ran KIP-480's rule.
    "org.apache.kafka.clients.producer.internals.DefaultPartitioner": "sticky_per_batch",
    "org.apache.kafka.clients.producer.UniformStickyPartitioner": "sticky_per_batch",
}
PARTITIONERS = ("murmur2_random", "sticky_per_batch", "murmur2", "round_robin", "random")

_ASSIGNORS = {
    "org.apache.kafka.clients.consumer.RangeAssignor": "range",
    "org.apache.kafka.clients.consumer.RoundRobinAssignor": "roundrobin",
    "org.apache.kafka.clients.consumer.StickyAssignor": "sticky",
    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor": "cooperative-sticky",
}


def _ge(n: int) -> Callable[[Any], bool]:
    return lambda v: v >= n


def _defs(*defs: ConfigDef) -> dict[str, ConfigDef]:
    return {d.name: d for d in defs}


_MS = "must be >= 0"

PRODUCER_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("acks", str, "all", "replicas that must have a write before it counts as sent",
              choices=("all", "-1", "0", "1")),
    ConfigDef("linger.ms", int, 5, "how long a batch waits for more records (Kafka 4.0: 5)",
              check=_ge(0), check_doc=_MS),
    ConfigDef("batch.size", int, 16384, "target bytes per partition batch",
              check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("buffer.memory", int, 33_554_432, "bytes of records waiting to be sent",
              check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("max.block.ms", int, 60_000, "how long produce() waits for buffer space",
              check=_ge(0), check_doc=_MS),
    ConfigDef("compression.type", str, "none", "codec of the batches",
              choices=("none", "gzip", "snappy", "lz4", "zstd")),
    ConfigDef("retries", int, 2_147_483_647, "resends of a failed batch (bounded by delivery.timeout.ms)",
              check=_ge(0), check_doc=_MS),
    ConfigDef("retry.backoff.ms", int, 100, "wait before resending a failed batch",
              check=_ge(0), check_doc=_MS),
    ConfigDef("delivery.timeout.ms", int, 120_000, "upper bound from produce() to the delivery report",
              check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("request.timeout.ms", int, 30_000, "how long to wait for a broker's answer",
              check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("max.in.flight.requests.per.connection", int, 5, "unanswered requests per broker",
              check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("enable.idempotence", bool, True, "producer id + sequence numbers: no duplicates on retry"),
    ConfigDef("partitioner", str, "murmur2_random",
              "murmur2_random (Kafka's built-in: keys hashed, null keys sticky for batch.size bytes), "
              "sticky_per_batch (the rule before 3.3), murmur2, round_robin, random, or a callable",
              choices=PARTITIONERS),
    ConfigDef("partitioner.adaptive.partitioning.enable", bool, True,
              "built-in partitioner: weight the next sticky partition by queue sizes (KIP-794)"),
    ConfigDef("partitioner.availability.timeout.ms", int, 0,
              "built-in partitioner: skip partitions whose leader could not take a request for this "
              "long (0: never)", check=_ge(0), check_doc=_MS),
    ConfigDef("partitioner.ignore.keys", bool, False,
              "built-in partitioner: partition keyed records like null-key ones"),
    ConfigDef("max.request.size", int, 1_048_576, "largest produce request (and record)",
              check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("transactional.id", str, None, "stable id for transactions (the transactions lab)"),
    ConfigDef("transaction.timeout.ms", int, 60_000, "", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("metadata.max.age.ms", int, 300_000, "refresh metadata at least this often",
              check=_ge(0), check_doc=_MS),
)

CONSUMER_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("group.id", str, None, "consumer group (the consumer-groups lab)"),
    ConfigDef("group.instance.id", str, None, "static membership id"),
    ConfigDef("group.protocol", str, "classic", "classic (JoinGroup/SyncGroup) or consumer (KIP-848: "
              "the broker assigns, members reconcile)", choices=("classic", "consumer")),
    ConfigDef("group.remote.assignor", str, None, "group.protocol=consumer: the broker's assignor to ask "
              "for (uniform or range; None: the broker's default)"),
    ConfigDef("auto.offset.reset", str, "latest", "where to start without a valid offset",
              choices=("earliest", "latest", "none")),
    ConfigDef("enable.auto.commit", bool, True, ""),
    ConfigDef("auto.commit.interval.ms", int, 5000, "", check=_ge(0), check_doc=_MS),
    ConfigDef("fetch.min.bytes", int, 1, "the broker waits for this many bytes ...",
              check=_ge(0), check_doc=_MS),
    ConfigDef("fetch.max.wait.ms", int, 500, "... or this long, whichever comes first",
              check=_ge(0), check_doc=_MS),
    ConfigDef("fetch.max.bytes", int, 52_428_800, "bytes per fetch response",
              check=_ge(0), check_doc=_MS),
    ConfigDef("max.partition.fetch.bytes", int, 1_048_576, "bytes per partition per fetch",
              check=_ge(0), check_doc=_MS),
    ConfigDef("isolation.level", str, "read_uncommitted", "read_committed hides aborted and open transactions",
              choices=("read_uncommitted", "read_committed")),
    ConfigDef("session.timeout.ms", int, 45_000, "", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("heartbeat.interval.ms", int, 3000, "", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("max.poll.interval.ms", int, 300_000, "", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("max.poll.records", int, 500, "", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("partition.assignment.strategy", list, ["range", "cooperative-sticky"], "",
              choices=("range", "roundrobin", "sticky", "cooperative-sticky")),
    ConfigDef("check.crcs", bool, True, "verify each batch's CRC-32C"),
    ConfigDef("request.timeout.ms", int, 30_000, "", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("default.api.timeout.ms", int, 60_000, "how long a blocking call (a synchronous commit) "
              "keeps retrying retriable errors", check=_ge(1), check_doc="must be >= 1"),
    ConfigDef("retry.backoff.ms", int, 100, "", check=_ge(0), check_doc=_MS),
    ConfigDef("metadata.max.age.ms", int, 300_000, "", check=_ge(0), check_doc=_MS),
    ConfigDef("queued.max.messages", int, 100_000, "messages the fetcher may hold for poll()",
              check=_ge(1), check_doc="must be >= 1"),
)

# librdkafka name -> (Java name, converter)
_PRODUCER_ALIASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "queue.buffering.max.ms": ("linger.ms", lambda v: v),
    "compression.codec": ("compression.type", lambda v: v),
    "request.required.acks": ("acks", lambda v: v),
    "message.timeout.ms": ("delivery.timeout.ms", lambda v: v),
    "message.send.max.retries": ("retries", lambda v: v),
    "retry.backoff.ms": ("retry.backoff.ms", lambda v: v),
    "max.in.flight": ("max.in.flight.requests.per.connection", lambda v: v),
    "message.max.bytes": ("max.request.size", lambda v: v),
    "queue.buffering.max.kbytes": ("buffer.memory", lambda v: int(v) * 1024),
    "partitioner.class": ("partitioner", lambda v: _JAVA_PARTITIONERS.get(v, v)),
    "socket.timeout.ms": ("request.timeout.ms", lambda v: v),
}
_CONSUMER_ALIASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "fetch.wait.max.ms": ("fetch.max.wait.ms", lambda v: v),
    "fetch.message.max.bytes": ("max.partition.fetch.bytes", lambda v: v),
    "max.partition.fetch.bytes": ("max.partition.fetch.bytes", lambda v: v),
    "socket.timeout.ms": ("request.timeout.ms", lambda v: v),
}
_OFFSET_RESET_WORDS = {"smallest": "earliest", "beginning": "earliest",
                       "largest": "latest", "end": "latest", "error": "none"}

_PRODUCER_CALLABLES = ("on_delivery", "error_cb")
_CONSUMER_CALLABLES = ("error_cb", "on_commit")


def _split(user: Mapping[str, Any] | None, catalog: Mapping[str, ConfigDef],
           aliases: Mapping[str, tuple[str, Callable[[Any], Any]]],
           callables: tuple[str, ...], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop ignored keys, rename aliases, pull out callables; reject unknown keys helpfully."""
    plain: dict[str, Any] = {}
    hooks: dict[str, Any] = {}
    for key, value in (user or {}).items():
        if not isinstance(key, str):
            raise ConfigError(f"{what} config keys are strings like 'linger.ms', got {key!r}")
        if key in IGNORED_KEYS:
            continue
        if key in callables or (key == "partitioner" and callable(value)):
            if not callable(value):
                raise ConfigError(f"{what} config {key!r} expects a callable, got {value!r}")
            hooks[key] = value
            continue
        if key in aliases and key not in catalog:
            key, convert = aliases[key][0], aliases[key][1]
            value = convert(value)
        elif key not in catalog:
            raise ConfigError(f"unknown {what} config {key!r}; did you mean {_closest(key, catalog, aliases, callables)!r}?")
        plain[key] = value
    return plain, hooks


def _closest(key: str, catalog: Mapping[str, ConfigDef],
             aliases: Mapping[str, tuple[str, Callable[[Any], Any]]], callables: tuple[str, ...]) -> str:
    """The valid key nearest to a typo - always one, so the error always names a fix."""
    return nearest_key(key, dict.fromkeys([*catalog, *aliases, *callables, *sorted(IGNORED_KEYS)]))


def check_bootstrap_servers(value: Any, servers: str, what: str) -> None:
    """A lab client always talks to its own cluster. bootstrap.servers in its config is fine when
    it names that cluster's brokers (a pasted confluent-kafka dict), and an error otherwise:
    silently connecting elsewhere than written would mislead."""
    own = set(servers.split(","))
    given = [s.strip() for s in (value.split(",") if isinstance(value, str) else list(value)) if s.strip()]
    normal = {s.replace("localhost:", "127.0.0.1:", 1) for s in given}
    if not given or not normal <= own:
        raise ConfigError(
            f"{what} config bootstrap.servers={value!r} does not name this cluster, whose brokers are at "
            f"{servers!r}: a client from cluster.{what}() always connects to its own cluster; leave "
            "bootstrap.servers out (or give cluster.bootstrap_servers), or use a Kafka client library "
            "for another cluster")


def producer_config(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """The producer's full config: every key typed, plus `acks` as the wire int (-1, 0, 1)
    and callables under their own keys (on_delivery, error_cb, partitioner)."""
    plain, hooks = _split(user, PRODUCER_CONFIGS, _PRODUCER_ALIASES, _PRODUCER_CALLABLES, "producer")
    if "acks" in plain and isinstance(plain["acks"], int) and not isinstance(plain["acks"], bool):
        plain["acks"] = str(plain["acks"])
    cfg = resolve(plain, PRODUCER_CONFIGS, "producer")
    cfg["acks"] = -1 if cfg["acks"] in ("all", "-1") else int(cfg["acks"])
    if cfg["delivery.timeout.ms"] < cfg["linger.ms"] + cfg["request.timeout.ms"]:
        raise ConfigError(
            f"producer config delivery.timeout.ms={cfg['delivery.timeout.ms']} must be >= linger.ms + "
            f"request.timeout.ms ({cfg['linger.ms'] + cfg['request.timeout.ms']}): raise it or lower those"
        )
    _check_idempotence(cfg, explicit="enable.idempotence" in plain)
    cfg.update({k: hooks.get(k) for k in _PRODUCER_CALLABLES})
    if "partitioner" in hooks:
        cfg["partitioner"] = hooks["partitioner"]
    return cfg


def _check_idempotence(cfg: dict[str, Any], explicit: bool) -> None:
    # Kafka's ProducerConfig: idempotence is on by default and quietly turns off when acks or
    # retries conflict with it; an explicit enable.idempotence=true makes that an error. Since
    # 4.0 (KAFKA-17927) max.in.flight.requests.per.connection > 5 is an error whenever idempotence
    # is on, by default too (3.x turned it off with a warning): the broker keeps the last 5
    # batches per producer for deduplication. Only enable.idempotence=false allows more.
    if cfg["enable.idempotence"] and cfg["max.in.flight.requests.per.connection"] > 5:
        raise ConfigError(
            "producer config max.in.flight.requests.per.connection="
            f"{cfg['max.in.flight.requests.per.connection']} needs enable.idempotence=false: an "
            "idempotent producer (the default) allows at most 5 (the broker remembers 5 batches "
            "per producer)"
        )
    conflicts = []
    if cfg["acks"] != -1:
        conflicts.append("acks='all'")
    if cfg["retries"] == 0:
        conflicts.append("retries > 0")
    if cfg["enable.idempotence"] and conflicts:
        if explicit:
            raise ConfigError(
                "producer config enable.idempotence=true needs " + " and ".join(conflicts)
                + ": change those settings or set enable.idempotence=false"
            )
        cfg["enable.idempotence"] = False
    if cfg["transactional.id"] is not None and not cfg["enable.idempotence"]:
        raise ConfigError("producer config transactional.id needs enable.idempotence=true "
                          "(and so acks='all'): a transactional producer is idempotent")


def consumer_config(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """The consumer's full config, every key typed, callables under their own keys."""
    plain, hooks = _split(user, CONSUMER_CONFIGS, _CONSUMER_ALIASES, _CONSUMER_CALLABLES, "consumer")
    reset = plain.get("auto.offset.reset")
    if isinstance(reset, str):
        plain["auto.offset.reset"] = _OFFSET_RESET_WORDS.get(reset, reset)
    strategy = plain.get("partition.assignment.strategy")
    if strategy is not None:
        items = strategy.split(",") if isinstance(strategy, str) else list(strategy)
        plain["partition.assignment.strategy"] = [_ASSIGNORS.get(s.strip(), s.strip()) for s in items]
    cfg = resolve(plain, CONSUMER_CONFIGS, "consumer")
    if cfg["heartbeat.interval.ms"] >= cfg["session.timeout.ms"]:
        raise ConfigError(
            f"consumer config heartbeat.interval.ms={cfg['heartbeat.interval.ms']} must be lower than "
            f"session.timeout.ms={cfg['session.timeout.ms']} (Kafka advises a third of it)"
        )
    cfg.update({k: hooks.get(k) for k in _CONSUMER_CALLABLES})
    return cfg
