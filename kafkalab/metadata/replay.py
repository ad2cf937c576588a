"""Replaying metadata batches into an image: a controller's restart, a broker's catch-up."""

from __future__ import annotations

from typing import Any

from kafkalab.metadata.image import MetadataImage, decode_record
from kafkalab.records import decode_batch
from kafkalab.records.header import parse_header


def replay(mlog: Any, image: MetadataImage) -> None:
    """Rebuild the image from the metadata log (controller restart, broker catch-up)."""
    offset = mlog.log_start_offset
    while offset < mlog.log_end_offset:
        data = mlog.read_bytes(offset, 1 << 20)
        if not data:
            break
        offset = apply_batches(bytes(data), image, offset)


def apply_batches(data: bytes, image: MetadataImage, from_offset: int) -> int:
    """Apply every metadata record at or above from_offset; returns the next offset."""
    pos, nxt = 0, from_offset
    while pos + 61 <= len(data):
        h = parse_header(data, pos)
        if pos + h.size > len(data):
            break
        if h.is_control:
            # A quorum's LEADER_CHANGE record: no metadata, but the image moves past it so
            # the next fetch starts after it.
            if h.next_offset > nxt:
                nxt = image.offset = h.next_offset
            pos += h.size
            continue
        batch = decode_batch(data, pos)
        for rec in batch.records:
            if rec.offset >= nxt:
                image.apply(decode_record(rec.value), rec.offset)
                nxt = rec.offset + 1
        pos += h.size
    return nxt
