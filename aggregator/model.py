"""Frozen value types, one per hop of the data flow.

``SourceState`` -> ``FetchResult`` (``Fetched`` | ``NotModified`` | ``FetchFailed``) ->
``ParsedFeed(ParsedEntry...)`` -> ``Item`` -> ``ItemIntent`` / ``UpdatePlan`` -> stored items and
stories (``StoredItem`` / ``StoryRecord``) -> ``EditionFeed(EditionEntry...)`` -> ``Snapshot``.

Foreign shapes (feedparser dicts, httpx responses, SQL rows) become these types in exactly one
adapter each and never leak past it. Every datetime here is timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def pickled_by_position(cls: type[T]) -> type[T]:
    """Pickle instances of the frozen dataclass ``cls`` as ``cls(*field values)``.

    What ``dataclass(frozen=True, slots=True)`` pickles by default is rebuilt with
    ``_dataclass_setstate``, which lists the class's fields again for every object: loading an
    item the parse workers send back cost the main process 3.5 us, against 2 us through the
    constructor. Only for classes whose every field is an ``__init__`` argument.
    """
    declared = fields(cls)  # type: ignore[arg-type]
    if any(not f.init for f in declared):
        raise TypeError(f"{cls.__name__} has fields outside __init__")
    values = attrgetter(*(f.name for f in declared))

    def __reduce__(self: T) -> tuple[Any, ...]:
        return (cls, values(self))

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class SourceState:
    """A publisher feed as stored in the database, with everything the poller remembers."""

    id: int
    key: str
    url: str
    name: str
    language: str | None = None
    weight: float = 1.0
    tags: tuple[str, ...] = ()
    interval_seconds: int | None = None  # fixed poll interval from config; None = adaptive
    enabled: bool = True
    site_url: str | None = None
    status: str = "new"  # new | ok | not_modified | error | gone | paused
    last_error: str | None = None
    error_count: int = 0
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_fetched_at: datetime | None = None
    last_success_at: datetime | None = None
    next_check_at: datetime | None = None
    mean_gap_seconds: float | None = None  # posting rate estimate, kept for the scheduler


# --------------------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True)
class Fetched:
    """A 200 response whose body was read completely (within the size cap)."""

    url: str  # final URL after redirects
    status_code: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    elapsed: float
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None  # set when every redirect in the chain was 301/308


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304: the publisher says nothing changed since our validators."""

    url: str
    headers: dict[str, str]
    elapsed: float


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """Anything else: the error class is short and stable (used in metrics and status)."""

    url: str
    error_class: str  # e.g. timeout, connect, dns, tls, http_404, http_410, too_large, ...
    message: str
    elapsed: float
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None


FetchResult = Fetched | NotModified | FetchFailed


# --------------------------------------------------------------------------- parse


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One entry as the publisher wrote it; HTML not yet sanitized, URLs possibly relative."""

    guid: str | None
    link: str | None
    title: str | None
    summary: str | None  # HTML or text
    content: str | None  # HTML or text (the fullest body the feed gives)
    author: str | None = None
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    updated: datetime | None = None
    language: str | None = None
    external_url: str | None = None  # JSON Feed external_url / link to another publisher


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed document."""

    format: str  # rss20, rss10, atom10, json11, ...
    title: str | None
    link: str | None  # the publisher's site
    language: str | None
    entries: tuple[ParsedEntry, ...]
    ttl_minutes: int | None = None
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[str] = frozenset()  # English day names, e.g. "Sunday"
    warning: str | None = None  # parser complaint that did not stop it (bozo)
    # ``aggregator.entrycache``: digests of every entry span of the body in document order
    # (empty when it could not be split), and the positions among them that were cut out
    # before parsing (their entries are not in ``entries``)
    entry_digests: tuple[bytes, ...] = ()
    dropped: tuple[int, ...] = ()


# --------------------------------------------------------------------------- normalize


@pickled_by_position
@dataclass(frozen=True, slots=True)
class Item:
    """A normalized entry: absolute URLs, UTC dates, sanitized HTML, plain-text title."""

    guid: str | None
    url: str | None  # absolute link to the original article
    canonical_url: str | None  # url without tracking parameters / fragment, normalized
    title: str
    summary_html: str
    content_html: str
    text: str  # plain text of title + summary, for matching
    author: str | None
    categories: tuple[str, ...]
    language: str | None
    published_at: datetime | None
    updated_at: datetime | None
    content_hash: str  # hash of title + content: detects edits
    external_url: str | None = None  # canonical URL of another publisher's article, if any


# --------------------------------------------------------------------------- plan / store


@dataclass(frozen=True, slots=True)
class ExistingItem:
    """What the planner needs to know about an item already stored for a source."""

    id: int
    item_key: str
    canonical_url: str | None
    content_hash: str


