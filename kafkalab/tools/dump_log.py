"""dump-log: print a segment file's contents the way Kafka's DumpLogSegments tool does.

    .log        one line per batch, then (print_records) one "| offset: ..." line per record
    .index      offset: 100 position: 4096
    .timeindex  timestamp: 1700000000000 offset: 100
    .txnindex   version: 0 producerId: 7 firstOffset: 10 lastOffset: 15 lastStableOffset: 16
    .snapshot   one line per producer

A damaged batch is reported on its own line (with its byte position) and ends the dump.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import TextIO

import crc32c

from kafkalab.controller.raft_log import LEADER_CHANGE, parse_leader_change
from kafkalab.errors import CorruptRecordError, KafkaLabError
from kafkalab.records.batch import decode_batch
from kafkalab.records.header import CRC_START, HEADER_SIZE, parse_header
from kafkalab.registry.wire import describe_value
from kafkalab.storage.files import offset_from_name
from kafkalab.storage.index import OffsetIndex, TimeIndex
from kafkalab.storage.producer_snapshot import decode_snapshot
from kafkalab.storage.segment import validate_header
from kafkalab.storage.txn_index import decode_entries

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def _text(b: bytes | None) -> str:
    if b is None:
        return "null"
    return b.decode("utf-8", errors="backslashreplace")


SUFFIXES = (".log", ".index", ".timeindex", ".txnindex", ".snapshot")


def segment_files(directory: str) -> list[str]:
    """The files dump_log reads in a partition directory: by base offset, the .log first."""
    def kind(name: str) -> str:
        return "." + name.partition(".")[2]

    names = [n for n in os.listdir(directory) if kind(n) in SUFFIXES]
    names.sort(key=lambda n: (n.partition(".")[0], SUFFIXES.index(kind(n))))
    return [os.path.join(directory, n) for n in names]


def dump_paths(paths: list[str], *, print_records: bool = True, out: TextIO | None = None,
               err: TextIO | None = None, prog: str = "kafkalab dump-log") -> int:
    """Dump each path (a directory: every segment file in it). A path that cannot be dumped
    gets one line on `err`, no traceback; returns 2 if any could not."""
    out, err = out or sys.stdout, err or sys.stderr
    status = 0
    for path in paths:
        if os.path.isdir(path):
            files = segment_files(path)
            if not files:
                print(f"{prog}: {path} is a directory without segment files; pass a partition directory "
                      f"(such as broker-1/orders-0) or a file ending in {', '.join(SUFFIXES)}", file=err)
                status = 2
            for name in files:
                status = max(status, dump_paths([name], print_records=print_records, out=out, err=err, prog=prog))
            continue
        try:
            dump_log(path, print_records=print_records, out=out)
        except (OSError, ValueError, KafkaLabError, struct.error) as e:
            if isinstance(e, BrokenPipeError):
                raise
            print(f"{prog}: {e}", file=err)
            status = 2
    return status


def dump_log(path: str, *, print_records: bool = True, out: TextIO = sys.stdout) -> None:
    """Print the file at `path` (.log, .index, .timeindex, .txnindex or .snapshot)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise IsADirectoryError(f"{path}: not a file; pass a segment file, or give the directory to "
                                "`kafkalab dump-log` to dump every segment in it")
    if not path.endswith(SUFFIXES):
        raise ValueError(f"{path}: not a segment file; expected .log, .index, .timeindex, .txnindex or .snapshot")
    base = offset_from_name(path)
    name = os.path.basename(path)
    print(f"Dumping {path}", file=out)
    if name.endswith(".log"):
        _dump_segment(path, base or 0, print_records, out)
    elif name.endswith((".index", ".timeindex")):
        if base is None:
            raise ValueError(f"{path}: index files are named by a 20-digit base offset")
        cls = OffsetIndex if name.endswith(".index") else TimeIndex
        idx = cls(path, base, os.path.getsize(path) or 8, active=False)
        try:
            if not idx.entries:
                print("(no entries: the index is empty)", file=out)
            for a, b in idx.entries:
                if cls is OffsetIndex:
                    print(f"offset: {a} position: {b}", file=out)
                else:
                    print(f"timestamp: {a} offset: {b}", file=out)
        finally:
            os.close(idx._fd)  # read-only look: do not trim or touch the file
    elif name.endswith(".txnindex"):
        with open(path, "rb") as f:
            entries = decode_entries(f.read(), path)
            if not entries:
                print("(no entries: the index is empty)", file=out)
            for t in entries:
                print(f"version: 0 producerId: {t.producer_id} firstOffset: {t.first_offset} "
                      f"lastOffset: {t.last_offset} lastStableOffset: {t.last_stable_offset}", file=out)
    elif name.endswith(".snapshot"):
        with open(path, "rb") as f:
            for e in decode_snapshot(f.read(), path):
                print(f"producerId: {e.producer_id} producerEpoch: {e.producer_epoch} "
                      f"coordinatorEpoch: {e.coordinator_epoch} currentTxnFirstOffset: "
                      f"{e.current_txn_first_offset} lastTimestamp: {e.timestamp} "
                      f"lastSequence: {e.last_sequence} lastOffset: {e.last_offset} "
                      f"offsetDelta: {e.offset_delta}", file=out)
    else:
        raise ValueError(f"{path}: not a segment file; expected .log, .index, .timeindex, .txnindex or .snapshot")


