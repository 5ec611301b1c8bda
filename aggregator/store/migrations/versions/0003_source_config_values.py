"""Remember the config's own url/enabled per source.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

A config sync used to write the configured URL and ``enabled`` flag on every start, undoing a
permanent redirect (and its validators) or re-enabling a source that answered 410. With the
config-side values stored, a sync applies only what changed in the config file.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("config_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("config_enabled", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("config_enabled")
        batch.drop_column("config_url")
