"""Metadata responses from a MetadataImage: what brokers and controllers answer a Metadata
request with."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12 import response as md

from kafkalab.metadata.image import NO_LEADER, MetadataImage

NO_THROTTLE = datetime.timedelta(0)


def _by_id(image: MetadataImage, topic_id: Any) -> Any:
    """The name of the topic with this id, or the id itself when no topic has it."""
    t = image.topic_by_id(str(topic_id)) if topic_id is not None else None
    return t.name if t is not None else topic_id


def metadata_response(image: MetadataImage, req: Any, resp_cls: Any = md.MetadataResponse,
                      *, controller_id: int = -1, missing: dict[str, ErrorCode] | None = None) -> Any:
    """Metadata for the requested topics (all when None) from an image."""
    brokers = tuple(md.MetadataResponseBroker(node_id=b.broker_id, host=b.host, port=b.port, rack=None)
                    for b in image.brokers.values() if not b.fenced)
    names: list[Any] = sorted(image.topics) if req.topics is None else [
        str(t.name) if t.name is not None else _by_id(image, t.topic_id) for t in req.topics]
    topics = []
    for name in names:
        if isinstance(name, uuid.UUID):  # Metadata v10+ may ask by topic id (KIP-848 clients do)
            topics.append(md.MetadataResponseTopic(error_code=ErrorCode.unknown_topic_id, name=None,
                                                   topic_id=name, is_internal=False, partitions=()))
            continue
        t = image.topics.get(name)
        if t is None:
            code = (missing or {}).get(name, ErrorCode.unknown_topic_or_partition)
            topics.append(md.MetadataResponseTopic(error_code=code, name=name, topic_id=None,
                                                   is_internal=False, partitions=()))
            continue
        parts = []
        for pid, p in sorted(t.partitions.items()):
            live = {b.broker_id for b in image.brokers.values() if not b.fenced}
            parts.append(md.MetadataResponsePartition(
                error_code=ErrorCode.none if p.leader != NO_LEADER else ErrorCode.leader_not_available,
                partition_index=pid, leader_id=p.leader, leader_epoch=p.leader_epoch,
                replica_nodes=tuple(p.replicas), isr_nodes=tuple(p.isr),
                offline_replicas=tuple(b for b in p.replicas if b not in live)))
        topics.append(md.MetadataResponseTopic(
            error_code=ErrorCode.none, name=name, topic_id=uuid.UUID(t.topic_id),
            is_internal=name.startswith("__"), partitions=tuple(parts)))
    return resp_cls(throttle_time=NO_THROTTLE, brokers=brokers, cluster_id="kafkalab",
                    controller_id=controller_id, topics=tuple(topics))
