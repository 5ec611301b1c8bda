"""Story cards and the LLM budget: ``enrichments`` and ``llm_usage``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

``enrichments`` holds one card per story (extractive or LLM-written) with the LLM backend's
retry state; rows go with their story (``ON DELETE CASCADE``). ``llm_usage`` is the daily token
and cost budget shared by replicas, one row per UTC day.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    """Primary/foreign key type: BIGINT, INTEGER on SQLite (as in 0001)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``enrichments`` (with its retry index) and ``llm_usage``."""
    op.create_table(
        "enrichments",
        sa.Column("story_id", _id(), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("story_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("llm_status", sa.String(length=16), nullable=False),
        sa.Column("llm_attempts", sa.Integer(), nullable=False),
        sa.Column("llm_last_error", sa.Text(), nullable=True),
        sa.Column("llm_next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["story_id"],
            ["stories.id"],
            name=op.f("fk_enrichments_story_id_stories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("story_id", name=op.f("pk_enrichments")),
    )
    op.create_index("ix_enrichments_llm_next_attempt_at", "enrichments", ["llm_next_attempt_at"])
    op.create_table(
        "llm_usage",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_llm_usage")),
    )


def downgrade() -> None:
    """Drop both tables (cards are re-made by the next enrichment pass)."""
    op.drop_table("llm_usage")
    op.drop_index("ix_enrichments_llm_next_attempt_at", table_name="enrichments")
    op.drop_table("enrichments")
