"""Frozen settings types: what the config file (``config.py`` loads it) turns into.

Kept apart from the loader so pure modules (fetch, schedule, curate) can take their own slice
of the settings without importing TOML or environment handling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:  # resolved by ``config.py``'s validator, which imports pydantic (see there)
    from pydantic import Field

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
    """One edition rule: every condition it gives must hold (``aggregator.rules`` evaluates it).

    Text condition: one of ``fields`` contains one of ``keywords`` / ``phrases`` or matches
    ``regex``. Attribute conditions: ``sources`` (key or name), ``tags``, ``languages`` (tag
    prefix), ``max_age`` / ``min_age`` (seconds; the config accepts "6h"). Boolean: every rule of
    ``all``, at least one of ``any``, and not ``not`` (``not_`` here, a Python keyword). ``name``
    labels the rule in explanations; ``boost`` adds to the ranking score (top-level rules only).
    """

    fields: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    regex: str | None = None
    case_sensitive: bool = False
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    max_age: float | None = None
    min_age: float | None = None
    all: tuple[Rule, ...] = ()
    any: tuple[Rule, ...] = ()
    not_: Annotated[Rule | None, Field(alias="not")] = None
    name: str | None = None
    boost: float = 0.0


SORTS = ("time", "score")
# Which report leads (titles, links and dates) a story in an edition (aggregator.curate):
# weight: the highest-weight source's earliest report; earliest: the first report anywhere
# (who broke it); latest: the newest report; fullest: the report with the most text.
LEADS = ("weight", "earliest", "latest", "fullest")


@dataclass(frozen=True, slots=True)
class EditionConfig:
    """A named, curated output feed: rules pick stories, ranking orders and caps them."""

    name: str
    title: str
    description: str = ""
    include: tuple[Rule, ...] = ()  # empty: everything is in
    exclude: tuple[Rule, ...] = ()
    boost: tuple[Rule, ...] = ()  # rules that only change the score, never membership
    limit: int = 100
    max_age_days: float = 7.0
    sort: str = "time"  # time (newest first) | score (aggregator.rank)
    max_per_source: int | None = None  # stories per lead publisher; None = no cap
    lead: str = "weight"  # which report leads each story (LEADS)
    half_life: float = 24 * 3600.0  # seconds until freshness halves (the config accepts "24h")
    related: int = 3  # "Related updates" per story (earlier stories sharing entities); 0 = off


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

    # title + summary similarity (MinHash/LSH) beyond URL matches (README "Design notes":
    # stories); false groups by URL only, which makes a first poll of a long list much faster
    match_text: bool = True
    window_days: float = 3.0  # a new report is matched against stories this recent
    # an optional semantic backend (embeddings, translation): "package.module:factory", called
    # with semantic_options as keyword arguments (aggregator.dedupe.semantic); None: words only
    semantic: str | None = None
    semantic_options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The admin API under /api/: off unless a bearer token is configured."""

    token: str | None = None  # AGGREGATOR_ADMIN_TOKEN
    # CIDRs (e.g. "127.0.0.0/8", "10.1.0.0/16") that source URLs may resolve to despite being
    # private, loopback or link-local; empty = refuse them all (SSRF protection).
    allow_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EnrichSettings:
    """Story cards (``aggregator.enrich``): extractive always, an LLM endpoint optionally.

    Enrichment runs as its own job (every ``interval_seconds``), never inside polling. The LLM
    backend speaks the OpenAI chat-completions protocol to any compatible server; its key is
    best given as ``AGGREGATOR_ENRICH_LLM_API_KEY``.
    """

    enabled: bool = True  # the enrichment job at all (extractive cards: offline, cheap)
    interval_seconds: float = 60.0  # how often the job runs
    batch_size: int = 50  # stories looked at per pass (newest first)
    language: str = "en"  # language of LLM cards (and of the title given to foreign stories)
    llm_enabled: bool = False
    llm_base_url: str = ""  # e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1
    llm_model: str = ""
    llm_api_key: str | None = None  # AGGREGATOR_ENRICH_LLM_API_KEY
    llm_response_format: str = "json_schema"  # json_schema | json_object | none
    llm_max_output_tokens: int = 800
    llm_temperature: float = 0.2
    max_input_chars: int = 4000  # story text sent to the model, per report (lead) at most
    daily_token_budget: int = 200_000  # tokens per UTC day, all replicas together
    daily_cost_budget: float | None = None  # currency units per UTC day; None = no cost cap
    price_per_million_input: float = 0.0  # prices for the cost budget
    price_per_million_output: float = 0.0
    concurrency: int = 2  # LLM calls in flight per process
    timeout: float = 30.0  # wall-clock seconds per LLM request
    max_retries: int = 2  # in-call retries on 429 / 5xx / timeouts (with backoff)
    retry_base_seconds: float = 300.0  # a failed story is retried after this, doubling
    max_attempts: int = 8  # then it keeps its extractive card until its text changes


@dataclass(frozen=True, slots=True)
class RecapSettings:
    """The weekly recap (``aggregator.recap``): one item per edition per ISO week.

    A cron job builds the previous week's recap of every edition at ``day_of_week`` /
    ``hour`` / ``minute`` in ``timezone`` (an IANA name); weeks run Monday 00:00 to Monday 00:00
    in that time zone too.
    """

    enabled: bool = True
    day_of_week: str = "mon"  # mon | tue | wed | thu | fri | sat | sun
    hour: int = 7
    minute: int = 0
    timezone: str = "UTC"
    top_n: int = 10  # stories listed per recap


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
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    recap: RecapSettings = field(default_factory=RecapSettings)
    sources: tuple[SourceConfig, ...] = ()
    editions: tuple[EditionConfig, ...] = ()
