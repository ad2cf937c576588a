"""A worker's shared state (workloads/worker_state.py), both sides mapped in this process."""

from __future__ import annotations

import tempfile

import pytest

from kafkalab.workloads.worker_state import SIZE, STATUS_BYTES, WorkerState


@pytest.fixture
def sides():
    with tempfile.TemporaryFile() as f:
        f.truncate(SIZE)
        yield WorkerState(f.fileno()), WorkerState(f.fileno())  # (worker, notebook)


def test_the_notebook_sees_the_workers_count_and_status_and_the_worker_its_stop(sides):
    worker, notebook = sides
    assert (notebook.count, notebook.status(), worker.stop_requested()) == (0, b"", False)
    worker.add(3)
    worker.add(4)
    worker.set_status(b'{"member_id": "m-1"}')
    worker.set_status(b'{"a": 1}')  # shorter than the last: only it is read
    assert (notebook.count, notebook.status()) == (7, b'{"a": 1}')
    notebook.request_stop()
    assert worker.stop_requested()


def test_a_status_caught_mid_write_reads_as_the_last_whole_one(sides):
    worker, notebook = sides
    worker.set_status(b"whole")
    assert notebook.status() == b"whole"
    worker._words[1] += 1  # the worker stopped (SIGSTOP, SIGKILL) between its two steps
    worker._map[32:37] = b"torn!"
    assert notebook.status() == b"whole"


def test_a_status_too_long_is_refused_by_name():
    with tempfile.TemporaryFile() as f:
        f.truncate(SIZE)
        with pytest.raises(ValueError, match="at most"):
            WorkerState(f.fileno()).set_status(b"x" * (STATUS_BYTES + 1))
