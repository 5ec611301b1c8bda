"""Load the TOML config plus ``AGGREGATOR_*`` environment overrides into frozen ``Settings``.

Validation is pydantic's (types, unknown keys) on the stdlib dataclasses of ``settings.py``, plus
the semantic checks below. Every error names the file (or environment variable), the key path
and what is wrong, e.g. ``config/aggregator.toml: sources[2].url: must be an http(s) URL``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, TypeAdapter, ValidationError

from aggregator.errors import ConfigError
from aggregator.settings import (
    FIELDS,
    AdminSettings,
    EditionConfig,
    FetchSettings,
    Rule,
    ScheduleSettings,
    ServerSettings,
    Settings,
    SourceConfig,
    StoriesSettings,
)
from aggregator.ssrf import parse_networks

DEFAULT_CONFIG = "config/aggregator.toml"
ENV_PREFIX = "AGGREGATOR_"
_SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "fetch": FetchSettings,
    "schedule": ScheduleSettings,
    "admin": AdminSettings,
    "stories": StoriesSettings,
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

# Unknown keys are errors, not silently ignored: a typo must not turn a setting off.
for _cls in (
    Settings,
    AdminSettings,
    StoriesSettings,
    ServerSettings,
    FetchSettings,
    ScheduleSettings,
    SourceConfig,
    Rule,
    EditionConfig,
):
    setattr(_cls, "__pydantic_config__", ConfigDict(extra="forbid"))  # noqa: B010
_ADAPTER = TypeAdapter(Settings)


def load_settings(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, override, validate. Raises ``ConfigError`` naming file, key and problem."""
    env = os.environ if env is None else env
    cfg_path = path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(Path(cfg_path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{cfg_path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc}") from exc
    origins = _apply_env(raw, env)
    raw["config_path"] = str(cfg_path)
    _prepare_sources(raw, cfg_path)
    try:
        settings = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _loc(err["loc"])
        origin = origins.get(where, cfg_path)
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(
            f"{origin}: {where}: {err['msg']} (got {err.get('input')!r}){more}"
        ) from exc
    _check(settings, cfg_path)
    return settings


def _loc(loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location as ``sources[2].url``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _scalar_fields(cls: type) -> dict[str, bool]:
    """Fields settable from the environment: name -> whether it is a list (comma-separated)."""
    hints = typing.get_type_hints(cls)
    scalars = (str, int, float, bool, str | None, int | None, float | None)
    out: dict[str, bool] = {}
    for f in dataclasses.fields(cls):
        if hints[f.name] in scalars:
            out[f.name] = False
        elif hints[f.name] == tuple[str, ...]:
            out[f.name] = True
    return out


def _env_value(raw: str, is_list: bool) -> str | list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()] if is_list else raw


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Override scalars from ``AGGREGATOR_<KEY>`` / ``AGGREGATOR_<SECTION>_<KEY>``.

    Returns which key paths came from the environment, so errors can name the variable.
    """
    origins: dict[str, str] = {}
    for name, is_list in _scalar_fields(Settings).items():
        if name == "config_path":
            continue
        var = ENV_PREFIX + name.upper()
        if var in env:
            raw[name] = _env_value(env[var], is_list)
            origins[name] = f"environment {var}"
    for section, cls in _SECTIONS.items():
        for name, is_list in _scalar_fields(cls).items():
            var = f"{ENV_PREFIX}{section.upper()}_{name.upper()}"
            if var in env:
                sect = raw.setdefault(section, {})
                if not isinstance(sect, dict):
                    raise ConfigError(f"{section}: must be a table")
                sect[name] = _env_value(env[var], is_list)
                origins[f"{section}.{name}"] = f"environment {var}"
    return origins


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a string like ``90``, ``15m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration like 600, '10m' or '2h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ConfigError(
                f"{where}: expected a duration like 600, '10m' or '2h', got {value!r}"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{where}: duration must be positive, got {value!r}")
    return seconds


def default_key(url: str) -> str:
    """A readable source key from its URL: ``https://www.ithome.com/rss/`` -> ``ithome-com``."""
    parts = urlsplit(url)
    host = (parts.hostname or "source").removeprefix("www.")
    return re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")[:48] or "source"


def free_key(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base-2``, ``base-3`` ... whichever is not ``taken``."""
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    return key


def _prepare_sources(raw: dict[str, Any], cfg_path: str) -> None:
    """Fill in derived source fields (key, name, interval) before type validation."""
    sources = raw.get("sources", [])
    if not isinstance(sources, list):
        raise ConfigError(f"{cfg_path}: sources: must be an array of tables ([[sources]])")
    taken: set[str] = {s["key"] for s in sources if isinstance(s, dict) and "key" in s}
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise ConfigError(f"{cfg_path}: sources[{i}]: must be a table")
        url = src.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{cfg_path}: sources[{i}].url: missing (every source needs a url)")
        if "key" not in src:
            key = free_key(default_key(url), taken)
            src["key"] = key
            taken.add(key)
        src.setdefault("name", src["key"])
        if "interval" in src:
            src["interval_seconds"] = int(
                parse_duration(src.pop("interval"), f"{cfg_path}: sources[{i}].interval")
            )


def _check(s: Settings, cfg_path: str) -> None:
    """Semantic checks pydantic's types cannot express."""
    keys: set[str] = set()
    urls: set[str] = set()
    for i, src in enumerate(s.sources):
        where = f"{cfg_path}: sources[{i}]"
        if urlsplit(src.url).scheme not in ("http", "https") or not urlsplit(src.url).hostname:
            raise ConfigError(f"{where}.url: must be an http(s) URL, got {src.url!r}")
        if not _NAME_RE.match(src.key):
            raise ConfigError(
                f"{where}.key: use lower-case letters, digits, '-' or '_', got {src.key!r}"
            )
        if src.key in keys:
            raise ConfigError(f"{where}.key: duplicate source key {src.key!r}")
        if src.url in urls:
            raise ConfigError(f"{where}.url: duplicate source url {src.url!r}")
        if src.weight <= 0:
            raise ConfigError(f"{where}.weight: must be positive, got {src.weight}")
        keys.add(src.key)
        urls.add(src.url)
    names: set[str] = set()
    if not s.editions:
        raise ConfigError(f"{cfg_path}: editions: define at least one [[editions]] table")
    for i, ed in enumerate(s.editions):
        where = f"{cfg_path}: editions[{i}]"
        if not _NAME_RE.match(ed.name):
            raise ConfigError(
                f"{where}.name: use lower-case letters, digits, '-' or '_', got {ed.name!r}"
            )
        if ed.name in names:
            raise ConfigError(f"{where}.name: duplicate edition name {ed.name!r}")
        names.add(ed.name)
        if ed.limit < 1 or ed.limit > 1000:
            raise ConfigError(f"{where}.limit: must be between 1 and 1000, got {ed.limit}")
        for kind in ("include", "exclude"):
            for j, rule in enumerate(getattr(ed, kind)):
                _check_rule(rule, f"{where}.{kind}[{j}]")
    sched = s.schedule
    if not 0 < sched.min_interval <= sched.max_interval:
        raise ConfigError(
            f"{cfg_path}: schedule.min_interval: must be positive and <= schedule.max_interval"
        )
    try:
        parse_networks(s.admin.allow_networks)
    except ConfigError as exc:
        raise ConfigError(f"{cfg_path}: {exc}") from exc
    if s.fetch.max_body_bytes < 1024:
        raise ConfigError(f"{cfg_path}: fetch.max_body_bytes: must be at least 1024")
    if s.fetch.concurrency < 1 or s.fetch.per_host_concurrency < 1:
        raise ConfigError(f"{cfg_path}: fetch.concurrency: must be at least 1")
    if urlsplit(s.server.base_url).scheme not in ("http", "https"):
        raise ConfigError(
            f"{cfg_path}: server.base_url: must be an http(s) URL, got {s.server.base_url!r}"
        )
    if not (s.database_url.startswith("sqlite") or s.database_url.startswith("postgresql")):
        raise ConfigError(
            f"{cfg_path}: database_url: only sqlite:/// and postgresql+psycopg:// URLs are "
            f"supported, got {s.database_url.split(':', 1)[0]!r}"
        )


def _check_rule(rule: Rule, where: str) -> None:
    if not rule.fields:
        raise ConfigError(f"{where}.fields: name at least one of {', '.join(FIELDS)}")
    for f in rule.fields:
        if f not in FIELDS:
            raise ConfigError(f"{where}.fields: unknown field {f!r}; use {', '.join(FIELDS)}")
    if not rule.keywords and not rule.regex:
        raise ConfigError(f"{where}: give keywords or regex")
    if rule.regex:
        try:
            re.compile(rule.regex)
        except re.error as exc:
            raise ConfigError(f"{where}.regex: invalid regular expression: {exc}") from exc
