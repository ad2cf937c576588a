"""RecordBatch v2 round trips, byte compatibility with kafka-python, timestamp types."""

from __future__ import annotations

import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from kafkalab.errors import CorruptRecordError, UnknownCodecError
from kafkalab.records import (
    CODEC_NAMES,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    BatchBuilder,
    decode_batch,
    decompress,
    encode_batch,
    parse_header,
)
from kafkalab.records.header import (
    CONTROL_BIT,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
)

CODECS = sorted(CODEC_NAMES)  # 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd

optional_bytes = st.none() | st.binary(max_size=300)
headers = st.lists(st.tuples(st.text(max_size=20), optional_bytes), max_size=4)
record = st.tuples(optional_bytes, optional_bytes, headers, st.integers(0, 2**42))
records = st.lists(record, min_size=1, max_size=40)


def expected(recs, base_offset=0):
    return [(base_offset + i, ts, k, v, list(h or [])) for i, (k, v, h, ts) in enumerate(recs)]


def ours(batch):
    return [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in batch.records]


def theirs(buf):
    kb = DefaultRecordBatch(bytes(buf))
    assert kb.validate_crc()
    return kb, [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in kb]


@settings(max_examples=60, deadline=None)
@given(
    recs=records,
    codec=st.sampled_from(CODECS + ["none", "gzip", "snappy", "lz4", "zstd"]),
    base_offset=st.integers(0, 2**62),
    partition_leader_epoch=st.integers(-1, 2**31 - 1),
    producer_id=st.integers(-1, 2**63 - 1),
    producer_epoch=st.integers(-1, 2**15 - 1),
    base_sequence=st.integers(-1, 2**31 - 1),
    transactional=st.booleans(),
)
def test_any_batch_round_trips_for_every_codec(
    recs, codec, base_offset, partition_leader_epoch, producer_id, producer_epoch, base_sequence, transactional
):
    buf = encode_batch(
        recs,
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        transactional=transactional,
        compression=codec,
    )
    batch = decode_batch(buf)
    h = batch.header
    assert ours(batch) == expected(recs, base_offset)
    assert h.size == len(buf)
    assert h.compression == (codec if isinstance(codec, int) else CODECS[["none", "gzip", "snappy", "lz4", "zstd"].index(codec)])
    assert (h.base_offset, h.partition_leader_epoch) == (base_offset, partition_leader_epoch)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (producer_id, producer_epoch, base_sequence)
    assert h.is_transactional == transactional and not h.is_control
    assert h.records_count == len(recs) == h.last_offset_delta + 1
    assert h.base_timestamp == recs[0][3]
    assert h.max_timestamp == max(r[3] for r in recs)
    # and kafka-python reads the same records from the same bytes, CRC valid
    kb, theirs_records = theirs(buf)
    assert theirs_records == expected(recs, base_offset)
    assert kb.is_transactional == transactional


@settings(max_examples=40, deadline=None)
@given(recs=records, codec=st.sampled_from(CODECS), transactional=st.booleans())
def test_kafka_python_batches_decode_with_ours(recs, codec, transactional):
    kb = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=transactional,
        producer_id=42 if transactional else -1, producer_epoch=3 if transactional else -1,
        base_sequence=7 if transactional else -1, batch_size=1 << 30,
    )
    for i, (k, v, h, ts) in enumerate(recs):
        assert kb.append(i, ts, k, v, h) is not None
    buf = bytes(kb.build())
    batch = decode_batch(buf)
    assert ours(batch) == expected(recs)
    assert batch.header.is_transactional == transactional


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compressed_batches_decode_with_ours(codec):
    # compressible values, so kafka-python really compresses instead of falling back to none
    recs = [(b"user-%d" % (i % 7), b'{"id": %d, "status": "ok", "pad": "%s"}' % (i, b"x" * 50), [], 1000 + i) for i in range(500)]
    kb = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 30)
    for i, (k, v, h, ts) in enumerate(recs):
        kb.append(i, ts, k, v, h)
    buf = bytes(kb.build())
    assert parse_header(buf).compression == codec
    assert ours(decode_batch(buf)) == expected(recs)


@pytest.mark.parametrize("codec", CODECS)
def test_our_records_section_is_byte_identical_to_kafka_python(codec):
    recs = [(b"k%d" % i, b"v" * (i * 13 % 300), [("trace", b"abc")] if i % 3 else [], 5_000 + i * 7) for i in range(300)]
    kb = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1 << 30)
    for i, (k, v, h, ts) in enumerate(recs):
        kb.append(i, ts, k, v, h)
    reference = bytes(kb.build())
    # kafka-python stamps partition_leader_epoch 0 where a producer leaves it to the broker
    buf = encode_batch(recs, partition_leader_epoch=0, compression=codec)
    if codec == 0:
        assert buf == reference
    else:
        h = parse_header(buf)
        assert decompress(codec, buf[HEADER_SIZE:]) == reference[HEADER_SIZE:]
        # the header differs from the uncompressed one only in codec bits, length and CRC
        assert h.attributes == codec
        assert buf[21 + 2 : HEADER_SIZE] == reference[21 + 2 : HEADER_SIZE]


