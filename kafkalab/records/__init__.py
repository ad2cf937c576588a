"""RecordBatch v2: encode/decode, CRC-32C, varints, headers, control records, codecs."""

from kafkalab.records.batch import Record, RecordBatch, decode_batch, encode_batch
from kafkalab.records.header import HEADER_SIZE, BatchHeader, parse_header

__all__ = ["HEADER_SIZE", "BatchHeader", "Record", "RecordBatch", "decode_batch", "encode_batch", "parse_header"]
