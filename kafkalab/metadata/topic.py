"""The metadata topic's name and the log config every copy of it uses."""

from __future__ import annotations

from typing import Any

METADATA_TOPIC = "__cluster_metadata"
# The metadata log keeps everything: brokers replay it from offset 0 when they start.
METADATA_LOG_CONFIG: dict[str, Any] = {
    "segment.bytes": 8 << 20, "retention.ms": -1, "retention.bytes": -1, "cleanup.policy": ["delete"],
    "index.interval.bytes": 4096, "segment.index.bytes": 1 << 20, "segment.ms": 1 << 62,
    "max.message.bytes": 8 << 20, "message.timestamp.type": "CreateTime"}
