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

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

import aggregator.settings as _settings_module
from aggregator.dedupe.semantic import check_spec
from aggregator.errors import ConfigError
from aggregator.rules import check_edition_rules
from aggregator.settings import (
    LEADS,
    SORTS,
    AdminSettings,
    EditionConfig,
    EnrichSettings,
    FetchSettings,
    RecapSettings,
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
    "enrich": EnrichSettings,
    "recap": RecapSettings,
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

# Unknown keys are errors, not silently ignored: a typo must not turn a setting off.
for _cls in (
    Settings,
    AdminSettings,
    StoriesSettings,
    EnrichSettings,
    RecapSettings,
    ServerSettings,
    FetchSettings,
    ScheduleSettings,
    SourceConfig,
    Rule,
    EditionConfig,
):
    setattr(_cls, "__pydantic_config__", ConfigDict(extra="forbid"))  # noqa: B010
# ``settings.py`` names pydantic's ``Field`` only in an annotation (the ``not`` alias), so that
# the modules parse workers import do not load pydantic; the validator resolves it there.
_settings_module.Field = Field
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
    _prepare_editions(raw, cfg_path)
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
        if not 0 <= ed.related <= 20:
            raise ConfigError(f"{where}.related: must be between 0 and 20, got {ed.related}")
        _check_edition_ranking(ed, where)
        check_edition_rules(ed, where)
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
    _check_stories(s.stories, f"{cfg_path}: stories")
    _check_enrich(s.enrich, f"{cfg_path}: enrich")
    _check_recap(s.recap, f"{cfg_path}: recap")


def _check_stories(st: StoriesSettings, where: str) -> None:
    """``[stories]``: a positive window; a semantic backend spec whose module exists."""
    if st.window_days <= 0:
        raise ConfigError(f"{where}.window_days: must be positive, got {st.window_days}")
    if st.semantic is None:
        if st.semantic_options:
            raise ConfigError(f"{where}.semantic_options: set without stories.semantic")
        return
    try:
        check_spec(st.semantic)
    except ValueError as exc:
        raise ConfigError(f"{where}.semantic: {exc}") from exc


_RESPONSE_FORMATS = ("json_schema", "json_object", "none")


def _check_enrich(e: EnrichSettings, where: str) -> None:
    """Semantic checks of ``[enrich]``; the LLM keys only matter when ``llm_enabled``."""
    positive: dict[str, float] = {
        "interval_seconds": e.interval_seconds,
        "batch_size": e.batch_size,
        "concurrency": e.concurrency,
        "timeout": e.timeout,
        "retry_base_seconds": e.retry_base_seconds,
        "max_attempts": e.max_attempts,
        "llm_max_output_tokens": e.llm_max_output_tokens,
        "max_input_chars": e.max_input_chars,
        "daily_token_budget": e.daily_token_budget,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}.{key}: must be positive, got {value}")
    for key, value in {
        "max_retries": e.max_retries,
        "price_per_million_input": e.price_per_million_input,
        "price_per_million_output": e.price_per_million_output,
        "llm_temperature": e.llm_temperature,
    }.items():
        if value < 0:
            raise ConfigError(f"{where}.{key}: must not be negative, got {value}")
    if e.daily_cost_budget is not None and e.daily_cost_budget <= 0:
        raise ConfigError(
            f"{where}.daily_cost_budget: must be positive (or left out), got {e.daily_cost_budget}"
        )
    if e.llm_response_format not in _RESPONSE_FORMATS:
        raise ConfigError(
            f"{where}.llm_response_format: use one of {', '.join(_RESPONSE_FORMATS)}, "
            f"got {e.llm_response_format!r}"
        )
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", e.language):
        raise ConfigError(
            f"{where}.language: expected a language tag like 'en' or 'zh-CN', got {e.language!r}"
        )
    if not e.llm_enabled:
        return
    parts = urlsplit(e.llm_base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}.llm_base_url: llm_enabled needs the endpoint's http(s) base URL "
            f"(e.g. https://api.openai.com/v1), got {e.llm_base_url!r}"
        )
    if not e.llm_model.strip():
        raise ConfigError(f"{where}.llm_model: llm_enabled needs a model name")
    if e.daily_cost_budget is not None and not (
        e.price_per_million_input or e.price_per_million_output
    ):
        raise ConfigError(
            f"{where}.daily_cost_budget: set price_per_million_input/_output too, "
            "or the cost of a call is unknown"
        )


