"""RecordBatch v2: encode/decode, CRC-32C, varints, headers, control records, codecs."""

from kafkalab.records.batch import Record, RecordBatch, decode_batch, decode_records, encode_batch
from kafkalab.records.builder import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    BatchBuilder,
    Header,
    timestamp_type_id,
)
from kafkalab.records.compression import (
    CODEC_NAMES,
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    codec_id,
    compress,
    decompress,
)
from kafkalab.records.control import ABORT, COMMIT, encode_control_batch, parse_control_record
from kafkalab.records.header import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    parse_header,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
)
from kafkalab.records.scan import iter_batches, validate_batch

__all__ = [
    "ABORT",
    "CODEC_NAMES",
    "COMMIT",
    "CREATE_TIME",
    "GZIP",
    "HEADER_SIZE",
    "LOG_APPEND_TIME",
    "LOG_OVERHEAD",
    "LZ4",
    "NONE",
    "SNAPPY",
    "ZSTD",
    "BatchBuilder",
    "BatchHeader",
    "Header",
    "Record",
    "RecordBatch",
    "codec_id",
    "compress",
    "decode_batch",
    "decode_records",
    "decompress",
    "encode_batch",
    "encode_control_batch",
    "iter_batches",
    "parse_control_record",
    "parse_header",
    "set_base_offset",
    "set_log_append_time",
    "set_partition_leader_epoch",
    "timestamp_type_id",
    "validate_batch",
]
