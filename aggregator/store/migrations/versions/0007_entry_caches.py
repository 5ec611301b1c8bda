"""Entry caches: ``entry_caches``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

One row per source: the raw-span digests of its last parsed body and what each span became
(``aggregator.entrycache``). A changed body's unchanged entries are cut out before feedparser
runs. The rows are a cache: dropping them only costs one full parse per source.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``entry_caches``."""
    op.create_table(
        "entry_caches",
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_entry_caches_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_entry_caches")),
    )


def downgrade() -> None:
    """Drop the caches (the next poll of each source parses its body in full)."""
    op.drop_table("entry_caches")
