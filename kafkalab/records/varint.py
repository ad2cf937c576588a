"""Zig-zag varints as Kafka's records use them (protobuf encoding, 64-bit range)."""

from __future__ import annotations


def write_varint(out: bytearray, value: int) -> None:
    v = (value << 1) ^ (value >> 63)  # zig-zag
    v &= 0xFFFFFFFFFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Return (value, position after it)."""
    shift = 0
    result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    return (result >> 1) ^ -(result & 1), pos


def varint_size(value: int) -> int:
    """Bytes the zig-zag varint of `value` takes."""
    v = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def varint_bytes(value: int) -> bytes:
    v = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    if v < 0x200000:  # up to three bytes: the common case past the lookup table
        if v < 0x80:
            return bytes((v,))
        if v < 0x4000:
            return bytes((v & 0x7F | 0x80, v >> 7))
        return bytes((v & 0x7F | 0x80, (v >> 7) & 0x7F | 0x80, v >> 14))
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


# Precomputed encodings of the small non-negative ints a batch is full of (offset deltas,
# lengths, timestamp deltas): a tuple lookup is several times faster than the loop above.
# Every process that handles records holds them (and the builder's tables made from them), so
# they stop at 1,024: ~35 KB each (16,384 cost ~0.7 MB each in every broker).
SMALL_VARINT_LIMIT = 1 << 10
SMALL_VARINTS: tuple[bytes, ...] = tuple(varint_bytes(n) for n in range(SMALL_VARINT_LIMIT))
