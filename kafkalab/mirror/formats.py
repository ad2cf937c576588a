"""The bytes of MM2's internal records, laid out as Kafka's Struct serialization writes them
(big-endian; a string is an int16 length then UTF-8): a Kafka tool can read them.

offset sync   key: topic, partition:int32         value: upstreamOffset:int64, offset:int64
checkpoint    key: group, topic, partition:int32  value: version:int16, upstreamOffset:int64,
                                                         offset:int64, metadata
heartbeat     key: sourceClusterAlias, targetClusterAlias   value: version:int16, timestamp:int64
"""

from __future__ import annotations

import struct

from kafkalab.mirror.core import Checkpoint, OffsetSync


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _read_str(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">h", buf, pos)
    return buf[pos + 2:pos + 2 + n].decode(), pos + 2 + n


def encode_offset_sync(sync: OffsetSync) -> tuple[bytes, bytes]:
    key = _str(sync.topic) + struct.pack(">i", sync.partition)
    return key, struct.pack(">qq", sync.upstream_offset, sync.downstream_offset)


def decode_offset_sync(key: bytes, value: bytes) -> OffsetSync:
    topic, pos = _read_str(key, 0)
    (partition,) = struct.unpack_from(">i", key, pos)
    upstream, downstream = struct.unpack(">qq", value)
    return OffsetSync(topic, partition, upstream, downstream)


def encode_checkpoint(cp: Checkpoint) -> tuple[bytes, bytes]:
    key = _str(cp.group) + _str(cp.topic) + struct.pack(">i", cp.partition)
    value = struct.pack(">hqq", 0, cp.upstream_offset, cp.downstream_offset) + _str(cp.metadata)
    return key, value


def decode_checkpoint(key: bytes, value: bytes) -> Checkpoint:
    group, pos = _read_str(key, 0)
    topic, pos = _read_str(key, pos)
    (partition,) = struct.unpack_from(">i", key, pos)
    _version, upstream, downstream = struct.unpack_from(">hqq", value, 0)
    metadata, _ = _read_str(value, 18)
    return Checkpoint(group, topic, partition, upstream, downstream, metadata)


def encode_heartbeat(source: str, target: str, timestamp_ms: int) -> tuple[bytes, bytes]:
    return _str(source) + _str(target), struct.pack(">hq", 0, timestamp_ms)


def decode_heartbeat(key: bytes, value: bytes) -> tuple[str, str, int]:
    source, pos = _read_str(key, 0)
    target, _ = _read_str(key, pos)
    _version, timestamp = struct.unpack(">hq", value)
    return source, target, timestamp