def _dump_segment(path: str, base: int, print_records: bool, out: TextIO) -> None:
    with open(path, "rb") as f:
        data = f.read()
    print(f"Log starting offset: {base}", file=out)
    pos = 0
    while pos < len(data):
        remaining = len(data) - pos
        try:
            if remaining < HEADER_SIZE:
                raise CorruptRecordError(f"{remaining} trailing bytes: a torn batch header", path=path, position=pos)
            h = parse_header(data, pos)
            validate_header(h, path, pos, remaining)
        except CorruptRecordError as e:
            print(f"Found invalid batch: {e}", file=out)
            return
        valid = crc32c.crc32c(memoryview(data)[pos + CRC_START : pos + h.size]) == h.crc
        ts_type = "LogAppendTime" if h.timestamp_type else "CreateTime"
        print(
            f"baseOffset: {h.base_offset} lastOffset: {h.last_offset} count: {h.records_count} "
            f"baseSequence: {h.base_sequence} lastSequence: {h.last_sequence} "
            f"producerId: {h.producer_id} producerEpoch: {h.producer_epoch} "
            f"partitionLeaderEpoch: {h.partition_leader_epoch} "
            f"isTransactional: {str(h.is_transactional).lower()} isControl: {str(h.is_control).lower()} "
            f"{'' if h.delete_horizon_ms is None else f'deleteHorizonMs: {h.delete_horizon_ms} '}"
            f"position: {pos} {ts_type}: {h.max_timestamp} size: {h.size} magic: {h.magic} "
            f"compresscodec: {CODECS.get(h.compression, h.compression)} crc: {h.crc} "
            f"isvalid: {str(valid).lower()}",
            file=out,
        )
        if print_records:
            try:
                batch = decode_batch(data, pos, verify_crc=False)
            except CorruptRecordError as e:
                print(f"| cannot decode records: {e}", file=out)
            else:
                for i, r in enumerate(batch.records):
                    if h.is_control and r.key is not None and len(r.key) >= 4:
                        kind = struct.unpack_from(">hh", r.key)[1]
                        coord = struct.unpack_from(">hi", r.value)[1] if r.value and len(r.value) >= 6 else -1
                        head = (f"| offset: {r.offset} {ts_type}: {r.timestamp} keySize: {len(r.key)} "
                                f"valueSize: {len(r.value or b'')} sequence: -1 headerKeys: [] ")
                        if kind == LEADER_CHANGE:  # the first batch of a KRaft leader's epoch
                            print(head + f"LeaderChange: {_leader_change(r.value)}", file=out)
                            continue
                        marker = {0: "ABORT", 1: "COMMIT"}.get(kind, str(kind))
                        print(head + f"endTxnMarker: {marker} coordinatorEpoch: {coord}", file=out)
                        continue
                    seq = h.base_sequence + i if h.base_sequence >= 0 else -1
                    print(
                        f"| offset: {r.offset} {ts_type}: {r.timestamp} "
                        f"keySize: {-1 if r.key is None else len(r.key)} "
                        f"valueSize: {-1 if r.value is None else len(r.value)} sequence: {seq} "
                        f"headerKeys: [{','.join(k for k, _ in r.headers)}] "
                        f"key: {_text(r.key)} {describe_value(r.value, _text(r.value))}",
                        file=out,
                    )
        pos += h.size


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="kafkalab dump-log", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+")
    p.add_argument("--no-records", action="store_true", help="batch lines only")
    args = p.parse_args(argv)
    return dump_paths(args.paths, print_records=not args.no_records)


if __name__ == "__main__":
    raise SystemExit(main())


def _leader_change(value: bytes | None) -> str:
    try:
        msg = parse_leader_change(value or b"")
    except Exception as e:  # noqa: BLE001 - a damaged record is reported, not fatal
        return f"cannot decode ({e})"
    return json.dumps({"leaderId": int(msg.leader_id), "voters": [int(v.voter_id) for v in msg.voters],
                       "grantingVoters": [int(v.voter_id) for v in msg.granting_voters]})
