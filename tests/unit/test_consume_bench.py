"""The consume bench's raw fetch client finds the records in a Fetch v12 response in place."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import response as fs

from kafkalab.bench.kafka_clients import _records_span
from kafkalab.protocol.kafka_framing import encode_response


def _body(records: bytes, error: ErrorCode = ErrorCode.none, aborted: int = 0, topic: str = "orders") -> bytes:
    part = fs.PartitionData(partition_index=0, error_code=error, high_watermark=9, last_stable_offset=9,
                            log_start_offset=0, records=records,
                            aborted_transactions=tuple(fs.AbortedTransaction(producer_id=i, first_offset=i)
                                                       for i in range(aborted)) if aborted else None)
    resp = fs.FetchResponse(throttle_time=datetime.timedelta(0), error_code=ErrorCode.none, session_id=0,
                            responses=(fs.FetchableTopicResponse(topic=topic, partitions=(part,)),))
    return encode_response(resp, 7)[4:]  # without the size prefix, as the client reads it


def test_records_span_points_at_the_records_whatever_comes_before_them() -> None:
    for records, aborted, topic in ((b"r" * 300, 0, "orders"), (b"q" * 5, 3, "t" * 200), (b"", 0, "x")):
        body = _body(records, aborted=aborted, topic=topic)
        error, start, length = _records_span(memoryview(body))
        assert error == 0 and body[start:start + length] == records


def test_records_span_reports_a_partition_error() -> None:
    assert _records_span(memoryview(_body(b"", ErrorCode.offset_out_of_range)))[0] == 1
