"""Each compatibility level on both sides of its boundary: the change it just accepts and the
change it just refuses, with a reason that names the field."""

from __future__ import annotations

import json

import avro.schema
import pytest

from kafkalab.registry.compatibility import LEVELS, check


def record(*fields: dict) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps({"type": "record", "name": "User", "fields": list(fields)}))


ID = {"name": "id", "type": "long"}
EMAIL_DEFAULT = {"name": "email", "type": "string", "default": ""}
EMAIL_REQUIRED = {"name": "email", "type": "string"}
V1 = record(ID)


def hist(*schemas: avro.schema.Schema) -> list[tuple[int, avro.schema.Schema]]:
    return list(enumerate(schemas, start=1))


def test_none_accepts_anything_even_a_type_change() -> None:
    assert check("NONE", record({"name": "id", "type": "string"}), hist(V1)) == []


def test_backward_accepts_a_new_field_with_a_default() -> None:
    assert check("BACKWARD", record(ID, EMAIL_DEFAULT), hist(V1)) == []


def test_backward_refuses_a_new_field_without_default_and_names_it() -> None:
    reasons = check("BACKWARD", record(ID, EMAIL_REQUIRED), hist(V1))
    assert len(reasons) == 1
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in reasons[0] and "'email'" in reasons[0]
    assert "version 1" in reasons[0]


def test_backward_accepts_removing_a_field_forward_refuses_removing_one_without_default() -> None:
    v2 = record(ID, EMAIL_REQUIRED)
    assert check("BACKWARD", V1, hist(v2)) == []          # new reader ignores the old writer's email
    reasons = check("FORWARD", V1, hist(v2))               # old reader needs email, new writer lacks it
    assert len(reasons) == 1 and "FORWARD" in reasons[0] and "'email'" in reasons[0]


def test_forward_accepts_a_new_required_field_backward_refuses_it() -> None:
    v2 = record(ID, EMAIL_REQUIRED)
    assert check("FORWARD", v2, hist(V1)) == []
    assert check("BACKWARD", v2, hist(V1))


def test_full_needs_both_directions() -> None:
    assert check("FULL", record(ID, EMAIL_DEFAULT), hist(V1)) == []
    reasons = check("FULL", record(ID, EMAIL_REQUIRED), hist(V1))
    assert [r.split(":")[0] for r in reasons] == ["BACKWARD"]
    removed = check("FULL", V1, hist(record(ID, EMAIL_REQUIRED)))
    assert [r.split(":")[0] for r in removed] == ["FORWARD"]


def test_type_change_is_refused_and_widening_int_to_long_is_not() -> None:
    reasons = check("BACKWARD", record({"name": "id", "type": "string"}), hist(V1))
    assert "TYPE_MISMATCH" in reasons[0] and "/fields/0" in reasons[0]
    assert check("BACKWARD", V1, hist(record({"name": "id", "type": "int"}))) == []  # reader long reads int
    assert check("FORWARD", V1, hist(record({"name": "id", "type": "int"})))         # reader int cannot read long


# v1: id; v2: id + email (required, accepted under FORWARD); v3: id only, but email removed.
# Against the latest (v2) only, v3 is fine backward; against v1 too it is still fine backward.
# The transitive boundary: a change compatible with the latest version but not with an older one.
def test_transitive_levels_check_every_version_the_plain_ones_only_the_latest() -> None:
    v1 = record(ID, {"name": "age", "type": "int", "default": 0})
    v2 = record(ID)                                              # age removed (backward-ok)
    v3 = record(ID, {"name": "age", "type": "string", "default": ""})  # age back, as a string
    history = hist(v1, v2)
    assert check("BACKWARD", v3, history) == []                  # v2 has no age: the default is used
    reasons = check("BACKWARD_TRANSITIVE", v3, history)          # v1 wrote age as an int
    assert len(reasons) == 1 and "version 1" in reasons[0] and "TYPE_MISMATCH" in reasons[0]
    assert check("FORWARD", v3, history) == []                   # v2 ignores age
    assert check("FORWARD_TRANSITIVE", v3, history)              # v1 cannot read a string age
    assert check("FULL", v3, history) == []
    assert len(check("FULL_TRANSITIVE", v3, history)) == 2       # both directions against v1


def test_first_version_is_always_accepted() -> None:
    for level in LEVELS:
        assert check(level, V1, []) == []


def test_enum_symbol_removed_is_forward_only() -> None:
    def enum(*symbols: str) -> avro.schema.Schema:
        return record({"name": "state", "type": {"type": "enum", "name": "State", "symbols": list(symbols)}})
    old, new = enum("NEW", "PAID", "SHIPPED"), enum("NEW", "PAID")
    assert check("FORWARD", new, hist(old)) == []
    reasons = check("BACKWARD", new, hist(old))
    assert "MISSING_ENUM_SYMBOLS" in reasons[0] and "SHIPPED" in reasons[0]


def test_unknown_level_is_an_error_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="FULL_TRANSITIVE"):
        check("SIDEWAYS", V1, hist(V1))
