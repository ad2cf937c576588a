"""Every node's name: the fault table's, the ZeroMQ identity's and the metrics' one spelling.

Broker, controller, clients and the cluster all name nodes here, so a fault set on "broker-2"
in a notebook is the same node the broker process calls itself.
"""

from __future__ import annotations

CONTROLLER_NODE = "controller"


def controller_node(controller_id: int) -> str:
    """Node name of a quorum controller."""
    return f"controller-{controller_id}"


def broker_node(broker_id: int) -> str:
    """Node name of a broker."""
    return f"broker-{broker_id}"
