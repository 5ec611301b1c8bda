"""The repository: every read and write the daemon does against the database.

SQL rows become ``aggregator.model`` types here and nowhere else, and SQLAlchemy/driver errors
become ``StorageError`` here (via ``db.storage_errors``). Writes run in one short transaction each
(``BEGIN IMMEDIATE`` on SQLite); source leases make several replicas on PostgreSQL poll disjoint
sources (``FOR UPDATE SKIP LOCKED``). Item writes are idempotent upserts, so replaying a plan
after a crash or a lost lease does no harm.

The hot paths (claims, planner reads, ``apply``) run statements built once per dialect
(``_Sql``) and write a plan's items in batches: a constant number of statements per plan
however many items it holds (``bench/store_bench.py`` measures them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, uuid5

from sqlalchemy import (
    JSON,
    BindParameter,
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Float,
    Row,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from aggregator.errors import StorageError
from aggregator.model import (
    ApplyResult,
    ExistingItem,
    Item,
    ItemIntent,
    Snapshot,
    SourceState,
    StoredItem,
    StoryRecord,
    UpdatePlan,
)
from aggregator.settings import SourceConfig
from aggregator.store.cards import cards_for
from aggregator.store.db import read_connection, write_transaction
from aggregator.store.entrycaches import read_entry_cache, write_entry_caches
from aggregator.store.schema import UTCDateTime, items, snapshots, sources, stories, tombstones

log = logging.getLogger(__name__)
SOURCES, SNAPSHOTS = sources, snapshots  # aliases where a parameter shadows the table name

CHUNK = 500  # bound on bind parameters per IN (...) list
_MAX_MERGE_HOPS = 32
T = TypeVar("T")


class DuplicateSourceError(StorageError):
    """A source with the same key or URL already exists."""


def story_public_id(canonical_url: str | None, source_key: str, item_key: str) -> str:
    """Deterministic public id of a new story (replicas racing on one URL agree on it)."""
    name = canonical_url or f"{source_key}\n{item_key}"
    return f"urn:uuid:{uuid5(NAMESPACE_URL, name)}"


def _chunks(values: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """Split ``values`` into lists of at most ``size`` (deduplicated, order kept)."""
    batch: list[T] = []
    for value in dict.fromkeys(values):
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(conn: Connection, table: Table) -> Any:
    """A dialect-specific INSERT (both SQLite and PostgreSQL have ``on_conflict_do_*``)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"unsupported database dialect {conn.dialect.name!r}")


def _source_state(row: Row[Any, *tuple[Any, ...]]) -> SourceState:
    """Map a ``sources`` row to ``SourceState``."""
    m = row._mapping
    return SourceState(
        id=m["id"],
        key=m["key"],
        url=m["url"],
        name=m["name"],
        language=m["language"],
        weight=m["weight"],
        tags=tuple(m["tags"] or ()),
        interval_seconds=m["interval_seconds"],
        enabled=bool(m["enabled"]),
        site_url=m["site_url"],
        status=m["status"],
        last_error=m["last_error"],
        error_count=m["error_count"],
        etag=m["etag"],
        last_modified=m["last_modified"],
        body_hash=m["body_hash"],
        last_fetched_at=m["last_fetched_at"],
        last_success_at=m["last_success_at"],
        next_check_at=m["next_check_at"],
        mean_gap_seconds=m["mean_gap_seconds"],
    )


# Columns of ``items`` that come straight from a normalized ``Item`` (same attribute names).
_ITEM_FIELDS = (
    "guid",
    "url",
    "canonical_url",
    "external_url",
    "title",
    "summary_html",
    "content_html",
    "text",
    "author",
    "categories",
    "language",
    "updated_at",
    "content_hash",
)


def _item_values(item: Item) -> dict[str, Any]:
    """Values of ``_ITEM_FIELDS`` for ``item`` (categories as a JSON list, content stored once).

    An entry with one body (an RSS ``description`` and nothing else: most feeds) has the same
    HTML as its summary and its content. That copy is stored as an empty ``content_html``,
    which no item has otherwise (normalize fills an empty content from the summary), and
    ``_stored_item`` reads it back as the summary: a third less to write and store for such
    items. Rows written before this carry both copies and read back the same.
    """
    values = {name: getattr(item, name) for name in _ITEM_FIELDS}
    values["categories"] = list(item.categories)
    if item.content_html == item.summary_html:
        values["content_html"] = ""
    return values


_ITEM_COLUMNS = (
    items.c.id,
    items.c.source_id,
    items.c.story_id,
    items.c.guid,
    items.c.url,
    items.c.canonical_url,
    items.c.title,
    items.c.summary_html,
    items.c.content_html,
    items.c.author,
    items.c.categories,
    items.c.language,
    items.c.published_at,
    items.c.updated_at,
    items.c.collected_at,
    sources.c.key.label("source_key"),
    sources.c.name.label("source_name"),
    sources.c.weight.label("source_weight"),
    sources.c.site_url.label("source_site_url"),
    sources.c.url.label("source_feed_url"),
    sources.c.tags.label("source_tags"),
)


def story_items(conn: Connection, story_ids: Sequence[int]) -> dict[int, list[StoredItem]]:
    """Every report of each of ``story_ids``, oldest first (one query per chunk of ids)."""
    by_story: dict[int, list[StoredItem]] = {sid: [] for sid in story_ids}
    for chunk in _chunks(by_story):
        query = (
            select(*_ITEM_COLUMNS)
            .join(sources, sources.c.id == items.c.source_id)
            .where(items.c.story_id.in_(chunk))
            .order_by(items.c.published_at, items.c.collected_at, items.c.id)
        )
        for r in conn.execute(query):
            by_story[r.story_id].append(_stored_item(r))
    return by_story


def _stored_item(row: Row[Any, *tuple[Any, ...]]) -> StoredItem:
    """Map an items-join-sources row to ``StoredItem``."""
    m = row._mapping
    return StoredItem(
        id=m["id"],
        source_id=m["source_id"],
        source_key=m["source_key"],
        source_name=m["source_name"],
        source_weight=m["source_weight"],
        source_site_url=m["source_site_url"],
        source_feed_url=m["source_feed_url"],
        source_tags=tuple(m["source_tags"] or ()),
        guid=m["guid"],
        url=m["url"],
        canonical_url=m["canonical_url"],
        title=m["title"],
        summary_html=m["summary_html"],
        content_html=m["content_html"] or m["summary_html"],  # stored once (``_item_values``)
        author=m["author"],
        categories=tuple(m["categories"] or ()),
        language=m["language"],
        published_at=m["published_at"],
        updated_at=m["updated_at"],
        collected_at=m["collected_at"],
    )


@dataclass(frozen=True)
class _Sql:
    """Statements of the hot paths, built once per dialect with named bind parameters.

    Building a statement per call (``.values(**kw)``, ``.in_(list)``) costs far more than running
    it: SQLAlchemy coerces every value and walks the statement for its cache key each time.
    Built once, a statement's cache key is computed once per execution cheaply and its compiled
    form is reused. Row batches go as ``executemany`` on SQLite (``insertmanyvalues`` with
    RETURNING) and as one JSON parameter on PostgreSQL (``columnar``; see ``_item_insert``).
    Parameter names: ``b_*`` bind WHERE clauses, ``v_*`` bind SET values; statements without a
    SET clause take it from column-named parameters.
    """

    claim_due: Executable
    claim_source: Executable
    claim_keys: Executable
    existing_by_key: Executable
    existing_by_url: Executable
    tombstoned: Executable
    source_key: Executable
    source_by_url: Executable
    source_update: Executable
    source_update_leased: Executable
    state_update: Executable
    state_rows: Executable
    recent_hashes: Executable
    item_rows_by_key: Executable
    item_rows_by_id: Executable
    url_stories: Executable
    stories_by_public_id: Executable
    merged_links: Executable
    columnar: bool  # item/story writes take one JSON/array parameter, not a list of rows
    story_insert: Executable
    item_insert: Executable
    item_update_by_id: Executable
    item_update_by_key: Executable
    touch_stories: Executable