def _check_recap(r: RecapSettings, where: str) -> None:
    """``[recap]``: a real IANA time zone, a cron day/hour/minute, a sensible list size."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from apscheduler.triggers.cron import CronTrigger

    try:
        zone = ZoneInfo(r.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{where}.timezone: unknown time zone {r.timezone!r} (use an IANA name such as "
            "'UTC' or 'Asia/Shanghai')"
        ) from exc
    if not 0 <= r.hour <= 23:
        raise ConfigError(f"{where}.hour: must be between 0 and 23, got {r.hour}")
    if not 0 <= r.minute <= 59:
        raise ConfigError(f"{where}.minute: must be between 0 and 59, got {r.minute}")
    if not 1 <= r.top_n <= 100:
        raise ConfigError(f"{where}.top_n: must be between 1 and 100, got {r.top_n}")
    try:
        CronTrigger(day_of_week=r.day_of_week, hour=r.hour, minute=r.minute, timezone=zone)
    except ValueError as exc:
        raise ConfigError(
            f"{where}.day_of_week: expected a cron day such as 'mon', 'sun' or 'mon-fri', "
            f"got {r.day_of_week!r} ({exc})"
        ) from exc


def _check_edition_ranking(ed: EditionConfig, where: str) -> None:
    """Sort order, lead rule, per-publisher cap and freshness half-life of one edition."""
    if ed.sort not in SORTS:
        raise ConfigError(f"{where}.sort: use one of {', '.join(SORTS)}, got {ed.sort!r}")
    if ed.lead not in LEADS:
        raise ConfigError(f"{where}.lead: use one of {', '.join(LEADS)}, got {ed.lead!r}")
    if ed.max_per_source is not None and ed.max_per_source < 1:
        raise ConfigError(
            f"{where}.max_per_source: must be at least 1 (leave it out for no cap), "
            f"got {ed.max_per_source}"
        )
    if ed.half_life <= 0:
        raise ConfigError(f"{where}.half_life: must be a positive duration, got {ed.half_life}")
    if ed.max_age_days <= 0:
        raise ConfigError(f"{where}.max_age_days: must be positive, got {ed.max_age_days}")


_RULE_LISTS = ("include", "exclude", "boost")


def _prepare_editions(raw: dict[str, Any], cfg_path: str) -> None:
    """Durations to seconds (``half_life``, rules' ``max_age``/``min_age``) and the shape of
    boolean rules, before type validation, so errors name the key path as written."""
    editions = raw.get("editions", [])
    if not isinstance(editions, list):
        return  # pydantic names the problem
    for i, ed in enumerate(editions):
        if not isinstance(ed, dict):
            continue
        where = f"{cfg_path}: editions[{i}]"
        if "half_life" in ed:
            ed["half_life"] = parse_duration(ed["half_life"], f"{where}.half_life")
        for kind in _RULE_LISTS:
            rules = ed.get(kind)
            if isinstance(rules, list):
                for j, rule in enumerate(rules):
                    _prepare_rule(rule, f"{where}.{kind}[{j}]")


def _prepare_rule(rule: object, where: str) -> None:
    """One rule table and its sub-rules: see ``_prepare_editions``."""
    if not isinstance(rule, dict):
        raise ConfigError(f"{where}: must be a rule table, got {rule!r}")
    for key in ("max_age", "min_age"):
        if key in rule:
            rule[key] = parse_duration(rule[key], f"{where}.{key}")
    for key in ("all", "any"):
        if key not in rule:
            continue
        subs = rule[key]
        if not isinstance(subs, list) or not subs:
            raise ConfigError(
                f"{where}.{key}: must be a non-empty array of rule tables, "
                f'e.g. {key} = [{{ fields = ["title"], keywords = ["x"] }}, ...]'
            )
        for n, sub in enumerate(subs):
            _prepare_rule(sub, f"{where}.{key}[{n}]")
    if "not" in rule:
        sub = rule["not"]
        if isinstance(sub, list):
            raise ConfigError(
                f"{where}.not: must be one rule table, not an array "
                "(to negate several, write not = { any = [...] })"
            )
        _prepare_rule(sub, f"{where}.not")
