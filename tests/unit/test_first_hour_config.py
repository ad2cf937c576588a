"""Config errors name the closest key; Kafka's broker-level topic defaults work by their names."""

from __future__ import annotations

import pytest

from kafkalab.client.config import check_bootstrap_servers, consumer_config, producer_config
from kafkalab.config import broker_config, topic_config, topic_default_sources
from kafkalab.errors import ConfigError


def test_a_typo_of_bootstrap_servers_suggests_it():
    with pytest.raises(ConfigError, match="did you mean 'bootstrap.servers'"):
        producer_config({"bootstrap.server": "127.0.0.1:9092"})


def test_an_unknown_client_key_always_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown consumer config 'xyzzy'; did you mean '[a-z.]+'\?$"):
        consumer_config({"xyzzy": 1})


def test_bootstrap_servers_must_name_this_cluster():
    own = "127.0.0.1:20001,127.0.0.1:20002"
    check_bootstrap_servers("127.0.0.1:20002", own, "producer")
    check_bootstrap_servers("localhost:20001,127.0.0.1:20002", own, "consumer")
    with pytest.raises(ConfigError, match=r"bootstrap.servers='127.0.0.1:1' does not name this cluster, whose "
                                          r"brokers are at '127.0.0.1:20001,127.0.0.1:20002'"):
        check_bootstrap_servers("127.0.0.1:1", own, "producer")


def test_broker_retention_keys_follow_kafkas_precedence():
    assert topic_config(broker_config("kafka"))["retention.ms"] == 168 * 3_600_000
    hours = broker_config("lab", {"log.retention.hours": 1})
    assert topic_config(hours)["retention.ms"] == 3_600_000
    minutes = broker_config("lab", {"log.retention.hours": 1, "log.retention.minutes": 2})
    assert topic_config(minutes)["retention.ms"] == 120_000
    ms = broker_config("lab", {"log.retention.minutes": 2, "log.retention.ms": -1})
    assert topic_default_sources(ms)["retention.ms"] == ("log.retention.ms", -1)
    roll = broker_config("lab", {"log.roll.hours": 2})
    assert topic_config(roll)["segment.ms"] == 7_200_000
    assert topic_config(broker_config("lab", {"log.roll.ms": 500, "log.roll.hours": 2}))["segment.ms"] == 500


def test_broker_topic_defaults_apply_under_a_topics_own_config():
    broker = broker_config("lab", {"log.segment.bytes": 4096, "log.cleanup.policy": "compact",
                                   "compression.type": "zstd", "message.max.bytes": 2000,
                                   "log.cleaner.min.cleanable.ratio": 0.1, "min.insync.replicas": 2})
    cfg = topic_config(broker)
    assert (cfg["segment.bytes"], cfg["cleanup.policy"], cfg["compression.type"]) == (4096, ["compact"], "zstd")
    assert (cfg["max.message.bytes"], cfg["min.cleanable.dirty.ratio"], cfg["min.insync.replicas"]) == (2000, 0.1, 2)
    assert topic_config(broker, {"segment.bytes": 8192})["segment.bytes"] == 8192


def test_an_unknown_broker_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'log.retention.hours'"):
        broker_config("lab", {"log.retention.hour": 1})
    with pytest.raises(ConfigError, match="log.segment.bytes.*must be >= 14"):
        broker_config("lab", {"log.segment.bytes": 1})


def test_a_far_off_broker_or_topic_key_still_gets_the_nearest_suggestion():
    from kafkalab.config import TOPIC_CONFIGS, resolve

    with pytest.raises(ConfigError, match=r"unknown broker config 'qqq'; did you mean '[a-z.]+'\?$"):
        broker_config("lab", {"qqq": 1})
    with pytest.raises(ConfigError, match=r"unknown topic config 'zz'; did you mean '[a-z.]+'\?$"):
        resolve({"zz": 1}, TOPIC_CONFIGS, "topic")
