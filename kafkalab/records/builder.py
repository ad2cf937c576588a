"""BatchBuilder: the producer's fast path from records to one RecordBatch v2.

Each append encodes its record at once (so the size check is exact), into a list of
byte strings joined once at build time. Small varints come from a lookup table. The
producer's common record (null key, no headers: `append_value`) usually follows one of the
same millisecond and value length: it reuses the pieces computed for the first of them.

A record inside the records section:

    length varint | attributes int8 (0) | timestamp_delta varint | offset_delta varint
    | key_length varint | key | value_length varint | value
    | header_count varint | (key_length varint | key utf-8 | value_length varint | value)*

Lengths of -1 mean null. Deltas are against the batch's base offset and base timestamp
(the first record's timestamp).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import crc32c

from kafkalab.records.compression import NONE, codec_id, compress
from kafkalab.records.header import (
    CONTROL_BIT,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
)
from kafkalab.records.varint import SMALL_VARINT_LIMIT, SMALL_VARINTS, varint_bytes

Header = tuple[str, bytes | None]

CREATE_TIME = 0
LOG_APPEND_TIME = 1
_TIMESTAMP_TYPES = {"createtime": CREATE_TIME, "logappendtime": LOG_APPEND_TIME}

_PREFIX = struct.Struct(">qiib")  # base_offset, batch_length, partition_leader_epoch, magic
_CRC = struct.Struct(">I")
_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. records_count: what the CRC covers first
_NULL = b"\x01"  # zig-zag varint of -1
_NO_HEADERS = b"\x00"
_ATTRIBUTES = b"\x00"
_INT32_MAX = 0x7FFFFFFF
_KEEP_GIL = 0  # crc32c's gil_release_mode: never release
_ATTR_TS = tuple(_ATTRIBUTES + b for b in SMALL_VARINTS)  # attributes byte + timestamp delta
_ATTR_TS0_OD = tuple(_ATTRIBUTES + SMALL_VARINTS[0] + b for b in SMALL_VARINTS)  # by offset delta
_NULL_KEY_LIMIT = SMALL_VARINT_LIMIT - 1
_NULL_KEY_VLEN = (_NULL + _NULL,) + tuple(_NULL + b for b in SMALL_VARINTS[:_NULL_KEY_LIMIT])  # by value length + 1

# Offset deltas (and _ATTR_TS0_OD) up to 16,384, for append_value and for batches of more than
# SMALL_VARINT_LIMIT records: built on first use (only a producer makes such batches), then
# held (~1.4 MB); past them, no table.
_OFFSET_DELTAS: tuple[bytes, ...] = ()
_BIG_ATTR_TS0_OD: tuple[bytes, ...] = ()
_OFFSET_DELTAS_SIZE = 1 << 14


def _big_tables() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    global _OFFSET_DELTAS, _BIG_ATTR_TS0_OD
    if not _BIG_ATTR_TS0_OD:
        deltas = SMALL_VARINTS + tuple(varint_bytes(n) for n in range(SMALL_VARINT_LIMIT, _OFFSET_DELTAS_SIZE))
        _BIG_ATTR_TS0_OD = tuple(_ATTRIBUTES + SMALL_VARINTS[0] + b for b in deltas)
        _OFFSET_DELTAS = deltas  # last: append_value's rows read it once it is set
    return _OFFSET_DELTAS, _BIG_ATTR_TS0_OD


def timestamp_type_id(timestamp_type: str | int) -> int:
    """Map "CreateTime"/"LogAppendTime" (Kafka's message.timestamp.type) or 0/1 to the bit value."""
    if isinstance(timestamp_type, int) and not isinstance(timestamp_type, bool):
        if timestamp_type in (CREATE_TIME, LOG_APPEND_TIME):
            return timestamp_type
    elif isinstance(timestamp_type, str):
        tid = _TIMESTAMP_TYPES.get(timestamp_type.lower())
        if tid is not None:
            return tid
    raise ValueError(
        f"unknown timestamp type {timestamp_type!r}: use 'CreateTime' (0) or 'LogAppendTime' (1)"
    )


def _encode_headers(headers: Iterable[Header] | Mapping[str, bytes | str | None]) -> bytes:
    # Accepts confluent-kafka's forms too: a dict, and str values (sent as UTF-8).
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out = bytearray()
    n = 0
    for hkey, hval in pairs:
        if not isinstance(hkey, str):
            raise TypeError(f"record header key must be str, got {type(hkey).__name__}: decode it first")
        kb = hkey.encode()
        out += varint_bytes(len(kb))
        out += kb
        if hval is None:
            out += _NULL
        else:
            if isinstance(hval, str):
                hval = hval.encode()
            out += varint_bytes(len(hval))
            out += hval
        n += 1
    return varint_bytes(n) + bytes(out)


class BatchBuilder:
    """Accumulates records into one batch of at most `max_bytes` (uncompressed estimate).

    `append` returns False, and keeps nothing, when the record would push the batch past
    `max_bytes`; the first record is always accepted so an oversized record still ships
    alone (as Kafka's producer does with `batch.size`).
    """

    __slots__ = ("max_bytes", "fast_limit", "_parts", "size", "_count", "_base_ts", "_max_ts",
                 "_row_ts", "_row_len", "_row_limit", "_row_head", "_row_tail", "_row_added")

    def __init__(self, max_bytes: int) -> None:
        if not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int (like batch.size), got {max_bytes!r}")
        self.max_bytes = max_bytes
        # append_value keeps the batch at most this big (limit_fast_appends; seal() makes it 0)
        self.fast_limit = max_bytes
        self._parts: list[bytes] = []
        self.size = HEADER_SIZE
        self._count = 0
        self._base_ts = 0
        self._max_ts = -1
        # append_value's row: while records come one after another through append_value with
        # this timestamp and value length (and offset-delta varints of one length: the batch
        # up to _row_limit bytes), each is (_row_head, offset delta, _row_tail, value, no
        # headers) and _row_added bytes long. None: no row (append() and seal() end it).
        self._row_ts: int | None = None
        self._row_len = -1
        self._row_limit = 0
        self._row_head = self._row_tail = b""
        self._row_added = 0

    @property
    def estimated_size(self) -> int:
        """Bytes of the batch if built now without compression (header included)."""
        return self.size

    @property
    def record_count(self) -> int:
        return self._count

    @property
    def base_timestamp(self) -> int:
        return self._base_ts

    @property
    def max_timestamp(self) -> int:
        return self._max_ts

    def __len__(self) -> int:
        return self._count

    def append(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] | Mapping[str, bytes | str | None] | None,
        timestamp_ms: int,
    ) -> bool:
        """Add one record; False (and nothing added) if it would exceed `max_bytes`."""
        # The record's pieces go into the parts list as they are (no per-record join);
        # its length is summed from theirs. This is the producer's hot loop.
        n = self._count
        if n:
            tsd = timestamp_ms - self._base_ts
        else:
            self._base_ts = timestamp_ms
            tsd = 0
        small = SMALL_VARINTS
        if tsd == 0 and n < SMALL_VARINT_LIMIT:
            # same millisecond as the first record (the common case): one piece for
            # attributes, timestamp delta and offset delta
            head = _ATTR_TS0_OD[n]
        elif tsd == 0 and n < _OFFSET_DELTAS_SIZE:  # the same in a big batch
            head = (_BIG_ATTR_TS0_OD or _big_tables()[1])[n]
        else:
            head = (_ATTR_TS[tsd] if 0 <= tsd < SMALL_VARINT_LIMIT else _ATTRIBUTES + varint_bytes(tsd)) + (
                small[n] if n < SMALL_VARINT_LIMIT
                else (_OFFSET_DELTAS or _big_tables()[0])[n] if n < _OFFSET_DELTAS_SIZE
                else varint_bytes(n)
            )
        if value is None:
            value = b""
            vl = -1
        else:
            vl = len(value)
        if key is None:
            # null key and the value's length in one precomputed piece
            kv = _NULL_KEY_VLEN[vl + 1] if vl < _NULL_KEY_LIMIT else _NULL + varint_bytes(vl)
            key = b""
        else:
            kl = len(key)
            kv = (
                (small[kl] if kl < SMALL_VARINT_LIMIT else varint_bytes(kl))
                + key
                + (_NULL if vl < 0 else small[vl] if vl < SMALL_VARINT_LIMIT else varint_bytes(vl))
            )
        hdr = _encode_headers(headers) if headers else _NO_HEADERS
        bl = len(head) + len(kv) + len(value) + len(hdr)
        len_b = small[bl] if bl < SMALL_VARINT_LIMIT else varint_bytes(bl)
        size = self.size + len(len_b) + bl
        if size > self.max_bytes and n:
            return False
        self._parts += (len_b, head, kv, value, hdr)
        self.size = size
        self._count = n + 1
        if timestamp_ms > self._max_ts:
            self._max_ts = timestamp_ms
        self._row_ts = None  # append_value's next record is no longer one after its row
        return True

    def append_value(self, value: bytes, timestamp_ms: int) -> int:
        """`append(None, value, None, timestamp_ms)` for the producer's common record (null key,
        no headers) into a batch that has records already: the bytes it added, or 0 (nothing
        added) if the batch would grow past `fast_limit` or has no record yet."""
        if timestamp_ms == self._row_ts and len(value) == self._row_len:
            # the common case: the same millisecond and value length as the record before, so
            # the same pieces around the offset delta and the same length
            size = self.size + self._row_added
            if size <= self._row_limit:
                n = self._count
                self._parts += (self._row_head, _OFFSET_DELTAS[n], self._row_tail, value, _NO_HEADERS)
                self.size = size
                self._count = n + 1
                return self._row_added
        return self._append_value_new_row(value, timestamp_ms)

    def _append_value_new_row(self, value: bytes, timestamp_ms: int) -> int:
        # Taken by every record when value lengths vary: tables, no varint loops.
        n = self._count
        if not n:
            return 0  # the first record sets the base timestamp: append() takes it
        vlen = len(value)
        tsd = timestamp_ms - self._base_ts
        if n < _OFFSET_DELTAS_SIZE:
            od = (_OFFSET_DELTAS or _big_tables()[0])[n]
            # the row lasts while offset deltas keep their varint length (and the table has them)
            last = 63 if n < 64 else 8191 if n < 8192 else _OFFSET_DELTAS_SIZE - 1
        else:
            od = varint_bytes(n)
            last = n - 1  # no row
        ts_b = _ATTR_TS[tsd] if 0 <= tsd < SMALL_VARINT_LIMIT else _ATTRIBUTES + varint_bytes(tsd)
        tail = _NULL_KEY_VLEN[vlen + 1] if vlen < _NULL_KEY_LIMIT else _NULL + varint_bytes(vlen)
        length = len(ts_b) + len(od) + len(tail) + vlen + 1  # + the header count
        head = (SMALL_VARINTS[length] if length < SMALL_VARINT_LIMIT else varint_bytes(length)) + ts_b
        added = len(head) + length - len(ts_b)
        size = self.size + added
        fast_limit = self.fast_limit
        if size > fast_limit:
            return 0
        self._parts += (head, od, tail, value, _NO_HEADERS)
        self.size = size
        self._count = n + 1
        if timestamp_ms > self._max_ts:
            self._max_ts = timestamp_ms
        self._row_ts = timestamp_ms
        self._row_len = vlen
        self._row_head = head
        self._row_tail = tail
        self._row_added = added
        row_limit = size + (last - n) * added
        self._row_limit = row_limit if row_limit < fast_limit else fast_limit
        return added

    def limit_fast_appends(self, limit: int) -> None:
        """append_value keeps the batch at most `limit` bytes from now on."""
        self.fast_limit = limit
        self._row_ts = None

    def seal(self) -> None:
        """No more append_value: the batch left its queue (drained, expired or aborted)."""
        self.limit_fast_appends(0)

    def records_section(self) -> bytes:
        """The encoded records, uncompressed, as they follow the 61-byte header."""
        return b"".join(self._parts)

    def build(
        self,
        *,
        base_offset: int = 0,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
        transactional: bool = False,
        compression: str | int = "none",
        partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
        control: bool = False,
        timestamp_type: str | int = CREATE_TIME,
        log_append_time_ms: int | None = None,
        compression_level: int | None = None,
    ) -> bytes:
        """The batch's bytes, CRC included. The builder can be built again (e.g. on retry).

        With timestamp_type LogAppendTime, max_timestamp is `log_append_time_ms` (the
        broker's clock) when given: readers then report it as every record's timestamp.
        """
        if not self._count:
            raise ValueError("a record batch needs at least one record: append() before build()")
        codec = codec_id(compression)
        ts_type = timestamp_type_id(timestamp_type)
        records = self.records_section()
        if codec != NONE:
            records = compress(codec, records, compression_level)
        attributes = codec
        if ts_type == LOG_APPEND_TIME:
            attributes |= TIMESTAMP_TYPE_BIT
        if transactional:
            attributes |= TRANSACTIONAL_BIT
        if control:
            attributes |= CONTROL_BIT
        max_ts = self._max_ts
        if ts_type == LOG_APPEND_TIME and log_append_time_ms is not None:
            max_ts = log_append_time_ms
        if base_sequence != NO_SEQUENCE and not 0 <= base_sequence <= _INT32_MAX:
            raise ValueError(f"base_sequence must be -1 or in 0..2147483647, got {base_sequence}")
        try:
            after_crc = _AFTER_CRC.pack(
                attributes,
                self._count - 1,
                self._base_ts,
                max_ts,
                producer_id,
                producer_epoch,
                base_sequence,
                self._count,
            )
            prefix = _PREFIX.pack(
                base_offset, HEADER_SIZE - LOG_OVERHEAD + len(records), partition_leader_epoch, MAGIC
            )
        except struct.error as exc:
            raise ValueError(
                f"a batch header field is out of range ({exc}): check offsets, epochs, producer id and timestamps"
            ) from None
        # The GIL stays held (mode 0): a hardware CRC of a batch takes microseconds, less than
        # handing the GIL to the producer's thread and waiting to get it back.
        crc = crc32c.crc32c(records, crc32c.crc32c(after_crc), _KEEP_GIL)
        return b"".join((prefix, _CRC.pack(crc), after_crc, records))
