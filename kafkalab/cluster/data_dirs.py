"""A cluster's data dir: made for it (or checked), marked with its owner, and swept up once
that owner is gone."""

from __future__ import annotations

import os
import shutil
import tempfile

from kafkalab.errors import KafkaLabError

OWNER_FILE = ".kafkalab-owner"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None if it is gone): with the pid it
    names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def write_owner(data_dir: str) -> None:
    start = process_start(os.getpid())
    if start is not None:
        with open(os.path.join(data_dir, OWNER_FILE), "w") as f:
            f.write(f"{os.getpid()} {start}\n")


def remove_orphaned_data_dirs(tmp: str | None = None) -> list[str]:
    """Remove temporary data dirs whose owning process is gone. A kernel that is killed
    (restarted from JupyterLab, or SIGKILLed) never runs Cluster.close(); its brokers die with
    it, but its data dir would stay in /tmp for good - on Binder, disk is scarce."""
    removed = []
    root = tmp or tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith("kafkalab-")]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                pid_text, start = f.read().split()
        except (OSError, ValueError):
            continue  # not one of ours, or still being created: leave it
        if process_start(int(pid_text)) != start:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_data_dir(data_dir: str | None, name: str | None) -> str:
    """A temporary dir owned by this process (when data_dir is None), or the given one, checked."""
    if data_dir is None:
        remove_orphaned_data_dirs()
        data_dir = tempfile.mkdtemp(prefix=f"kafkalab-{name}-" if name else "kafkalab-")  # mode 0700
        write_owner(data_dir)
    else:
        try:
            os.makedirs(data_dir, exist_ok=True)
        except OSError as e:
            raise KafkaLabError(f"data_dir {data_dir!r} cannot be used ({e.strerror}): "
                                "give a writable directory, or none for a temporary one") from None
        if not os.access(data_dir, os.W_OK):
            raise KafkaLabError(f"data_dir {data_dir!r} is not writable: choose another directory")
    return os.path.abspath(data_dir)
