"""The message vocabulary: Kafka's own API messages (kio dataclasses), their codec and framing."""

from kafkalab.protocol.apis import (
    ZMQ_VERSIONS,
    api_name,
    decode_request,
    decode_response,
    encode,
    request_class,
    response_class,
)
from kafkalab.protocol.errors import (
    ErrorCode,
    KafkaError,
    MalformedMessageError,
    UnsupportedApiError,
)

__all__ = [
    "ZMQ_VERSIONS",
    "ErrorCode",
    "KafkaError",
    "MalformedMessageError",
    "UnsupportedApiError",
    "api_name",
    "decode_request",
    "decode_response",
    "encode",
    "request_class",
    "response_class",
]
