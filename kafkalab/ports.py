"""Free loopback ports for lab processes, chosen below the kernel's ephemeral range.

Below both the cluster and the processes it wires (the schema registry's launcher picks one too).
"""

from __future__ import annotations

import random
import socket

_given_ports: set[int] = set()
_port_rng = random.Random()  # its own: a lab's random.seed() must not pick our ports, nor we its numbers


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port below the ephemeral range. A port the kernel picks (bind to 0)
    lies inside it, and between our check and the child's bind an outgoing connection of any
    process may be handed the same port as its local end: the broker then fails to start."""
    low, _ = ephemeral_range()
    candidates = range(max(1024, low - 12_000), low) if low > 3_000 else range(20_000, 30_000)
    for _ in range(200):
        port = _port_rng.choice(candidates)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    with socket.socket() as s:  # everything there is taken: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
