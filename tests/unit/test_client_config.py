"""Producer/consumer configs: Kafka's names and defaults, aliases, clear errors."""

from __future__ import annotations

import pytest

from kafkalab.client.config import consumer_config, producer_config
from kafkalab.errors import ConfigError


def test_producer_defaults_are_kafkas_modern_ones():
    cfg = producer_config({})
    assert cfg["acks"] == -1 and cfg["linger.ms"] == 5 and cfg["batch.size"] == 16384
    assert cfg["enable.idempotence"] is True and cfg["max.in.flight.requests.per.connection"] == 5
    assert cfg["delivery.timeout.ms"] == 120_000 and cfg["compression.type"] == "none"


@pytest.mark.parametrize("acks, wire", [(0, 0), (1, 1), (-1, -1), ("all", -1), ("1", 1)])
def test_acks_forms(acks, wire):
    assert producer_config({"acks": acks, "enable.idempotence": False})["acks"] == wire


def test_typo_gets_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'linger.ms'"):
        producer_config({"lingerms": 5})
    with pytest.raises(ConfigError, match="did you mean 'auto.offset.reset'"):
        consumer_config({"auto.offset.rest": "earliest"})


def test_librdkafka_keys_are_ignored_or_mapped():
    cfg = producer_config({"bootstrap.servers": "localhost:9092", "client.id": "x",
                           "queue.buffering.max.ms": 20, "queue.buffering.max.kbytes": 1024,
                           "compression.codec": "lz4"})
    assert cfg["linger.ms"] == 20 and cfg["buffer.memory"] == 1024 * 1024
    assert cfg["compression.type"] == "lz4"
    c = consumer_config({"bootstrap.servers": "x", "auto.offset.reset": "smallest",
                         "fetch.wait.max.ms": 100})
    assert c["auto.offset.reset"] == "earliest" and c["fetch.max.wait.ms"] == 100


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="acks"):
        producer_config({"acks": 2})
    with pytest.raises(ConfigError, match="linger.ms"):
        producer_config({"linger.ms": -1})
    with pytest.raises(ConfigError, match="isolation.level"):
        consumer_config({"isolation.level": "committed"})


def test_idempotence_turns_off_quietly_unless_asked_for():
    assert producer_config({"acks": 1})["enable.idempotence"] is False
    with pytest.raises(ConfigError, match="enable.idempotence=true needs acks='all'"):
        producer_config({"acks": 1, "enable.idempotence": True})


def test_more_than_5_in_flight_is_an_error_unless_idempotence_is_off():
    # Kafka 4.0 (KAFKA-17927): an error with idempotence on, whether set or by default
    # (3.x turned idempotence off with a warning); even acks=1 does not rescue it.
    for cfg in ({}, {"enable.idempotence": True}, {"acks": 1}):
        with pytest.raises(ConfigError, match="max.in.flight.requests.per.connection=6"):
            producer_config({**cfg, "max.in.flight.requests.per.connection": 6})
    ok = producer_config({"enable.idempotence": False, "max.in.flight.requests.per.connection": 6})
    assert ok["max.in.flight.requests.per.connection"] == 6


def test_delivery_timeout_must_cover_linger_and_request_timeout():
    with pytest.raises(ConfigError, match="delivery.timeout.ms"):
        producer_config({"delivery.timeout.ms": 1000, "request.timeout.ms": 5000})


def test_callables_in_config():
    def cb(err, msg):
        return None

    cfg = producer_config({"on_delivery": cb, "partitioner": lambda k, n, a: 0})
    assert cfg["on_delivery"] is cb and callable(cfg["partitioner"])
    with pytest.raises(ConfigError, match="expects a callable"):
        producer_config({"on_delivery": "print"})


def test_assignment_strategy_accepts_java_class_names():
    c = consumer_config({"partition.assignment.strategy":
                         "org.apache.kafka.clients.consumer.RoundRobinAssignor"})
    assert c["partition.assignment.strategy"] == ["roundrobin"]
    with pytest.raises(ConfigError, match="heartbeat.interval.ms"):
        consumer_config({"heartbeat.interval.ms": 50_000})
