"""Geo-replication between two lab clusters, after Kafka's MirrorMaker 2: `MirrorMaker`
(mirror_maker.py) starts the replicator process (replicator.py) that wires the pure rules
(core.py: offset syncs, translation, checkpoints) and MM2's names (policy.py) and record
layouts (formats.py)."""

from kafkalab.mirror.mirror_maker import MirrorMaker

__all__ = ["MirrorMaker"]
