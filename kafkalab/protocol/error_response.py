"""A response that says only "this request failed", for any API and version. Pure.

When serving a request raises (a bug, or a value no handler expected), the broker and the
controller still answer, as Kafka's `AbstractRequest.getErrorResponse` does, so the client
gets an error code instead of waiting for its request timeout. The response is the schema's
default with every top-level `error_code` set; per-partition lists stay empty, which Kafka's
clients treat as a failed request for each partition they asked about.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.protocol.apis import response_class
from kafkalab.protocol.versions import convert_default

__all__ = ["error_response"]


def error_response(api_key: int, version: int, code: ErrorCode = ErrorCode.unknown_server_error) -> Any:
    """The response class of (api_key, version) at its defaults, with error_code = code."""
    resp = convert_default(response_class(api_key, version))
    if "error_code" in {f.name for f in dataclasses.fields(resp)}:
        resp = dataclasses.replace(resp, error_code=code)
    return resp
