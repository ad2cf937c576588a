"""Lab 08 (Performance): each checker accepts a right answer, waits on an unfinished stub and
gives a specific hint on typical wrong answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab08_checks as l08  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- Exercise 1: produce requests per second -----------------------------------------------

def test_requests_per_second_right():
    assert l08.check_requests_per_second(l08.requests_per_second_reference).ok is True

    def solution(rate, linger_ms, batch_size, record_bytes):
        per_batch = min(max(1, int(rate * linger_ms / 1000)), max(1, batch_size // record_bytes))
        return rate / per_batch
    assert l08.check_requests_per_second(solution).ok is True


def test_requests_per_second_reference_values():
    assert l08.requests_per_second_reference(1000, 0, 16384, 100) == 1000
    assert l08.requests_per_second_reference(1000, 10, 16384, 100) == 100
    assert l08.requests_per_second_reference(100_000, 5, 16384, 100) == pytest.approx(100_000 / 163)
    assert l08.requests_per_second_reference(3000, 5, 1000, 4000) == 3000


def test_requests_per_second_unfinished():
    fb = l08.check_requests_per_second(_unfinished)
    assert fb.ok is None and "Not answered" in fb.message


@pytest.mark.parametrize("fn, hint", [
    # records per batch instead of requests per second
    (lambda r, lg, b, s: min(max(1, int(r * lg / 1000)), max(1, b // s)), "records per batch"),
    # milliseconds taken as seconds
    (lambda r, lg, b, s: r / min(max(1, r * lg), max(1, b // s)), "milliseconds"),
    # no batch.size cap
    (lambda r, lg, b, s: r / max(1, int(r * lg / 1000)), "as soon as it is full"),
    # fractional records
    (lambda r, lg, b, s: r / min(max(1, r * lg / 1000), max(1, b // s)), "whole records"),
    # no "at least one record": divides by zero at linger.ms=0
    (lambda r, lg, b, s: r / min(int(r * lg / 1000), b // s), "at least the record that opened it"),
    # batches always full
    (lambda r, lg, b, s: r / max(1, b // s), "do not wait until they are full"),
    (lambda r, lg, b, s: "many", "number of requests"),
    (lambda r, lg, b, s: 42.0, "requests per second = rate"),
])
def test_requests_per_second_wrong(fn, hint):
    fb = l08.check_requests_per_second(fn)
    assert fb.ok is False and hint in fb.message


# -- Exercise 2: transactions bench row --------------------------------------------------

def test_txn_figures_right():
    assert l08.check_txn_figures(l08.txn_figures_reference).ok is True
    assert l08.check_txn_figures(lambda row: [row["records"] / row["seconds"],
                                              1000 * row["seconds"] / row["transactions"]]).ok is True


def test_txn_figures_unfinished():
    assert l08.check_txn_figures(_unfinished).ok is None


@pytest.mark.parametrize("fn, hint", [
    (lambda row: (row["records"] / row["seconds"], row["seconds"] / row["transactions"]), "multiply by 1000"),
    (lambda row: (row["records"] / row["seconds"], 1000 * row["seconds"] / row["records"]), "per record"),
    (lambda row: (row["seconds"] / row["records"], 1000 * row["seconds"] / row["transactions"]), "seconds per record"),
    (lambda row: (1000 * row["seconds"] / row["transactions"], row["records"] / row["seconds"]), "swapped"),
    (lambda row: (row["transactions"] / row["seconds"], 1000 * row["seconds"] / row["transactions"]),
     "transactions per second"),
    (lambda row: (row["records"] / row["seconds"], 1000 * row["seconds"] / row["records_per_txn"]),
     "not by the records in each one"),
    (lambda row: row["records"] / row["seconds"], "two numbers"),
    (lambda row: (row["records"] / row["seconds"], 1.0), "seconds x 1000 / transactions"),
])
def test_txn_figures_wrong(fn, hint):
    fb = l08.check_txn_figures(fn)
    assert fb.ok is False and hint in fb.message


# -- Exercise 3: pick the settings ---------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    {"linger.ms": 20, "batch.size": 262144, "compression.type": "zstd"},
    {"acks": "all", "linger.ms": 10, "batch.size": 65536, "compression.type": "lz4",
     "enable.idempotence": True},
    {"acks": -1, "linger.ms": 5, "batch.size": 32768, "compression.type": "snappy"},
    {"linger.ms": 50, "batch.size": 1_048_576, "compression.type": "gzip"},
])
def test_settings_right(cfg):
    fb = l08.check_settings(cfg)
    assert fb.ok is True, fb.message
    assert "requests/s" in fb.message


def test_settings_notes_on_codecs():
    assert "zstd" in l08.check_settings({"linger.ms": 20, "batch.size": 262144,
                                         "compression.type": "gzip"}).message


def test_settings_unanswered():
    assert l08.check_settings(None).ok is None


@pytest.mark.parametrize("cfg, hint", [
    ({}, "batch.size"),                                                    # defaults: 16 KiB cuts a 5 ms linger
    ({"linger.ms": 20, "batch.size": 262144}, "compression.type='none'"),
    ({"acks": "1", "linger.ms": 20, "batch.size": 262144, "compression.type": "lz4"}, "acks=all"),
    ({"acks": 0, "linger.ms": 20, "batch.size": 262144, "compression.type": "lz4"}, "survive a broker crash"),
    ({"linger.ms": 200, "batch.size": 262144, "compression.type": "lz4"}, "budget"),
    ({"linger.ms": 0, "batch.size": 262144, "compression.type": "lz4"}, "latency budget"),
    ({"linger.ms": 20, "batch.size": 16384, "compression.type": "lz4"}, "linger.ms does nothing"),
    ({"linger.ms": 20, "batch.size": 8 << 20, "compression.type": "lz4"}, "max.request.size"),
    ({"linger.ms": 20, "batch.size": 262144, "compression.type": "brotli"}, "choose one of"),
    ({"linger.ms": 20, "batch.size": 262144, "compression.type": "lz4", "enable.idempotence": False},
     "twice"),
    ({"linger": 20}, "unknown"),
    ({"linger.ms": "soon", "batch.size": 262144}, "numbers"),
    ("fast", "dict"),
])
def test_settings_wrong(cfg, hint):
    fb = l08.check_settings(cfg)
    assert fb.ok is False and hint in fb.message
