"""The repository: every read and write the daemon does against the database.

SQL rows become ``aggregator.model`` types here and nowhere else, and SQLAlchemy/driver errors
become ``StorageError`` here (via ``db.storage_errors``). Writes run in one short transaction each
(``BEGIN IMMEDIATE`` on SQLite); source leases make several replicas on PostgreSQL poll disjoint
sources (``FOR UPDATE SKIP LOCKED``). Item writes are idempotent upserts, so replaying a plan
after a crash or a lost lease does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, uuid5

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

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
from aggregator.store.db import storage_errors, write_options
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


def _item_values(item: Item) -> dict[str, Any]:
    """Columns of ``items`` that come straight from a normalized ``Item``."""
    return {
        "guid": item.guid,
        "url": item.url,
        "canonical_url": item.canonical_url,
        "external_url": item.external_url,
        "title": item.title,
        "summary_html": item.summary_html,
        "content_html": item.content_html,
        "text": item.text,
        "author": item.author,
        "categories": list(item.categories),
        "language": item.language,
        "updated_at": item.updated_at,
        "content_hash": item.content_hash,
    }


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
        content_html=m["content_html"],
        author=m["author"],
        categories=tuple(m["categories"] or ()),
        language=m["language"],
        published_at=m["published_at"],
        updated_at=m["updated_at"],
        collected_at=m["collected_at"],
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
        with storage_errors(self._engine, what), self._engine.connect() as conn:
            conn.execution_options(**write_options())
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        """One read transaction; errors become StorageError."""
        with storage_errors(self._engine, what), self._engine.connect() as conn:
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
                if row.url != cfg.url:  # a different feed: forget validators, poll it now
                    values.update(etag=None, last_modified=None, body_hash=None, next_check_at=now)
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
                conn.execute(update(SOURCES).where(SOURCES.c.id.in_(chunk)).values(enabled=False))

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
        lease_free = or_(sources.c.lease_until.is_(None), sources.c.lease_until <= now)
        due = (
            select(sources.c.id)
            .where(
                sources.c.enabled.is_(True),
                or_(sources.c.next_check_at.is_(None), sources.c.next_check_at <= now),
                lease_free,
            )
            .order_by(sources.c.next_check_at.asc().nulls_first(), sources.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(sources)
            .where(sources.c.id.in_(due), lease_free)
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*sources.c)
        )
        with self._write("claim due sources") as conn:
            claimed = [_source_state(r) for r in conn.execute(stmt)]
        return sorted(claimed, key=lambda s: (s.next_check_at or now, s.id))

    def claim_source(
        self, key: str, now: datetime, owner: str, lease_seconds: float
    ) -> SourceState | None:
        """Lease one source now whatever its due time (or enabled flag).

        Returns None if there is no such source or another owner holds an unexpired lease.
        """
        stmt = (
            update(sources)
            .where(
                sources.c.key == key,
                or_(
                    sources.c.lease_until.is_(None),
                    sources.c.lease_until <= now,
                    sources.c.lease_owner == owner,
                ),
            )
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*sources.c)
        )
        with self._write("claim source") as conn:
            row = conn.execute(stmt).first()
            return None if row is None else _source_state(row)

    # ------------------------------------------------------------------ planner inputs

    def existing_items(
        self, source_id: int, item_keys: Sequence[str], canonical_urls: Sequence[str]
    ) -> list[ExistingItem]:
        """Items of ``source_id`` whose key is in ``item_keys`` or URL in ``canonical_urls``."""
        cols = (items.c.id, items.c.item_key, items.c.canonical_url, items.c.content_hash)
        found: dict[int, ExistingItem] = {}
        with self._read("read existing items") as conn:
            for column, values in (
                (items.c.item_key, item_keys),
                (items.c.canonical_url, [u for u in canonical_urls if u]),
            ):
                for chunk in _chunks(values):
                    query = select(*cols).where(items.c.source_id == source_id, column.in_(chunk))
                    for r in conn.execute(query):
                        found[r.id] = ExistingItem(
                            r.id, r.item_key, r.canonical_url, r.content_hash
                        )
        return [found[i] for i in sorted(found)]

    def tombstoned(self, source_id: int, item_keys: Sequence[str]) -> set[str]:
        """The subset of ``item_keys`` that retention purged from ``source_id``."""
        dead: set[str] = set()
        with self._read("read tombstones") as conn:
            for chunk in _chunks(item_keys):
                dead.update(
                    conn.execute(
                        select(tombstones.c.item_key).where(
                            tombstones.c.source_id == source_id, tombstones.c.item_key.in_(chunk)
                        )
                    ).scalars()
                )
        return dead

    # ------------------------------------------------------------------ apply

    def apply(self, plan: UpdatePlan, now: datetime, owner: str | None = None) -> ApplyResult:
        """Write one fetch's outcome in one transaction; safe to replay.

        The source's poll state is written (and its lease cleared) only while ``owner`` still
        holds the lease, when given; items are upserted by ``(source_id, item_key)`` either way.
        Inserted items join the story of a stored item sharing their canonical/external URL, or
        start a story with a deterministic public id.
        """
        with self._write("apply update plan") as conn:
            source_key = conn.execute(
                select(sources.c.key).where(sources.c.id == plan.source_id)
            ).scalar()
            if source_key is None:
                log.warning("source %s vanished before its update was applied", plan.source_id)
                return ApplyResult()
            _write_source_update(conn, plan, now, owner)
            new = updated = new_stories = 0
            touched: set[int] = set()  # stories to bump, in one sorted pass (fewer lock waits)
            for intent in plan.intents:
                story_id = None
                if intent.action == "update" and intent.existing_id is not None:
                    story_id = _update_item(conn, plan.source_id, intent, by_id=True)
                if story_id is None:  # an insert, a replayed insert, or the row vanished
                    story_id = _update_item(conn, plan.source_id, intent, by_id=False)
                if story_id is not None:
                    updated += 1
                    touched.add(story_id)
                    continue
                inserted, created, story_id = _insert_item(
                    conn, plan.source_id, source_key, intent, now
                )
                new += inserted
                updated += not inserted
                new_stories += created
                if not created:
                    touched.add(story_id)
            for chunk in _chunks(sorted(touched)):
                conn.execute(update(stories).where(stories.c.id.in_(chunk)).values(updated_at=now))
            return ApplyResult(new=new, updated=updated, new_stories=new_stories)

    # ------------------------------------------------------------------ reading stories

    def recent_stories(self, since: datetime, limit: int) -> list[StoryRecord]:
        """Stories updated since ``since``, newest report first, each with its items oldest first.

        Two queries: the stories (ordered by their latest item's ``published_at``), then all their
        items joined with their sources. Merged stories are skipped; disabled sources are not.
        """
        if limit <= 0:
            return []
        latest = (
            select(func.max(items.c.published_at))
            .where(items.c.story_id == stories.c.id)
            .scalar_subquery()
        )
        story_query = (
            select(stories.c.id, stories.c.public_id, stories.c.created_at, stories.c.updated_at)
            .where(stories.c.updated_at >= since, stories.c.merged_into.is_(None))
            .where(exists().where(items.c.story_id == stories.c.id))
            .order_by(latest.desc(), stories.c.id.desc())
            .limit(limit)
        )
        with self._read("read recent stories") as conn:
            story_rows = list(conn.execute(story_query))
            by_story: dict[int, list[StoredItem]] = {r.id: [] for r in story_rows}
            for chunk in _chunks(by_story):
                item_query = (
                    select(*_ITEM_COLUMNS)
                    .join(sources, sources.c.id == items.c.source_id)
                    .where(items.c.story_id.in_(chunk))
                    .order_by(items.c.published_at, items.c.collected_at, items.c.id)
                )
                for r in conn.execute(item_query):
                    by_story[r.story_id].append(_stored_item(r))
        return [
            StoryRecord(
                id=r.id,
                public_id=r.public_id,
                created_at=r.created_at,
                updated_at=r.updated_at,
                items=tuple(by_story[r.id]),
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


def _write_source_update(
    conn: Connection, plan: UpdatePlan, now: datetime, owner: str | None
) -> None:
    """Write ``plan.source_update`` and clear the lease (only if ``owner`` still holds it).

    ``None`` for ``url``, ``site_url``, ``last_success_at`` and ``mean_gap_seconds`` means "no
    news" and keeps the stored value; ``enabled=False`` disables the source (``True`` never
    re-enables one a user disabled meanwhile).
    """
    upd = plan.source_update
    values: dict[str, Any] = {
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
            values[name] = getattr(upd, name)
    if not upd.enabled:
        values["enabled"] = False
    if upd.url:
        holder = conn.execute(
            select(sources.c.id, sources.c.key).where(sources.c.url == upd.url)
        ).first()
        if holder is None:
            values["url"] = upd.url
        elif holder.id != plan.source_id:
            log.warning(
                "source %s moved to %s, which source %r already polls; URL kept",
                plan.source_id,
                upd.url,
                holder.key,
            )
    stmt = update(sources).where(sources.c.id == plan.source_id)
    if owner is not None:
        stmt = stmt.where(sources.c.lease_owner == owner)
    if conn.execute(stmt.values(**values)).rowcount == 0:
        log.warning(
            "source %s: lease of %r lost, poll state not written (items were)",
            plan.source_id,
            owner,
        )


def _update_item(
    conn: Connection, source_id: int, intent: ItemIntent, *, by_id: bool
) -> int | None:
    """Update a stored item in place (by id, or by key); its story id, or None if none matched."""
    values = _item_values(intent.item)
    if intent.item.published_at is not None:
        values["published_at"] = intent.item.published_at
    where = (
        items.c.id == intent.existing_id if by_id else items.c.item_key == intent.item_key,
        items.c.source_id == source_id,
    )
    story_id = conn.execute(
        update(items).where(*where).values(**values).returning(items.c.story_id)
    ).scalar()
    return None if story_id is None else int(story_id)


def _insert_item(
    conn: Connection, source_id: int, source_key: str, intent: ItemIntent, now: datetime
) -> tuple[bool, bool, int]:
    """Insert a new item into its story; returns (inserted, created a story, story id).

    If another writer inserted the same key meanwhile (PostgreSQL race), the row is updated
    instead and ``inserted`` is False.
    """
    item = intent.item
    story_id, created = _story_for(conn, source_key, intent, now)
    ins = _insert(conn, items).values(
        source_id=source_id,
        story_id=story_id,
        item_key=intent.item_key,
        published_at=item.published_at or now,
        collected_at=now,
        **_item_values(item),
    )
    new_id = conn.execute(
        ins.on_conflict_do_nothing(index_elements=["source_id", "item_key"]).returning(items.c.id)
    ).scalar()
    if new_id is not None:
        return True, created, story_id
    if created:
        _delete_empty_stories(conn, [story_id])
    raced = _update_item(conn, source_id, intent, by_id=False)
    if raced is None:  # cannot happen: the conflicting row exists in this transaction's view
        raise StorageError(f"item {intent.item_key!r} of source {source_id} vanished mid-upsert")
    return False, False, raced


def _story_for(
    conn: Connection, source_key: str, intent: ItemIntent, now: datetime
) -> tuple[int, bool]:
    """The story a new item joins, or a new one; returns (story id, created).

    Joins the story of any stored item (any source) sharing the item's canonical URL or external
    URL in either role; otherwise inserts a story whose public id derives from the canonical URL,
    so a replica racing on the same URL hits the unique index and joins instead.
    """
    canonical, external = intent.item.canonical_url, intent.item.external_url
    conditions = []
    if canonical:
        conditions += [items.c.canonical_url == canonical, items.c.external_url == canonical]
    if external:
        conditions += [items.c.canonical_url == external, items.c.external_url == external]
    if conditions:
        found = conn.execute(select(func.min(items.c.story_id)).where(or_(*conditions))).scalar()
        if found is not None:
            return _resolve_merged(conn, found), False
    public_id = story_public_id(canonical, source_key, intent.item_key)
    ins = _insert(conn, stories).values(public_id=public_id, created_at=now, updated_at=now)
    new_id = conn.execute(
        ins.on_conflict_do_nothing(index_elements=["public_id"]).returning(stories.c.id)
    ).scalar()
    if new_id is not None:
        return int(new_id), True
    # Someone (another replica, or an earlier item with this URL) created it: join it.
    existing = conn.execute(
        select(stories.c.id).where(stories.c.public_id == public_id)
    ).scalar_one()
    return _resolve_merged(conn, existing), False


def _resolve_merged(conn: Connection, story_id: int) -> int:
    """Follow ``merged_into`` links to the surviving story."""
    for _ in range(_MAX_MERGE_HOPS):
        target = conn.execute(
            select(stories.c.merged_into).where(stories.c.id == story_id)
        ).scalar()
        if target is None:
            return story_id
        story_id = target
    raise StorageError(f"story {story_id}: merged_into chain too long or cyclic")


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