def _member(column: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """``column IN (:name)`` with a list parameter, as one statement text for any list length.

    SQLite: an expanding ``IN``. PostgreSQL: ``column = ANY(:name)`` with one array parameter
    (psycopg parses and prepares long or many-parameter statements on every call).
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _utc(name: str) -> BindParameter[datetime]:
    """A bind parameter holding a datetime, converted to UTC like the columns."""
    return bindparam(name, type_=UTCDateTime())


def _unnest(name: str, column: str) -> Any:
    """``unnest(:name) AS name(column)``: a PostgreSQL array parameter as a one-column table."""
    array = bindparam(name, type_=postgresql.ARRAY(Text()))
    return func.unnest(array).table_valued(column).render_derived(name=f"{name}_rows")


def _url_stories(dialect: str) -> Executable:
    """Per URL of ``b_values``: the lowest story id of a stored item carrying it either way.

    Rows ``(url, story_id)``; a NULL story id (PostgreSQL) or no row (SQLite) when none does.
    PostgreSQL gets one index probe per URL (correlated subqueries over ``unnest``): tables that
    grew from empty have no statistics yet, and an ``IN`` list is then planned as a sequential
    scan. SQLite plans ``IN`` lists on an index without statistics.
    """
    i = items.c
    if dialect == "postgresql":
        urls = _unnest("b_values", "url")
        by_canonical = select(func.min(i.story_id)).where(i.canonical_url == urls.c.url)
        by_external = select(func.min(i.story_id)).where(i.external_url == urls.c.url)
        return select(
            urls.c.url, func.least(by_canonical.scalar_subquery(), by_external.scalar_subquery())
        )
    return union_all(
        select(i.canonical_url, func.min(i.story_id))
        .where(i.canonical_url.in_(bindparam("b_values", expanding=True)))
        .group_by(i.canonical_url),
        select(i.external_url, func.min(i.story_id))
        .where(i.external_url.in_(bindparam("b_values", expanding=True)))
        .group_by(i.external_url),
    )


def _stories_by_public_id(dialect: str) -> Executable:
    """Rows ``(id, public_id)`` of the stories whose public id is in ``b_values`` (id may be
    NULL on PostgreSQL, which probes the unique index once per value; see ``_url_stories``)."""
    st = stories.c
    if dialect == "postgresql":
        wanted = _unnest("b_values", "public_id")
        found = select(st.id).where(st.public_id == wanted.c.public_id).scalar_subquery()
        return select(found.label("id"), wanted.c.public_id)
    return select(st.id, st.public_id).where(_member(st.public_id, "b_values", dialect))


# Columns of an inserted item row (``_item_insert``).
_ITEM_INSERT_COLUMNS: tuple[str, ...] = (
    "source_id",
    "story_id",
    "item_key",
    "published_at",
    "collected_at",
    *_ITEM_FIELDS,
)


# Keys of a row of ``_update_params``: the item id, then what an update writes.
_ITEM_UPDATE_COLUMNS: tuple[str, ...] = ("id", "published_at", *_ITEM_FIELDS)


def _story_insert(dialect: str) -> Executable:
    """Insert new stories, skipping public ids that exist; RETURNING ``(public_id, id)``.

    One short statement with ``v_now`` and the public ids as one parameter ``b_values``:
    PostgreSQL ``INSERT ... SELECT FROM unnest(:b_values)`` (an array), SQLite ``INSERT ...
    SELECT FROM json_each(:b_values)`` (a JSON array).
    """
    if dialect == "postgresql":
        wanted = _unnest("b_values", "public_id")
        rows: Any = select(wanted.c.public_id, _utc("v_now"), _utc("v_now"))
        stmt: Any = postgresql.insert(stories).from_select(
            ["public_id", "created_at", "updated_at"], rows
        )
    else:
        ids = func.json_each(bindparam("b_values", type_=Text())).table_valued("value").alias("r")
        rows = select(ids.c.value, _utc("v_now"), _utc("v_now")).select_from(ids).where(true())
        stmt = sqlite.insert(stories).from_select(["public_id", "created_at", "updated_at"], rows)
    return stmt.on_conflict_do_nothing(index_elements=["public_id"]).returning(
        stories.c.public_id, stories.c.id
    )


#: ``_item_insert`` for SQLite as DB-API text (``_insert_items``).
_SQLITE_ITEM_INSERT = (
    f"INSERT INTO items ({', '.join(_ITEM_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ITEM_INSERT_COLUMNS)}) "
    "ON CONFLICT (source_id, item_key) DO NOTHING RETURNING item_key"
)


_SQLITE_DATETIME_POSITIONS = tuple(
    i for i, name in enumerate(_ITEM_INSERT_COLUMNS) if isinstance(items.c[name].type, UTCDateTime)
)
_SQLITE_CATEGORIES_POSITION = _ITEM_INSERT_COLUMNS.index("categories")


def _insert_items(conn: Connection, sql: _Sql, rows: list[dict[str, Any]]) -> set[str]:
    """Insert item rows (dicts keyed by ``_ITEM_INSERT_COLUMNS``); the keys actually inserted.

    On SQLite each row is one execution of a prepared statement on the DB-API cursor, inside
    the caller's transaction, with values already in the form SQLAlchemy's types would bind
    (``_sqlite_value``): SQLAlchemy's executemany spent more time in its per-row, per-column
    bind processing than SQLite spent inserting (a third of a cold poll's main-process CPU),
    and SQLite releases the GIL while it works.
    """
    if sql.columnar:
        return set(conn.execute(sql.item_insert, _insert_params(sql, rows)).scalars())
    cursor = conn.connection.cursor()
    inserted: set[str] = set()
    driver_error = conn.dialect.loaded_dbapi.Error
    text_of: dict[datetime, str] = {}  # collected_at is one value for all rows
    values: list[Any] = []
    try:
        for row in rows:
            values = [row[name] for name in _ITEM_INSERT_COLUMNS]
            for i in _SQLITE_DATETIME_POSITIONS:
                moment = values[i]
                if moment is not None:
                    text = text_of.get(moment)
                    if text is None:
                        text = text_of[moment] = _sqlite_value(moment)
                    values[i] = text
            values[_SQLITE_CATEGORIES_POSITION] = json.dumps(values[_SQLITE_CATEGORIES_POSITION])
            for (key,) in cursor.execute(_SQLITE_ITEM_INSERT, values):
                inserted.add(key)
    except driver_error as exc:  # as SQLAlchemy would have raised it (IntegrityError, ...)
        raise DBAPIError.instance(_SQLITE_ITEM_INSERT, values, exc, driver_error) from exc
    finally:
        cursor.close()
    return inserted


def _sqlite_value(value: Any) -> Any:
    """``value`` as SQLAlchemy would bind it on SQLite: datetimes as the naive UTC text its
    ``DATETIME`` writes (``2026-11-28 09:30:00.000000``), lists (JSON columns) as JSON."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(" ", "microseconds")
    if isinstance(value, list):
        return json.dumps(value)
    return value


def _recordset(table: Table, columns: Sequence[str]) -> Any:
    """``json_to_recordset(:b_rows) AS r(col type, ...)``: a JSON array of row objects as rows.

    ``b_rows`` is JSON text (``_json_rows``), cast on the server.
    """
    typed = [column(name, table.c[name].type) for name in columns]
    rows = func.json_to_recordset(cast(bindparam("b_rows", type_=Text()), JSON))
    return rows.table_valued(*typed).render_derived(name="r", with_types=True)


def _item_insert(dialect: str) -> Executable:
    """Insert new items, skipping keys the source has; RETURNING ``item_key``.

    PostgreSQL: the rows as one JSON parameter ``b_rows`` (see ``_insert_params``) expanded by
    ``json_to_recordset``: one short statement whatever the row count, where a multi-row VALUES
    list would be re-parsed by psycopg on every call and per-column arrays cost more to encode
    than ``json.dumps``. SQLite: not executed through SQLAlchemy on the hot path (see
    ``_insert_items``); this form documents the statement and serves as its reference.
    """
    if dialect != "postgresql":
        stmt: Any = sqlite.insert(items)
    else:
        rows = _recordset(items, _ITEM_INSERT_COLUMNS)
        values = select(*(rows.c[name] for name in _ITEM_INSERT_COLUMNS))
        stmt = postgresql.insert(items).from_select(list(_ITEM_INSERT_COLUMNS), values)
    return stmt.on_conflict_do_nothing(index_elements=["source_id", "item_key"]).returning(
        items.c.item_key
    )


def _item_update_by_id(dialect: str, item_set: dict[str, Any]) -> Executable:
    """Update items in place by id from ``_update_params`` (``published_at`` None keeps it).

    SQLite: executemany with ``b_id`` and ``v_<column>``. PostgreSQL: one ``UPDATE ... FROM
    json_to_recordset(:b_rows)`` (a primary-key nested loop), not one statement per row.
    """
    if dialect != "postgresql":
        return update(items).where(items.c.id == bindparam("b_id")).values(item_set)
    rows = _recordset(items, _ITEM_UPDATE_COLUMNS)
    values: dict[str, Any] = {name: rows.c[name] for name in _ITEM_FIELDS}
    values["published_at"] = func.coalesce(rows.c.published_at, items.c.published_at)
    return update(items).where(items.c.id == rows.c.id).values(values)


def _state_update() -> Executable:
    """``UPDATE sources`` with a source's whole poll state, for ``executemany``.

    Every row binds every parameter (``executemany`` needs one shape): ``v_site_url``,
    ``v_last_success_at`` and ``v_mean_gap_seconds`` None keep the stored value, ``v_enabled``
    False disables the source and True keeps whatever it is. The lease is cleared.
    """
    s = sources.c
    return (
        update(sources)
        .where(s.id == bindparam("b_id"))
        .values(
            status=bindparam("v_status"),
            last_error=bindparam("v_last_error"),
            error_count=bindparam("v_error_count"),
            next_check_at=_utc("v_next_check_at"),
            last_fetched_at=_utc("v_last_fetched_at"),
            etag=bindparam("v_etag"),
            last_modified=bindparam("v_last_modified"),
            body_hash=bindparam("v_body_hash"),
            site_url=func.coalesce(bindparam("v_site_url", type_=Text()), s.site_url),
            last_success_at=func.coalesce(_utc("v_last_success_at"), s.last_success_at),
            mean_gap_seconds=func.coalesce(
                bindparam("v_mean_gap_seconds", type_=Float()), s.mean_gap_seconds
            ),
            enabled=s.enabled & bindparam("v_enabled", type_=Boolean()),
            lease_owner=None,
            lease_until=None,
        )
    )


@cache
def _sql(dialect: str) -> _Sql:
    """Build the hot-path statements for ``dialect`` (``sqlite`` or ``postgresql``)."""
    if dialect not in ("postgresql", "sqlite"):
        raise StorageError(f"unsupported database dialect {dialect!r}")
    s, i, st = sources.c, items.c, stories.c
    due = (
        select(s.id)
        .where(
            s.enabled.is_(True),
            or_(s.next_check_at.is_(None), s.next_check_at <= _utc("b_now")),
            or_(s.lease_until.is_(None), s.lease_until <= _utc("b_now")),
        )
        .order_by(s.next_check_at.asc().nulls_first(), s.id)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True)
    )
    lease = {"lease_owner": bindparam("v_owner"), "lease_until": _utc("v_until")}
    claimable = or_(  # no lease, an expired one, or the claimer's own
        s.lease_until.is_(None),
        s.lease_until <= _utc("b_now"),
        s.lease_owner == bindparam("b_owner"),
    )
    existing = (i.id, i.item_key, i.canonical_url, i.content_hash)
    item_rows = select(i.id, i.item_key, i.story_id).with_for_update()
    item_set: dict[str, Any] = {
        name: bindparam(f"v_{name}", type_=items.c[name].type) for name in _ITEM_FIELDS
    }
    item_set["published_at"] = func.coalesce(_utc("v_published_at"), i.published_at)
    return _Sql(
        claim_due=update(sources)
        .where(
            s.id.in_(due.scalar_subquery()),
            or_(s.lease_until.is_(None), s.lease_until <= _utc("b_now")),
        )
        .values(lease)
        .returning(*sources.c),
        claim_source=update(sources)
        .where(s.key == bindparam("b_key"), claimable)
        .values(lease)
        .returning(*sources.c),
        claim_keys=update(sources)
        .where(_member(s.key, "b_values", dialect), claimable)
        .values(lease)
        .returning(*sources.c),
        existing_by_key=select(*existing).where(
            i.source_id == bindparam("b_source"), _member(i.item_key, "b_values", dialect)
        ),
        existing_by_url=select(*existing).where(
            i.source_id == bindparam("b_source"), _member(i.canonical_url, "b_values", dialect)
        ),
        tombstoned=select(tombstones.c.item_key).where(
            tombstones.c.source_id == bindparam("b_source"),
            _member(tombstones.c.item_key, "b_values", dialect),
        ),
        source_key=select(s.key).where(s.id == bindparam("b_id")),
        source_by_url=select(s.id, s.key).where(s.url == bindparam("b_url")),
        source_update=update(sources).where(s.id == bindparam("b_id")).returning(s.key),
        state_update=_state_update(),
        state_rows=select(s.id, s.lease_owner)
        .where(_member(s.id, "b_values", dialect))
        .with_for_update(),
        recent_hashes=select(i.id, i.item_key, i.canonical_url, i.content_hash)
        .where(i.source_id == bindparam("b_source"))
        .order_by(i.id.desc())
        .limit(bindparam("b_limit")),
        source_update_leased=update(sources)
        .where(s.id == bindparam("b_id"), s.lease_owner == bindparam("b_owner"))
        .returning(s.key),
        item_rows_by_key=item_rows.where(
            i.source_id == bindparam("b_source"), _member(i.item_key, "b_values", dialect)
        ),
        item_rows_by_id=item_rows.where(
            i.source_id == bindparam("b_source"), _member(i.id, "b_values", dialect)
        ),
        url_stories=_url_stories(dialect),
        stories_by_public_id=_stories_by_public_id(dialect),
        merged_links=select(st.id, st.merged_into).where(
            _member(st.id, "b_values", dialect), st.merged_into.is_not(None)
        ),
        columnar=dialect == "postgresql",
        story_insert=_story_insert(dialect),
        item_insert=_item_insert(dialect),
        item_update_by_id=_item_update_by_id(dialect, item_set),
        item_update_by_key=update(items)
        .where(i.source_id == bindparam("b_source"), i.item_key == bindparam("b_key"))
        .values(item_set)
        .returning(i.story_id),
        touch_stories=update(stories)
        .where(_member(st.id, "b_values", dialect))
        .values(updated_at=_utc("v_now")),
    )


class Repository:
    """Database access for sources, items, stories, tombstones and snapshots."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The engine this repository uses."""
        return self._engine

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite); errors become StorageError."""
        with write_transaction(self._engine, what) as conn:
            yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        """One read transaction; errors become StorageError."""
        with read_connection(self._engine, what) as conn:
            yield conn

    # ------------------------------------------------------------------ sources

    def sync_sources(self, sources: Sequence[SourceConfig], now: datetime) -> None:
        """Make the config's sources exist as configured; disable config sources it dropped.

        Sources match by key. A config key that is new but whose URL belongs to a source no longer
        in the config (a renamed key) takes that row over, keeping its items. Sources added via the
        CLI/API (origin ``api``) are left alone unless the config names their key or URL.
        """
        wanted = {cfg.key: cfg for cfg in sources}
        seen_urls: dict[str, str] = {}
        for cfg in wanted.values():
            if cfg.url in seen_urls:
                raise DuplicateSourceError(
                    f"sources {seen_urls[cfg.url]!r} and {cfg.key!r} have the same URL {cfg.url}"
                )
            seen_urls[cfg.url] = cfg.key
        with self._write("sync sources") as conn:
            rows = {r.key: r for r in conn.execute(select(SOURCES))}
            by_url = {r.url: r for r in rows.values()}
            kept: set[int] = set()
            for cfg in wanted.values():
                values: dict[str, Any] = {
                    "key": cfg.key,
                    "url": cfg.url,
                    "name": cfg.name,
                    "language": cfg.language,
                    "weight": cfg.weight,
                    "tags": list(cfg.tags),
                    "interval_seconds": cfg.interval_seconds,
                    "enabled": cfg.enabled,
                    "origin": "config",
                    "config_url": cfg.url,
                    "config_enabled": cfg.enabled,
                }
                row = rows.get(cfg.key)
                holder = by_url.get(cfg.url)
                if holder is not None and holder.key != cfg.key:
                    if holder.key in wanted:
                        raise DuplicateSourceError(
                            f"sources {holder.key!r} and {cfg.key!r} have the same URL {cfg.url}"
                        )
                    if row is not None:
                        raise DuplicateSourceError(
                            f"source {cfg.key!r}: URL {cfg.url} already belongs to {holder.key!r}"
                        )
                    row = holder  # renamed key: adopt the row and its items
                if row is None:
                    conn.execute(
                        SOURCES.insert().values(
                            **values,
                            status="new",
                            error_count=0,
                            next_check_at=now,
                            created_at=now,
                        )
                    )
                    continue
                # Only what the config *changed* is applied: polling may have moved the source
                # (permanent redirect) or disabled it (410), and a restart must not undo that.
                configured_url = row.config_url or row.url
                if cfg.url == configured_url:
                    values["url"] = row.url
                elif row.url != cfg.url:  # a different feed: forget validators, poll it now
                    values.update(etag=None, last_modified=None, body_hash=None, next_check_at=now)
                if cfg.enabled == row.config_enabled and cfg.url == configured_url:
                    values["enabled"] = row.enabled
                if any(getattr(row, name) != value for name, value in values.items()):
                    # a restart with an unchanged config writes nothing (thousands of sources)
                    conn.execute(update(SOURCES).where(SOURCES.c.id == row.id).values(**values))
                kept.add(row.id)
                by_url.pop(row.url, None)
                by_url[cfg.url] = row
            dropped = [
                r.id
                for r in rows.values()
                if r.origin == "config" and r.enabled and r.id not in kept and r.key not in wanted
            ]
            for chunk in _chunks(dropped):
                conn.execute(
                    update(SOURCES)
                    .where(SOURCES.c.id.in_(chunk))
                    .values(enabled=False, config_enabled=False)  # as if the config said so
                )

    def add_source(self, cfg: SourceConfig, now: datetime, origin: str = "api") -> SourceState:
        """Add one source (due now). Raises ``DuplicateSourceError`` if the key or URL exists."""
        try:
            with self._write("add source") as conn:
                clash = conn.execute(
                    select(sources.c.key, sources.c.url).where(
                        or_(sources.c.key == cfg.key, sources.c.url == cfg.url)
                    )
                ).first()
                if clash is not None:
                    what = f"key {cfg.key!r}" if clash.key == cfg.key else f"URL {cfg.url}"
                    raise DuplicateSourceError(
                        f"a source with {what} already exists ({clash.key!r})"
                    )
                row = conn.execute(
                    sources.insert()
                    .values(
                        key=cfg.key,
                        url=cfg.url,
                        name=cfg.name,
                        language=cfg.language,
                        weight=cfg.weight,
                        tags=list(cfg.tags),
                        interval_seconds=cfg.interval_seconds,
                        enabled=cfg.enabled,
                        origin=origin,
                        status="new",
                        error_count=0,
                        next_check_at=now,
                        created_at=now,
                    )
                    .returning(*sources.c)
                ).one()
                return _source_state(row)
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # lost a race with another writer
                raise DuplicateSourceError(
                    f"a source with key {cfg.key!r} or URL {cfg.url} already exists"
                ) from exc.__cause__
            raise

    def remove_source(self, key: str) -> bool:
        """Delete a source with its items and tombstones; stories left empty go too."""
        with self._write("remove source") as conn:
            source_id = conn.execute(select(sources.c.id).where(sources.c.key == key)).scalar()
            if source_id is None:
                return False
            story_ids = list(
                conn.execute(
                    select(items.c.story_id).where(items.c.source_id == source_id).distinct()
                ).scalars()
            )
            conn.execute(delete(items).where(items.c.source_id == source_id))
            conn.execute(delete(tombstones).where(tombstones.c.source_id == source_id))
            conn.execute(delete(sources).where(sources.c.id == source_id))
            _delete_empty_stories(conn, story_ids)
            return True

    def set_enabled(self, key: str, enabled: bool) -> bool:
        """Enable or disable a source; False when there is no such key."""
        with self._write("set source enabled") as conn:
            result = conn.execute(
                update(sources).where(sources.c.key == key).values(enabled=enabled)
            )
            return result.rowcount > 0

    def list_sources(self) -> list[SourceState]:
        """Every source, by key."""
        with self._read("list sources") as conn:
            return [_source_state(r) for r in conn.execute(select(sources).order_by(sources.c.key))]

    def get_source(self, key: str) -> SourceState | None:
        """One source by key."""
        with self._read("get source") as conn:
            row = conn.execute(select(sources).where(sources.c.key == key)).first()
            return None if row is None else _source_state(row)

    # ------------------------------------------------------------------ leases

    def claim_due_sources(
        self, now: datetime, limit: int, owner: str, lease_seconds: float
    ) -> list[SourceState]:
        """Lease up to ``limit`` due sources to ``owner``, most overdue first.

        Due: enabled, ``next_check_at <= now`` (or never set), lease free or expired. One
        ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`` on
        PostgreSQL, so concurrent replicas get disjoint sets; SQLite runs the same statement in a
        ``BEGIN IMMEDIATE`` transaction (writers are serialised there).
        """
        if limit <= 0:
            return []
        params = {
            "b_now": now,
            "b_limit": limit,
            "v_owner": owner,
            "v_until": now + timedelta(seconds=lease_seconds),
        }
        with self._write("claim due sources") as conn:
            rows = conn.execute(_sql(conn.dialect.name).claim_due, params)
            claimed = [_source_state(r) for r in rows]
        return sorted(claimed, key=lambda s: (s.next_check_at or now, s.id))

    def claim_source(
        self, key: str, now: datetime, owner: str, lease_seconds: float
    ) -> SourceState | None:
        """Lease one source now whatever its due time (or enabled flag).

        Returns None if there is no such source or another owner holds an unexpired lease.
        """
        params = {
            "b_key": key,
            "b_now": now,
            "b_owner": owner,
            "v_owner": owner,
            "v_until": now + timedelta(seconds=lease_seconds),
        }
        with self._write("claim source") as conn:
            row = conn.execute(_sql(conn.dialect.name).claim_source, params).first()
            return None if row is None else _source_state(row)

    def claim_sources(
        self, keys: Sequence[str], now: datetime, owner: str, lease_seconds: float
    ) -> list[SourceState]:
        """Lease the named sources now, whatever their due time (or enabled flag), at once.

        ``claim_source`` for many keys in one transaction (``aggregator poll`` claims every
        source: one transaction instead of one per source). Unknown keys and sources another
        owner holds an unexpired lease on are left out; the rest come back in ``keys`` order.
        """
        params: dict[str, Any] = {
            "b_now": now,
            "b_owner": owner,
            "v_owner": owner,
            "v_until": now + timedelta(seconds=lease_seconds),
        }
        claimed: dict[str, SourceState] = {}
        with self._write("claim sources") as conn:
            stmt = _sql(conn.dialect.name).claim_keys
            for chunk in _chunks(keys):
                for row in conn.execute(stmt, {**params, "b_values": chunk}):
                    claimed[row.key] = _source_state(row)
        return [claimed[k] for k in dict.fromkeys(keys) if k in claimed]

    # ------------------------------------------------------------------ planner inputs

    def existing_items(
        self, source_id: int, item_keys: Sequence[str], canonical_urls: Sequence[str]
    ) -> list[ExistingItem]:
        """Items of ``source_id`` whose key is in ``item_keys`` or URL in ``canonical_urls``."""
        with self._read("read existing items") as conn:
            return _existing_items(conn, source_id, item_keys, canonical_urls)

    def tombstoned(self, source_id: int, item_keys: Sequence[str]) -> set[str]:
        """The subset of ``item_keys`` that retention purged from ``source_id``."""
        with self._read("read tombstones") as conn:
            return _tombstoned(conn, source_id, item_keys)

    def planner_lookups(
        self, source_id: int, item_keys: Sequence[str], canonical_urls: Sequence[str]
    ) -> tuple[list[ExistingItem], set[str]]:
        """``existing_items`` and ``tombstoned`` in one read transaction (the planner's reads
        for one changed body)."""
        with self._read("read planner lookups") as conn:
            return (
                _existing_items(conn, source_id, item_keys, canonical_urls),
                _tombstoned(conn, source_id, item_keys),
            )

    def known_items(self, source_id: int, limit: int) -> tuple[list[ExistingItem], bytes | None]:
        """The ``limit`` most recently inserted items of a source (what a changed body of its
        feed most likely repeats) and its entry cache, in one read transaction."""
        with self._read("read known items") as conn:
            recent = _recent_items(conn, source_id, limit)
            return recent, read_entry_cache(conn, source_id) if recent else None

    # ------------------------------------------------------------------ apply

    def apply(
        self,
        plan: UpdatePlan,
        now: datetime,
        owner: str | None = None,
        then: Callable[[Connection], object] | None = None,
    ) -> ApplyResult:
        """Write one fetch's outcome in one transaction; safe to replay.

        The source's poll state is written (and its lease cleared) only while ``owner`` still
        holds the lease, when given; items are upserted by ``(source_id, item_key)`` either way.
        Inserted items join the story of a stored item sharing their canonical/external URL, or
        start a story with a deterministic public id. The number of statements does not grow
        with the number of items (see ``_apply_items``). ``then`` runs inside the same
        transaction after items were inserted or updated (story matching: one commit covers
        the items and their story index).
        """
        with self._write("apply update plan") as conn:
            sql = _sql(conn.dialect.name)
            source_key = _write_source_update(conn, sql, plan, owner)
            if source_key is None:  # tell a vanished source from a lost lease
                source_key = conn.execute(sql.source_key, {"b_id": plan.source_id}).scalar()
                if source_key is None:
                    log.warning("source %s vanished before its update was applied", plan.source_id)
                    return ApplyResult()
                log.warning(
                    "source %s: lease of %r lost, poll state not written (items were)",
                    plan.source_id,
                    owner,
                )
            if plan.entry_cache is not None:
                write_entry_caches(conn, [(plan.source_id, plan.entry_cache)])
            if not plan.intents:
                return ApplyResult()
            result = _apply_items(conn, sql, plan.source_id, source_key, plan.intents, now)
            if then is not None and (result.new or result.updated):
                then(conn)
            return result

    def write_source_states(
        self, plans: Sequence[UpdatePlan], owner: str | None = None
    ) -> list[bool]:
        """Write the poll state of many sources in one transaction (one ``executemany``).

        For plans without item intents and without a URL move (a 304, an unchanged body, a
        failure), this is what ``apply(plan, now, owner)`` does for each of them, at a fraction
        of the cost: a warm poll writes thousands of these. Returns, per plan, whether its state
        was written (False: ``owner`` no longer holds the lease, or the source is gone).
        Raises ``ValueError`` for a plan this cannot write (items or a URL move: use ``apply``).
        """
        for plan in plans:
            if plan.intents or plan.source_update.url:
                raise ValueError(f"source {plan.source_id}: plan has items or a URL move")
        if not plans:
            return []
        with self._write("write source states") as conn:
            sql = _sql(conn.dialect.name)
            owners: dict[int, str | None] = {}
            for chunk in _chunks(p.source_id for p in plans):
                for row_id, lease_owner in conn.execute(sql.state_rows, {"b_values": chunk}):
                    owners[row_id] = lease_owner
            writable: dict[int, dict[str, Any]] = {}  # the last plan of a source wins
            written: list[bool] = []
            for plan in plans:
                ok = plan.source_id in owners and (owner is None or owners[plan.source_id] == owner)
                if ok:
                    writable[plan.source_id] = _state_params(plan)
                elif plan.source_id in owners:
                    log.warning(
                        "source %s: lease of %r lost, poll state not written",
                        plan.source_id,
                        owner,
                    )
                else:
                    log.warning("source %s vanished before its update was applied", plan.source_id)
                written.append(ok)
            if writable:
                conn.execute(sql.state_update, list(writable.values()))
            caches = {p.source_id: p.entry_cache for p in plans if p.entry_cache is not None}
            write_entry_caches(conn, [(i, c) for i, c in caches.items() if i in writable])
        return written

    # ------------------------------------------------------------------ reading stories

    def recent_stories(self, since: datetime, limit: int) -> list[StoryRecord]:
        """Stories updated since ``since``, newest report first, each with its items oldest first.

        Three queries: the stories (ordered by their latest item's ``published_at``), all their
        items joined with their sources, and their cards (``enrich``). Merged stories are
        skipped; disabled sources are not.
        """
        if limit <= 0:
            return []
        # one pass over the (story_id, published_at) index joined to the window's stories;
        # two correlated subqueries per story (EXISTS, then max) took a third longer
        latest = func.max(items.c.published_at).label("latest")
        story_query = (
            select(
                stories.c.id,
                stories.c.public_id,
                stories.c.created_at,
                stories.c.updated_at,
                latest,
            )
            .join(items, items.c.story_id == stories.c.id)
            .where(stories.c.updated_at >= since, stories.c.merged_into.is_(None))
            .group_by(stories.c.id)
            .order_by(latest.desc(), stories.c.id.desc())
            .limit(limit)
        )
        with self._read("read recent stories") as conn:
            story_rows = list(conn.execute(story_query))
            by_story = story_items(conn, [r.id for r in story_rows])
            cards = cards_for(conn, by_story)
        return [
            StoryRecord(
                id=r.id,
                public_id=r.public_id,
                created_at=r.created_at,
                updated_at=r.updated_at,
                items=tuple(by_story[r.id]),
                card=cards.get(r.id),
            )
            for r in story_rows
        ]

    # ------------------------------------------------------------------ snapshots

    def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        """Store rendered exports, replacing any with the same (edition, format)."""
        if not snapshots:
            return
        with self._write("save snapshots") as conn:
            for snap in snapshots:
                ins = _insert(conn, SNAPSHOTS).values(
                    edition=snap.edition,
                    format=snap.format,
                    body=snap.body,
                    etag=snap.etag,
                    content_type=snap.content_type,
                    generated_at=snap.generated_at,
                )
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=[SNAPSHOTS.c.edition, SNAPSHOTS.c.format],
                        set_={
                            "body": ins.excluded.body,
                            "etag": ins.excluded.etag,
                            "content_type": ins.excluded.content_type,
                            "generated_at": ins.excluded.generated_at,
                        },
                    )
                )

    def get_snapshot(self, edition: str, fmt: str) -> Snapshot | None:
        """One stored export, or None."""
        query = select(snapshots).where(snapshots.c.edition == edition, snapshots.c.format == fmt)
        with self._read("read snapshot") as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Snapshot(
            edition=row.edition,
            format=row.format,
            body=bytes(row.body),
            etag=row.etag,
            content_type=row.content_type,
            generated_at=row.generated_at,
        )

    def list_snapshot_editions(self) -> list[str]:
        """Names of the editions that have at least one stored export, sorted."""
        query = select(snapshots.c.edition).distinct().order_by(snapshots.c.edition)
        with self._read("list snapshot editions") as conn:
            return list(conn.execute(query).scalars())

    # ------------------------------------------------------------------ retention

    def purge_items(self, older_than: datetime) -> int:
        """Delete items collected before ``older_than``, leaving a tombstone for each.

        Tombstones keep a publisher that still lists a purged item from bringing it back (the
        planner asks ``tombstoned``). Stories left without items are deleted. Returns the count.
        """
        old = items.c.collected_at < older_than
        with self._write("purge items") as conn:
            story_ids = list(conn.execute(select(items.c.story_id).where(old).distinct()).scalars())
            if not story_ids:
                return 0
            graves = _insert(conn, tombstones).from_select(
                ["source_id", "item_key", "canonical_url", "cutoff_at"],
                select(
                    items.c.source_id,
                    items.c.item_key,
                    items.c.canonical_url,
                    literal(older_than, UTCDateTime()),
                ).where(old),
            )
            conn.execute(graves.on_conflict_do_nothing(index_elements=["source_id", "item_key"]))
            purged = conn.execute(delete(items).where(old)).rowcount
            _delete_empty_stories(conn, story_ids)
            return int(purged)

    # ------------------------------------------------------------------ health

    def stats(self) -> dict[str, int]:
        """Counts for metrics: ``sources``, ``sources_enabled``, ``sources_status_<status>``,
        ``items``, ``stories`` (not merged) and ``tombstones``."""
        out: dict[str, int] = {}
        with self._read("read stats") as conn:
            total = enabled = 0
            query = select(sources.c.status, sources.c.enabled, func.count()).group_by(
                sources.c.status, sources.c.enabled
            )
            for status, is_enabled, count in conn.execute(query):
                total += count
                enabled += count if is_enabled else 0
                out[f"sources_status_{status}"] = out.get(f"sources_status_{status}", 0) + count
            out["sources"] = total
            out["sources_enabled"] = enabled
            out["items"] = conn.execute(select(func.count()).select_from(items)).scalar_one()
            out["stories"] = conn.execute(
                select(func.count()).select_from(stories).where(stories.c.merged_into.is_(None))
            ).scalar_one()
            out["tombstones"] = conn.execute(
                select(func.count()).select_from(tombstones)
            ).scalar_one()
        return out

    def ping(self) -> None:
        """Raise ``StorageError`` unless the database answers."""
        with self._read("ping") as conn:
            conn.execute(select(literal(1)))

    def overdue_seconds(self, now: datetime) -> float:
        """How late the most overdue enabled source is, in seconds (0 when none is late)."""
        query = select(func.min(sources.c.next_check_at)).where(sources.c.enabled.is_(True))
        with self._read("read overdue") as conn:
            earliest = conn.execute(query).scalar()
        if earliest is None:
            return 0.0
        return max(0.0, (now - earliest).total_seconds())


# ---------------------------------------------------------------------- apply helpers


def _state_params(plan: UpdatePlan) -> dict[str, Any]:
    """Parameters of ``_Sql.state_update`` for ``plan`` (see ``_state_update``)."""
    upd = plan.source_update
    return {
        "b_id": plan.source_id,
        "v_status": upd.status,
        "v_last_error": upd.last_error,
        "v_error_count": upd.error_count,
        "v_next_check_at": upd.next_check_at,
        "v_last_fetched_at": upd.last_fetched_at,
        "v_etag": upd.etag,
        "v_last_modified": upd.last_modified,
        "v_body_hash": upd.body_hash,
        "v_site_url": upd.site_url,
        "v_last_success_at": upd.last_success_at,
        "v_mean_gap_seconds": upd.mean_gap_seconds,
        "v_enabled": upd.enabled,
    }


def _write_source_update(
    conn: Connection, sql: _Sql, plan: UpdatePlan, owner: str | None
) -> str | None:
    """Write ``plan.source_update`` and clear the lease (only if ``owner`` still holds it).

    ``None`` for ``url``, ``site_url``, ``last_success_at`` and ``mean_gap_seconds`` means "no
    news" and keeps the stored value; ``enabled=False`` disables the source (``True`` never
    re-enables one a user disabled meanwhile). Returns the source's key, or None when no row
    was written (the lease is lost or the source is gone). The SET clause comes from the
    parameter names, so the statement is built once and compiled once per set of columns.
    """
    upd = plan.source_update
    params: dict[str, Any] = {
        "b_id": plan.source_id,
        "status": upd.status,
        "last_error": upd.last_error,
        "error_count": upd.error_count,
        "next_check_at": upd.next_check_at,
        "last_fetched_at": upd.last_fetched_at,
        "etag": upd.etag,
        "last_modified": upd.last_modified,
        "body_hash": upd.body_hash,
        "lease_owner": None,
        "lease_until": None,
    }
    for name in ("site_url", "last_success_at", "mean_gap_seconds"):
        if getattr(upd, name) is not None:
            params[name] = getattr(upd, name)
    if not upd.enabled:
        params["enabled"] = False
    if upd.url:
        holder = conn.execute(sql.source_by_url, {"b_url": upd.url}).first()
        if holder is None:
            params["url"] = upd.url
        elif holder.id != plan.source_id:
            log.warning(
                "source %s moved to %s, which source %r already polls; URL kept",
                plan.source_id,
                upd.url,
                holder.key,
            )
    stmt = sql.source_update
    if owner is not None:
        stmt, params["b_owner"] = sql.source_update_leased, owner
    key = conn.execute(stmt, params).scalar()
    return None if key is None else str(key)


@dataclass(eq=False)
class _NewStory:
    """A story this plan creates; ``id`` is known once the batch insert ran."""

    public_id: str
    order: int  # creation order: a later-created story has a higher id
    id: int = 0
    created: bool = False  # False when another writer created it first (then it is joined)


_StoryRef = int | _NewStory  # a stored (surviving) story id, or a story this plan creates


def _rank(ref: _StoryRef) -> tuple[int, int]:
    """Order of preference among candidate stories: lowest stored id, then first created."""
    return (0, ref) if isinstance(ref, int) else (1, ref.order)


def _urls(item: Item) -> list[str]:
    """The URLs an item is matched on: its canonical URL and its external URL."""
    return [u for u in (item.canonical_url, item.external_url) if u]


def _item_params(item: Item) -> dict[str, Any]:
    """Parameters of ``_Sql.item_update_*`` for ``item`` (``published_at`` None keeps it)."""
    params = {f"v_{name}": value for name, value in _item_values(item).items()}
    params["v_published_at"] = item.published_at
    return params


def _apply_items(
    conn: Connection,
    sql: _Sql,
    source_id: int,
    source_key: str,
    intents: Sequence[ItemIntent],
    now: datetime,
) -> ApplyResult:
    """Write a plan's item intents with a constant number of statements.

    One query finds which keys are stored (row-locked on PostgreSQL), one executemany updates
    them in place, one lookup finds the stories the new items join, one executemany creates the
    missing stories and one inserts the items. Updates run before inserts (so an item whose URL
    an edit just changed is matched on the new URL). A second intent for a key inserted by this
    same plan, and an insert that lost a race with another writer, become updates by key.
    """
    by_key, by_id = _stored_rows(conn, sql, source_id, intents)
    updates: list[tuple[int, ItemIntent]] = []
    inserts: dict[str, ItemIntent] = {}
    late: list[ItemIntent] = []
    for intent in intents:
        row_id = None
        if intent.action == "update" and intent.existing_id in by_id:
            row_id = intent.existing_id
        elif intent.item_key in by_key:
            row_id = by_key[intent.item_key]
        if row_id is not None:
            updates.append((row_id, intent))
        elif intent.item_key in inserts:
            late.append(intent)
        else:
            inserts[intent.item_key] = intent
    touched: set[int] = {by_id[row_id] for row_id, _ in updates}  # stories to bump
    if updates:
        conn.execute(sql.item_update_by_id, _update_params(sql, updates))
    new = new_stories = 0
    orphans: list[int] = []
    if inserts:
        refs = _assign_stories(conn, sql, source_key, list(inserts.values()))
        created = [r for r in dict.fromkeys(refs.values()) if isinstance(r, _NewStory)]
        _create_stories(conn, sql, created, now)
        story_ids = {key: r if isinstance(r, int) else r.id for key, r in refs.items()}
        rows = [
            {
                "source_id": source_id,
                "story_id": story_ids[key],
                "item_key": key,
                "published_at": intent.item.published_at or now,
                "collected_at": now,
                **_item_values(intent.item),
            }
            for key, intent in inserts.items()
        ]
        inserted = _insert_items(conn, sql, rows)
        born: set[int] = set()
        for key, intent in inserts.items():
            ref = refs[key]
            if key not in inserted:  # another writer inserted this key meanwhile
                late.append(intent)
            elif isinstance(ref, _NewStory) and ref.created:
                born.add(ref.id)
            else:
                touched.add(story_ids[key])
        new, new_stories = len(inserted), len(born)
        orphans = [r.id for r in created if r.created and r.id not in born]
    for intent in late:
        params = {"b_source": source_id, "b_key": intent.item_key, **_item_params(intent.item)}
        story_id = conn.execute(sql.item_update_by_key, params).scalar()
        if story_id is None:  # cannot happen: the row exists in this transaction's view
            raise StorageError(
                f"item {intent.item_key!r} of source {source_id} vanished mid-upsert"
            )
        touched.add(int(story_id))
    if orphans:
        _delete_empty_stories(conn, orphans)
    for chunk in _chunks(sorted(touched)):  # one sorted pass: fewer lock waits between replicas
        conn.execute(sql.touch_stories, {"b_values": chunk, "v_now": now})
    return ApplyResult(new=new, updated=len(updates) + len(late), new_stories=new_stories)


def _existing_items(
    conn: Connection, source_id: int, item_keys: Sequence[str], canonical_urls: Sequence[str]
) -> list[ExistingItem]:
    """Items of ``source_id`` whose key is in ``item_keys`` or URL in ``canonical_urls``, by id."""
    sql = _sql(conn.dialect.name)
    found: dict[int, ExistingItem] = {}
    for query, values in (
        (sql.existing_by_key, item_keys),
        (sql.existing_by_url, [u for u in canonical_urls if u]),
    ):
        for chunk in _chunks(values):
            for r in conn.execute(query, {"b_source": source_id, "b_values": chunk}):
                found[r.id] = ExistingItem(r.id, r.item_key, r.canonical_url, r.content_hash)
    return [found[i] for i in sorted(found)]


def _tombstoned(conn: Connection, source_id: int, item_keys: Sequence[str]) -> set[str]:
    """The subset of ``item_keys`` that retention purged from ``source_id``."""
    dead: set[str] = set()
    query = _sql(conn.dialect.name).tombstoned
    for chunk in _chunks(item_keys):
        dead.update(conn.execute(query, {"b_source": source_id, "b_values": chunk}).scalars())
    return dead


def _recent_items(conn: Connection, source_id: int, limit: int) -> list[ExistingItem]:
    """The ``limit`` most recently inserted items of a source, newest first."""
    if limit <= 0:
        return []
    rows = conn.execute(
        _sql(conn.dialect.name).recent_hashes, {"b_source": source_id, "b_limit": limit}
    )
    return [ExistingItem(r.id, r.item_key, r.canonical_url, r.content_hash) for r in rows]


def _stored_rows(
    conn: Connection, sql: _Sql, source_id: int, intents: Sequence[ItemIntent]
) -> tuple[dict[str, int], dict[int, int]]:
    """Stored items of the source the intents name: ``{item_key: id}`` and ``{id: story_id}``.

    Looked up by key, plus by id for update intents whose id the key lookup did not return.
    """
    by_key: dict[str, int] = {}
    by_id: dict[int, int] = {}
    for chunk in _chunks(i.item_key for i in intents):
        for row_id, key, story_id in conn.execute(
            sql.item_rows_by_key, {"b_source": source_id, "b_values": chunk}
        ):
            by_key[key], by_id[row_id] = row_id, story_id
    ids = [
        i.existing_id for i in intents if i.existing_id is not None and i.existing_id not in by_id
    ]
    for id_chunk in _chunks(ids):
        for row_id, _key, story_id in conn.execute(
            sql.item_rows_by_id, {"b_source": source_id, "b_values": id_chunk}
        ):
            by_id[row_id] = story_id
    return by_key, by_id


def _update_params(sql: _Sql, updates: Sequence[tuple[int, ItemIntent]]) -> Any:
    """Parameters of ``sql.item_update_by_id``: one row per item id, as if applied in order.

    Several intents for one row collapse into the last one (keeping the latest non-None
    ``published_at``), which is what running them one after the other would leave.
    """
    rows: dict[int, dict[str, Any]] = {}
    for row_id, intent in updates:
        published = intent.item.published_at
        if published is None and row_id in rows:
            published = rows[row_id]["published_at"]
        rows[row_id] = {"id": row_id, "published_at": published, **_item_values(intent.item)}
    if sql.columnar:
        return {"b_rows": _json_rows(rows.values())}
    return [
        {"b_id": row["id"], **{f"v_{k}": v for k, v in row.items() if k != "id"}}
        for row in rows.values()
    ]


def _insert_params(sql: _Sql, rows: list[dict[str, Any]]) -> Any:
    """Parameters of ``sql.item_insert`` for ``rows`` (dicts keyed by ``_ITEM_INSERT_COLUMNS``).

    The PostgreSQL form is one JSON document: datetimes become ISO 8601 strings in UTC (what
    ``UTCDateTime`` would bind), everything else is JSON already.
    """
    if not sql.columnar:
        return rows
    return {"b_rows": _json_rows(rows)}


def _json_rows(rows: Iterable[dict[str, Any]]) -> str:
    """Row dicts as one JSON array (UTF-8 text, not ``\\u`` escapes) for ``_recordset``."""
    return json.dumps(
        [{k: _jsonable(v) for k, v in row.items()} for row in rows], ensure_ascii=False
    )


def _jsonable(value: Any) -> Any:
    """``value`` as JSON can carry it: aware datetimes as UTC ISO strings (naive taken as UTC)."""
    if isinstance(value, datetime):
        return (
            value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        ).isoformat()
    return value


def _assign_stories(
    conn: Connection, sql: _Sql, source_key: str, inserts: Sequence[ItemIntent]
) -> dict[str, _StoryRef]:
    """The story each new item joins, by item key, as if the items were inserted in order.

    An item joins the lowest-id story among stored items (any source) whose canonical or
    external URL equals its canonical or external URL, and among the plan's earlier items that
    share a URL with it (merged stories are followed to their survivor). Otherwise it gets a
    ``_NewStory`` with its deterministic public id: created, or joined if that story exists.
    """
    by_url: dict[str, int] = {}  # URL -> lowest story id of a stored item carrying it
    for chunk in _chunks(sorted({u for i in inserts for u in _urls(i.item)})):
        for url, story_id in conn.execute(sql.url_stories, {"b_values": chunk}):
            if story_id is not None:
                by_url[url] = min(story_id, by_url.get(url, story_id))
    survivor = _merge_survivors(conn, sql, set(by_url.values()))
    refs: dict[str, _StoryRef] = {}
    in_plan: dict[str, _StoryRef] = {}  # URL -> best story of this plan's items carrying it
    new: dict[str, _NewStory] = {}
    for intent in inserts:
        urls = _urls(intent.item)
        candidates: list[_StoryRef] = [by_url[u] for u in urls if u in by_url]
        candidates += [in_plan[u] for u in urls if u in in_plan]
        ref: _StoryRef
        if candidates:
            best = min(candidates, key=_rank)
            ref = survivor.get(best, best) if isinstance(best, int) else best
        else:  # a stored story with this public id is joined by _create_stories
            public_id = story_public_id(intent.item.canonical_url, source_key, intent.item_key)
            ref = new.setdefault(public_id, _NewStory(public_id, len(new)))
        refs[intent.item_key] = ref
        for url in urls:
            if url not in in_plan or _rank(ref) < _rank(in_plan[url]):
                in_plan[url] = ref
    return refs


def _create_stories(conn: Connection, sql: _Sql, new: Sequence[_NewStory], now: datetime) -> None:
    """Insert the plan's new stories in one batch and fill in their ids.

    ``ON CONFLICT (public_id) DO NOTHING``: a story that exists (created by another replica, or
    earlier for an item whose URL has changed since) is joined instead (``created`` stays False,
    merges are followed). Inserted in public-id order, so replicas racing on the
    same URLs take the unique-index locks in one order and cannot deadlock.
    """
    if not new:
        return
    ordered = sorted(new, key=lambda s: s.public_id)
    public_ids = [s.public_id for s in ordered]
    params = {"b_values": public_ids if sql.columnar else json.dumps(public_ids), "v_now": now}
    got: dict[str, int] = {pid: sid for pid, sid in conn.execute(sql.story_insert, params)}
    missing = [s.public_id for s in ordered if s.public_id not in got]
    for s in ordered:
        if s.public_id in got:
            s.id, s.created = got[s.public_id], True
    if not missing:
        return
    found: dict[str, int] = {}
    for chunk in _chunks(missing):
        for row in conn.execute(sql.stories_by_public_id, {"b_values": chunk}):
            if row.id is not None:
                found[row.public_id] = row.id
    survivor = _merge_survivors(conn, sql, set(found.values()))
    for s in ordered:
        if not s.created:
            if s.public_id not in found:  # cannot happen: the conflicting row is visible
                raise StorageError(f"story {s.public_id} vanished mid-insert")
            s.id = survivor.get(found[s.public_id], found[s.public_id])


def _merge_survivors(conn: Connection, sql: _Sql, story_ids: set[int]) -> dict[int, int]:
    """``{merged story id: surviving story id}`` for those of ``story_ids`` that were merged.

    Follows ``merged_into`` links one level per query (normally a single query that finds none).
    """
    parent: dict[int, int] = {}
    queried: set[int] = set()
    pending = set(story_ids)
    for _ in range(_MAX_MERGE_HOPS + 1):
        if not pending:
            break
        queried |= pending
        found: dict[int, int] = {}
        for chunk in _chunks(sorted(pending)):
            for story_id, target in conn.execute(sql.merged_links, {"b_values": chunk}):
                found[story_id] = target
        parent.update(found)
        pending = {t for t in found.values() if t not in queried}
    survivors: dict[int, int] = {}
    for start in parent:
        current = start
        for _ in range(_MAX_MERGE_HOPS):
            if current not in parent:
                break
            current = parent[current]
        else:
            raise StorageError(f"story {start}: merged_into chain too long or cyclic")
        survivors[start] = current
    return survivors


def _delete_empty_stories(conn: Connection, story_ids: Sequence[int]) -> None:
    """Delete those of ``story_ids`` that have no items, are not merged and nothing merges into."""
    child = stories.alias("child")
    for chunk in _chunks(story_ids):
        conn.execute(
            delete(stories).where(
                stories.c.id.in_(chunk),
                stories.c.merged_into.is_(None),
                ~exists().where(items.c.story_id == stories.c.id),
                ~exists().where(child.c.merged_into == stories.c.id),
            )
        )
