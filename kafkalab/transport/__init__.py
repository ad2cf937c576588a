"""ZeroMQ RPC between lab processes, the fault-injecting network, and the event loop."""

from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import (
    Envelope,
    FaultPublisher,
    FaultSubscriber,
    RequestTimeoutError,
    RpcClient,
    RpcServer,
)

__all__ = [
    "Envelope",
    "EventLoop",
    "FaultPublisher",
    "FaultSubscriber",
    "FaultTable",
    "RequestTimeoutError",
    "RpcClient",
    "RpcServer",
]
