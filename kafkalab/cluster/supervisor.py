"""The cluster's processes: each started in its role, its state known, signalled (kill, stop,
pause, resume), and all of them ended on close."""

from __future__ import annotations

import os
import signal
from typing import Any

from kafkalab.cluster.events import EventLog
from kafkalab.errors import KafkaLabError
from kafkalab.process import LabProcess, spawner
from kafkalab.roles import run_role
from kafkalab.transport.faults import FaultTable


class Supervisor:
    """Node name -> process, the state the cluster set for it, and what started it (to restart)."""

    def __init__(self, data_dir: str, faults: FaultTable, events: EventLog):
        self.data_dir, self.faults, self.events = data_dir, faults, events
        self.procs: dict[str, LabProcess] = {}
        self.states: dict[str, str] = {}
        self.args: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, str] = {}

    def error_file(self, node: str) -> str:
        return os.path.join(self.data_dir, f"{node}.error")

    def start(self, node: str, role: str, args: dict[str, Any]) -> None:
        """Spawn `node` playing `role`; restart() spawns it again with the same args."""
        self.roles[node], self.args[node] = role, args
        self.restart(node)

    def restart(self, node: str) -> None:
        error_file = self.error_file(node)
        if os.path.exists(error_file):
            os.unlink(error_file)
        proc = spawner().spawn(run_role, node, role=self.roles[node], parent_pid=os.getpid(),
                               error_file=error_file, faults_json=self.faults.to_json(), **self.args[node])
        self.procs[node] = proc
        self.states[node] = "running"
        self.events.process_state(node, "starting")

    def exit_reason(self, node: str) -> str:
        """Why a process that died at start-up died, as it wrote it (or where to look)."""
        if os.path.exists(self.error_file(node)):
            with open(self.error_file(node)) as f:
                return f.read().strip()
        return "see its log lines above"

    def state(self, node: str) -> str:
        state = self.states[node]
        if state in ("running", "paused") and not self.procs[node].is_alive():
            return "crashed"
        return state

    def is_alive(self, node: str) -> bool:
        return self.procs[node].is_alive()

    # Signals; `what` names the process in errors ("broker 2").
    def kill(self, node: str, what: str, restart_hint: str) -> None:
        """SIGKILL: no controlled shutdown, nothing flushed beyond what the OS already has."""
        proc = self.procs[node]
        if not proc.is_alive():
            raise KafkaLabError(f"{what} is not running (state {self.state(node)}); {restart_hint} first")
        proc.kill()
        proc.join(timeout=5)
        self._set_state(node, "killed")

    def stop(self, node: str, what: str, timeout: float) -> None:
        """SIGTERM (the process shuts down in order), SIGKILL if it has not ended in `timeout`."""
        proc = self.procs[node]
        if not proc.is_alive():
            raise KafkaLabError(f"{what} is not running; nothing to stop")
        if self.states[node] == "paused":
            os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout=timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        self._set_state(node, "stopped")

    def pause(self, node: str, what: str) -> None:
        """SIGSTOP: the process freezes mid-flight."""
        proc = self.procs[node]
        if not proc.is_alive() or self.states[node] == "paused":
            raise KafkaLabError(f"{what} is not running, cannot pause it (state {self.state(node)})")
        os.kill(proc.pid, signal.SIGSTOP)
        self._set_state(node, "paused")

    def resume(self, node: str, what: str) -> None:
        if self.states[node] != "paused":
            raise KafkaLabError(f"{what} is not paused (state {self.state(node)})")
        os.kill(self.procs[node].pid, signal.SIGCONT)
        self._set_state(node, "running")

    def _set_state(self, node: str, state: str) -> None:
        self.states[node] = state
        self.events.state_changed(node, state)

    def end_all(self, others: list[LabProcess]) -> None:
        """SIGKILL every process (and `others`: worker processes), then reap them."""
        procs = [*others, *self.procs.values()]
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.join(timeout=5)