def test_attribute_bits():
    recs = [(None, b"x", None, 1)]
    for transactional in (False, True):
        for control in (False, True):
            for ts_type in ("CreateTime", "LogAppendTime"):
                for codec in CODECS:
                    h = parse_header(encode_batch(recs, producer_id=1, producer_epoch=0, transactional=transactional,
                                                  control=control, timestamp_type=ts_type, compression=codec))
                    want = codec | (TRANSACTIONAL_BIT if transactional else 0) | (CONTROL_BIT if control else 0)
                    want |= TIMESTAMP_TYPE_BIT if ts_type == "LogAppendTime" else 0
                    assert h.attributes == want


def test_log_append_time_gives_every_record_the_batch_max_timestamp():
    recs = [(None, b"a", None, 100), (None, b"b", None, 50)]
    buf = encode_batch(recs, timestamp_type=LOG_APPEND_TIME, log_append_time_ms=9_999)
    batch = decode_batch(buf)
    assert batch.header.timestamp_type == 1
    assert batch.header.max_timestamp == 9_999
    assert [r.timestamp for r in batch.records] == [9_999, 9_999]
    kb, theirs_records = theirs(buf)
    assert kb.timestamp_type == 1 and [r[1] for r in theirs_records] == [9_999, 9_999]
    # CreateTime keeps each record's own timestamp
    assert [r.timestamp for r in decode_batch(encode_batch(recs)).records] == [100, 50]


def test_bad_encode_options_name_the_fix():
    recs = [(None, b"x", None, 1)]
    with pytest.raises(ValueError, match="compression.type 'brotli'"):
        encode_batch(recs, compression="brotli")
    with pytest.raises(UnknownCodecError, match="codec id 7"):
        encode_batch(recs, compression=7)
    with pytest.raises(ValueError, match="CreateTime"):
        encode_batch(recs, timestamp_type="WallClock")
    with pytest.raises(ValueError, match="at least one record"):
        encode_batch([])
    with pytest.raises(ValueError, match="out of range"):
        encode_batch(recs, producer_epoch=1 << 20)


def _reseal(buf: bytearray) -> bytes:
    """Recompute the CRC after editing the CRC-covered bytes, so other checks are reached."""
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[21:])))
    return bytes(buf)


def test_unknown_codec_in_attributes_raises_with_position():
    good = encode_batch([(None, b"x", None, 1)])
    bad = bytearray(good)
    struct.pack_into(">h", bad, 21, 5)
    buf = b"\x00" * 3 + _reseal(bad)
    with pytest.raises(UnknownCodecError, match="codec id 5.*at byte 3"):
        decode_batch(buf, 3)


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_garbage_compressed_section_raises_corrupt_record(codec):
    buf = bytearray(encode_batch([(None, b"x" * 100, None, 1)] * 5, compression=codec))
    buf[HEADER_SIZE + 4 : HEADER_SIZE + 12] = b"\xff" * 8
    with pytest.raises(CorruptRecordError, match=f"{CODEC_NAMES[codec]}.*at byte 0"):
        decode_batch(_reseal(buf))


def test_records_count_that_disagrees_with_the_section_is_corrupt():
    buf = bytearray(encode_batch([(None, b"x", None, 1)] * 3))
    struct.pack_into(">i", buf, 57, 2)
    with pytest.raises(CorruptRecordError, match="remain after the last record"):
        decode_batch(_reseal(buf))
    struct.pack_into(">i", buf, 57, 4)
    with pytest.raises(CorruptRecordError, match="malformed"):
        decode_batch(_reseal(buf))


def test_record_length_that_disagrees_with_its_fields_is_corrupt():
    buf = bytearray(encode_batch([(b"k", b"value", None, 1)]))
    buf[HEADER_SIZE] += 2  # zig-zag: +1 on the length
    with pytest.raises(CorruptRecordError, match="record 0"):
        decode_batch(_reseal(buf))


def test_large_deltas_and_lengths_use_multi_byte_varints():
    recs = [(b"k" * 20_000, b"v" * 70_000, [("h" * 200, b"z" * 20_000)], 0)]
    recs += [(None, b"%d" % i, None, -(2**40) + i) for i in range(20_000)]
    builder = BatchBuilder(1 << 30)
    for r in recs:
        assert builder.append(*r)
    buf = builder.build(compression="lz4")
    assert ours(decode_batch(buf)) == expected(recs)
    assert theirs(buf)[1] == expected(recs)


def test_broker_stamps_log_append_time_in_place():
    from kafkalab.records import validate_batch
    from kafkalab.records.header import set_log_append_time

    recs = [(None, b"a", None, 100), (None, b"b", None, 50)]
    buf = bytearray(b"\x00" * 5 + encode_batch(recs, compression="gzip"))
    set_log_append_time(buf, 77_777, 5)
    h = validate_batch(buf, 5)  # CRC was recomputed
    assert h.timestamp_type == 1 and h.compression == 1 and h.max_timestamp == 77_777
    assert [r.timestamp for r in decode_batch(buf, 5).records] == [77_777, 77_777]
