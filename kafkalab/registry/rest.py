"""Confluent's REST API over the core: a method, a path, the query and the body bytes in;
a status, a JSON body and the `_schemas` records to write out. No sockets here (server.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from kafkalab.registry.core import RegistryError, Response, SchemaRegistry, parse_schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

_Handler = Callable[[SchemaRegistry, dict[str, str], dict[str, str], Any], Response]
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = []


def _route(method: str, pattern: str) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        _ROUTES.append((method, re.compile("^" + pattern.replace("{s}", "(?P<s>[^/]+)")
                                           .replace("{v}", "(?P<v>[^/]+)") + "/?$"), fn))
        return fn
    return register


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "false").lower() == "true"


def _schema_of(body: Any) -> Any:
    if not isinstance(body, dict):
        raise RegistryError(422, 'Unprocessable entity: the body must be a JSON object such as {"schema": "..."}')
    return parse_schema(body.get("schema"), body.get("schemaType"), body.get("references"))


def handle(registry: SchemaRegistry, method: str, path: str, query: dict[str, str],
           body: bytes | None) -> Response:
    """One request. Refusals come back as Confluent's error bodies, never as exceptions."""
    try:
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError) as e:
                raise RegistryError(400, f"Unexpected character in the request body, which must be JSON: {e}") from None
        path = "/" + path.strip("/")
        allowed = []
        for m, pattern, fn in _ROUTES:
            match = pattern.match(path)
            if match:
                if m == method:
                    params = {k: unquote(v) for k, v in match.groupdict().items()}
                    return fn(registry, params, query, parsed)
                allowed.append(m)
        if allowed:
            raise RegistryError(405, f"HTTP 405 Method Not Allowed: {method} {path} (use {', '.join(allowed)})")
        raise RegistryError(404, f"HTTP 404 Not Found: {method} {path}")
    except RegistryError as e:
        return Response(e.status, e.body())
    except Exception as e:  # noqa: BLE001 - a bug answers 500 and the registry keeps serving
        return Response(500, {"error_code": 500, "message": f"Internal Server Error: {type(e).__name__}: {e}"})


@_route("GET", "/")
def _root(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, {})


@_route("GET", "/subjects")
def _subjects(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, reg.list_subjects(_flag(q, "deleted")))


@_route("GET", "/subjects/{s}/versions")
def _versions(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, reg.list_versions(p["s"], _flag(q, "deleted")))


@_route("POST", "/subjects/{s}/versions")
def _register(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return reg.register(p["s"], _schema_of(body))


@_route("GET", "/subjects/{s}/versions/{v}")
def _version(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, reg.get_version(p["s"], p["v"], _flag(q, "deleted")).body())


@_route("GET", "/subjects/{s}/versions/{v}/schema")
def _version_schema(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, json.loads(reg.get_version(p["s"], p["v"], _flag(q, "deleted")).schema))


@_route("POST", "/subjects/{s}")
def _lookup(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, reg.lookup(p["s"], _schema_of(body), _flag(q, "deleted")).body())


@_route("DELETE", "/subjects/{s}")
def _delete_subject(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return reg.delete_subject(p["s"], _flag(q, "permanent"))


@_route("DELETE", "/subjects/{s}/versions/{v}")
def _delete_version(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return reg.delete_version(p["s"], p["v"], _flag(q, "permanent"))


@_route("GET", "/schemas/ids/{v}")
def _schema(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, {"schema": reg.schema_by_id(_id(p["v"]))})


@_route("GET", "/schemas/ids/{v}/subjects")
def _schema_subjects(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    schema_id = _id(p["v"])
    reg.schema_by_id(schema_id)
    return Response(200, reg.subjects_of_id(schema_id))


@_route("GET", "/schemas/types")
def _types(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, ["AVRO"])


@_route("POST", "/compatibility/subjects/{s}/versions/{v}")
def _compatible(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    schema = _schema_of(body)
    reg.get_version(p["s"], p["v"])  # 40401 / 40402 / 42202 first, as Confluent
    reasons = reg.incompatibilities(p["s"], schema, p["v"])
    answer: dict[str, Any] = {"is_compatible": not reasons}
    if _flag(q, "verbose"):
        answer["messages"] = reasons
    return Response(200, answer)


@_route("GET", "/config")
def _global_config(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, reg.get_level(None))


@_route("PUT", "/config")
def _set_global_config(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return reg.set_level(None, _compatibility_of(body))


@_route("GET", "/config/{s}")
def _config(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return Response(200, reg.get_level(p["s"], _flag(q, "defaultToGlobal")))


@_route("PUT", "/config/{s}")
def _set_config(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return reg.set_level(p["s"], _compatibility_of(body))


@_route("DELETE", "/config/{s}")
def _delete_config(reg: SchemaRegistry, p: dict, q: dict, body: Any) -> Response:
    return reg.delete_level(p["s"])


def _compatibility_of(body: Any) -> Any:
    if not isinstance(body, dict):
        raise RegistryError(422, 'Unprocessable entity: the body must be a JSON object such as {"compatibility": "FULL"}')
    return body.get("compatibility", body.get("compatibilityLevel"))


def _id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RegistryError(404, f"HTTP 404 Not Found: schema id {text!r} is not a number") from None


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
