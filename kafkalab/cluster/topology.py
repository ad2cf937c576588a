"""A cluster's shape: which brokers and controllers it has, their node names, ports and endpoints."""

from __future__ import annotations

import os
from typing import Any

from kafkalab import ports
from kafkalab.errors import KafkaLabError
from kafkalab.nodes import CONTROLLER_NODE, SINGLE_CONTROLLER_ID, broker_node, controller_node


class Topology:
    """Brokers 1..N and one controller, or controllers 1..M forming a KRaft quorum (M > 1)."""

    def __init__(self, brokers: int, controllers: int, name: str | None):
        self.num_brokers, self.num_controllers, self.name = brokers, controllers, name
        self.controller_port = 0
        self.broker_ports: dict[int, tuple[int, int]] = {}  # broker -> (lab port, Kafka port)
        self.controller_ports: dict[int, int] = {}

    def allocate_ports(self) -> None:
        self.controller_port = ports.free_port()
        self.broker_ports = {b: (ports.free_port(), ports.free_port()) for b in self.broker_ids}
        self.controller_ports = ({c: ports.free_port() for c in self.controller_ids} if self.quorum
                                 else {SINGLE_CONTROLLER_ID: self.controller_port})

    def process_plan(self, data_dir: str, wiring: dict[str, Any],
                     raft: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(node, role, args) of every controller and broker, controllers first. `wiring`: what
        every process gets (config, fault and metrics endpoints); `raft`: a quorum voter's timeouts."""
        plan: list[tuple[str, str, dict[str, Any]]] = []
        # Every controller is a Raft voter: a single controller is a quorum of one (id 0,
        # node "controller"), so one process role serves both shapes.
        for c in self.controller_ports:
            node = controller_node(c)
            plan.append((node, "controller", dict(
                node_id=c, voters=self.voters, port=self.controller_ports[c],
                data_dir=os.path.join(data_dir, node), raft=raft, **wiring)))
        for b in self.broker_ids:
            zmq_port, kafka_port = self.broker_ports[b]
            plan.append((broker_node(b), "broker", dict(
                broker_id=b, port=zmq_port, kafka_port=kafka_port,
                data_dir=os.path.join(data_dir, broker_node(b)), controller_endpoints=self.voters, **wiring)))
        return plan

    @property
    def broker_ids(self) -> list[int]:
        return list(range(1, self.num_brokers + 1))

    @property
    def quorum(self) -> bool:
        return self.num_controllers > 1

    @property
    def controller_ids(self) -> list[int]:
        return list(range(1, self.num_controllers + 1)) if self.quorum else []

    @property
    def controller_nodes(self) -> list[str]:
        return [controller_node(c) for c in self.controller_ids] if self.quorum else [CONTROLLER_NODE]

    @property
    def controller_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.controller_port}"

    @property
    def voters(self) -> dict[int, str]:
        """Every controller process by id: one voter (id 0, node "controller") or a quorum."""
        return {c: f"tcp://127.0.0.1:{p}" for c, p in self.controller_ports.items()}

    @property
    def controller_endpoints(self) -> dict[int, str]:
        return {c: f"tcp://127.0.0.1:{self.controller_ports[c]}" for c in self.controller_ids}

    @property
    def broker_endpoints(self) -> dict[int, str]:
        return {b: f"tcp://127.0.0.1:{self.broker_ports[b][0]}" for b in self.broker_ids}

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.broker_ports[b][1]}" for b in self.broker_ids)

    def node_label(self, node: str) -> str:
        """A node's name as views show it: "west/broker-1" for a named cluster."""
        return f"{self.name}/{node}" if self.name else node

    def check_broker(self, broker_id: int) -> None:
        if broker_id not in self.broker_ids:
            raise KafkaLabError(f"there is no broker {broker_id!r}: this cluster has brokers {self.broker_ids}")

    def check_controller(self, controller_id: int) -> None:
        if not self.quorum:
            raise KafkaLabError("this cluster has a single controller; start it with "
                                "Cluster(controllers=3) to kill, pause or restart controllers")
        if controller_id not in self.controller_ids:
            raise KafkaLabError(f"there is no controller {controller_id!r}: this cluster has "
                                f"controllers {self.controller_ids}")
