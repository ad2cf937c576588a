"""The cluster metadata both controller and brokers hold: the `__cluster_metadata` topic, its
records, the image they build and the replay that builds it. Broker and controller depend on
this package, never on each other."""
