"""The lab producer's hand-written Produce response reader against kio's decoder: the same
response from the same bytes, and damaged or cut bytes refused with MalformedMessageError."""

from __future__ import annotations

import datetime
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from kafkalab.protocol.apis import decode_response, encode, response_class, schema_module
from kafkalab.protocol.errors import MalformedMessageError
from kafkalab.transport.produce_request import read_produce_response

CLS = response_class(0, 9)
MOD = schema_module(CLS)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
partition_st = st.builds(
    lambda index, code, base, append_ms, start, errors, message: MOD.PartitionProduceResponse(
        index=index, error_code=code, base_offset=base,
        log_append_time=None if append_ms < 0 else datetime.datetime.fromtimestamp(append_ms / 1000, datetime.UTC),
        log_start_offset=start, error_message=message,
        record_errors=tuple(MOD.BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m)
                            for i, m in errors)),
    st.integers(-(2**31), 2**31 - 1), st.sampled_from(list(ErrorCode)), st.integers(-(2**63), 2**63 - 1),
    st.one_of(st.just(-1), st.integers(0, 253402300799999)), st.integers(-(2**63), 2**63 - 1),
    st.lists(st.tuples(st.integers(-(2**31), 2**31 - 1), st.one_of(st.none(), text)), max_size=2),
    st.one_of(st.none(), text))
response_st = st.builds(
    lambda topics, throttle: CLS(
        responses=tuple(MOD.TopicProduceResponse(name=n, partition_responses=tuple(ps)) for n, ps in topics),
        throttle_time=datetime.timedelta(milliseconds=throttle)),
    st.lists(st.tuples(text.filter(bool), st.lists(partition_st, max_size=3)), max_size=3),
    st.integers(0, 2**31 - 1))


@settings(max_examples=200, deadline=None)
@given(resp=response_st)
def test_it_reads_what_kio_reads(resp) -> None:
    body = encode(resp)
    ours = read_produce_response(body)
    assert ours == decode_response(0, 9, body) == resp


def _sample() -> bytes:
    p = MOD.PartitionProduceResponse(
        index=3, error_code=ErrorCode.not_leader_or_follower, base_offset=-1, log_append_time=None,
        log_start_offset=0, error_message="moved",
        record_errors=(MOD.BatchIndexAndErrorMessage(batch_index=2, batch_index_error_message="bad"),))
    ok = MOD.PartitionProduceResponse(index=0, error_code=ErrorCode.none, base_offset=1234, log_start_offset=0,
                                      log_append_time=_EPOCH, record_errors=())
    return encode(CLS(responses=(MOD.TopicProduceResponse(name="orders", partition_responses=(p, ok)),),
                      throttle_time=datetime.timedelta(milliseconds=7)))


def test_every_truncation_and_any_trailing_byte_are_refused() -> None:
    body = _sample()
    for cut in range(len(body)):
        with pytest.raises(MalformedMessageError, match=r"Produce v9 .* does not decode: .* at byte"):
            read_produce_response(body[:cut])
    with pytest.raises(MalformedMessageError, match="1 bytes left over"):
        read_produce_response(body + b"\x00")


def test_damaged_bytes_are_refused_or_read_as_kio_reads_them() -> None:
    rng = random.Random(23)
    body = _sample()
    agreed = 0
    for _ in range(3000):
        damaged = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            ours = read_produce_response(bytes(damaged))
        except MalformedMessageError:
            with pytest.raises(MalformedMessageError):
                decode_response(0, 9, bytes(damaged))
            continue
        assert ours == decode_response(0, 9, bytes(damaged))
        agreed += 1
    assert agreed > 100  # the comparison ran on many damaged-but-decodable responses
