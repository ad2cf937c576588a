"""Codec framing of the records section, as Kafka and its clients frame each codec."""

from __future__ import annotations

import gzip
import random
import struct

import cramjam
import lz4.frame
import pytest
import zstandard
from kafka import codec as kafka_codec

from kafkalab.errors import CorruptRecordError, UnknownCodecError
from kafkalab.records.compression import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    XERIAL_BLOCK_SIZE,
    ZSTD,
    codec_id,
    compress,
    decompress,
)

rng = random.Random(7)
DATA = b"".join(b'{"user": %d, "item": "%s"}' % (rng.randrange(1000), rng.choice([b"a", b"bb", b"ccc"]) * 9) for _ in range(5000))
THEIRS = {
    GZIP: (kafka_codec.gzip_encode, kafka_codec.gzip_decode),
    SNAPPY: (kafka_codec.snappy_encode, kafka_codec.snappy_decode),
    LZ4: (kafka_codec.lz4_encode, kafka_codec.lz4_decode),
    ZSTD: (kafka_codec.zstd_encode, kafka_codec.zstd_decode),
}


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
@pytest.mark.parametrize("data", [b"", b"a", DATA])
def test_round_trip_and_interop_with_kafka_python(codec, data):
    encode, decode = THEIRS[codec]
    packed = compress(codec, data)
    assert decompress(codec, packed) == data
    if data:
        assert len(packed) < len(data) or len(data) < 100
        assert decode(packed) == data
        assert decompress(codec, encode(data)) == data


def test_none_is_identity():
    assert compress(NONE, DATA) is DATA and decompress(NONE, DATA) is DATA


def test_snappy_is_xerial_framed_in_32k_blocks():
    packed = compress(SNAPPY, DATA)
    assert packed[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    pos, blocks = 16, []
    while pos < len(packed):
        (n,) = struct.unpack_from(">i", packed, pos)
        blocks.append(bytes(cramjam.snappy.decompress_raw(packed[pos + 4 : pos + 4 + n])))
        pos += 4 + n
    assert pos == len(packed)
    assert all(len(b) == XERIAL_BLOCK_SIZE for b in blocks[:-1]) and len(blocks) == -(-len(DATA) // XERIAL_BLOCK_SIZE)
    assert b"".join(blocks) == DATA


def test_snappy_accepts_raw_unframed_blocks():
    assert decompress(SNAPPY, bytes(cramjam.snappy.compress_raw(DATA))) == DATA


def test_lz4_frame_has_independent_blocks_and_no_content_size():
    packed = compress(LZ4, DATA)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flg, bd = packed[4], packed[5]
    assert flg >> 6 == 1  # version 01
    assert flg & 0x20  # block independence
    assert not flg & 0x08  # no content size
    assert (bd >> 4) & 0x7 == 4  # 64 KiB maximum block size


def test_gzip_and_zstd_accept_concatenated_members_and_frames():
    half = len(DATA) // 2
    assert decompress(GZIP, gzip.compress(DATA[:half]) + gzip.compress(DATA[half:])) == DATA
    streaming = zstandard.ZstdCompressor(write_content_size=False)
    assert decompress(ZSTD, streaming.compress(DATA[:half]) + streaming.compress(DATA[half:])) == DATA


def test_level_is_honoured():
    assert len(compress(ZSTD, DATA, 19)) < len(compress(ZSTD, DATA, 1))
    assert len(compress(GZIP, DATA, 9)) <= len(compress(GZIP, DATA, 1))
    assert decompress(LZ4, compress(LZ4, DATA, 12)) == DATA


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
def test_truncated_stream_is_a_corrupt_record(codec):
    packed = compress(codec, DATA)
    with pytest.raises(CorruptRecordError, match="does not decompress.*at byte 99"):
        decompress(codec, packed[: len(packed) // 2], position=99)


def test_codec_ids():
    assert [codec_id(n) for n in ("none", "GZIP", "snappy", "lz4", "zstd")] == [0, 1, 2, 3, 4]
    assert [codec_id(i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert codec_id(None) == 0
    with pytest.raises(ValueError, match="use one of none, gzip"):
        codec_id("lzma")
    with pytest.raises(UnknownCodecError, match="codec id 5"):
        codec_id(5)
    with pytest.raises(ValueError):
        codec_id(True)
    with pytest.raises(UnknownCodecError, match="codec id 6.*at byte 4"):
        decompress(6, b"x", position=4)
    with pytest.raises(UnknownCodecError, match="codec id 7"):
        compress(7, b"x")
    assert lz4.frame.decompress(compress(LZ4, DATA)) == DATA
