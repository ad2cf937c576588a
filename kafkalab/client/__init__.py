"""Producer, Consumer (and later Admin): confluent-kafka's API over the lab cluster.

The names below load their module on first use: `kafkalab.client.assignors` or a message
constant does not pull in the producer and consumer machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kafkalab.client.consumer import Consumer
    from kafkalab.client.context import ClientContext
    from kafkalab.client.message import (
        OFFSET_BEGINNING,
        OFFSET_END,
        OFFSET_INVALID,
        OFFSET_STORED,
        TIMESTAMP_CREATE_TIME,
        TIMESTAMP_LOG_APPEND_TIME,
        TIMESTAMP_NOT_AVAILABLE,
        Message,
        TopicPartition,
    )
    from kafkalab.client.producer import KafkaException, Producer, TxnError
    from kafkalab.protocol.errors import KafkaError

_WHERE = {
    "Consumer": "kafkalab.client.consumer",
    "ClientContext": "kafkalab.client.context",
    "OFFSET_BEGINNING": "kafkalab.client.message",
    "OFFSET_END": "kafkalab.client.message",
    "OFFSET_INVALID": "kafkalab.client.message",
    "OFFSET_STORED": "kafkalab.client.message",
    "TIMESTAMP_CREATE_TIME": "kafkalab.client.message",
    "TIMESTAMP_LOG_APPEND_TIME": "kafkalab.client.message",
    "TIMESTAMP_NOT_AVAILABLE": "kafkalab.client.message",
    "Message": "kafkalab.client.message",
    "TopicPartition": "kafkalab.client.message",
    "KafkaException": "kafkalab.client.producer",
    "Producer": "kafkalab.client.producer",
    "TxnError": "kafkalab.client.producer",
    "KafkaError": "kafkalab.protocol.errors",
}

__all__ = [
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "OFFSET_INVALID",
    "OFFSET_STORED",
    "TIMESTAMP_CREATE_TIME",
    "TIMESTAMP_LOG_APPEND_TIME",
    "TIMESTAMP_NOT_AVAILABLE",
    "ClientContext",
    "Consumer",
    "KafkaError",
    "KafkaException",
    "Message",
    "Producer",
    "TopicPartition",
    "TxnError",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'kafkalab.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
