"""kafkalab: learn how Apache Kafka really works by running and breaking a real cluster.

`from kafkalab import Cluster, TopicPartition` — imports are lazy so that broker processes
never pay for pandas or the client code.
"""

from typing import Any

__all__ = ["Cluster", "MirrorMaker", "TopicPartition"]


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from kafkalab.cluster import Cluster
        return Cluster
    if name == "MirrorMaker":
        from kafkalab.mirror import MirrorMaker
        return MirrorMaker
    if name == "TopicPartition":
        from kafkalab.client import TopicPartition
        return TopicPartition
    raise AttributeError(f"module 'kafkalab' has no attribute {name!r}")
