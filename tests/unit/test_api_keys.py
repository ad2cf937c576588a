"""One table of api keys (Kafka's ApiKeys names) and one way from a message class to its module."""

from __future__ import annotations

from kio.schema.index import api_key_map

from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import ZMQ_VERSIONS, request_class, response_class, schema_module


def test_every_name_is_kafkas_for_its_number():
    assert {k.value: k.name for k in ApiKey} == {k: name.upper() for k, name in api_key_map.items()}
    assert (ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.API_VERSIONS, ApiKey.VOTE) == (0, 1, 18, 52)


def test_the_lab_versions_are_keyed_by_the_table():
    assert all(isinstance(k, ApiKey) for k in ZMQ_VERSIONS)
    assert ZMQ_VERSIONS[1] == ZMQ_VERSIONS[ApiKey.FETCH]  # a bare int from the wire finds its entry


def test_schema_module_holds_a_versions_nested_entities():
    resp = response_class(ApiKey.CREATE_TOPICS, 7)
    assert schema_module(resp).CreatableTopicResult.__module__ == resp.__module__
    req = request_class(ApiKey.ADD_PARTITIONS_TO_TXN, 3)
    assert schema_module(req).AddPartitionsToTxnTopic.__module__ == req.__module__
