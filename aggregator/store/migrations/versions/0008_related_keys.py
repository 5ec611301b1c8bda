"""Related-update keys: ``related_keys``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

The keys of each story text that related updates index (``aggregator.related``), by a digest
of the text's inputs, so a render in a fresh process reads them instead of tokenizing every
story of the window again. A cache: dropping it only costs one slower render.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``related_keys`` and its ``created_at`` index (pruning)."""
    op.create_table(
        "related_keys",
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_related_keys")),
    )
    op.create_index("ix_related_keys_created_at", "related_keys", ["created_at"])


def downgrade() -> None:
    """Drop the keys (the next render computes them again)."""
    op.drop_table("related_keys")
