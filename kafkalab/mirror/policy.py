"""Which topics a flow copies and what they are called on the other side: MM2's
DefaultReplicationPolicy ("<source alias>.<topic>") and the rule that keeps active-active
flows from looping."""

from __future__ import annotations

SEPARATOR = "."
HEARTBEATS_TOPIC = "heartbeats"


def remote_topic(source: str, topic: str) -> str:
    """The name `topic` of cluster `source` gets on the target: west + orders -> west.orders."""
    return f"{source}{SEPARATOR}{topic}"


def topic_source(topic: str) -> str | None:
    """The cluster a remote topic came from (west.orders -> west), None for a local topic."""
    source, sep, _ = topic.partition(SEPARATOR)
    return source if sep else None


def offset_syncs_topic(target: str) -> str:
    """On the source cluster: where the flow to `target` records (upstream, downstream) pairs."""
    return f"mm2-offset-syncs.{target}.internal"


def checkpoints_topic(source: str) -> str:
    """On the target cluster: translated group offsets of the flow from `source`."""
    return f"{source}.checkpoints.internal"


def offsets_topic(source: str) -> str:
    """On the target cluster: how far the flow from `source` has copied (Connect's offset
    storage, mm2-offsets.<source>.internal), so a restarted replicator resumes."""
    return f"mm2-offsets.{source}.internal"


def is_internal(topic: str) -> bool:
    return (topic.startswith("__") or topic.startswith("mm2-") or topic.endswith(".internal")
            or topic == HEARTBEATS_TOPIC)


def topics_to_replicate(source: str, target: str, topics: list[str], existing: set[str]) -> list[str]:
    """Check a flow's topic list; raise ValueError naming the fix for one it must not copy."""
    if source == target:
        raise ValueError(f"source and target are the same cluster ({source!r}): mirror between two "
                         "clusters, e.g. Cluster(name='west') and Cluster(name='east')")
    if not topics:
        raise ValueError("topics=[] copies nothing: name the source topics to mirror, e.g. topics=['orders']")
    for topic in topics:
        origin = topic_source(topic)
        if origin == target:
            raise ValueError(f"{topic!r} came from {target!r}: mirroring it back would loop. "
                             f"Mirror the original topic {topic[len(origin) + 1:]!r} in {target!r} instead")
        if is_internal(topic):
            raise ValueError(f"{topic!r} is an internal topic: MirrorMaker copies only application topics")
        if topic not in existing:
            raise ValueError(f"topic {topic!r} does not exist on {source!r} (it has {sorted(existing)}): "
                             f"create it first with {source}.create_topic({topic!r}, partitions=...)")
    return list(topics)