@dataclass(frozen=True, slots=True)
class ItemIntent:
    """Insert a new item, or update a stored one in place."""

    action: Literal["insert", "update"]
    item_key: str
    item: Item
    existing_id: int | None = None


@dataclass(frozen=True, slots=True)
class SourceUpdate:
    """The new poll state of a source after one fetch (fields are written as given)."""

    status: str
    last_error: str | None
    error_count: int
    next_check_at: datetime
    last_fetched_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_success_at: datetime | None = None
    url: str | None = None  # new URL after a permanent redirect
    site_url: str | None = None
    enabled: bool = True
    mean_gap_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """Everything one fetch of one source changes, applied in one transaction."""

    source_id: int
    source_update: SourceUpdate
    intents: tuple[ItemIntent, ...] = ()
    entry_cache: bytes | None = None  # the source's new entry cache, when the body gave one


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying a plan did."""

    new: int = 0
    updated: int = 0
    new_stories: int = 0


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item read back from the database, with its publisher."""

    id: int
    source_id: int
    source_key: str
    source_name: str
    source_weight: float
    source_site_url: str | None
    source_feed_url: str
    source_tags: tuple[str, ...]
    guid: str | None
    url: str | None
    canonical_url: str | None
    title: str
    summary_html: str
    content_html: str
    author: str | None
    categories: tuple[str, ...]
    language: str | None
    published_at: datetime | None
    updated_at: datetime | None
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class StoryRecord:
    """A story with all its reports, oldest first."""

    id: int
    public_id: str  # exported id: never changes once published
    created_at: datetime
    updated_at: datetime
    items: tuple[StoredItem, ...]
    card: Card | None = None  # the story's enrichment, when one has been made (enrich/)


# --------------------------------------------------------------------------- enrichment


@dataclass(frozen=True, slots=True)
class Card:
    """A story's enrichment: made once per story, off the hot path, cached by input hash.

    ``backend`` says who wrote it: ``extractive`` (offline: lead sentences and tags, the
    default) or ``llm`` (an OpenAI-compatible chat-completions endpoint; ``model`` names it).
    Exports mark LLM cards as "AI-generated analysis". Empty strings / tuples mean "not given".
    """

    backend: str  # extractive | llm
    tldr: str
    generated_at: datetime
    input_hash: str  # hash of the text the card was made from (re-made when it changes)
    model: str | None = None
    title: str | None = None  # title in the edition's language, for foreign-language stories
    what_changed: str = ""
    why_it_matters: str = ""
    what_to_do_next: str = ""
    who_should_care: str = ""
    key_takeaways: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def ai_generated(self) -> bool:
        """True when a language model wrote it (exports must say so)."""
        return self.backend == "llm"


# --------------------------------------------------------------------------- editions


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One report of a story, as exported (JSON Feed ``_aggregator.sources``)."""

    publisher: str
    url: str | None
    title: str
    published: datetime | None


@dataclass(frozen=True, slots=True)
class RelatedRef:
    """An earlier story linked from an entry's "Related updates"."""

    id: str  # that story's public id
    title: str
    url: str | None
    published: datetime


@dataclass(frozen=True, slots=True)
class EditionEntry:
    """One exported entry: the lead report of a story plus everything that also reported it."""

    id: str  # the story's public id
    title: str
    url: str | None
    publisher: str
    publisher_url: str | None  # publisher's site (or feed URL when no site is known)
    publisher_feed_url: str
    published: datetime  # lead's publication time (collected_at when the feed gave none)
    updated: datetime
    collected_at: datetime
    summary_html: str
    content_html: str
    author: str | None
    categories: tuple[str, ...]
    language: str | None
    sources: tuple[SourceRef, ...]  # every report, the lead first
    score: float = 0.0  # ranking score (curate/rank), for score-sorted editions and recaps
    card: Card | None = None  # enrichment of the story, if any
    related: tuple[RelatedRef, ...] = ()  # earlier stories sharing entities or tags
    recap_url: str | None = None  # the edition's latest weekly recap, linked from the card


@dataclass(frozen=True, slots=True)
class EditionFeed:
    """A rendered-to-be edition."""

    name: str
    title: str
    description: str
    base_url: str  # public base URL of this server, no trailing slash
    updated: datetime
    entries: tuple[EditionEntry, ...]
    language: str | None = None

    def feed_url(self, fmt: str) -> str:
        """Public URL of this edition in ``fmt`` (rss, atom or json)."""
        return f"{self.base_url}/feeds/{self.name}.{fmt}"

    @property
    def html_url(self) -> str:
        """Public URL of this edition's HTML page."""
        return f"{self.base_url}/editions/{self.name}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ready-made export that the web server hands out as-is."""

    edition: str
    format: str  # rss | atom | json
    body: bytes
    etag: str
    content_type: str
    generated_at: datetime
