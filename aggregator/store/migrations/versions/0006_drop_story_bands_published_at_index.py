"""Drop the unused ``ix_story_bands_published_at`` index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Candidate lookups walk ``story_bands`` by its primary key (band key, story id) and filter the
window on ``published_at`` row by row; no query reads the ``published_at`` index (checked with
EXPLAIN on SQLite and PostgreSQL), yet every new item updates it once per band (31 rows):
about 0.25-0.3 ms of the 2-2.5 ms story matching costs per item at 100k-1M stored items.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_story_bands_published_at", table_name="story_bands")


def downgrade() -> None:
    """Recreate it."""
    op.create_index("ix_story_bands_published_at", "story_bands", ["published_at"])
