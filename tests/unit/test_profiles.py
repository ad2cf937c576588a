"""The lab profile hides nothing: every override is in the README's "Profiles" table."""

from __future__ import annotations

import pathlib

from kafkalab.config import BROKER_CONFIGS, CLIENT_PROFILES, PROFILES

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _profiles_section() -> str:
    text = README.read_text()
    start = text.index("## Profiles")
    return text[start:text.index("\n## ", start + 1)]


def test_every_lab_override_is_in_the_readme_with_kafkas_value():
    section = _profiles_section()
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ") and "`" in line}
    for key, value in PROFILES["lab"].items():
        row = next((r for name, r in rows.items() if f"`{key}`" in name), None)
        assert row is not None, f"{key} is overridden by the lab profile but not in the README"
        cells = [c.strip() for c in row.split("|")]
        assert cells[2].split()[0] == str(value), (key, cells[2])
        kafka = BROKER_CONFIGS[key].default
        assert cells[3].split()[0] == str(kafka), (key, cells[3])
    for kind, overrides in CLIENT_PROFILES["lab"].items():
        for key in overrides:
            assert any(f"`{key}`" in name for name in rows), f"{kind} {key} missing from the README"


def test_the_kafka_profile_refuses_a_broker_segment_below_one_mib_and_the_lab_profile_keeps_tiny_ones():
    import pytest

    from kafkalab.config import broker_config
    from kafkalab.errors import ConfigError

    with pytest.raises(ConfigError, match="KIP-1030"):
        broker_config("kafka", {"log.segment.bytes": 1024})
    assert broker_config("kafka", {"log.segment.bytes": 1 << 20})["log.segment.bytes"] == 1 << 20
    assert broker_config("lab", {"log.segment.bytes": 1024})["log.segment.bytes"] == 1024
