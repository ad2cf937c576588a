"""Which main each lab process runs: the table of roles, above the roles themselves.

The cluster's supervisor spawns `run_role(role, ...)`; the role's package is imported only in
the process that plays it (a broker never loads the registry). Nothing below imports this.
"""

from __future__ import annotations

import sys
from typing import Any

ROLES = ("controller", "broker", "schema-registry")


def run_role(role: str, error_file: str | None = None, **kwargs: Any) -> None:
    """Entry point of every lab process. Kept import-light: it runs before anything else.

    A failure is also written to `error_file`, so the notebook can say why a process died
    (a port taken, a data dir it cannot write) instead of only that it did. (SIGINT is already
    ignored: kafkalab/process.py's BOOT does it first thing.)"""
    try:
        _run_role(role, **kwargs)
    except Exception as e:
        if error_file:
            try:
                with open(error_file, "w") as f:
                    f.write(f"{type(e).__name__}: {e}\n")
            except OSError:
                pass
        raise


def _run_role(role: str, **kwargs: Any) -> None:
    # (hypothesis and the dependencies' other import extras: process.skip_import_extras, first)
    if role in ("controller", "broker"):
        # Both speak plaintext only (the lab has no TLS listener): should anything import asyncio,
        # which imports ssl when it can, ~4 MB of libssl/libcrypto would come for nothing.
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    if role == "controller":
        from kafkalab.controller.server import controller_main
        controller_main(**kwargs)
    elif role == "broker":
        from kafkalab.broker.server import broker_main
        broker_main(**kwargs)
    elif role == "schema-registry":
        from kafkalab.registry.server import registry_main
        registry_main(**kwargs)
    else:
        raise ValueError(f"unknown process role {role!r}: one of {ROLES}")
