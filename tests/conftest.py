"""Shared fixtures. Clusters are always closed, even when a test fails."""

from __future__ import annotations

import pytest


@pytest.fixture
def cluster():
    from kafkalab import Cluster

    c = Cluster(brokers=3)
    try:
        yield c
    finally:
        c.close()
