"""Ports for a cluster's processes: free, distinct, and outside the kernel's ephemeral range
(where any outgoing connection may take one between our check and the child's bind)."""

from __future__ import annotations

import random
import socket

from kafkalab.cluster import _ephemeral_range, _free_port


def test_ports_are_free_distinct_and_below_the_ephemeral_range():
    low, _ = _ephemeral_range()
    ports = [_free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= p < low for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # still free: nobody holds it


def test_port_choice_ignores_the_labs_global_seed():
    random.seed(7)
    first = _free_port()
    random.seed(7)
    assert _free_port() != first
    random.seed(7)
    a = random.random()
    random.seed(7)
    _free_port()
    assert random.random() == a  # picking a port used none of the global generator
