"""Weekly recaps: ``recaps``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

One row per edition and ISO week (``aggregator.recap``), keyed by the recap's stable id
``recap:<edition>:<week>`` so a rebuilt week replaces its row. The edition's newest recap is
exported as an item of the edition and linked from every story card.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``recaps`` and its (edition, published_at) index."""
    op.create_table(
        "recaps",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("edition", sa.String(200), nullable=False),
        sa.Column("week", sa.String(10), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content_html", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("week_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recaps")),
    )
    op.create_index("ix_recaps_edition_published_at", "recaps", ["edition", "published_at"])


def downgrade() -> None:
    """Drop the recaps (the cron job or ``aggregator recap`` rebuilds them from the items)."""
    op.drop_table("recaps")
