"""Every node's name: the fault table's, the ZeroMQ identity's and the metrics' one spelling.

Broker, controller, clients and the cluster all name nodes here, so a fault set on "broker-2"
in a notebook is the same node the broker process calls itself.
"""

from __future__ import annotations

CONTROLLER_NODE = "controller"
SINGLE_CONTROLLER_ID = 0  # the one voter of a single-controller cluster is named CONTROLLER_NODE


def controller_node(controller_id: int) -> str:
    """Node name of a controller: "controller" for a single controller (a quorum of one voter,
    id 0), "controller-N" for voter N of a quorum."""
    return CONTROLLER_NODE if controller_id == SINGLE_CONTROLLER_ID else f"controller-{controller_id}"


def broker_node(broker_id: int) -> str:
    """Node name of a broker."""
    return f"broker-{broker_id}"
