"""BrokerHeartbeat v2 by struct: byte for byte kio's encoding, and kio's reading of any bytes
it accepts (anything else is left to kio, which rejects it as before)."""

from __future__ import annotations

import datetime
import uuid

from hypothesis import given
from hypothesis import strategies as st
from kio.schema.broker_heartbeat.v2.request import BrokerHeartbeatRequest
from kio.schema.broker_heartbeat.v2.response import BrokerHeartbeatResponse
from kio.schema.errors import ErrorCode

from kafkalab.protocol.apis import decode_request, decode_response, encode
from kafkalab.protocol.errors import MalformedMessageError
from kafkalab.transport.heartbeat_codec import (
    read_heartbeat_request,
    read_heartbeat_response,
    write_heartbeat,
)

i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


@given(i32, i64, i64, st.booleans(), st.booleans())
def test_a_request_is_written_as_kio_writes_it_and_read_back(broker: int, epoch: int, offset: int,
                                                             fence: bool, shut_down: bool) -> None:
    req = BrokerHeartbeatRequest(broker_id=broker, broker_epoch=epoch, current_metadata_offset=offset,
                                 want_fence=fence, want_shut_down=shut_down)
    body = write_heartbeat(req)
    assert body == encode(req)
    assert read_heartbeat_request(body) == req == decode_request(63, 2, body)


@given(st.integers(0, 2**31 - 1), st.sampled_from(list(ErrorCode)), st.booleans(), st.booleans(), st.booleans())
def test_a_response_is_written_as_kio_writes_it_and_read_back(ms: int, error: ErrorCode, caught_up: bool,
                                                              fenced: bool, shut_down: bool) -> None:
    resp = BrokerHeartbeatResponse(throttle_time=datetime.timedelta(milliseconds=ms), error_code=error,
                                   is_caught_up=caught_up, is_fenced=fenced, should_shut_down=shut_down)
    body = write_heartbeat(resp)
    assert body == encode(resp)
    assert read_heartbeat_response(body) == resp == decode_response(63, 2, body)


def test_tagged_fields_are_left_to_kio() -> None:
    req = BrokerHeartbeatRequest(broker_id=1, broker_epoch=2, current_metadata_offset=3, want_fence=False,
                                 want_shut_down=False, offline_log_dirs=(uuid.UUID(int=5),))
    assert write_heartbeat(req) is None
    assert read_heartbeat_request(encode(req)) is None and decode_request(63, 2, encode(req)) == req


@given(st.binary(min_size=23, max_size=23), st.binary(min_size=10, max_size=10))
def test_any_bytes_read_by_struct_read_the_same_by_kio_and_the_rest_go_to_kio(request: bytes, response: bytes) -> None:
    for body, fast, slow in ((request, read_heartbeat_request, lambda b: decode_request(63, 2, b)),
                             (response, read_heartbeat_response, lambda b: decode_response(63, 2, b))):
        got = fast(body)
        if got is not None:
            assert got == slow(body)
        for short in (body[:-1], body + b"\0"):  # another length: never this path
            assert fast(short) is None


def test_a_bool_kio_rejects_is_not_read_here_either() -> None:
    body = bytearray(encode(BrokerHeartbeatRequest(broker_id=1, broker_epoch=2, current_metadata_offset=3,
                                                   want_fence=False, want_shut_down=False)))
    body[20] = 2  # want_fence
    assert read_heartbeat_request(bytes(body)) is None
    try:
        decode_request(63, 2, bytes(body))
    except MalformedMessageError as e:
        assert "boolean" in str(e)
    else:
        raise AssertionError("kio read a bool of 2")
