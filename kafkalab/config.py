"""Configuration: Kafka's dotted key names, Kafka's modern defaults, and clear errors.

Each catalog is a dict of ConfigDef by Kafka's key. `resolve(user, catalog, what)` checks a
user's dict against a catalog and returns every key with its typed value; an unknown key or a
bad value raises ConfigError naming the key, the expected type and (for typos) the closest
valid key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafkalab.errors import ConfigError

_BOOL_WORDS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: type  # int, float, bool, str, list
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    check_doc: str = ""

    def coerce(self, raw: Any, what: str) -> Any:
        """Accept Python values and Kafka's string forms ("true", "1000")."""
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value: Any = raw
                elif isinstance(raw, str) and raw.lower() in _BOOL_WORDS:
                    value = _BOOL_WORDS[raw.lower()]
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(raw, bool):
                    raise ValueError
                value = int(raw) if not isinstance(raw, float) or raw.is_integer() else None
                if value is None:
                    raise ValueError
            elif self.type is float:
                value = float(raw)
            elif self.type is list:
                value = [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
            else:
                if not isinstance(raw, str):
                    raise ValueError
                value = raw
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} config {self.name!r} expects {self.type.__name__}, got {raw!r}"
            ) from None
        if self.choices is not None:
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if v not in self.choices]
            if bad:
                raise ConfigError(
                    f"{what} config {self.name!r}={raw!r} is not one of {list(self.choices)}"
                )
        if self.check is not None and not self.check(value):
            raise ConfigError(f"{what} config {self.name!r}={raw!r}: {self.check_doc}")
        return value


def closest_key(key: str, catalog: Mapping[str, ConfigDef]) -> str | None:
    found = difflib.get_close_matches(key, list(catalog), n=1, cutoff=0.6)
    return found[0] if found else None


def resolve(user: Mapping[str, Any] | None, catalog: Mapping[str, ConfigDef], what: str) -> dict[str, Any]:
    """Every key of `catalog` with its value: the user's (checked) or the default."""
    out = {name: d.default for name, d in catalog.items()}
    for key, raw in (user or {}).items():
        d = catalog.get(key)
        if d is None:
            hint = closest_key(key, catalog)
            fix = f"; did you mean {hint!r}?" if hint else f"; valid keys: {', '.join(sorted(catalog))}"
            raise ConfigError(f"unknown {what} config {key!r}{fix}")
        out[key] = d.coerce(raw, what)
    return out


def _defs(*defs: ConfigDef) -> dict[str, ConfigDef]:
    return {d.name: d for d in defs}


def _nonneg(v: Any) -> bool:
    return v >= 0


def _positive(v: Any) -> bool:
    return v > 0


def _ms_or_unlimited(v: Any) -> bool:
    return v >= -1


# Per-topic configs (Kafka's topic-level names and defaults).
TOPIC_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("cleanup.policy", list, ["delete"], "delete, compact or both",
              choices=("delete", "compact")),
    ConfigDef("compression.type", str, "producer", "codec the broker stores",
              choices=("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")),
    ConfigDef("delete.retention.ms", int, 86_400_000, "how long tombstones survive compaction",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("file.delete.delay.ms", int, 60_000, "delay before a deleted segment's files go",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("index.interval.bytes", int, 4096, "bytes between offset index entries",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("max.compaction.lag.ms", int, 9_223_372_036_854_775_807, "",
              check=_positive, check_doc="must be > 0"),
    ConfigDef("max.message.bytes", int, 1_048_588, "largest record batch the topic accepts",
              check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("message.timestamp.type", str, "CreateTime", "",
              choices=("CreateTime", "LogAppendTime")),
    ConfigDef("min.cleanable.dirty.ratio", float, 0.5, "dirty share of the log before cleaning",
              check=lambda v: 0.0 <= v <= 1.0, check_doc="must be between 0 and 1"),
    ConfigDef("min.compaction.lag.ms", int, 0, "", check=_nonneg, check_doc="must be >= 0"),
    ConfigDef("min.insync.replicas", int, 1, "replicas that must have a write for acks=all",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("retention.bytes", int, -1, "size limit per partition (-1: none)",
              check=_ms_or_unlimited, check_doc="must be >= -1"),
    ConfigDef("retention.ms", int, 604_800_000, "age limit (-1: none)",
              check=_ms_or_unlimited, check_doc="must be >= -1"),
    ConfigDef("segment.bytes", int, 1_073_741_824, "roll the active segment at this size",
              check=lambda v: v >= 14, check_doc="must be >= 14"),
    ConfigDef("segment.index.bytes", int, 10_485_760, "largest offset index per segment",
              check=lambda v: v >= 8, check_doc="must be >= 8"),
    ConfigDef("segment.ms", int, 604_800_000, "roll the active segment at this age",
              check=_positive, check_doc="must be >= 1"),
    ConfigDef("unclean.leader.election.enable", bool, False,
              "let an out-of-sync replica become leader (and lose data)"),
)
