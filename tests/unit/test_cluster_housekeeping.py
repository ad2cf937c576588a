"""A cluster's housekeeping: ports that are free, distinct, and outside the kernel's ephemeral
range (where any outgoing connection may take one between our check and the child's bind), and
temporary data dirs that do not outlive a killed owner."""

from __future__ import annotations

import random
import socket

from kafkalab.ports import ephemeral_range as _ephemeral_range
from kafkalab.ports import free_port as _free_port


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


def test_orphaned_data_dirs_are_removed_and_live_or_foreign_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from kafkalab.cluster.data_dirs import OWNER_FILE, remove_orphaned_data_dirs
    from kafkalab.cluster.data_dirs import process_start as _process_start
    from kafkalab.cluster.data_dirs import write_owner as _write_owner

    # A process that made a data dir and died without closing its cluster (a killed kernel).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid(), open(f'/proc/{os.getpid()}/stat')"
                           ".read().rsplit(')', 1)[1].split()[19])"], capture_output=True, text=True, check=True)
    orphan = tmp_path / "kafkalab-orphan"
    (orphan / "broker-1").mkdir(parents=True)
    (orphan / OWNER_FILE).write_text(gone.stdout)
    mine = tmp_path / "kafkalab-mine"
    mine.mkdir()
    _write_owner(str(mine))
    assert (mine / OWNER_FILE).read_text().split() == [str(os.getpid()), _process_start(os.getpid())]
    foreign = tmp_path / "kafkalab-someone-elses"  # no owner file: not ours to judge
    foreign.mkdir()
    assert remove_orphaned_data_dirs(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and mine.exists() and foreign.exists()
