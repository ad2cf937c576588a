"""ZeroMQ RPC between lab processes, the fault-injecting network, the channel that matches
responses to their requests' callbacks, and the event loop."""

from kafkalab.transport.channel import Channel
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
    "Channel",
    "Envelope",
    "EventLoop",
    "FaultPublisher",
    "FaultSubscriber",
    "FaultTable",
    "RequestTimeoutError",
    "RpcClient",
    "RpcServer",
]
