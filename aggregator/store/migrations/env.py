"""Alembic environment: runs migrations on the connection that ``db.upgrade`` hands over.

Configured from Python (``aggregator.store.db.alembic_config``), so there is no ``alembic.ini``.
Without a shared connection (e.g. ``alembic`` run by hand with ``-x url=...``) it builds its own
engine with ``db.make_engine`` so the SQLite tuning applies too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from aggregator.store.db import make_engine, write_options
from aggregator.store.schema import metadata


def _run(connection: Connection) -> None:
    """Configure the migration context on ``connection`` and run the pending migrations."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER support for later revisions
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the shared connection if there is one, else connect to ``-x url=`` / sqlalchemy.url."""
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=... or use aggregator.store.db.upgrade")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execution_options(**write_options())
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
