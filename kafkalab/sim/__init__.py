"""A whole-cluster deterministic simulator: the engine's pure cores (controller, replica manager,
partitions and logs, coordinators, producers, group members) wired over in-memory channels under
a seeded scheduler, with faults, and the cluster's invariants checked after every event.

It uses the cores and is never used by them. `kafkalab sim --seeds A-B` runs it.
"""
