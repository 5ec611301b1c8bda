"""Initial schema: sources, stories, items, tombstones, snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Written by hand to match ``aggregator.store.schema`` exactly (a test compares the migrated
database with that metadata). Column types are plain SQLAlchemy types so this file does not
depend on Python helpers that may change later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    """Primary/foreign key type: BIGINT, INTEGER on SQLite (so it is the rowid alias)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    """Timestamp type: timezone-aware (values are always UTC)."""
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table and index."""
    op.create_table(
        "sources",
        sa.Column("id", _id(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("site_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("body_hash", sa.String(length=128), nullable=True),
        sa.Column("last_fetched_at", _ts(), nullable=True),
        sa.Column("last_success_at", _ts(), nullable=True),
        sa.Column("next_check_at", _ts(), nullable=True),
        sa.Column("mean_gap_seconds", sa.Float(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("key", name=op.f("uq_sources_key")),
        sa.UniqueConstraint("url", name=op.f("uq_sources_url")),
    )
    op.create_index("ix_sources_next_check_at", "sources", ["next_check_at"])

    op.create_table(
        "stories",
        sa.Column("id", _id(), nullable=False),
        sa.Column("public_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("merged_into", _id(), nullable=True),
        sa.Column("signals", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"],
            ["stories.id"],
            name=op.f("fk_stories_merged_into_stories"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stories")),
    )
    op.create_index("ix_stories_public_id", "stories", ["public_id"], unique=True)
    op.create_index("ix_stories_updated_at", "stories", ["updated_at"])
    op.create_index("ix_stories_merged_into", "stories", ["merged_into"])

    op.create_table(
        "items",
        sa.Column("id", _id(), nullable=False),
        sa.Column("source_id", _id(), nullable=False),
        sa.Column("story_id", _id(), nullable=False),
        sa.Column("item_key", sa.Text(), nullable=False),
        sa.Column("guid", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("canonical_url", sa.Text(), nullable=True),
        sa.Column("external_url", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("content_html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("published_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=True),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("collected_at", _ts(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_items_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["story_id"], ["stories.id"], name=op.f("fk_items_story_id_stories")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
    )
    op.create_index("ix_items_source_id_item_key", "items", ["source_id", "item_key"], unique=True)
    op.create_index("ix_items_canonical_url", "items", ["canonical_url"])
    op.create_index("ix_items_external_url", "items", ["external_url"])
    op.create_index("ix_items_story_id", "items", ["story_id"])
    op.create_index("ix_items_collected_at", "items", ["collected_at"])

    op.create_table(
        "tombstones",
        sa.Column("id", _id(), nullable=False),
        sa.Column("source_id", _id(), nullable=False),
        sa.Column("item_key", sa.Text(), nullable=False),
        sa.Column("canonical_url", sa.Text(), nullable=True),
        sa.Column("cutoff_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_tombstones_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tombstones")),
    )
    op.create_index(
        "ix_tombstones_source_id_item_key", "tombstones", ["source_id", "item_key"], unique=True
    )

    op.create_table(
        "snapshots",
        sa.Column("edition", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("generated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("edition", "format", name=op.f("pk_snapshots")),
    )


def downgrade() -> None:
    """Drop everything (data included)."""
    op.drop_table("snapshots")
    op.drop_table("tombstones")
    op.drop_table("items")
    op.drop_table("stories")
    op.drop_table("sources")
