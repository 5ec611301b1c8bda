"""Frozen settings types: what the config file (``config.py`` loads it) turns into.

Kept apart from the loader so pure modules (fetch, schedule, curate) can take their own slice
of the settings without importing TOML or environment handling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIELDS = ("title", "summary", "content", "categories", "source", "language", "tags")


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """How we talk HTTP to publishers."""

    user_agent: str = "aggregator/0.1 (+https://github.com/aggregator/aggregator; feed poller)"
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0  # wall-clock budget for one fetch, body included
    max_body_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 32  # global bound on requests in flight
    per_host_concurrency: int = 2
    per_host_delay: float = 1.0  # minimum seconds between request starts to one host
    host_overrides: dict[str, tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """When sources are polled."""

    tick_seconds: float = 5.0
    batch_size: int = 200  # sources claimed per tick
    lease_seconds: float = 300.0
    default_interval: float = 15 * 60.0
    min_interval: float = 2 * 60.0
    max_interval: float = 24 * 3600.0
    jitter: float = 0.1  # +- fraction of the interval
    error_backoff_base: float = 5 * 60.0


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """A publisher feed named in the config file."""

    key: str
    url: str
    name: str
    language: str | None = None
    interval_seconds: int | None = None
    weight: float = 1.0
    tags: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Rule:
    """Matches an item when any of ``fields`` contains any keyword or matches the regex."""

    fields: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    regex: str | None = None


@dataclass(frozen=True, slots=True)
class EditionConfig:
    """A named, curated output feed."""

    name: str
    title: str
    description: str = ""
    include: tuple[Rule, ...] = ()  # empty: everything is in
    exclude: tuple[Rule, ...] = ()
    limit: int = 100
    max_age_days: float = 7.0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP server that serves the exports."""

    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    cache_max_age: int = 300


@dataclass(frozen=True, slots=True)
class StoriesSettings:
    """Grouping reports of the same event from different publishers."""

    # title + summary similarity (MinHash/LSH) beyond URL matches; off by default for now
    # (cost and English precision, see README "Design notes": stories)
    match_text: bool = False
    window_days: float = 3.0  # a new report is matched against stories this recent


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The admin API under /api/: off unless a bearer token is configured."""

    token: str | None = None  # AGGREGATOR_ADMIN_TOKEN
    # CIDRs (e.g. "127.0.0.0/8", "10.1.0.0/16") that source URLs may resolve to despite being
    # private, loopback or link-local; empty = refuse them all (SSRF protection).
    allow_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon is configured with."""

    config_path: str
    database_url: str = "sqlite:///data/aggregator.db"
    log_format: str = "auto"  # auto | json | text
    log_level: str = "INFO"
    parse_workers: int | None = None  # parse processes; None = one per CPU (inline on 1 CPU)
    server: ServerSettings = field(default_factory=ServerSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    stories: StoriesSettings = field(default_factory=StoriesSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    sources: tuple[SourceConfig, ...] = ()
    editions: tuple[EditionConfig, ...] = ()
