"""Database fixtures shared by every test that touches the store.

``db_url`` runs a test once on a fresh SQLite file and once on a throwaway PostgreSQL schema
(``AGGREGATOR_TEST_POSTGRES_URL``, skipped with a reason when unset). ``repo`` is a migrated
``Repository`` on that URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from aggregator.store.db import make_engine, upgrade
from aggregator.store.repo import Repository

POSTGRES_ENV = "AGGREGATOR_TEST_POSTGRES_URL"


def postgres_schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with ``search_path`` pinned to ``schema`` via libpq ``options``."""
    url = make_url(base_url)
    options = url.query.get("options")
    existing = options if isinstance(options, str) else " ".join(options or ())
    pinned = f"{existing} -csearch_path={schema}".strip()
    return url.update_query_dict({"options": pinned}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL nobody else uses: a SQLite file in tmp_path, or a fresh PG schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'aggregator.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(
            f"{POSTGRES_ENV} is not set "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); PostgreSQL tests skipped"
        )
    schema = f"test_{uuid4().hex[:20]}"
    admin = create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield postgres_schema_url(base, schema)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    """A ``Repository`` on ``db_url`` with the schema migrated to head."""
    engine = make_engine(db_url)
    upgrade(engine)
    try:
        yield Repository(engine)
    finally:
        engine.dispose()
