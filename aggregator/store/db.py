"""Engines and migrations: how the daemon connects to SQLite or PostgreSQL and upgrades the schema.

SQLite is tuned on every new connection (WAL, foreign keys, busy timeout, synchronous=NORMAL,
a larger WAL between automatic checkpoints and a larger page cache: see the constants) and
SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN``: plain ``BEGIN`` for reads and
``BEGIN IMMEDIATE`` for connections marked with ``write_options()``, so writers queue on the busy
timeout instead of failing when a read transaction tries to upgrade. Alembic is configured from
Python (no ``alembic.ini``): ``script_location`` points at this package's ``migrations`` folder.
Alembic (with Mako and Pygments) takes a noticeable part of a one-shot command's start-up, so it
is imported only when the database is not already at the newest revision: the migration files'
``revision`` / ``down_revision`` lines name the heads, compared with ``alembic_version``.
"""

from __future__ import annotations

import ast
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from aggregator.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Pages of WAL before a commit checkpoints them into the database file (SQLite's default is
# 1,000). Story matching writes ~30 band rows per new item to random pages of the band index:
# at 1,000 pages every second matching commit ran a checkpoint, most of it a sync of the
# file, and copied pages that the next commits dirtied again (the index's interior pages).
# 8,000 pages (32 MB of WAL) sync once for ~10 such commits and copy a page once for all of
# them: ~0.4 ms less per matched item at 100k stored items (bench/stories_scale.md).
# Durability is unchanged: checkpoints only move committed pages from the WAL to the file.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 8_000
# A WAL that grew past this (a long reader kept a checkpoint from finishing) is cut back to
# it after the next checkpoint, so the file does not keep its largest size forever.
SQLITE_JOURNAL_SIZE_LIMIT_BYTES = 64 * 2**20
# Page cache per connection, in KiB (the PRAGMA takes it negated): SQLite's default, 2 MB.
# 16 MB made band writes ~25% faster at 100k stored items while the band index held every
# story ever stored; since the index is pruned to the recent window (store/bandprune.py) it
# measures no better than 2 MB there, and it cost a cold 2,000-feed poll 2-4 s of CPU.
SQLITE_CACHE_KIB = 2 * 1024
# Execution option marking a connection that will write (SQLite then uses BEGIN IMMEDIATE).
WRITE_OPTION = "aggregator_write"
# Arbitrary constant key for the PostgreSQL advisory lock that serialises concurrent upgrades.
_MIGRATION_LOCK_KEY = 0x616767726567  # "aggreg"


def masked_url(engine_or_url: Engine | str) -> str:
    """Return the database URL with any password replaced by ``***`` (safe for logs/errors)."""
    if isinstance(engine_or_url, Engine):
        return engine_or_url.url.render_as_string(hide_password=True)
    try:
        return make_url(engine_or_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


@contextmanager
def storage_errors(engine: Engine, what: str) -> Iterator[None]:
    """Map SQLAlchemy/driver exceptions raised inside the block to ``StorageError``."""
    try:
        yield
    except SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        first_line = str(detail).strip().splitlines()[0] if str(detail).strip() else repr(detail)
        raise StorageError(f"{what} failed on {masked_url(engine)}: {first_line}") from exc


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    For SQLite files the parent directory is created. Raises ``StorageError`` for a URL that
    cannot be parsed or whose driver is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"invalid database URL {masked_url(url)!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "postgresql":
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800)
    elif backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise StorageError(f"cannot create engine for {masked_url(url)}: {exc}") from exc
    if backend == "sqlite":
        _tune_sqlite(engine)
    return engine


def _ensure_wal(cursor: Any) -> None:
    """Put a SQLite database in WAL mode (persistent, so only asked when it is not in it).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without
    calling the busy handler, when another connection holds a lock meanwhile: two processes
    opening a new database together (replicas starting, ``upgrade`` racing ``poll``) saw it
    now and then. The switch is retried for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _tune_sqlite(engine: Engine) -> None:
    """Install the per-connection PRAGMAs and SQLAlchemy-managed BEGIN for SQLite."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so the PRAGMAs below wait for a concurrent writer too
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _ensure_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT_BYTES}")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def write_options() -> dict[str, Any]:
    """Execution options for a connection that will write (``conn.execution_options(**...)``)."""
    return {WRITE_OPTION: True}


@contextmanager
def write_transaction(engine: Engine, what: str) -> Iterator[Connection]:
    """One write transaction (``BEGIN IMMEDIATE`` on SQLite); errors become ``StorageError``."""
    with storage_errors(engine, what), engine.connect() as conn:
        conn.execution_options(**write_options())
        with conn.begin():
            yield conn


@contextmanager
def read_connection(engine: Engine, what: str) -> Iterator[Connection]:
    """One connection for reads (its implicit transaction ends with it); errors become
    ``StorageError``."""
    with storage_errors(engine, what), engine.connect() as conn:
        yield conn


def alembic_config(connection: Connection | None = None) -> Config:
    """Build the Alembic configuration in code; ``connection`` is handed to ``env.py``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (``alembic upgrade head``) in one transaction.

    On PostgreSQL an advisory transaction lock makes replicas that start together upgrade one
    after the other; on SQLite ``BEGIN IMMEDIATE`` does the same. A database already at the
    newest revision is recognised without loading Alembic.
    """
    if _at_head(engine):
        return
    from alembic import command

    with storage_errors(engine, "schema upgrade"), engine.connect() as conn:
        conn.execution_options(**write_options())
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            command.upgrade(alembic_config(conn), "head")


_ASSIGNMENT = re.compile(r"^(revision|down_revision|depends_on)\b[^=\n]*=\s*(.+)$", re.M)


@cache
def head_revisions() -> frozenset[str] | None:
    """The newest revisions of the migration scripts, read from their assignments (no Alembic).

    None when a script does not have the plain shape (literal ``revision``/``down_revision``,
    no ``depends_on``): then only Alembic can tell.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict(_ASSIGNMENT.findall(script.read_text(encoding="utf-8")))
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found.get("down_revision", "None"))
            depends = ast.literal_eval(found.get("depends_on", "None"))
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(revision, str) or depends is not None:
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):
            parents.update(down)
        elif down is not None:
            return None
    return frozenset(revisions - parents) or None


def _at_head(engine: Engine) -> bool:
    """True when ``alembic_version`` names exactly the heads of ``head_revisions``."""
    heads = head_revisions()
    if heads is None:
        return False
    with storage_errors(engine, "schema check"), engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return current == heads


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration (False when empty or behind)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with storage_errors(engine, "schema check"), engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads
