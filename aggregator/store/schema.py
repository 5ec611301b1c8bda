"""The database schema as SQLAlchemy Core tables: the one place that names tables and columns.

Alembic migrations (``migrations/versions``) must produce exactly this metadata; a test runs an
autogenerate comparison against it on SQLite and PostgreSQL. Every timestamp column is
``UTCDateTime`` so values leave the store as aware UTC whatever the backend returns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments INTEGER PRIMARY KEY; BIGINT there would need AUTOINCREMENT games.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that binds and returns aware UTC datetimes.

    SQLite stores datetimes as text without an offset (and ignores ``tzinfo`` when binding), so
    values are converted to UTC before binding and marked UTC when read back; PostgreSQL returns
    aware values in the session time zone, which are converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC (naive values are taken to be UTC already)."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


sources = Table(
    "sources",
    metadata,
    Column("id", Id, primary_key=True),
    Column("key", String(200), nullable=False, unique=True),
    Column("url", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("language", String(35)),
    Column("weight", Float, nullable=False, default=1.0),
    Column("tags", JSON, nullable=False),
    Column("interval_seconds", Integer),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("origin", String(16), nullable=False),  # config | api
    # What the config file last said (url, enabled), so a sync applies only config *changes*
    # and never undoes what polling learned (a permanent redirect, a 410 that disabled it).
    Column("config_url", Text),
    Column("config_enabled", Boolean),
    Column("site_url", Text),
    Column("status", String(32), nullable=False, default="new"),
    Column("last_error", Text),
    Column("error_count", Integer, nullable=False, default=0),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("body_hash", String(128)),
    Column("last_fetched_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("next_check_at", UTCDateTime),
    Column("mean_gap_seconds", Float),
    Column("lease_owner", String(200)),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_sources_next_check_at", "next_check_at"),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Id, primary_key=True),
    Column("public_id", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("merged_into", Id, ForeignKey("stories.id", ondelete="SET NULL")),
    # Room for story matching (shingle signatures, MinHash/SimHash, centroid title): unused yet.
    Column("signals", JSON),
    Index("ix_stories_public_id", "public_id", unique=True),
    Index("ix_stories_updated_at", "updated_at"),
    Index("ix_stories_merged_into", "merged_into"),
)

items = Table(
    "items",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("story_id", Id, ForeignKey("stories.id"), nullable=False),
    Column("item_key", Text, nullable=False),
    Column("guid", Text),
    Column("url", Text),
    Column("canonical_url", Text),
    Column("external_url", Text),
    Column("title", Text, nullable=False),
    Column("summary_html", Text, nullable=False),
    Column("content_html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("author", Text),
    Column("categories", JSON, nullable=False),
    Column("language", String(35)),
    Column("published_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    Column("content_hash", String(128), nullable=False),
    Column("collected_at", UTCDateTime, nullable=False),
    # Per-item matching signature for near-duplicate story matching later (nullable, unused).
    Column("fingerprint", String(128)),
    Index("ix_items_source_id_item_key", "source_id", "item_key", unique=True),
    Index("ix_items_canonical_url", "canonical_url"),
    Index("ix_items_external_url", "external_url"),
    # (story_id, published_at): a story's newest report without reading item rows (renders)
    Index("ix_items_story_id_published_at", "story_id", "published_at"),
    Index("ix_items_collected_at", "collected_at"),
)

tombstones = Table(
    "tombstones",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("item_key", Text, nullable=False),
    Column("canonical_url", Text),
    Column("cutoff_at", UTCDateTime, nullable=False),  # the retention cutoff that purged it
    Index("ix_tombstones_source_id_item_key", "source_id", "item_key", unique=True),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("edition", String(200), primary_key=True),
    Column("format", String(16), primary_key=True),
    Column("body", LargeBinary, nullable=False),
    Column("etag", String(200), nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("generated_at", UTCDateTime, nullable=False),
)

# Story matching index (migration 0002; 0006 dropped its unused published_at index): MinHash LSH
# band keys of each story's reports, so a new item's candidate stories are one indexed lookup
# (``aggregator.store.matching``).
story_bands = Table(
    "story_bands",
    metadata,
    Column("band_key", BigInteger, primary_key=True),
    Column("story_id", Id, ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True),
    Column("published_at", UTCDateTime, nullable=False),  # newest indexed report, for the window
    Index("ix_story_bands_story_id", "story_id"),
    sqlite_with_rowid=False,  # a clustered primary key: half the size, one lookup per key
)

# Story cards (migration 0004, ``aggregator.store.enrichments``): one row per story, made off the
# hot path. ``input_hash`` is the hash of the story's current card input; the card JSON carries
# the hash it was made from, so a stale LLM card can stay shown while its refresh is pending.
# ``story_updated_at`` is the story's ``updated_at`` when last looked at: a story touched since
# then is looked at again. ``llm_*`` is the LLM backend's retry state (off | pending | ok |
# error | failed).
enrichments = Table(
    "enrichments",
    metadata,
    Column("story_id", Id, ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True),
    Column("input_hash", String(64), nullable=False),
    Column("story_updated_at", UTCDateTime, nullable=False),
    Column("backend", String(16), nullable=False),  # backend of the stored card
    Column("card", JSON, nullable=False),
    Column("llm_status", String(16), nullable=False),
    Column("llm_attempts", Integer, nullable=False, default=0),
    Column("llm_last_error", Text),
    Column("llm_next_attempt_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_enrichments_llm_next_attempt_at", "llm_next_attempt_at"),
)

# The LLM budget, shared by every replica: tokens and cost charged per UTC day (``day`` is
# ``YYYY-MM-DD``). Calls reserve an estimate first and settle with the usage the server reports.
llm_usage = Table(
    "llm_usage",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("tokens", BigInteger, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("calls", Integer, nullable=False, default=0),
    Column("refused", Integer, nullable=False, default=0),  # calls the budget turned away
    Column("updated_at", UTCDateTime, nullable=False),
)

# Weekly recaps (migration 0005, ``aggregator.store.recaps``): one row per edition and ISO week,
# keyed by the recap's stable id (``recap:<edition>:<week>``), so rebuilding a week replaces it.
# ``lines`` holds the listed stories as JSON; ``updated_at`` moves only when the content changes.
recaps = Table(
    "recaps",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("edition", String(200), nullable=False),
    Column("week", String(10), nullable=False),
    Column("title", Text, nullable=False),
    Column("content_html", Text, nullable=False),
    Column("lines", JSON, nullable=False),
    Column("url", Text),
    Column("week_start", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_recaps_edition_published_at", "edition", "published_at"),
)

# Entry caches (migration 0007, ``aggregator.store.entrycaches``): per source, the digests of
# the raw entry spans of its last parsed body and the identity each became
# (``aggregator.entrycache``), so a changed body's unchanged entries skip the parser. Losing a
# row only costs one full parse.
entry_caches = Table(
    "entry_caches",
    metadata,
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# Related-update keys (migration 0008, ``aggregator.store.relatedkeys``): the keys of a story
# text (``aggregator.related.TextKeyCache``) by a digest of its inputs, so a one-shot render does
# not tokenize the whole window again. A cache: rows older than a month are pruned, and a lost
# row is recomputed.
related_keys = Table(
    "related_keys",
    metadata,
    Column("digest", LargeBinary(16), primary_key=True),
    Column("data", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_related_keys_created_at", "created_at"),
)
