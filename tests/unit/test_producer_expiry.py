"""A batch that runs out of delivery.timeout.ms while waiting in the retry queue reports the
timeout with the broker's last error, as a batch that runs out in flight does."""

from __future__ import annotations

import pytest
from test_client_fakebroker import FakeCluster

from kafkalab.client import Producer
from kafkalab.protocol.errors import ErrorCode

pytestmark = pytest.mark.timeout(30)


def test_a_batch_expiring_in_the_retry_queue_names_the_last_broker_error():
    with FakeCluster((1,), {"t": 1}) as cluster:
        # The backoff outlasts the delivery timeout: the batch expires queued, never in flight.
        p = Producer({"linger.ms": 0, "retry.backoff.ms": 2000,
                      "request.timeout.ms": 250, "delivery.timeout.ms": 300}, cluster.context())
        try:
            cluster.produce_errors[("t", 0)].extend([ErrorCode.not_enough_replicas] * 100)
            got = []
            p.produce("t", value=b"x", partition=0, on_delivery=lambda err, msg: got.append(err))
            p.flush(10)
        finally:
            p.close(timeout=1)
    assert [e.code for e in got] == [ErrorCode.request_timed_out]
    assert "exceeds delivery.timeout.ms=300 (last error: NOT_ENOUGH_REPLICAS)" in str(got[0])
