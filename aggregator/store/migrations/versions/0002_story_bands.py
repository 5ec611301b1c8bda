"""Story matching index: ``story_bands`` (MinHash LSH band keys per story).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

One row per (band key, story): the candidate lookup for text-similarity story matching
(``aggregator.store.matching``). Kept in the database, not in process memory, so replicas share
it and a restart loses nothing. ``published_at`` is the newest indexed report's publication
time, for the matching window; rows go with their story (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    """Primary/foreign key type: BIGINT, INTEGER on SQLite (as in 0001)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``story_bands`` and its story index."""
    op.create_table(
        "story_bands",
        sa.Column("band_key", sa.BigInteger(), nullable=False),
        sa.Column("story_id", _id(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["story_id"],
            ["stories.id"],
            name=op.f("fk_story_bands_story_id_stories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("band_key", "story_id", name=op.f("pk_story_bands")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_story_bands_story_id", "story_bands", ["story_id"])
    op.create_index("ix_story_bands_published_at", "story_bands", ["published_at"])


def downgrade() -> None:
    """Drop the index table (it can be rebuilt from the items)."""
    op.drop_table("story_bands")
