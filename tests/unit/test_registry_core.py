"""The registry's core and REST routes, without processes: ids, versions, deletes, configs,
Confluent's error codes, the `_schemas` record layouts, rebuilding from the topic and the wire
format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kafkalab.registry import rest
from kafkalab.registry.core import SchemaRegistry
from kafkalab.registry.records import Record
from kafkalab.registry.wire import describe_value, frame, payload, schema_id


def user(*extra: dict) -> str:
    return json.dumps({"type": "record", "name": "User", "fields": [{"name": "id", "type": "long"}, *extra]})


V1 = user()
V2 = user({"name": "email", "type": "string", "default": ""})
BREAKING = user({"name": "age", "type": "int"})


class Wired:
    """The core as server.py drives it, with `_schemas` as a list of (key, value) bytes."""

    def __init__(self) -> None:
        self.registry = SchemaRegistry()
        self.topic: list[tuple[bytes, bytes | None]] = []

    def call(self, method: str, path: str, body: Any = None, **query: str) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        resp = rest.handle(self.registry, method, path, query, raw)
        for record in resp.records:
            self.topic.append(record.encode())
            self.registry.apply(record)
        return resp.status, resp.body

    def register(self, subject: str, schema: str) -> tuple[int, Any]:
        return self.call("POST", f"/subjects/{subject}/versions", {"schema": schema})


def rebuild(topic: list[tuple[bytes, bytes | None]]) -> SchemaRegistry:
    fresh = SchemaRegistry()
    for key, value in topic:
        fresh.apply(Record.decode(key, value))
    return fresh


def compact(topic: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """What compaction leaves: the last record of each key, in offset order."""
    last = {key: i for i, (key, _) in enumerate(topic)}
    return [topic[i] for i in sorted(last.values())]


def snapshot(reg: SchemaRegistry) -> Any:
    return ({s: {v: vars(x) for v, x in vs.items()} for s, vs in reg.subjects.items()}, reg.configs, reg.next_id)


def test_register_returns_global_ids_and_an_identical_schema_its_existing_id() -> None:
    w = Wired()
    assert w.register("a-value", V1) == (200, {"id": 1})
    assert w.register("a-value", V2) == (200, {"id": 2})
    written = len(w.topic)
    assert w.register("a-value", " " + V1.replace(",", ", ")) == (200, {"id": 1})  # same schema, other spacing
    assert len(w.topic) == written, "an identical schema writes nothing"
    assert w.register("b-value", V2) == (200, {"id": 2}), "the same schema in another subject keeps its id"
    assert w.call("GET", "/subjects") == (200, ["a-value", "b-value"])
    assert w.call("GET", "/subjects/a-value/versions") == (200, [1, 2])
    status, body = w.call("GET", "/subjects/a-value/versions/latest")
    assert status == 200 and body["version"] == 2 and body["id"] == 2 and json.loads(body["schema"])["fields"][1]["name"] == "email"
    assert w.call("GET", "/schemas/ids/1")[1] == {"schema": w.registry.get_version("a-value", 1).schema}
    assert w.call("GET", "/schemas/ids/2/subjects") == (200, ["a-value", "b-value"])


def test_schema_record_layout_is_confluents() -> None:
    w = Wired()
    w.register("a-value", V1)
    key, value = w.topic[0]
    assert key == b'{"keytype":"SCHEMA","subject":"a-value","version":1,"magic":1}'
    assert json.loads(value) == {"subject": "a-value", "version": 1, "id": 1,
                                 "schema": '{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}',
                                 "deleted": False}
    w.call("PUT", "/config", {"compatibility": "full"})
    assert w.topic[-1] == (b'{"keytype":"CONFIG","magic":0}', b'{"compatibilityLevel":"FULL"}')
    w.call("DELETE", "/subjects/a-value")
    assert w.topic[-1] == (b'{"keytype":"DELETE_SUBJECT","subject":"a-value","magic":0}',
                           b'{"subject":"a-value","version":1}')


def test_incompatible_schema_is_409_with_the_reason_and_nothing_written() -> None:
    w = Wired()
    w.register("a-value", V1)
    status, body = w.register("a-value", BREAKING)
    assert status == 409 and body["error_code"] == 409
    assert "'age'" in body["message"] and "BACKWARD" in body["message"] and '"a-value"' in body["message"]
    assert len(w.topic) == 1
    assert w.call("POST", "/compatibility/subjects/a-value/versions/latest", {"schema": BREAKING},
                  verbose="true")[1]["is_compatible"] is False
    assert w.call("POST", "/compatibility/subjects/a-value/versions/1", {"schema": V2}) == (200, {"is_compatible": True})


def test_config_levels_global_and_per_subject() -> None:
    w = Wired()
    assert w.call("GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})
    w.register("a-value", V1)
    assert w.call("PUT", "/config/a-value", {"compatibility": "NONE"}) == (200, {"compatibility": "NONE"})
    assert w.register("a-value", BREAKING) == (200, {"id": 2})  # NONE lets it through
    assert w.call("GET", "/config/a-value") == (200, {"compatibilityLevel": "NONE"})
    status, body = w.call("GET", "/config/b-value")
    assert status == 404 and body["error_code"] == 40408
    assert w.call("GET", "/config/b-value", defaultToGlobal="true") == (200, {"compatibilityLevel": "BACKWARD"})
    assert w.call("DELETE", "/config/a-value") == (200, {"compatibilityLevel": "NONE"})
    assert w.registry.level("a-value") == "BACKWARD"


@pytest.mark.parametrize(("method", "path", "body", "query", "status", "code", "words"), [
    ("POST", "/subjects/a-value/versions", {"schema": '{"type": "record", "name": "X", "fields": [{"name": "f", "type": "nope"}]}'},
     {}, 422, 42201, "nope"),
    ("POST", "/subjects/a-value/versions", {"schema": "not json at all"}, {}, 422, 42201, "Invalid schema"),
    ("POST", "/subjects/a-value/versions", {"schema": V1, "schemaType": "PROTOBUF"}, {}, 422, 42201, "PROTOBUF"),
    ("POST", "/subjects/a-value/versions", b"{oops", {}, 400, 400, "JSON"),
    ("GET", "/subjects/nobody/versions", None, {}, 404, 40401, "'nobody'"),
    ("GET", "/subjects/a-value/versions/7", None, {}, 404, 40402, "Version 7"),
    ("GET", "/subjects/a-value/versions/seven", None, {}, 422, 42202, "'seven'"),
    ("GET", "/schemas/ids/99", None, {}, 404, 40403, "99"),
    ("POST", "/subjects/a-value", {"schema": V2}, {}, 404, 40403, "a-value"),
    ("PUT", "/config", {"compatibility": "SIDEWAYS"}, {}, 422, 42203, "SIDEWAYS"),
    ("PUT", "/config/a-value", {"compatibility": None}, {}, 422, 42203, "full_transitive"),
    ("DELETE", "/subjects/a-value", None, {"permanent": "true"}, 404, 40405, "not deleted first"),
    ("DELETE", "/subjects/a-value/versions/1", None, {"permanent": "true"}, 404, 40407, "not deleted first"),
    ("GET", "/nowhere", None, {}, 404, 404, "/nowhere"),
    ("PATCH", "/config", None, {}, 405, 405, "GET, PUT"),
])
def test_bad_input_gets_confluents_error_code_and_a_message_naming_it(
        method: str, path: str, body: Any, query: dict, status: int, code: int, words: str) -> None:
    w = Wired()
    w.register("a-value", V1)
    before = len(w.topic)
    got_status, got = w.call(method, path, body, **query)
    assert (got_status, got["error_code"]) == (status, code), got
    assert words in got["message"]
    assert len(w.topic) == before
    assert w.call("GET", "/subjects/a-value/versions") == (200, [1]), "still serving"


def test_soft_then_permanent_delete_of_a_version() -> None:
    w = Wired()
    w.register("a-value", V1)
    w.register("a-value", V2)
    assert w.call("DELETE", "/subjects/a-value/versions/2") == (200, 2)
    assert w.call("GET", "/subjects/a-value/versions") == (200, [1])
    assert w.call("GET", "/subjects/a-value/versions", deleted="true") == (200, [1, 2])
    assert w.call("GET", "/schemas/ids/2")[0] == 200, "a soft-deleted schema is still readable by id"
    assert w.call("DELETE", "/subjects/a-value/versions/2")[1]["error_code"] == 40406
    assert w.call("DELETE", "/subjects/a-value/versions/2", permanent="true") == (200, 2)
    assert w.topic[-1] == (b'{"keytype":"SCHEMA","subject":"a-value","version":2,"magic":1}', None)
    assert w.call("GET", "/schemas/ids/2")[1]["error_code"] == 40403
    assert w.register("a-value", V2) == (200, {"id": 3}), "the next version after a permanent delete gets a new id"


def test_soft_then_permanent_delete_of_a_subject() -> None:
    w = Wired()
    w.register("a-value", V1)
    w.register("a-value", V2)
    assert w.call("DELETE", "/subjects/a-value") == (200, [1, 2])
    assert w.call("GET", "/subjects") == (200, [])
    assert w.call("GET", "/subjects", deleted="true") == (200, ["a-value"])
    assert w.call("DELETE", "/subjects/a-value")[1]["error_code"] == 40404
    assert w.call("DELETE", "/subjects/a-value", permanent="true") == (200, [1, 2])
    assert w.call("GET", "/subjects", deleted="true") == (200, [])
    assert w.call("GET", "/subjects/a-value/versions")[1]["error_code"] == 40401


def test_lookup_finds_the_version_holding_a_schema() -> None:
    w = Wired()
    w.register("a-value", V1)
    w.register("a-value", V2)
    status, body = w.call("POST", "/subjects/a-value", {"schema": V2})
    assert status == 200 and (body["subject"], body["version"], body["id"]) == ("a-value", 2, 2)


def test_state_rebuilt_from_the_topic_and_from_its_compacted_form_is_the_same() -> None:
    w = Wired()
    w.register("a-value", V1)
    w.register("a-value", V2)
    w.call("PUT", "/config", {"compatibility": "FULL"})
    w.call("PUT", "/config", {"compatibility": "FORWARD"})
    w.register("b-value", V1)
    w.call("DELETE", "/subjects/a-value/versions/1")
    w.call("DELETE", "/subjects/b-value")
    w.call("DELETE", "/subjects/b-value", permanent="true")
    w.topic.append(Record.decode(b'{"keytype":"NOOP","magic":0}', None).encode())
    assert snapshot(rebuild(w.topic)) == snapshot(w.registry)
    compacted = compact(w.topic)
    assert len(compacted) < len(w.topic)
    assert snapshot(rebuild(compacted)) == snapshot(w.registry)
    assert w.register("c-value", user({"name": "x", "type": "int", "default": 0}))[1] == \
        {"id": rebuild(compacted).next_id}, "ids continue where the topic left them"


def test_a_record_that_is_not_the_registrys_is_refused_by_decode() -> None:
    with pytest.raises(ValueError, match="not a schema registry"):
        Record.decode(b"hello", b"world")
    with pytest.raises(ValueError, match="not a schema registry key"):
        Record.decode(b'{"keytype":"SOMETHING"}', None)


def test_wire_format_is_magic_zero_then_a_big_endian_id() -> None:
    framed = frame(258, b"\x02abc")
    assert framed == b"\x00\x00\x00\x01\x02\x02abc"
    assert schema_id(framed) == 258 and payload(framed) == b"\x02abc"
    assert schema_id(b"\x01\x00\x00\x00\x01") is None and schema_id(b"\x00\x00") is None and schema_id(None) is None
    assert describe_value(framed, "x") == "schemaId: 258 payload: x"
    assert describe_value(b"plain", "plain") == "payload: plain"


class FlakyStore:
    """`_schemas` as a list; `fail_next` makes a write time out although its records land (a
    request that reached the broker after the registry stopped waiting)."""

    def __init__(self) -> None:
        self.topic: list[tuple[bytes, bytes | None]] = []
        self.position = 0
        self.fail_next = False
        self.down = False

    def write(self, records: list[Record]) -> list[int]:
        from kafkalab.registry.server import StoreError
        if self.down:
            raise StoreError(50002, "Operation timed out: _schemas is unreachable")
        first = len(self.topic)
        self.topic += [r.encode() for r in records]
        if self.fail_next:
            self.fail_next = False
            raise StoreError(50002, "Operation timed out: no acknowledgement")
        if first == self.position:
            self.position = len(self.topic)
        return list(range(first, len(self.topic)))

    def catch_up(self, apply: Any) -> int:
        self.write([Record({"keytype": "NOOP", "magic": 0}, None)])
        rows = self.topic[self.position:]
        for key, value in rows:
            apply(Record.decode(key, value))
        self.position = len(self.topic)
        return len(rows)


def test_a_write_that_timed_out_but_landed_is_read_back_before_the_next_write() -> None:
    from kafkalab.registry.server import RegistryService
    store = FlakyStore()
    service = RegistryService(SchemaRegistry(), store)

    def register(schema: str) -> tuple[int, Any]:
        return service.handle("POST", "/subjects/a-value/versions", {}, json.dumps({"schema": schema}).encode())
    assert register(V1) == (200, {"id": 1})
    store.fail_next = True
    status, body = register(V2)
    assert status == 500 and body["error_code"] == 50002 and service.stale
    other = user({"name": "note", "type": "string", "default": ""})
    assert register(other) == (200, {"id": 3}), "id 2 went to the landed write: never handed out twice"
    assert service.handle("GET", "/subjects/a-value/versions", {}, None) == (200, [1, 2, 3])
    assert snapshot(rebuild(store.topic)) == snapshot(service.registry)


def test_while_the_store_is_unreachable_reads_are_served_and_writes_refused() -> None:
    from kafkalab.registry.server import RegistryService
    store = FlakyStore()
    service = RegistryService(SchemaRegistry(), store)
    body = json.dumps({"schema": V1}).encode()
    assert service.handle("POST", "/subjects/a-value/versions", {}, body) == (200, {"id": 1})
    store.down = True
    status, error = service.handle("PUT", "/config", {}, b'{"compatibility": "FULL"}')
    assert status == 500 and error["error_code"] == 50002 and "unreachable" in error["message"]
    assert service.handle("GET", "/subjects", {}, None) == (200, ["a-value"])
    status, error = service.handle("POST", "/subjects/b-value/versions", {}, body)
    assert status == 500 and error["error_code"] == 50002
    store.down = False
    assert service.handle("POST", "/subjects/b-value/versions", {}, body) == (200, {"id": 1})
    assert service.registry.level(None) == "BACKWARD", "the refused config change was never written"


def test_an_unexpected_error_is_a_500_body_not_a_dropped_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    w = Wired()

    def broken(self: SchemaRegistry, deleted: bool = False) -> list[str]:
        raise RuntimeError("boom")
    monkeypatch.setattr(SchemaRegistry, "list_subjects", broken)
    assert w.call("GET", "/subjects") == (500, {"error_code": 500, "message": "Internal Server Error: RuntimeError: boom"})
    assert w.register("a-value", V1) == (200, {"id": 1})
