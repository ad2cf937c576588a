"""Kafka's consumer protocol bytes: what a classic group's members put in JoinGroup and SyncGroup.

The broker treats a member's protocol metadata as opaque bytes, except to show it (which topics
a member subscribes to, which partitions it was given), so the format lives here, with the
wire format, and not with the assignors that produce it: a broker never imports the client.

Both are an int16 version, then ConsumerProtocolSubscription (topics, user data, owned
partitions, generation) or ConsumerProtocolAssignment (partitions by topic, user data). We
write version 3 and read any version: a newer one only appends fields, so it is read with the
newest schema kio has. The kio schemas load on first use.
"""

from __future__ import annotations

import importlib
import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from kafkalab.protocol.bounds import check_bounds

__all__ = [
    "TP",
    "Subscription",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
]

TP = tuple[str, int]

_VERSION = struct.Struct(">h")
_WRITTEN_VERSION = 3  # the newest kio has: owned partitions, generation, rack


@dataclass
class Subscription:
    """What a member tells the leader: its topics and (cooperative, sticky) what it owns now."""

    topics: list[str]
    owned_partitions: list[TP] = field(default_factory=list)
    generation: int = -1
    user_data: bytes | None = None


@cache
def _schema(kind: str, version: int) -> Any:
    """The kio module of ConsumerProtocol{Subscription,Assignment} for `version` (capped at 3)."""
    return importlib.import_module(f"kio.schema.consumer_protocol_{kind}.v{min(version, 3)}.data")


@cache
def _codec(kind: str, version: int, writer: bool) -> Any:
    from kio.serial import entity_reader, entity_writer

    cls = _entity(kind, version)
    return entity_writer(cls) if writer else entity_reader(cls)


def _entity(kind: str, version: int) -> Any:
    mod = _schema(kind, version)
    return mod.ConsumerProtocolSubscription if kind == "subscription" else mod.ConsumerProtocolAssignment


def _grouped(tps: Sequence[TP]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for t, p in sorted(tps):
        by_topic.setdefault(t, []).append(p)
    return by_topic


def _encode(kind: str, body: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(_VERSION.pack(_WRITTEN_VERSION))
    _codec(kind, _WRITTEN_VERSION, True)(buf, body)
    return buf.getvalue()


def _decode(kind: str, data: bytes) -> Any:
    (version,) = _VERSION.unpack_from(data, 0)
    view = memoryview(bytes(data))[2:]
    check_bounds(_entity(kind, version), view)  # group members' bytes reach the broker
    body, _ = _codec(kind, version, False)(view, 0)
    return body


def encode_subscription(sub: Subscription) -> bytes:
    v3 = _schema("subscription", _WRITTEN_VERSION)
    return _encode("subscription", v3.ConsumerProtocolSubscription(
        topics=tuple(sorted(sub.topics)), user_data=sub.user_data,
        owned_partitions=tuple(v3.TopicPartition(topic=t, partitions=tuple(ps))
                               for t, ps in _grouped(sub.owned_partitions).items()),
        generation_id=sub.generation))


def decode_subscription(data: bytes) -> Subscription:
    body = _decode("subscription", data)
    owned = [(str(tp.topic), int(p)) for tp in getattr(body, "owned_partitions", ()) for p in tp.partitions]
    return Subscription([str(t) for t in body.topics], owned, int(getattr(body, "generation_id", -1)),
                        body.user_data)


def encode_assignment(tps: Sequence[TP], user_data: bytes | None = None) -> bytes:
    v3 = _schema("assignment", _WRITTEN_VERSION)
    return _encode("assignment", v3.ConsumerProtocolAssignment(
        assigned_partitions=tuple(v3.TopicPartition(topic=t, partitions=tuple(ps))
                                  for t, ps in _grouped(tps).items()), user_data=user_data))


def decode_assignment(data: bytes | None) -> list[TP]:
    if not data:
        return []
    body = _decode("assignment", data)
    return sorted((str(tp.topic), int(p)) for tp in body.assigned_partitions for p in tp.partitions)
