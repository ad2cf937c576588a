"""BrokerHeartbeat v2, the message an idle cluster sends most (every broker, ten times a
second in the lab profile, and the controller's answer to each), written and read with one
`struct` call instead of kio's field-by-field codec. Byte for byte what kio writes; only the
common shape takes this path: a request whose tagged fields (offline and cordoned log dirs)
are absent, and exactly the bytes of that shape with every bool 0 or 1. Anything else returns
None and goes to kio, which reads it or rejects it as it always did.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from kio.schema.broker_heartbeat.v2.request import BrokerHeartbeatRequest
from kio.schema.broker_heartbeat.v2.response import BrokerHeartbeatResponse
from kio.schema.errors import ErrorCode

__all__ = ["read_heartbeat_request", "read_heartbeat_response", "write_heartbeat"]

# broker_id, broker_epoch, current_metadata_offset, want_fence, want_shut_down, no tagged fields
_REQUEST = struct.Struct(">iqqBBB")
# throttle_time_ms, error_code, is_caught_up, is_fenced, should_shut_down, no tagged fields
_RESPONSE = struct.Struct(">ihBBBB")
_NO_THROTTLE = datetime.timedelta(0)


def write_heartbeat(entity: Any) -> bytes | None:
    """The body of a BrokerHeartbeat v2 request or response, or None for kio to write."""
    cls = type(entity)
    if cls is BrokerHeartbeatRequest:
        if entity.offline_log_dirs or entity.cordoned_log_dirs is not None:
            return None
        return _REQUEST.pack(entity.broker_id, entity.broker_epoch, entity.current_metadata_offset,
                             bool(entity.want_fence), bool(entity.want_shut_down), 0)
    if cls is BrokerHeartbeatResponse:
        throttle = entity.throttle_time
        ms = 0 if throttle == _NO_THROTTLE else round(throttle.total_seconds() * 1000)
        return _RESPONSE.pack(ms, int(entity.error_code), bool(entity.is_caught_up), bool(entity.is_fenced),
                              bool(entity.should_shut_down), 0)
    return None


def read_heartbeat_request(body: bytes) -> BrokerHeartbeatRequest | None:
    if len(body) != _REQUEST.size:
        return None
    broker_id, epoch, offset, fence, shut_down, tags = _REQUEST.unpack(body)
    if tags or fence > 1 or shut_down > 1:
        return None
    return BrokerHeartbeatRequest(broker_id=broker_id, broker_epoch=epoch, current_metadata_offset=offset,
                                  want_fence=bool(fence), want_shut_down=bool(shut_down))


def read_heartbeat_response(body: bytes) -> BrokerHeartbeatResponse | None:
    if len(body) != _RESPONSE.size:
        return None
    ms, error, caught_up, fenced, shut_down, tags = _RESPONSE.unpack(body)
    if tags or caught_up > 1 or fenced > 1 or shut_down > 1:
        return None
    try:
        code = ErrorCode(error)
    except ValueError:
        return None
    return BrokerHeartbeatResponse(
        throttle_time=_NO_THROTTLE if ms == 0 else datetime.timedelta(milliseconds=ms), error_code=code,
        is_caught_up=bool(caught_up), is_fenced=bool(fenced), should_shut_down=bool(shut_down))
