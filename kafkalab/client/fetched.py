"""From a partition's fetched bytes to the Messages an application sees. Pure.

A Fetch response carries whole batches, and the first may start before the offset asked for
(the broker sends from the batch boundary): records below the fetch offset are skipped.
Control batches (transaction markers) never surface. With read_committed, the broker also
lists the aborted transactions overlapping the fetched range as (producer_id, first_offset);
a batch of such a producer after that offset is dropped until the producer's ABORT marker.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from kafkalab.client.message import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Message
from kafkalab.records import RecordBatch, decode_batch, iter_batches
from kafkalab.records.control import parse_control_record

_KIND_ABORT = "abort"


def filter_committed(batches: Iterable[RecordBatch],
                     aborted_transactions: Iterable[tuple[int, int]] | None) -> Iterator[RecordBatch]:
    """The batches a read_committed consumer returns, control batches removed.

    `aborted_transactions`: (producer_id, first_offset) of each aborted transaction whose
    records may be in `batches`, as the broker's Fetch response lists them.
    """
    pending = [(first, pid) for pid, first in (aborted_transactions or ())]
    heapq.heapify(pending)
    aborting: set[int] = set()
    for batch in batches:
        h = batch.header
        if h.is_transactional:
            # Every aborted transaction starting at or before this batch is now open.
            while pending and pending[0][0] <= h.last_offset:
                aborting.add(heapq.heappop(pending)[1])
        if h.is_control:
            if batch.records and h.producer_id in aborting:
                kind, _ = parse_control_record(batch.records[0])
                if kind == _KIND_ABORT:
                    aborting.discard(h.producer_id)
            continue
        if h.is_transactional and h.producer_id in aborting:
            continue
        yield batch


def without_control(batches: Iterable[RecordBatch]) -> Iterator[RecordBatch]:
    """read_uncommitted: everything but the transaction markers."""
    return (b for b in batches if not b.header.is_control)


def decode_fetched(records: bytes | None, *, check_crcs: bool = True) -> tuple[list[RecordBatch], int]:
    """Decode every whole batch; return them and the offset after the last one (-1 if none).

    A partial batch at the end (the broker cut the response at max bytes) is left for the
    next fetch.
    """
    if not records:
        return [], -1
    out: list[RecordBatch] = []
    next_offset = -1
    for pos, h in iter_batches(records):
        out.append(decode_batch(records, pos, verify_crc=check_crcs))
        next_offset = h.next_offset
    return out, next_offset


def messages_from_fetch(
    topic: str,
    partition: int,
    records: bytes | None,
    fetch_offset: int,
    *,
    read_committed: bool = False,
    aborted_transactions: Iterable[tuple[int, int]] | None = None,
    check_crcs: bool = True,
) -> tuple[list[Message], int]:
    """Messages at or after `fetch_offset`, and the offset to fetch next.

    The next offset moves past every whole batch received, including control batches and
    aborted ones, so the consumer never asks for them again.
    """
    batches, end = decode_fetched(records, check_crcs=check_crcs)
    visible = filter_committed(batches, aborted_transactions) if read_committed else without_control(batches)
    out: list[Message] = []
    add = out.append
    for batch in visible:
        h = batch.header
        if h.timestamp_type:
            ts_type, batch_ts = TIMESTAMP_LOG_APPEND_TIME, h.max_timestamp
        else:
            ts_type, batch_ts = TIMESTAMP_CREATE_TIME, None
        epoch = h.partition_leader_epoch
        for r in batch.records:
            if r.offset < fetch_offset:
                continue
            add(Message(topic, partition, r.offset, r.key, r.value, r.headers or None,
                        batch_ts if batch_ts is not None else r.timestamp, ts_type,
                        leader_epoch=epoch))
    return out, max(fetch_offset, end)
