"""The listener's in-place Produce reader against kio's decoder: the same request from the same
bytes at every version the listener serves, records as views (no copy), and hostile bytes
refused with MalformedMessageError, never another exception."""

from __future__ import annotations

import dataclasses
import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalab.protocol.apis import decode_request, encode, request_class, schema_module
from kafkalab.protocol.errors import MalformedMessageError
from kafkalab.protocol.versions import request_to
from kafkalab.transport.kafka_listener import _decode_lenient
from kafkalab.transport.produce_request import read_produce_request, write_produce_request

VERSIONS = range(3, 10)


def _request(version: int, transactional_id: str | None, acks: int, topics: dict[str, dict[int, bytes | None]]):
    cls = request_class(0, version)
    mod = schema_module(cls)
    return cls(transactional_id=transactional_id, acks=acks, timeout=datetime.timedelta(milliseconds=30_000),
               topic_data=tuple(mod.TopicProduceData(name=name, partition_data=tuple(
                   mod.PartitionProduceData(index=i, records=r) for i, r in parts.items()))
                   for name, parts in topics.items()))


def _as_plain(req):
    """The request's values, records as bytes: views and kio's copies compare equal."""
    return (req.transactional_id, req.acks, req.timeout,
            [(t.name, [(p.index, None if p.records is None else bytes(p.records)) for p in t.partition_data])
             for t in req.topic_data])


topics_st = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12),
    st.dictionaries(st.integers(-1, 2**31 - 1), st.one_of(st.none(), st.binary(max_size=300)), max_size=3),
    max_size=3)


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from(VERSIONS), txn=st.one_of(st.none(), st.text(max_size=20)),
       acks=st.sampled_from((-1, 0, 1)), topics=topics_st)
def test_it_reads_what_kio_reads_at_every_version(version, txn, acks, topics) -> None:
    body = encode(_request(version, txn, acks, topics))
    ours = read_produce_request(version, memoryview(body))
    theirs = request_to(decode_request(0, version, body), 9)
    assert type(ours) is type(theirs)
    assert _as_plain(ours) == _as_plain(theirs)


def test_records_are_views_into_the_frame_not_copies() -> None:
    frame = bytearray(encode(_request(9, None, 1, {"t": {0: b"x" * 1000}})))
    req = read_produce_request(9, memoryview(frame))
    records = req.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records.obj is frame and records.readonly
    frame[-4] = ord("y")  # the last record byte, before three empty tagged-field sections
    assert bytes(records)[-1:] == b"y"


@pytest.mark.parametrize("version", [3, 8, 9])
def test_bytes_after_the_message_are_ignored_as_kafka_does(version) -> None:
    body = encode(_request(version, "tx", -1, {"a": {1: b"abc"}}))
    req = read_produce_request(version, memoryview(body + b"\x00\x01\x02"))
    assert bytes(req.topic_data[0].partition_data[0].records) == b"abc"


@pytest.mark.parametrize("version", [3, 9])
def test_every_truncation_is_refused_with_the_field_named(version) -> None:
    body = encode(_request(version, "tx", 1, {"orders": {0: b"r" * 40, 1: None}, "b": {2: b""}}))
    for cut in range(len(body)):
        with pytest.raises(MalformedMessageError, match=r"Produce v\d+ .* does not decode: .* at byte"):
            read_produce_request(version, memoryview(body[:cut]))


@pytest.mark.parametrize("version", [3, 9])
def test_damaged_bytes_are_refused_or_read_as_kio_reads_them(version) -> None:
    rng = random.Random(23)
    body = encode(_request(version, None, 1, {"orders": {0: b"r" * 40}, "b": {2: b"z" * 5}}))
    agreed = 0
    for _ in range(3000):
        damaged = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            ours = read_produce_request(version, memoryview(bytes(damaged)))
        except MalformedMessageError:
            continue
        theirs = request_to(_decode_lenient(0, version, bytes(damaged)), 9)  # must decode too
        assert _as_plain(ours) == _as_plain(theirs)
        agreed += 1
    assert agreed > 100  # the comparison did run on many damaged-but-decodable requests


def test_a_negative_length_other_than_null_and_a_null_topic_name_are_refused() -> None:
    good = encode(_request(3, None, 1, {"t": {0: b"ab"}}))
    # v3: transactional_id is an int16 length (-1 = null); -2 is no length at all
    with pytest.raises(MalformedMessageError, match="transactional_id string has length -2"):
        read_produce_request(3, memoryview(b"\xff\xfe" + good[2:]))
    # the topic name follows acks (2), timeout (4) and the topic count (4)
    at = 2 + 2 + 4 + 4
    with pytest.raises(MalformedMessageError, match="may not be null"):
        read_produce_request(3, memoryview(good[:at] + b"\xff\xff" + good[at + 3:]))


@settings(max_examples=150, deadline=None)
@given(txn=st.one_of(st.none(), st.text(max_size=20)), acks=st.sampled_from((-1, 0, 1)),
       timeout_ms=st.integers(0, 2**31 - 1), topics=topics_st)
def test_the_writer_writes_what_kio_writes(txn, acks, timeout_ms, topics) -> None:
    req = dataclasses.replace(_request(9, txn, acks, topics), timeout=datetime.timedelta(milliseconds=timeout_ms))
    assert write_produce_request(req) == encode(req)
    assert _as_plain(read_produce_request(9, memoryview(write_produce_request(req)))) == _as_plain(req)
