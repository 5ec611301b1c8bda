"""Alembic migrations: apply from empty, match ``schema.py``, and survive concurrent starts."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from aggregator.store.db import alembic_config, make_engine, schema_is_current, upgrade
from aggregator.store.schema import metadata


def test_history_is_linear_with_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == ["0009"]
    assert [r.revision for r in script.walk_revisions()] == [
        "0009",
        "0008",
        "0007",
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]


def test_upgrade_from_empty_matches_metadata(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert not schema_is_current(engine)
        upgrade(engine)
        assert schema_is_current(engine)
        upgrade(engine)  # already at head: a no-op
        assert schema_is_current(engine)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == set(metadata.tables) | {
                "alembic_version"
            }
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_concurrent_upgrades_do_not_collide(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(engine_index: int) -> None:
        barrier.wait()
        try:
            upgrade(engines[engine_index])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(engines))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert all(schema_is_current(e) for e in engines)
    finally:
        for e in engines:
            e.dispose()


def test_the_switch_to_wal_is_retried_while_another_connection_holds_the_lock() -> None:
    """SQLite answers "database is locked" to the switch at once, without its busy handler."""
    import sqlite3

    from aggregator.store.db import _ensure_wal

    class Cursor:
        def __init__(self, failures: int, error: str = "database is locked") -> None:
            self.failures, self.error, self.calls = failures, error, 0

        def execute(self, sql: str) -> Cursor:
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise sqlite3.OperationalError(self.error)
            self.mode = "wal" if sql.endswith("=WAL") else "delete"
            return self

        def fetchone(self) -> tuple[str]:
            return (self.mode,)

    locked = Cursor(failures=3)
    _ensure_wal(locked)
    assert locked.calls == 5  # three refusals, then the read and the switch
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _ensure_wal(Cursor(failures=1, error="disk I/O error"))
