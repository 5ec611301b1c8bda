"""Cross-publisher story matching in the database: LSH band index, candidates, merges, explain.

``Repository.apply`` joins items to stories by URL (canonical and external). This module adds the
third, text-similarity signal: after an apply, :func:`match_recent` takes the new items that
found no story by URL, looks up candidate stories sharing a MinHash LSH band key
(``story_bands``, an indexed table, so replicas share the index and a restart loses nothing),
judges each candidate's reports with :func:`aggregator.dedupe.stories.decide` and merges the
item's story into the best matching one.

Rules that keep it precise and cheap (the work per new item is bounded, whatever the size of
the database or of any story):

* One apply is matched as a batch: one query reads its new items, one band lookup serves all
  their keys (per key only the newest ``MAX_STORIES_PER_KEY`` stories within the window: a key
  shared by dozens of stories is boilerplate), one grouped query gives the candidate stories'
  size and sources, one query their representatives, and one statement upserts all band rows.
* Candidates are stories with a band row whose ``published_at`` is within ``window`` of the
  apply's items (earliest - window .. latest + window; ``decide`` then rejects any pair further
  apart than ``Thresholds.max_gap``); at most ``MAX_CANDIDATES`` of them, sharing at least
  ``MIN_SHARED_KEYS`` keys (most shared first), are judged, each through its representatives
  only: the earliest ``REPS_FIRST`` and the latest ``REPS_LAST`` reports.
* A text-only merge never makes a story larger than ``MAX_TEXT_STORY`` reports: a story that
  full is no longer a text candidate (URL matches in ``Repository.apply`` still join it). Without
  the cap, look-alike reports (templated digests, a firehose of similar headlines) chain into a
  mega-story that then is a candidate for everything; with it, they end in capped stories.
* Merges keep the older story (``created_at``, then id): its public id is the exported one and
  never changes. The other story's items move to the survivor and it gets ``merged_into`` (so
  ``Repository.apply`` follows it for later URL matches); its band rows move too.
* Each item contributes body keys (title + summary head, ``BODY_BANDS`` x ``BODY_ROWS``) and,
  when the title has at least ``MIN_TITLE_SHINGLES`` shingles, title keys
  (``TITLE_BANDS`` x ``TITLE_ROWS`` over the title shingles alone): two reports with the same
  headline but different leads have a low body Jaccard yet are the easiest match.

* An edited item (same key, corrected title or summary) gets its story's band rows rebuilt from
  the current texts, and is judged again when it is alone in its story.
* Features and band keys are pure (:mod:`aggregator.dedupe.prepare`): the pipeline computes
  them for a poll's new and edited items in a parse worker and hands them in (``prepared``).

All functions take a SQLAlchemy ``Connection`` inside the caller's transaction, except
:func:`match_recent`, which opens one write transaction on an ``Engine``. The pipeline runs
:class:`MatchAfterApply` as the ``then`` hook of ``Repository.apply``: matching shares the
apply's transaction (one commit per source) under a savepoint of its own.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    Text,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from aggregator.dedupe.prepare import (
    Prepared,
    PreparedMap,
    adopt,
    item_band_keys,
    item_match_text,
)
from aggregator.dedupe.stories import DEFAULT_THRESHOLDS, Decision, MatchText, Thresholds
from aggregator.dedupe.stories import decide as decide_pair
from aggregator.errors import StorageError
from aggregator.store.db import storage_errors, write_options
from aggregator.store.schema import Id, UTCDateTime, items, sources, stories, story_bands
from aggregator.urls import canonical_url

log = logging.getLogger("aggregator.matching")
DEFAULT_WINDOW = timedelta(days=3)
MAX_CANDIDATES = 8  # stories judged per item, most shared band keys first
# Stories sharing a single band key with an item are not judged: on bench/stories_eval.py's
# corpora (all splits) every one of the 536 pairs decide() accepts shares >= 3 keys, while 856
# of the rejected pairs share exactly 1 (the bulk of the judging work on look-alike feeds).
MIN_SHARED_KEYS = 2
MAX_STORIES_PER_KEY = 16  # newest stories read per band key (a hot key is weak evidence)
REPS_FIRST, REPS_LAST = 1, 2  # representatives judged per candidate: earliest + latest reports
MAX_TEXT_STORY = 50  # a text-only merge never makes a story larger than this many reports
MAX_REBUILD = 200  # an edit rebuilds the band rows of stories up to this many reports
CHUNK = 500  # bound parameters per IN list


@dataclass(frozen=True, slots=True)
class MatchReport:
    """What one :func:`match_recent` call did: stories merged, items indexed."""

    merged: int = 0
    indexed: int = 0


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One candidate story as judged for one item (for ``explain``)."""

    story_id: int
    public_id: str
    shared_keys: int
    best_item_title: str | None
    best_item_source: str | None
    # None when the story has a report of the item's own source, or none within the window
    decision: Decision | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an item is in the story it is in (see :func:`explain_item`)."""

    url: str
    item_id: int
    title: str
    source_key: str
    story_id: int
    public_id: str
    merged_into: int | None
    url_peers: tuple[tuple[str, str], ...]  # (source key, URL) of other reports sharing a URL
    # (source key, title, decision against this item) of the reports that share no URL with it
    text_peers: tuple[tuple[str, str, Decision], ...]
    candidates: tuple[CandidateScore, ...] = field(default=())
    threshold_note: str = ""


# ---------------------------------------------------------------------------- index


def _upsert_bands(conn: Connection, move: bool = False) -> Any:
    """``INSERT INTO story_bands`` that keeps one row per (key, story) at the newest
    ``published_at``: rows bound at execution, or (``move``) the rows of story ``b_loser``
    copied to story ``b_survivor``. Built once per dialect.

    A row already there with a ``published_at`` at least as new is left alone (the update's
    ``WHERE``) instead of being rewritten with the value it has: a rewritten row is a page for
    the WAL and the next checkpoint, and a copy of a report (another feed carrying the same
    text) brings the same keys, at the same or an older time."""
    return _build_upsert(conn.dialect.name, move)


@cache
def _build_upsert(dialect: str, move: bool) -> Any:
    """The statement of :func:`_upsert_bands` for ``dialect``."""
    rows: Any = None
    if move:
        sb = story_bands.c
        rows = select(sb.band_key, bindparam("b_survivor", type_=Id), sb.published_at).where(
            sb.story_id == bindparam("b_loser")
        )
    if dialect == "postgresql":
        ins: Any = postgresql.insert(story_bands)
    elif dialect == "sqlite":
        ins = sqlite.insert(story_bands)
    else:
        raise StorageError(f"unsupported database dialect {dialect!r}")
    if rows is not None:
        ins = ins.from_select(["band_key", "story_id", "published_at"], rows)
    return ins.on_conflict_do_update(
        index_elements=[story_bands.c.band_key, story_bands.c.story_id],
        set_={"published_at": ins.excluded.published_at},
        where=ins.excluded.published_at > story_bands.c.published_at,
    )


_SQLITE_UPSERT = (
    "INSERT INTO story_bands (band_key, story_id, published_at) VALUES (?, ?, ?)"
    " ON CONFLICT (band_key, story_id) DO UPDATE SET published_at = excluded.published_at"
    " WHERE excluded.published_at > story_bands.published_at"
)


def write_bands(conn: Connection, rows: dict[tuple[int, int], datetime]) -> None:
    """Upsert ``{(band key, story id): published_at}`` in key order (one ``executemany``).

    On SQLite the rows go to the driver as plain tuples, the few distinct timestamps converted
    once by the column type (SQLAlchemy's per-row parameter processing cost as much as the
    insert itself for a batch's ~600 rows); elsewhere through :func:`_upsert_bands`.
    """
    ordered = sorted(rows.items())
    if conn.dialect.name != "sqlite":
        conn.execute(
            _upsert_bands(conn),
            [{"band_key": k, "story_id": sid, "published_at": p} for (k, sid), p in ordered],
        )
        return
    process = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
    stamps = {p: process(p) if process else p for p in set(rows.values())}
    conn.exec_driver_sql(_SQLITE_UPSERT, [(k, sid, stamps[p]) for (k, sid), p in ordered])


def index_story(
    conn: Connection, story_id: int, keys: Sequence[int], published_at: datetime
) -> int:
    """Add ``keys`` to the band index of ``story_id`` (kept at the newest ``published_at``).

    Idempotent: a key the story has already keeps one row. Returns the number of keys given.
    """
    if not keys:
        return 0
    rows = [
        {"band_key": k, "story_id": story_id, "published_at": published_at}
        for k in sorted(set(keys))
    ]
    conn.execute(_upsert_bands(conn), rows)
    return len(keys)


def find_candidates(
    conn: Connection,
    keys: Sequence[int],
    published_at: datetime,
    window: timedelta = DEFAULT_WINDOW,
    *,
    exclude_story: int | None = None,
    limit: int = MAX_CANDIDATES,
) -> list[tuple[int, int]]:
    """Stories sharing a band key with ``keys`` within ``window`` of ``published_at``.

    Returns ``(story_id, shared key count)``, most shared first, then lowest id; merged stories
    are left out (their rows normally moved to the survivor on merge). Per key only the newest
    ``MAX_STORIES_PER_KEY`` stories count (see :func:`band_hits`).
    """
    hits = band_hits(conn, keys, published_at - window, published_at + window)
    return _rank(keys, hits, {-1 if exclude_story is None else exclude_story}, limit)


def band_hits(
    conn: Connection, keys: Iterable[int], start: datetime, end: datetime
) -> dict[int, list[int]]:
    """For each of ``keys``: the stories holding it with a ``published_at`` in [start, end],
    newest (highest id) first, at most ``MAX_STORIES_PER_KEY`` per key. One query for a whole
    apply's keys, with [start, end] spanning the window around all of its items.

    The cap bounds the work per key: a key shared by dozens of stories in the window comes from
    boilerplate wording and says little about any one of them. The query walks each key's
    rows down the primary key ``(band_key, story_id)``, one story at a time, and stops at the
    cap (a recursive CTE: no LATERAL on SQLite), so a hot key costs ``MAX_STORIES_PER_KEY``
    index steps, not a scan and sort of every story that holds it (3.5x faster for an apply
    of look-alike headlines than a window function over all of them).
    """
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    out: dict[int, list[int]] = {}
    dialect = conn.dialect.name
    params = {
        "b_keys": ordered if dialect == "postgresql" else json.dumps(ordered),
        "b_from": start,
        "b_to": end,
        "b_per_key": MAX_STORIES_PER_KEY,
    }
    for key, sid in conn.execute(_statements(dialect).band_hits, params):
        out.setdefault(int(key), []).append(int(sid))
    return out


def _band_hits_query(dialect: str) -> Any:
    """The statement of :func:`band_hits` (``b_keys``: a BIGINT array on PostgreSQL, a JSON
    list on SQLite)."""
    keys = (
        "unnest(CAST(:b_keys AS BIGINT[])) AS k(value)"
        if dialect == "postgresql"
        else "json_each(:b_keys) AS k"
    )
    window = "published_at >= :b_from AND published_at <= :b_to"
    sql = f"""
        WITH RECURSIVE top(band_key, story_id, n) AS (
            SELECT k.value, (
                SELECT sb.story_id FROM story_bands AS sb
                WHERE sb.band_key = k.value AND {window}
                ORDER BY sb.story_id DESC LIMIT 1
            ), 1
            FROM {keys}
            UNION ALL
            SELECT top.band_key, (
                SELECT sb.story_id FROM story_bands AS sb
                WHERE sb.band_key = top.band_key AND sb.story_id < top.story_id AND {window}
                ORDER BY sb.story_id DESC LIMIT 1
            ), top.n + 1
            FROM top WHERE top.story_id IS NOT NULL AND top.n < :b_per_key
        )
        SELECT band_key, story_id FROM top WHERE story_id IS NOT NULL
    """
    key_type: Any = postgresql.ARRAY(BigInteger) if dialect == "postgresql" else Text()
    return text(sql).bindparams(
        bindparam("b_keys", type_=key_type),
        bindparam("b_from", type_=UTCDateTime()),
        bindparam("b_to", type_=UTCDateTime()),
        bindparam("b_per_key", type_=Integer()),
    )


def _rank(
    keys: Sequence[int],
    hits: dict[int, list[int]],
    exclude: set[int],
    limit: int,
    min_shared: int = 1,
) -> list[tuple[int, int]]:
    """Candidate stories of one item from ``hits``: ``(story_id, shared keys)`` with at least
    ``min_shared`` keys, not in ``exclude``, most shared first, then lowest id."""
    shared: Counter[int] = Counter()
    for key in set(keys):
        shared.update(hits.get(key, ()))
    for sid in exclude:
        shared.pop(sid, None)
    found = [(sid, n) for sid, n in shared.items() if n >= min_shared]
    return sorted(found, key=lambda c: (-c[1], c[0]))[:limit]


@dataclass(frozen=True, slots=True)
class _Statements:
    """Hot-path statements built once per dialect (building one costs more than running it)."""

    band_hits: Any
    reps: Any
    makeup: Any


@cache
def _statements(dialect: str) -> _Statements:
    """Build the batch lookups for ``dialect`` with expanding bind parameters."""
    i = items.c
    band_hits_q = _band_hits_query(dialect)
    first = func.row_number().over(partition_by=i.story_id, order_by=(i.published_at, i.id))
    last = func.row_number().over(
        partition_by=i.story_id, order_by=(i.published_at.desc(), i.id.desc())
    )
    ranked = (
        select(
            i.id,
            i.story_id,
            i.source_id,
            i.title,
            i.summary_html,
            i.language,
            i.published_at,
            first.label("first"),
            last.label("last"),
        )
        .where(i.story_id.in_(bindparam("b_stories", expanding=True)))
        .subquery()
    )
    reps = (
        select(
            ranked.c.id,
            ranked.c.story_id,
            ranked.c.source_id,
            sources.c.key,
            ranked.c.title,
            ranked.c.summary_html,
            ranked.c.language,
            ranked.c.published_at,
            stories.c.public_id,
        )
        .join(sources, sources.c.id == ranked.c.source_id)
        .join(stories, stories.c.id == ranked.c.story_id)
        .where(or_(ranked.c.first <= REPS_FIRST, ranked.c.last <= REPS_LAST))
        .order_by(ranked.c.story_id, ranked.c.published_at.desc(), ranked.c.id.desc())
    )
    makeup = (
        select(i.story_id, i.source_id, func.count(), stories.c.created_at)
        .join(stories, stories.c.id == i.story_id)
        .where(i.story_id.in_(bindparam("b_stories", expanding=True)))
        .group_by(i.story_id, i.source_id, stories.c.created_at)
    )
    return _Statements(band_hits=band_hits_q, reps=reps, makeup=makeup)


# ---------------------------------------------------------------------------- merge


def _resolve(conn: Connection, story_id: int) -> int:
    """Follow ``merged_into`` from ``story_id`` to the surviving story."""
    current = story_id
    for _ in range(64):
        target = conn.execute(select(stories.c.merged_into).where(stories.c.id == current)).scalar()
        if target is None:
            return current
        current = int(target)
    raise StorageError(f"story {story_id}: merged_into chain too long or cyclic")


def _lock(conn: Connection, a: int, b: int) -> list[Any]:
    """Rows ``(id, created_at, merged_into)`` of stories ``a`` and ``b``, locked on PostgreSQL
    (in id order, so two merges never wait on each other crosswise)."""
    st = stories.c
    query = select(st.id, st.created_at, st.merged_into).where(st.id.in_([a, b])).order_by(st.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return list(conn.execute(query))


def merge_stories(conn: Connection, a: int, b: int, now: datetime) -> int:
    """Merge stories ``a`` and ``b`` (or their survivors); return the surviving id.

    The survivor is the older story (``created_at``, then id), so an exported public id is
    never replaced by a younger one and concurrent merges cannot form a cycle. The other story's
    items and band rows move to the survivor, stories merged into it are re-pointed at the
    survivor (chains stay one hop), it gets ``merged_into`` and both get ``updated_at = now``.
    On PostgreSQL both rows are locked (in id order) first.
    """
    st = stories.c
    rows = _lock(conn, a, b) if a != b else []
    for _ in range(3):
        if len(rows) == 2 and all(r.merged_into is None for r in rows):
            break
        # merged already (earlier, or by a concurrent merge): follow to the survivors
        a, b = _resolve(conn, a), _resolve(conn, b)
        if a == b:
            return a
        rows = _lock(conn, a, b)
    else:
        raise StorageError(f"stories {a} and {b} keep moving while merging")
    survivor_row, loser_row = sorted(rows, key=lambda r: (r.created_at, r.id))
    survivor, loser = int(survivor_row.id), int(loser_row.id)
    conn.execute(update(items).where(items.c.story_id == loser).values(story_id=survivor))
    sb = story_bands.c
    conn.execute(_upsert_bands(conn, move=True), {"b_survivor": survivor, "b_loser": loser})
    conn.execute(delete(story_bands).where(sb.story_id == loser))
    conn.execute(
        update(stories)
        .where(or_(st.id == loser, st.merged_into == loser))
        .values(merged_into=survivor)
    )
    conn.execute(update(stories).where(st.id.in_([survivor, loser])).values(updated_at=now))
    return survivor


# ---------------------------------------------------------------------------- judging


@dataclass(frozen=True, slots=True)
class _Report:
    """A stored report as the matcher needs it."""

    id: int
    story_id: int
    source_id: int
    source_key: str
    title: str
    text: MatchText


@dataclass(slots=True)
class _Makeup:
    """What a candidate story holds: report count and the sources that reported it."""

    size: int = 0
    sources: set[int] = field(default_factory=set)
    created_at: datetime | None = None


def _makeup(conn: Connection, story_ids: Iterable[int]) -> dict[int, _Makeup]:
    """Size and sources of each of ``story_ids`` (one grouped query per ``CHUNK`` stories)."""
    out: dict[int, _Makeup] = {}
    ordered = sorted(set(story_ids))
    query = _statements(conn.dialect.name).makeup
    for n in range(0, len(ordered), CHUNK):
        for sid, src, count, created in conn.execute(query, {"b_stories": ordered[n : n + CHUNK]}):
            got = out.setdefault(int(sid), _Makeup(created_at=created))
            got.size += int(count)
            got.sources.add(int(src))
    return out


def _representatives(
    conn: Connection, story_ids: Iterable[int], public_ids: dict[int, str]
) -> dict[int, list[_Report]]:
    """The reports a new item is judged against, per story: the earliest ``REPS_FIRST`` and the
    latest ``REPS_LAST`` (newest first), however large the story is."""
    out: dict[int, list[_Report]] = {}
    ordered = sorted(set(story_ids))
    query = _statements(conn.dialect.name).reps
    for n in range(0, len(ordered), CHUNK):
        for row in conn.execute(query, {"b_stories": ordered[n : n + CHUNK]}):
            public_ids[row.story_id] = row.public_id
            text = item_match_text(row.title, row.summary_html, row.language, row.published_at)
            out.setdefault(row.story_id, []).append(
                _Report(row.id, row.story_id, row.source_id, row.key, row.title, text)
            )
    return out


def _score(
    text: MatchText,
    sid: int,
    shared: int,
    reps: list[_Report],
    public_id: str,
    eligible: bool,
    thresholds: Thresholds,
) -> CandidateScore:
    """Judge one candidate story through its representatives (best decision wins); an
    ineligible story (it has the item's source) is not judged."""
    best: tuple[Decision, _Report] | None = None
    for report in reps if eligible else ():
        d = decide_pair(text, report.text, thresholds)
        if best is None or (d.same, d.score) > (best[0].same, best[0].score):
            best = (d, report)
    return CandidateScore(
        story_id=sid,
        public_id=public_id,
        shared_keys=shared,
        best_item_title=best[1].title if best else None,
        best_item_source=best[1].source_key if best else None,
        decision=best[0] if best else None,
    )


def _warm_semantic(
    thresholds: Thresholds, judged: Sequence[_New], reps: dict[int, list[_Report]]
) -> None:
    """Hand a semantic backend every text this batch may ask it about, once, when it has a
    ``prepare`` (an embeddings backend embeds them in one request instead of one per pair).
    A failure there is logged; the pairs are then asked one by one, or decided by words."""
    warm = getattr(thresholds.semantic, "prepare", None)
    if warm is None:
        return
    texts = [n.text for n in judged if n.candidates]
    texts += [r.text for n in judged for sid, _ in n.candidates for r in reps.get(sid, [])]
    if not texts:
        return
    try:
        warm(texts)
    except Exception as exc:  # the backend is an extra: matching goes on without it
        log.warning("semantic backend failed to prepare %d texts: %s", len(texts), exc)


def _best_first(scored: list[CandidateScore]) -> list[CandidateScore]:
    """Accepted matches first, then by score, then by story id."""
    return sorted(
        scored,
        key=lambda c: (
            not (c.decision and c.decision.same),
            -(c.decision.score if c.decision else 0.0),
            c.story_id,
        ),
    )


def _judge(
    conn: Connection,
    text: MatchText,
    keys: Sequence[int],
    source_id: int,
    own_story: int,
    published_at: datetime,
    window: timedelta,
    thresholds: Thresholds,
) -> list[CandidateScore]:
    """Every candidate story of one item with its best decision, best match first (explain)."""
    found = find_candidates(conn, keys, published_at, window, exclude_story=own_story)
    if not found:
        return []
    public: dict[int, str] = {}
    makeup = _makeup(conn, [sid for sid, _ in found])
    reps = _representatives(conn, [sid for sid, _ in found], public)
    scored = [
        _score(
            text,
            sid,
            shared,
            reps.get(sid, []),
            public.get(sid, ""),
            source_id not in makeup.get(sid, _Makeup()).sources,
            thresholds,
        )
        for sid, shared in found
    ]
    return _best_first(scored)


# ---------------------------------------------------------------------------- entry point


def match_recent(
    engine: Engine,
    source_id: int,
    collected_at: datetime,
    *,
    edited_keys: Collection[str] = (),
    prepared: PreparedMap | None = None,
    window: timedelta = DEFAULT_WINDOW,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> MatchReport:
    """Match the items one apply inserted (``source_id``, ``collected_at`` = the apply's now)
    and re-index the ones it edited (``edited_keys``), in a transaction of its own.

    Items alone in their story (no URL match happened) are judged against candidate stories and
    merged into the best one that ``decide`` accepts; every new item's band keys are then
    indexed on its (surviving) story. Errors become ``StorageError``. The pipeline instead runs
    :class:`MatchAfterApply` inside the apply's transaction (one commit).
    """
    with storage_errors(engine, "match stories"), engine.connect() as conn:
        conn.execution_options(**write_options())
        with conn.begin():
            return match_in(
                conn,
                source_id,
                collected_at,
                edited_keys=edited_keys,
                prepared=prepared,
                window=window,
                thresholds=thresholds,
            )


def _age(entry: tuple[datetime | None, int]) -> tuple[datetime, int]:
    """Sort key of ``(created_at, story id)``: older first (unknown ages last), then lower id."""
    created, sid = entry
    return (created or datetime.max.replace(tzinfo=UTC), sid)


def _merge_all(
    conn: Connection, merges: list[tuple[int, int]], moved: dict[int, int], now: datetime
) -> None:
    """Carry out one batch's merges (``moved``: loser -> survivor, chains allowed) in a fixed
    number of statements. The involved stories are locked (PostgreSQL) and checked first: if a
    concurrent merge touched one of them, fall back to :func:`merge_stories` one by one, which
    follows ``merged_into`` (so the outcome is the same, only slower)."""
    involved = sorted(set(moved) | set(moved.values()))
    sql = _merge_statements(conn.dialect.name)
    rows = list(conn.execute(sql.check, {"b_stories": involved}))
    if len(rows) != len(involved) or any(r.merged_into is not None for r in rows):
        for own, target in merges:
            merge_stories(conn, own, target, now)
        return

    def final(sid: int) -> int:
        while sid in moved:
            sid = moved[sid]
        return sid

    pairs = [{"b_loser": loser, "b_survivor": final(loser)} for loser in sorted(moved)]
    conn.execute(sql.move_items, pairs)
    conn.execute(_upsert_bands(conn, move=True), pairs)
    conn.execute(sql.drop_bands, pairs)
    conn.execute(sql.point, pairs)
    conn.execute(sql.touch, {"b_stories": involved, "b_now": now})


@dataclass(frozen=True, slots=True)
class _MergeStatements:
    """The statements of :func:`_merge_all`, built once per dialect (building them for every
    batch took about as long as running them)."""

    check: Any
    move_items: Any
    drop_bands: Any
    point: Any
    touch: Any


@cache
def _merge_statements(dialect: str) -> _MergeStatements:
    """Build :class:`_MergeStatements` for ``dialect`` (row locks on PostgreSQL)."""
    st, i, sb = stories.c, items.c, story_bands.c
    involved: Any = bindparam("b_stories", expanding=True)
    check = select(st.id, st.merged_into).where(st.id.in_(involved)).order_by(st.id)
    if dialect == "postgresql":
        check = check.with_for_update()
    loser: Any = bindparam("b_loser", type_=Id)
    survivor: Any = bindparam("b_survivor", type_=Id)
    return _MergeStatements(
        check=check,
        move_items=update(items).where(i.story_id == loser).values(story_id=survivor),
        drop_bands=delete(story_bands).where(sb.story_id == loser),
        point=update(stories)
        .where(or_(st.id == loser, st.merged_into == loser))
        .values(merged_into=survivor),
        touch=update(stories)
        .where(st.id.in_(involved))
        .values(updated_at=bindparam("b_now", type_=UTCDateTime())),
    )


@dataclass(slots=True)
class _New:
    """One new (or edited) item of the apply being matched."""

    item_id: int
    story_id: int
    alone: bool
    published_at: datetime
    created_at: datetime  # of its story
    text: MatchText
    keys: list[int]
    candidates: list[tuple[int, int]] = field(default_factory=list)


def prepared_of(row: Any, prepared: PreparedMap | None) -> Prepared:
    """Features and keys of a stored item row: from ``prepared`` (computed in a parse worker)
    when it holds the row's text, else computed here."""
    got = prepared.get((row.title, row.summary_html)) if prepared else None
    if got is not None:
        text = adopt(got, row.title, row.summary_html, row.language, row.published_at)
        return Prepared(text, got.keys)
    text = item_match_text(row.title, row.summary_html, row.language, row.published_at)
    return Prepared(text, tuple(item_band_keys(text)))


def match_in(
    conn: Connection,
    source_id: int,
    collected_at: datetime,
    *,
    edited_keys: Collection[str] = (),
    prepared: PreparedMap | None = None,
    window: timedelta = DEFAULT_WINDOW,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> MatchReport:
    """:func:`match_recent` inside the caller's transaction (``now`` is ``collected_at``).

    ``edited_keys``: item keys of the source that this apply updated in place (a corrected
    title or summary). Their stories' band rows are rebuilt from the current texts (stale keys
    go), and an edited item alone in its story is judged again like a new one. A story is never
    split: an edited report that no longer matches its story stays in it.

    ``prepared``: features and keys computed beforehand (``dedupe.prepare.prepare_many``, e.g.
    in a parse worker), by ``(title, summary_html)``; rows not in it are computed here.

    Bounded work per apply: one query for the new items, one band lookup for all their keys
    (``MAX_STORIES_PER_KEY`` stories per key), one makeup query and one representatives query
    for all their candidate stories (``MAX_CANDIDATES`` per item, ``REPS_FIRST + REPS_LAST``
    reports each), a merge per accepted match and one batched band upsert.
    """
    i = items.c
    other = items.alias("other")
    alone = (
        select(func.count()).where(other.c.story_id == i.story_id, other.c.id != i.id)
    ).scalar_subquery()
    wanted = i.collected_at == collected_at
    if edited_keys:
        wanted = or_(wanted, i.item_key.in_(sorted(set(edited_keys))))
    query = (
        select(
            i.id,
            i.story_id,
            i.title,
            i.summary_html,
            i.language,
            i.published_at,
            stories.c.created_at,
            alone.label("n"),
        )
        .join(stories, stories.c.id == i.story_id)
        .where(i.source_id == source_id, wanted)
        .order_by(i.published_at, i.id)
    )
    new: list[_New] = []
    for row in conn.execute(query):
        got = prepared_of(row, prepared)
        new.append(
            _New(
                int(row.id),
                int(row.story_id),
                row.n == 0,
                row.published_at,
                row.created_at,
                got.text,
                list(got.keys),
            )
        )
    if not new:
        return MatchReport()
    bands: dict[tuple[int, int], datetime] = {}  # (key, story) -> newest published_at
    if edited_keys:
        rebuilt = _unindex_edited(conn, new, edited_keys, source_id, collected_at)
        for sid, row in rebuilt:
            for key in prepared_of(row, prepared).keys:
                keep_newest(bands, key, sid, row.published_at)
    judged = [n for n in new if n.alone and n.keys]
    makeup: dict[int, _Makeup] = {}
    reps: dict[int, list[_Report]] = {}
    if judged:
        start = min(n.published_at for n in judged) - window
        end = max(n.published_at for n in judged) + window
        hits = band_hits(conn, {k for n in judged for k in n.keys}, start, end)
        for n in judged:  # a few spare candidates, for those that turn out ineligible
            n.candidates = _rank(n.keys, hits, {n.story_id}, 3 * MAX_CANDIDATES, MIN_SHARED_KEYS)
        makeup = _makeup(conn, {sid for n in judged for sid, _ in n.candidates})
        for n in judged:
            n.candidates = [
                (sid, shared)
                for sid, shared in n.candidates
                if source_id not in makeup.get(sid, _Makeup()).sources
                and makeup.get(sid, _Makeup()).size < MAX_TEXT_STORY
            ][:MAX_CANDIDATES]
        reps = _representatives(conn, {sid for n in judged for sid, _ in n.candidates}, {})
        _warm_semantic(thresholds, judged, reps)
    merged = 0
    moved: dict[int, int] = {}  # loser -> survivor, decided in this batch
    merges: list[tuple[int, int]] = []  # (own story, target story) as decided

    def resolve(sid: int) -> int:
        while sid in moved:  # merged earlier in this batch (apply itself follows merges)
            sid = moved[sid]
        return sid

    for n in judged:
        own = resolve(n.story_id)
        own_size = makeup[own].size if own in makeup else 1
        scored: list[CandidateScore] = []
        for sid, shared in n.candidates:
            target = resolve(sid)
            held = makeup.get(target, _Makeup())
            eligible = (
                target != own
                and source_id not in held.sources
                and held.size + own_size <= MAX_TEXT_STORY
            )
            if eligible:
                scored.append(_score(n.text, sid, shared, reps.get(sid, []), "", True, thresholds))
        best = _best_first(scored)
        if best and best[0].decision is not None and best[0].decision.same:
            target = resolve(best[0].story_id)
            held = makeup.get(target, _Makeup())
            mine = makeup.get(own, _Makeup(size=own_size, created_at=n.created_at))
            ages = sorted([(mine.created_at, own), (held.created_at, target)], key=_age)
            survivor, loser = ages[0][1], ages[1][1]
            merges.append((own, target))
            moved[loser] = survivor
            makeup[survivor] = _Makeup(held.size + own_size, held.sources | {source_id}, ages[0][0])
            merged += 1
    if merges:
        _merge_all(conn, merges, moved, collected_at)
    final: dict[tuple[int, int], datetime] = {}  # rows on the surviving stories
    for (key, sid), published in bands.items():
        keep_newest(final, key, resolve(sid), published)
    for n in new:
        sid, published = resolve(n.story_id), n.published_at
        for key in n.keys:
            seen = final.get((key, sid))
            if seen is None or seen < published:
                final[(key, sid)] = published
    if final:
        write_bands(conn, final)
    return MatchReport(merged=merged, indexed=sum(1 for n in new if n.keys))


def keep_newest(
    bands: dict[tuple[int, int], datetime], key: int, sid: int, published: datetime
) -> None:
    """Record band ``key`` of story ``sid`` at the newest ``published`` seen."""
    seen = bands.get((key, sid))
    if seen is None or seen < published:
        bands[(key, sid)] = published


def _unindex_edited(
    conn: Connection,
    new: list[_New],
    edited_keys: Collection[str],
    source_id: int,
    collected_at: datetime,
) -> list[tuple[int, Any]]:
    """Drop the band rows of the stories holding an edited item (their keys came from the old
    text) and return ``(story id, row)`` for the *other* items of those stories, whose keys
    must be indexed again. Stories over ``MAX_REBUILD`` reports keep their rows (the edited
    item's new keys are added; a stale key only brings a candidate ``decide`` rejects)."""
    i = items.c
    edited_ids = set(
        conn.execute(
            select(i.id).where(
                i.source_id == source_id,
                i.item_key.in_(sorted(set(edited_keys))),
                i.collected_at != collected_at,
            )
        ).scalars()
    )
    story_ids = sorted({n.story_id for n in new if n.item_id in edited_ids})
    if not story_ids:
        return []
    sizes = _makeup(conn, story_ids)
    small = [sid for sid in story_ids if sizes.get(sid, _Makeup()).size <= MAX_REBUILD]
    if not small:
        return []
    conn.execute(delete(story_bands).where(story_bands.c.story_id.in_(small)))
    mine = {n.item_id for n in new}
    rows = conn.execute(
        select(i.id, i.story_id, i.title, i.summary_html, i.language, i.published_at).where(
            i.story_id.in_(small)
        )
    )
    return [(int(row.story_id), row) for row in rows if row.id not in mine]


@dataclass(slots=True)
class MatchAfterApply:
    """Story matching as a hook of ``Repository.apply`` (its ``then``): runs in the apply's own
    transaction, so items and their story index are committed together (one commit per
    source), under a savepoint, so a matching failure is logged and rolled back alone and never
    loses the items. ``report`` holds what it did (``failed`` when it was rolled back)."""

    source_id: int
    collected_at: datetime
    edited_keys: tuple[str, ...] = ()
    prepared: PreparedMap | None = None
    window: timedelta = DEFAULT_WINDOW
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    report: MatchReport = field(default_factory=MatchReport)
    failed: bool = False

    def __call__(self, conn: Connection) -> None:
        """Match the apply's new and edited items on ``conn`` (inside its transaction)."""
        try:
            with conn.begin_nested():
                self.report = match_in(
                    conn,
                    self.source_id,
                    self.collected_at,
                    edited_keys=self.edited_keys,
                    prepared=self.prepared,
                    window=self.window,
                    thresholds=self.thresholds,
                )
        except Exception:  # matching is an extra: the items must still be written
            log.exception("story matching failed for source %s; items kept", self.source_id)
            self.failed = True


# ---------------------------------------------------------------------------- explain


def explain_item(
    conn: Connection,
    url: str,
    *,
    window: timedelta = DEFAULT_WINDOW,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[Explanation]:
    """Why the item(s) at ``url`` are in their story: URL peers, text peers, and every text
    candidate (other stories sharing band keys) with its score and threshold.

    ``url`` is matched as given and canonicalized, against ``url``, ``canonical_url`` and
    ``external_url``. Returns one explanation per stored item found (none: empty list).
    """
    wanted = sorted({u for u in (url, canonical_url(url)) if u})
    i = items.c
    found = list(
        conn.execute(
            select(
                i.id,
                i.story_id,
                i.source_id,
                sources.c.key,
                i.url,
                i.canonical_url,
                i.external_url,
                i.title,
                i.summary_html,
                i.language,
                i.published_at,
            )
            .join(sources, sources.c.id == i.source_id)
            .where(or_(i.url.in_(wanted), i.canonical_url.in_(wanted), i.external_url.in_(wanted)))
            .order_by(i.id)
        )
    )
    out: list[Explanation] = []
    for row in found:
        story = conn.execute(
            select(stories.c.id, stories.c.public_id, stories.c.merged_into).where(
                stories.c.id == row.story_id
            )
        ).one()
        mine = {u for u in (row.canonical_url, row.external_url) if u}
        others = list(
            conn.execute(
                select(
                    sources.c.key,
                    i.canonical_url,
                    i.external_url,
                    i.title,
                    i.summary_html,
                    i.language,
                    i.published_at,
                )
                .join(sources, sources.c.id == i.source_id)
                .where(i.story_id == row.story_id, i.id != row.id)
                .order_by(i.published_at, i.id)
            )
        )
        text = item_match_text(row.title, row.summary_html, row.language, row.published_at)
        keys = item_band_keys(text)
        url_peers: list[tuple[str, str]] = []
        text_peers: list[tuple[str, str, Decision]] = []
        for other in others:
            shared = mine & {u for u in (other.canonical_url, other.external_url) if u}
            if shared:
                url_peers.append((other.key, sorted(shared)[0]))
            else:
                theirs = item_match_text(
                    other.title, other.summary_html, other.language, other.published_at
                )
                text_peers.append((other.key, other.title, decide_pair(text, theirs, thresholds)))
        candidates = _judge(
            conn, text, keys, row.source_id, row.story_id, row.published_at, window, thresholds
        )
        threshold = thresholds.zh if text.body_features.script == "zh" else thresholds.en
        note = (
            f"threshold {threshold:.2f} ({text.body_features.script or 'empty'} text),"
            f" window ±{window.total_seconds() / 86400:g} days, {len(keys)} band keys"
        )
        out.append(
            Explanation(
                url=row.url or row.canonical_url or url,
                item_id=row.id,
                title=row.title,
                source_key=row.key,
                story_id=story.id,
                public_id=story.public_id,
                merged_into=story.merged_into,
                url_peers=tuple(url_peers),
                text_peers=tuple(text_peers),
                candidates=tuple(candidates),
                threshold_note=note,
            )
        )
    return out


def render_explanation(exp: Explanation) -> str:
    """Plain-text rendering of an :class:`Explanation` for the CLI."""
    lines = [
        f"item {exp.item_id} [{exp.source_key}] {exp.title}",
        f"  url: {exp.url}",
        f"  story {exp.story_id} {exp.public_id}"
        + (f" (merged into {exp.merged_into})" if exp.merged_into else ""),
    ]
    if exp.url_peers:
        lines.append("  joined by URL with:")
        lines += [f"    [{key}] {u}" for key, u in exp.url_peers]
    if exp.text_peers:
        lines.append("  in the story by text similarity (or through another report) with:")
        for key, title, d in exp.text_peers:
            verdict = "SAME" if d.same else "different"
            lines.append(
                f"    [{key}] {title}: {verdict}, score {d.score:.3f}"
                f" vs threshold {d.threshold:.3f}"
            )
            lines += [f"      - {r}" for r in d.reasons]
    if not exp.url_peers and not exp.text_peers:
        lines.append("  alone in its story")
    lines.append(f"  other candidate stories ({exp.threshold_note}):")
    if not exp.candidates:
        lines.append("    none share a band key within the window")
    for c in exp.candidates:
        if c.decision is None:
            lines.append(
                f"    story {c.story_id} ({c.shared_keys} keys): not judged (it has a report"
                " of the same source, or none within the window)"
            )
            continue
        d = c.decision
        verdict = "SAME" if d.same else "different"
        lines.append(
            f"    story {c.story_id} ({c.shared_keys} keys) {verdict}:"
            f" score {d.score:.3f} vs threshold {d.threshold:.3f}"
            f" against [{c.best_item_source}] {c.best_item_title}"
        )
        lines += [f"      - {r}" for r in d.reasons]
        lines += [f"      - conflict {x}" for x in d.conflicts]
    return "\n".join(lines)
