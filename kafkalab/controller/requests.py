"""Translating Kafka's request messages to Controller calls and back (no logic of its own).

`metadata_response` (Metadata from a MetadataImage) lives in kafkalab.metadata.responses,
shared with brokers; it is imported here for the controller's servers.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import NO_LEADER
from kafkalab.metadata.responses import metadata_response
from kafkalab.protocol.apis import schema_module

__all__ = ["alter_partition", "create_topics", "delete_topics", "metadata_fetch_response", "metadata_response"]

NO_THROTTLE = datetime.timedelta(0)


def create_topics(controller: Controller, req: Any, resp_cls: Any) -> Any:
    mod = schema_module(resp_cls)
    results = []
    for t in req.topics:
        configs = {c.name: c.value for c in t.configs}
        assignments = {int(a.partition_index): [int(b) for b in a.broker_ids] for a in t.assignments} or None
        n = int(t.num_partitions) if not assignments else len(assignments)
        rf = int(t.replication_factor) if not assignments else len(next(iter(assignments.values())))
        if req.validate_only:
            code, msg = ErrorCode.none, ""
        else:
            code, msg = controller.create_topic(str(t.name), n, rf, configs, assignments)
        topic = controller.image.topics.get(str(t.name))
        results.append(mod.CreatableTopicResult(
            name=t.name, topic_id=uuid.UUID(topic.topic_id) if topic and code == ErrorCode.none else None,
            error_code=code, error_message=msg or None, num_partitions=n if code == ErrorCode.none else -1,
            replication_factor=rf if code == ErrorCode.none else -1, configs=None))
    return resp_cls(throttle_time=NO_THROTTLE, topics=tuple(results))


def delete_topics(controller: Controller, req: Any, resp_cls: Any) -> Any:
    mod = schema_module(resp_cls)
    results = []
    for t in req.topics:
        name = t.name
        if name is None and t.topic_id is not None:
            found = controller.image.topic_by_id(str(t.topic_id))
            name = found.name if found else None
        code = controller.delete_topic(str(name)) if name else ErrorCode.unknown_topic_id
        results.append(mod.DeletableTopicResult(name=name, topic_id=t.topic_id, error_code=code,
                                                error_message=None))
    return resp_cls(throttle_time=NO_THROTTLE, responses=tuple(results))


def alter_partition(controller: Controller, req: Any, resp_cls: Any) -> Any:
    mod = schema_module(resp_cls)
    topics = []
    for t in req.topics:
        image_topic = controller.image.topic_by_id(str(t.topic_id))
        parts = []
        for p in t.partitions:
            if image_topic is None:
                code, reg = ErrorCode.unknown_topic_id, None
            else:
                code, reg = controller.alter_partition(
                    int(req.broker_id), int(req.broker_epoch), image_topic.name, int(p.partition_index),
                    int(p.leader_epoch), int(p.partition_epoch), [int(b) for b in p.new_isr])
            parts.append(mod.PartitionData(
                partition_index=p.partition_index, error_code=code,
                leader_id=reg.leader if reg else NO_LEADER, leader_epoch=reg.leader_epoch if reg else -1,
                isr=tuple(reg.isr) if reg else (), partition_epoch=reg.partition_epoch if reg else -1))
        topics.append(mod.TopicData(topic_id=t.topic_id, partitions=tuple(parts)))
    return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, topics=tuple(topics))


def metadata_fetch_response(data: bytes, log_end_offset: int, resp_cls: Any) -> Any:
    mod = schema_module(resp_cls)
    part = mod.PartitionData(partition_index=0, error_code=ErrorCode.none, high_watermark=log_end_offset,
                             last_stable_offset=log_end_offset, log_start_offset=0,
                             aborted_transactions=None, records=data)
    return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, session_id=0,
                    responses=(mod.FetchableTopicResponse(topic="__cluster_metadata", partitions=(part,)),))
