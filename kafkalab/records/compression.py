"""Compression of a batch's records section, framed the way Kafka frames each codec.

Only the bytes after the 61-byte header are compressed; the header stays readable so a
broker can check offsets, CRC and producer state without decompressing.

Framing per codec (attributes bits 0-2):

    1 gzip    a gzip member (RFC 1952), as java.util.zip.GZIPOutputStream writes it
    2 snappy  snappy-java's "xerial" stream: a 16-byte header, then blocks of
              int32 big-endian length + raw snappy, each block <= 32 KiB uncompressed.
              Raw (unframed) snappy, as librdkafka may send, is accepted on decode.
    3 lz4     the standard LZ4 frame format with independent 64 KiB blocks and no
              content size, as Kafka's KafkaLZ4BlockOutputStream writes it
    4 zstd    a zstd frame (Kafka's default level 3)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

from kafkalab.errors import CorruptRecordError, UnknownCodecError

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4

CODEC_NAMES: dict[int, str] = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
_CODEC_IDS = {name: cid for cid, name in CODEC_NAMES.items()}

# Kafka's compression.<codec>.level defaults (KIP-390): gzip -1 (= zlib 6), zstd 3.
GZIP_DEFAULT_LEVEL = 6
ZSTD_DEFAULT_LEVEL = 3

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)  # format version 1, compatible with 1
XERIAL_BLOCK_SIZE = 32 * 1024  # snappy-java's default block size
_INT32 = struct.Struct(">i")

# The codec libraries (cramjam, lz4, zstandard) are imported by the first batch that needs
# them: most lab processes never see a compressed batch, and cramjam alone is ~1.7 MB of one.


def codec_id(compression: str | int | None) -> int:
    """Map a `compression.type` name ("none", "gzip", ...) or an attributes code to the code."""
    if compression is None:
        return NONE
    if isinstance(compression, bool):
        raise ValueError(f"compression must be a codec name or code, not {compression!r}")
    if isinstance(compression, int):
        if compression in CODEC_NAMES:
            return compression
        raise UnknownCodecError(
            f"unknown compression codec id {compression}: use 0 none, 1 gzip, 2 snappy, 3 lz4 or 4 zstd"
        )
    if isinstance(compression, str):
        cid = _CODEC_IDS.get(compression.lower())
        if cid is not None:
            return cid
    raise ValueError(
        f"unknown compression.type {compression!r}: use one of none, gzip, snappy, lz4, zstd"
    )


# --- gzip -----------------------------------------------------------------------------


def _gzip_compress(data: bytes, level: int | None) -> bytes:
    c = zlib.compressobj(GZIP_DEFAULT_LEVEL if level is None or level < 0 else level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _gzip_decompress(data: bytes) -> bytes:
    out = []
    while data:  # a gzip stream may hold several members back to back
        d = zlib.decompressobj(31)
        out.append(d.decompress(data))
        if not d.eof:
            raise ValueError("gzip stream ends before its trailer")
        data = d.unused_data
    return b"".join(out)


# --- snappy (xerial framing around raw snappy blocks) ----------------------------------


def _snappy_compress(data: bytes, level: int | None) -> bytes:
    import cramjam

    parts = [XERIAL_HEADER]
    view = memoryview(data)
    for i in range(0, len(data), XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[i : i + XERIAL_BLOCK_SIZE]))
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: bytes) -> bytes:
    import cramjam

    if not data.startswith(XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))
    # Version and compat fields are not checked: some producers write them little-endian.
    view = memoryview(data)
    pos, end = len(XERIAL_HEADER), len(data)
    out = []
    while pos < end:
        if pos + 4 > end:
            raise ValueError(f"xerial snappy block length cut off at byte {pos}")
        (n,) = _INT32.unpack_from(view, pos)
        pos += 4
        if n < 0 or pos + n > end:
            raise ValueError(f"xerial snappy block of {n} bytes at byte {pos} runs past the end")
        out.append(bytes(cramjam.snappy.decompress_raw(view[pos : pos + n])))
        pos += n
    return b"".join(out)


# --- lz4 (frame format) ------------------------------------------------------------------


def _lz4_compress(data: bytes, level: int | None) -> bytes:
    from lz4 import frame

    # Kafka's reader needs independent blocks; it has no use for a content size.
    return frame.compress(
        data,
        compression_level=0 if level is None else level,
        block_size=frame.BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )


def _lz4_decompress(data: bytes) -> bytes:
    from lz4 import frame

    return frame.decompress(data)


# --- zstd -------------------------------------------------------------------------------

_zstd_compressors: dict[int, Any] = {}  # zstandard.ZstdCompressor by level


@cache
def _zstd_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor()


def _zstd_compress(data: bytes, level: int | None) -> bytes:
    lvl = ZSTD_DEFAULT_LEVEL if level is None else level
    c = _zstd_compressors.get(lvl)
    if c is None:
        import zstandard

        c = _zstd_compressors[lvl] = zstandard.ZstdCompressor(level=lvl)
    return c.compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    # Streaming writers (zstd-jni, librdkafka) may omit the content size, and a payload
    # may hold several frames, so decode frame by frame rather than one-shot decompress().
    out = []
    while data:
        d = _zstd_decompressor().decompressobj()
        out.append(d.decompress(data))
        if not d.eof:
            raise ValueError("zstd frame ends early")
        data = d.unused_data
    return b"".join(out)


_COMPRESS: dict[int, Callable[[bytes, int | None], bytes]] = {
    GZIP: _gzip_compress,
    SNAPPY: _snappy_compress,
    LZ4: _lz4_compress,
    ZSTD: _zstd_compress,
}
_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {
    GZIP: _gzip_decompress,
    SNAPPY: _snappy_decompress,
    LZ4: _lz4_decompress,
    ZSTD: _zstd_decompress,
}


def compress(codec: int, data: bytes, level: int | None = None) -> bytes:
    """Compress a records section with `codec` (an attributes code); NONE returns it as is."""
    if codec == NONE:
        return data
    fn = _COMPRESS.get(codec)
    if fn is None:
        raise UnknownCodecError(f"unknown compression codec id {codec}: use 0-4 (none, gzip, snappy, lz4, zstd)")
    return fn(data, level)


def decompress(codec: int, data: bytes, *, position: int | None = None) -> bytes:
    """Undo `compress`. Corrupt input raises CorruptRecordError naming the codec."""
    if codec == NONE:
        return data
    fn = _DECOMPRESS.get(codec)
    if fn is None:
        raise UnknownCodecError(
            f"unknown compression codec id {codec} in batch attributes (known: 0-4)", position=position
        )
    try:
        return fn(data)
    except Exception as exc:  # each library raises its own type; report one
        raise CorruptRecordError(
            f"{CODEC_NAMES[codec]} records section does not decompress ({exc})", position=position
        ) from exc
