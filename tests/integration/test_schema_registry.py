"""confluent-kafka's own SchemaRegistryClient, AvroSerializer and AvroDeserializer against a
lab cluster's registry, unchanged: register, evolve, a 409, records through the Kafka listener
in Confluent's wire format, and a killed registry that comes back with every id."""

from __future__ import annotations

import glob
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kafkalab import Cluster
from kafkalab.registry.records import Record
from kafkalab.registry.wire import schema_id
from kafkalab.tools.dump_log import dump_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]

V1 = json.dumps({"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"}, {"name": "amount", "type": "double"}]})
V2 = json.dumps({"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"}, {"name": "amount", "type": "double"},
    {"name": "currency", "type": "string", "default": "EUR"}]})
BREAKING = json.dumps({"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"}, {"name": "amount", "type": "double"},
    {"name": "customer", "type": "string"}]})


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(brokers=3, schema_registry=True)
    try:
        yield c
    finally:
        c.close()


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sr-test", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                assert m.error() is None, m.error()
                got.append(m)
        return got
    finally:
        consumer.close()


def test_register_evolve_refuse_and_round_trip_through_kafka(cluster: Cluster) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    from confluent_kafka.serialization import MessageField, SerializationContext

    assert cluster.schema_registry_url.startswith("http://127.0.0.1:")
    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    subject = "orders-value"
    cluster.create_topic("orders", partitions=1, replication_factor=3)
    ctx = SerializationContext("orders", MessageField.VALUE)

    old_writer = AvroSerializer(client, V1)                      # auto.register.schemas: registers V1
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
    producer.produce("orders", value=old_writer({"id": 1, "amount": 9.5}, ctx))
    id_v2 = client.register_schema(subject, Schema(V2, "AVRO"))  # adding a field with a default: fine
    new_writer = AvroSerializer(client, V2)
    producer.produce("orders", value=new_writer({"id": 2, "amount": 3.0, "currency": "USD"}, ctx))
    assert producer.flush(10) == 0

    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(BREAKING, "AVRO"))
    assert refused.value.http_status_code == 409 and refused.value.error_code == 409
    assert "customer" in refused.value.error_message and "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.value.error_message
    assert client.test_compatibility(subject, Schema(BREAKING, "AVRO")) is False

    id_v1 = client.lookup_schema(subject, Schema(V1, "AVRO")).schema_id
    assert (id_v1, id_v2) == (1, 2)
    assert client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).schema_id == id_v2
    assert client.register_schema(subject, Schema(V2, "AVRO")) == id_v2   # identical: same id

    records = _consume(cluster.bootstrap_servers, "orders", 2)
    assert [schema_id(m.value()) for m in records] == [id_v1, id_v2]
    # A new consumer (reader V2) reads old data: the default fills the missing field.
    new_reader = AvroDeserializer(client, V2)
    assert [new_reader(m.value(), ctx) for m in records] == [
        {"id": 1, "amount": 9.5, "currency": "EUR"}, {"id": 2, "amount": 3.0, "currency": "USD"}]
    # An old consumer (reader V1) reads new data: the unknown field is skipped.
    old_reader = AvroDeserializer(client, V1)
    assert [old_reader(m.value(), ctx) for m in records] == [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3.0}]

    client.set_compatibility(subject, "FULL")
    assert client.get_compatibility(subject) == "FULL"


def test_registry_killed_and_restarted_keeps_every_id(cluster: Cluster) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    ids = {f"s{i}-value": client.register_schema(f"s{i}-value", Schema(json.dumps(
        {"type": "record", "name": f"R{i}", "fields": [{"name": "x", "type": "int"}]}), "AVRO")) for i in range(3)}
    client.set_compatibility(level="FORWARD")
    cluster.kill_schema_registry()
    with pytest.raises(OSError):
        urllib.request.urlopen(cluster.schema_registry_url + "/subjects", timeout=1)
    cluster.restart_schema_registry()

    fresh = SchemaRegistryClient({"url": cluster.schema_registry_url})  # no cache
    for subject, sid in ids.items():
        assert fresh.get_latest_version(subject).schema_id == sid
        assert json.loads(fresh.get_schema(sid).schema_str)["name"] == json.loads(
            fresh.get_latest_version(subject).schema.schema_str)["name"]
    assert fresh.get_compatibility() == "FORWARD"
    new_id = fresh.register_schema("s9-value", Schema(json.dumps(
        {"type": "record", "name": "R9", "fields": [{"name": "y", "type": "int"}]}), "AVRO"))
    assert new_id == max(ids.values()) + 1, "ids continue after a restart, none reused"


def test_schemas_topic_holds_confluents_records_and_dump_log_shows_schema_ids(cluster: Cluster) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    client = SchemaRegistryClient({"url": cluster.schema_registry_url})
    sid = client.register_schema("dump-value", Schema(V1, "AVRO"))
    described = cluster.describe_topic("_schemas")
    assert len(described) == 1 and len(described.iloc[0].isr) == 3

    def segments(topic: str) -> list[str]:
        return sorted(glob.glob(os.path.join(cluster.data_dir, "broker-*", f"{topic}-0", "*.log")))
    keys = set()
    out = io.StringIO()
    for path in segments("_schemas"):
        dump_log(path, out=out)
    for line in out.getvalue().splitlines():
        if "key: {" in line:
            keys.add(json.loads(line.split("key: ", 1)[1].split(" payload:")[0])["keytype"])
    assert {"SCHEMA", "CONFIG", "NOOP"} <= keys
    assert Record.decode(b'{"keytype":"SCHEMA","subject":"dump-value","version":1,"magic":1}', None)

    from confluent_kafka import Producer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    cluster.create_topic("dumped", partitions=1, replication_factor=1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    producer.produce("dumped", value=AvroSerializer(client, V1)({"id": 7, "amount": 1.0},
                                                                SerializationContext("dumped", MessageField.VALUE)))
    assert producer.flush(10) == 0
    out = io.StringIO()
    for path in segments("dumped"):
        dump_log(path, out=out)
    assert f"schemaId: {sid} payload:" in out.getvalue()


def test_bad_input_over_http_gets_confluents_codes_and_the_registry_keeps_serving(cluster: Cluster) -> None:
    def call(method: str, path: str, data: bytes | None = None) -> tuple[int, str, dict]:
        request = urllib.request.Request(cluster.schema_registry_url + path, method=method, data=data,
                                         headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.headers["Content-Type"], json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], json.load(e)

    status, content_type, body = call("POST", "/subjects/bad-value/versions", b"this is not json")
    assert (status, body["error_code"]) == (400, 400) and "JSON" in body["message"]
    assert content_type == "application/vnd.schemaregistry.v1+json"
    status, _, body = call("POST", "/subjects/bad-value/versions", json.dumps({"schema": '{"type": "recrod"}'}).encode())
    assert (status, body["error_code"]) == (422, 42201) and "recrod" in body["message"]
    assert call("GET", "/subjects/bad-value/versions")[2]["error_code"] == 40401
    assert call("PUT", "/config", json.dumps({"compatibility": "MOSTLY"}).encode())[2]["error_code"] == 42203
    status, _, subjects = call("GET", "/subjects")
    assert status == 200 and "orders-value" in subjects and "bad-value" not in subjects
