"""BatchBuilder: the producer's size-limited batch accumulation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalab.records import HEADER_SIZE, BatchBuilder, decode_batch, encode_batch, parse_header

optional_bytes = st.none() | st.binary(max_size=200)
record = st.tuples(optional_bytes, optional_bytes, st.lists(st.tuples(st.text(max_size=8), optional_bytes), max_size=2), st.integers(0, 2**40))


@settings(max_examples=50, deadline=None)
@given(recs=st.lists(record, min_size=1, max_size=60), max_bytes=st.integers(1, 4000))
def test_batches_respect_max_bytes_and_lose_nothing(recs, max_bytes):
    batches, builder = [], BatchBuilder(max_bytes)
    for r in recs:
        before = (builder.record_count, builder.estimated_size)
        if not builder.append(*r):
            assert (builder.record_count, builder.estimated_size) == before  # rejected: nothing kept
            assert builder.record_count > 0  # the first record is never rejected
            batches.append(builder.build())
            builder = BatchBuilder(max_bytes)
            assert builder.append(*r)
    batches.append(builder.build())
    got = []
    for b in batches:
        h = parse_header(b)
        assert len(b) <= max_bytes or h.records_count == 1
        got += [(r.key, r.value, r.headers, r.timestamp) for r in decode_batch(b).records]
    assert got == [(k, v, list(h), ts) for k, v, h, ts in recs]


def test_estimated_size_is_exact_without_compression():
    builder = BatchBuilder(1 << 20)
    assert builder.estimated_size == HEADER_SIZE and builder.record_count == 0
    for i in range(300):
        builder.append(b"key-%d" % i, b"x" * i, [("h", b"1")] if i % 2 else None, 1_000 + i * 3)
        assert builder.estimated_size == len(builder.build())
    assert builder.record_count == len(builder) == 300


def test_fills_to_the_limit_exactly():
    value = b"v" * 100
    builder = BatchBuilder(16_384)
    while builder.append(None, value, None, 0):
        pass
    one_more = builder.estimated_size
    assert one_more <= 16_384
    # the rejected record would have fit only with more room than was left
    bigger = BatchBuilder(one_more + 200)
    for _ in range(builder.record_count + 1):
        assert bigger.append(None, value, None, 0)


def test_build_matches_encode_batch_and_can_be_repeated():
    recs = [(b"k", b"v" * i, None, 10 + i) for i in range(50)]
    builder = BatchBuilder(1 << 20)
    for r in recs:
        builder.append(*r)
    kwargs = dict(base_offset=7, producer_id=9, producer_epoch=1, base_sequence=100, transactional=True, compression="zstd")
    first = builder.build(**kwargs)
    assert builder.build(**kwargs) == first == encode_batch(recs, **kwargs)
    assert parse_header(first).last_sequence == 149


def test_bad_use_is_explained():
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        BatchBuilder(0)
    with pytest.raises(ValueError, match="append\\(\\) before build\\(\\)"):
        BatchBuilder(100).build()
    builder = BatchBuilder(1000)
    with pytest.raises(TypeError, match="header key must be str"):
        builder.append(None, b"x", [(b"raw", b"y")], 0)
    assert builder.record_count == 0
    builder.append(None, b"x", None, 0)
    with pytest.raises(ValueError, match="base_sequence"):
        builder.build(base_sequence=-5)


def test_headers_in_confluent_kafka_forms():
    builder = BatchBuilder(1000)
    builder.append(None, b"x", {"a": b"1", "b": "two", "c": None}, 0)
    builder.append(None, b"y", [("a", "1")], 0)
    got = [r.headers for r in decode_batch(builder.build()).records]
    assert got == [[("a", b"1"), ("b", b"two"), ("c", None)], [("a", b"1")]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(-5, 20_000)), min_size=1, max_size=120),
       st.integers(200, 40_000))
def test_append_value_is_append_with_a_null_key(recs, max_bytes):
    """The producer's fast path writes the same bytes as append(None, value, None, ts),
    says how many it added, and refuses (adding nothing) exactly when append would."""
    fast, slow = BatchBuilder(max_bytes), BatchBuilder(max_bytes)
    base = 1_700_000_000_000
    for i, (size, dt) in enumerate(recs):
        value = bytes([i % 251]) * size
        if i == 0:
            assert fast.append(None, value, None, base + dt) and slow.append(None, value, None, base + dt)
            continue
        before = fast.estimated_size
        added = fast.append_value(value, base + dt)
        ok = slow.append(None, value, None, base + dt)
        assert (added > 0) == ok
        assert fast.estimated_size - before == added
        assert fast.records_section() == slow.records_section()
    assert fast.build() == slow.build()


def test_append_value_past_the_small_varint_tables():
    """Offset deltas and timestamp deltas beyond the lookup tables go the general way."""
    fast, slow = BatchBuilder(1 << 24), BatchBuilder(1 << 24)
    for b in (fast, slow):
        b.append(None, b"v", None, 1000)
    for i in range(1, 17_000):
        ts = 1000 + (i if i < 16_500 else 40_000 + i)
        assert fast.append_value(b"v", ts) and slow.append(None, b"v", None, ts)
    assert fast.build() == slow.build()
    assert [r.offset for r in decode_batch(fast.build()).records] == list(range(17_000))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.sampled_from([0, 17, 99, 100, 300]), st.integers(0, 3),
                          st.booleans()), min_size=1, max_size=40), st.integers(2_000, 60_000))
def test_append_value_runs_of_one_shape_and_appends_between_them(runs, max_bytes):
    """Runs of records with one timestamp and value length take append_value's row (no
    encoding per record); a keyed append() between them ends the row. Byte for byte what
    append() writes, refused exactly when append() refuses."""
    fast, slow = BatchBuilder(max_bytes), BatchBuilder(max_bytes)
    base = 1_700_000_000_000
    assert fast.append(None, b"first", None, base) and slow.append(None, b"first", None, base)
    for i, (count, size, dt, keyed_after) in enumerate(runs):
        for j in range(count):
            value = bytes([(i + j) % 251]) * size
            added = fast.append_value(value, base + dt)
            assert (added > 0) == slow.append(None, value, None, base + dt)
            if not added:
                break
        if keyed_after:
            assert fast.append(b"k", b"v", None, base + dt) == slow.append(b"k", b"v", None, base + dt)
        assert fast.estimated_size == slow.estimated_size
    assert fast.build() == slow.build()


def test_appends_between_fast_ones_end_the_row():
    """Keyed records between null-key ones of one shape move the offset delta on without the
    row's size: past the one-byte offset deltas (64) the row's length would be wrong."""
    fast, slow = BatchBuilder(1 << 20), BatchBuilder(1 << 20)
    for b in (fast, slow):
        b.append(None, b"v" * 100, None, 1000)
    for i in range(200):
        if 10 <= i < 13:
            assert fast.append(b"k", b"", None, 1000) and slow.append(b"k", b"", None, 1000)
        else:
            assert fast.append_value(b"v" * 100, 1000) and slow.append(None, b"v" * 100, None, 1000)
    assert fast.build() == slow.build()


def test_append_value_row_across_offset_delta_varint_lengths():
    """One timestamp for 17,000 records: offset deltas grow from one to three varint bytes
    (at 64 and 8,192) and pass the offset-delta table (16,384); the row follows each step."""
    fast, slow = BatchBuilder(1 << 24), BatchBuilder(1 << 24)
    for b in (fast, slow):
        b.append(None, b"v", None, 1000)
    for _ in range(1, 17_000):
        assert fast.append_value(b"v", 1000) and slow.append(None, b"v", None, 1000)
    assert fast.estimated_size == slow.estimated_size == len(fast.build())
    assert fast.build() == slow.build()


def test_fast_appends_stop_at_their_limit_and_when_sealed():
    value = b"x" * 50
    b = BatchBuilder(10_000)
    assert b.append_value(value, 5) == 0 and b.record_count == 0  # the first record goes through append()
    assert b.append(None, value, None, 5)
    record = b.estimated_size - HEADER_SIZE  # 57 bytes: the value and seven of varints and flags
    b.limit_fast_appends(b.estimated_size + 3 * record + record - 1)  # room for three more, not four
    sizes = []
    while added := b.append_value(value, 5):
        sizes.append(added)
    assert sizes == [record] * 3 and b.record_count == 4
    assert b.append(None, value, None, 5)  # append() keeps to max_bytes only
    b.seal()
    before = (b.estimated_size, b.record_count, b.records_section())
    assert b.append_value(value, 5) == 0 and b.append_value(b"", 6) == 0
    assert (b.estimated_size, b.record_count, b.records_section()) == before
    assert [r.value for r in decode_batch(b.build()).records] == [value] * 5


def test_a_process_that_does_not_produce_holds_no_producer_tables():
    """The varint tables every process holds stop at 1,024 entries; append_value's offset
    deltas (16,384, and the same with attributes and a zero timestamp delta before them) are
    built by the first producer that needs them, not at import."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nsys.modules['hypothesis'] = None\nimport kafkalab.broker.server\n"
            "import kafkalab.records.builder as b, kafkalab.records.varint as v\n"
            "before = len(b._OFFSET_DELTAS)\n"
            "x = b.BatchBuilder(1000); x.append(None, b'v', None, 0); x.append_value(b'v', 0)\n"
            "print(json.dumps([len(v.SMALL_VARINTS), len(b._ATTR_TS), len(b._ATTR_TS0_OD), before,"
            " len(b._OFFSET_DELTAS), len(b._BIG_ATTR_TS0_OD)]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [1024, 1024, 1024, 0, 16_384, 16_384]
