"""Errors of the message vocabulary: Kafka's error codes as exceptions, and codec failures."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from kafkalab.errors import KafkaLabError

__all__ = [
    "ErrorCode",
    "KafkaError",
    "MalformedMessageError",
    "UnsupportedApiError",
    "error_name",
]


def error_name(code: ErrorCode | int) -> str:
    """Kafka's upper-case name for an error code, e.g. 3 -> "UNKNOWN_TOPIC_OR_PARTITION"."""
    try:
        return ErrorCode(int(code)).name.upper()
    except ValueError:
        return f"UNKNOWN_ERROR_CODE_{int(code)}"


class KafkaError(KafkaLabError):
    """A Kafka error code raised as an exception; its text starts with Kafka's error name.

    `retriable` follows Kafka's own classification (the RetriableException subclasses),
    which kio generates from Kafka's sources: a client may retry these after refreshing
    metadata or backing off; the others need the caller to change something.
    """

    def __init__(self, code: ErrorCode | int, message: str = ""):
        try:
            self.code: ErrorCode | int = ErrorCode(int(code))
        except ValueError:
            self.code = int(code)
        self.name = error_name(code)
        self.message = message
        super().__init__(f"{self.name}: {message}" if message else self.name)

    @property
    def retriable(self) -> bool:
        return isinstance(self.code, ErrorCode) and bool(self.code.retriable)

    def __reduce__(self):  # survives pickling across processes
        return (type(self), (int(self.code), self.message))


class UnsupportedApiError(KafkaLabError, ValueError):
    """An api key or version that kafkalab (through kio) has no schema for."""

    def __init__(self, api_key: int, version: int, supported: tuple[int, ...] = (), name: str = ""):
        self.api_key = api_key
        self.version = version
        self.supported = supported
        self.api_name = name
        if name and supported:
            text = (
                f"{name} (api key {api_key}) version {version} is not supported; "
                f"supported versions are {_ranges(supported)}: send one of those"
            )
        elif name:
            text = f"{name} (api key {api_key}) has no schema in kio, so kafkalab cannot carry it"
        else:
            shown = f" (version {version})" if version >= 0 else ""
            text = (
                f"api key {api_key}{shown} is not a Kafka API kafkalab knows; "
                "check the api key (see kafkalab.protocol.apis.ZMQ_VERSIONS for the ones in use)"
            )
        super().__init__(text)

    def __reduce__(self):
        return (type(self), (self.api_key, self.version, self.supported, self.api_name))


class MalformedMessageError(KafkaLabError, ValueError):
    """Bytes that do not decode as the message their header claims to be."""


def _ranges(versions: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> "0-2, 5"."""
    parts: list[str] = []
    start = prev = versions[0]
    for v in versions[1:] + (None,):  # type: ignore[operator]
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)
