"""Cross-publisher story matching in the database: LSH band index, candidates, merges, explain.

``Repository.apply`` joins items to stories by URL (canonical and external). This module adds the
third, text-similarity signal: after an apply, :func:`match_recent` takes the new items that
found no story by URL, looks up candidate stories sharing a MinHash LSH band key
(``story_bands``, an indexed table, so replicas share the index and a restart loses nothing),
judges each candidate's reports with :func:`aggregator.dedupe.stories.decide` and merges the
item's story into the best matching one.

Rules that keep it precise and cheap:

* Candidates are stories with a band row whose ``published_at`` is within ``window`` of the
  item's; at most ``MAX_CANDIDATES`` of them (most shared keys first) are judged.
* A story that already holds a report of the item's own source is not a candidate: one
  publisher does not report one event twice under two URLs (that is the identity layer's job),
  and a firehose's related posts ("iOS 26.1 beta" then "iOS 26.1 released") must not collapse
  into one story.
* Merges keep the older story (``created_at``, then id): its public id is the exported one and
  never changes. The other story's items move to the survivor and it gets ``merged_into`` (so
  ``Repository.apply`` follows it for later URL matches); its band rows move too.
* Each item contributes body keys (title + summary head, ``BODY_BANDS`` x ``BODY_ROWS``) and,
  when the title has at least ``MIN_TITLE_SHINGLES`` shingles, title keys
  (``TITLE_BANDS`` x ``TITLE_ROWS`` over the title shingles alone): two reports with the same
  headline but different leads have a low body Jaccard yet are the easiest match.

All functions take a SQLAlchemy ``Connection`` inside the caller's transaction, except
:func:`match_recent`, which opens one write transaction on an ``Engine`` (the pipeline calls it
in its database thread after each successful apply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from aggregator.dedupe.minhash import band_keys, signature
from aggregator.dedupe.stories import (
    DEFAULT_THRESHOLDS,
    Decision,
    MatchText,
    Thresholds,
    match_text,
)
from aggregator.dedupe.stories import decide as decide_pair
from aggregator.errors import StorageError
from aggregator.sanitize import html_to_text
from aggregator.store.db import storage_errors, write_options
from aggregator.store.schema import Id, UTCDateTime, items, sources, stories, story_bands
from aggregator.urls import canonical_url

DEFAULT_WINDOW = timedelta(days=3)
BODY_PERM, BODY_BANDS, BODY_ROWS = 64, 21, 3
TITLE_PERM, TITLE_BANDS, TITLE_ROWS = 20, 10, 2
MIN_TITLE_SHINGLES = 3
TEXT_CACHE = 20_000  # memoized MatchTexts (a few KB each)
MAX_CANDIDATES = 20  # stories judged per item, most shared band keys first
MAX_ITEMS_PER_CANDIDATE = 20  # reports of one candidate story judged, newest first


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


# ---------------------------------------------------------------------------- features (pure)


@lru_cache(maxsize=TEXT_CACHE)
def item_match_text(
    title: str, summary_html: str, language: str | None, published_at: datetime | None
) -> MatchText:
    """The matcher's view of a stored item: title + plain text of its summary.

    Memoized (pure, and the same recent reports are judged again and again as candidates:
    features cost ~0.5 ms a text, a cache hit ~1 us).
    """
    return match_text(
        title, html_to_text(summary_html), language=language, published_at=published_at
    )


def item_band_keys(text: MatchText) -> list[int]:
    """LSH band keys of one report: body keys, plus title keys when the title is long enough.

    Title shingles are hashed with a ``t|`` prefix, so title keys are independent of body keys.
    """
    keys = band_keys(
        signature(text.body_features.shingles, BODY_PERM), bands=BODY_BANDS, rows=BODY_ROWS
    )
    title = text.title_features.shingles
    if len(title) >= MIN_TITLE_SHINGLES:
        sig = signature((f"t|{s}" for s in title), TITLE_PERM)
        keys += band_keys(sig, bands=TITLE_BANDS, rows=TITLE_ROWS)
    return list(dict.fromkeys(keys))


# ---------------------------------------------------------------------------- index


def _upsert_bands(conn: Connection, rows: Any = None) -> Any:
    """``INSERT INTO story_bands`` (rows bound at execution, or ``rows`` a SELECT) that keeps one
    row per (key, story) at the newest ``published_at``."""
    if conn.dialect.name == "postgresql":
        ins: Any = postgresql.insert(story_bands)
        newest = func.greatest(story_bands.c.published_at, ins.excluded.published_at)
    elif conn.dialect.name == "sqlite":
        ins = sqlite.insert(story_bands)
        newest = func.max(story_bands.c.published_at, ins.excluded.published_at)
    else:
        raise StorageError(f"unsupported database dialect {conn.dialect.name!r}")
    if rows is not None:
        ins = ins.from_select(["band_key", "story_id", "published_at"], rows)
    return ins.on_conflict_do_update(
        index_elements=[story_bands.c.band_key, story_bands.c.story_id],
        set_={"published_at": newest},
    )


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
    are left out (their rows normally moved to the survivor on merge).
    """
    if not keys:
        return []
    params = {
        "b_keys": sorted(set(keys)),
        "b_from": published_at - window,
        "b_to": published_at + window,
        "b_exclude": -1 if exclude_story is None else exclude_story,
        "b_limit": limit,
    }
    query = _statements(conn.dialect.name).candidates
    return [(int(sid), int(n)) for sid, n in conn.execute(query, params)]


@dataclass(frozen=True, slots=True)
class _Statements:
    """Hot-path statements built once per dialect (building one costs more than running it)."""

    candidates: Any
    reports: Any


@cache
def _statements(dialect: str) -> _Statements:
    """Build the per-item lookups for ``dialect`` with expanding bind parameters."""
    sb, i = story_bands.c, items.c
    shared = func.count().label("shared")
    candidates = (
        select(sb.story_id, shared)
        .join(stories, stories.c.id == sb.story_id)
        .where(
            sb.band_key.in_(bindparam("b_keys", expanding=True)),
            sb.published_at >= bindparam("b_from", type_=UTCDateTime()),
            sb.published_at <= bindparam("b_to", type_=UTCDateTime()),
            sb.story_id != bindparam("b_exclude"),
            stories.c.merged_into.is_(None),
        )
        .group_by(sb.story_id)
        .order_by(shared.desc(), sb.story_id)
        .limit(bindparam("b_limit"))
    )
    reports = (
        select(
            i.id,
            i.story_id,
            i.source_id,
            sources.c.key,
            i.title,
            i.summary_html,
            i.language,
            i.published_at,
            stories.c.public_id,
        )
        .join(sources, sources.c.id == i.source_id)
        .join(stories, stories.c.id == i.story_id)
        .where(
            i.story_id.in_(bindparam("b_stories", expanding=True)),
            i.published_at >= bindparam("b_from", type_=UTCDateTime()),
            i.published_at <= bindparam("b_to", type_=UTCDateTime()),
        )
        .order_by(i.story_id, i.published_at.desc(), i.id.desc())
    )
    return _Statements(candidates=candidates, reports=reports)


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


def merge_stories(conn: Connection, a: int, b: int, now: datetime) -> int:
    """Merge stories ``a`` and ``b`` (or their survivors); return the surviving id.

    The survivor is the older story (``created_at``, then id), so an exported public id is
    never replaced by a younger one and concurrent merges cannot form a cycle. The other story's
    items and band rows move to the survivor, stories merged into it are re-pointed at the
    survivor (chains stay one hop), it gets ``merged_into`` and both get ``updated_at = now``.
    On PostgreSQL both rows are locked (in id order) first.
    """
    a, b = _resolve(conn, a), _resolve(conn, b)
    if a == b:
        return a
    st = stories.c
    lock = select(st.id, st.created_at, st.merged_into).where(st.id.in_([a, b])).order_by(st.id)
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update()
    rows = list(conn.execute(lock))
    if len(rows) != 2 or any(r.merged_into is not None for r in rows):
        # a concurrent merge got there first: resolve again and retry once
        a, b = _resolve(conn, a), _resolve(conn, b)
        if a == b:
            return a
        rows = list(conn.execute(lock.where(st.id.in_([a, b]))))
        if len(rows) != 2:
            raise StorageError(f"stories {a} and {b} vanished while merging")
    survivor_row, loser_row = sorted(rows, key=lambda r: (r.created_at, r.id))
    survivor, loser = int(survivor_row.id), int(loser_row.id)
    conn.execute(update(items).where(items.c.story_id == loser).values(story_id=survivor))
    sb = story_bands.c
    conn.execute(
        _upsert_bands(
            conn,
            select(sb.band_key, literal(survivor, Id), sb.published_at).where(sb.story_id == loser),
        )
    )
    conn.execute(delete(story_bands).where(sb.story_id == loser))
    conn.execute(update(stories).where(st.merged_into == loser).values(merged_into=survivor))
    conn.execute(update(stories).where(st.id == loser).values(merged_into=survivor, updated_at=now))
    conn.execute(update(stories).where(st.id == survivor).values(updated_at=now))
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


def _reports(
    conn: Connection,
    story_ids: Sequence[int],
    published_at: datetime,
    window: timedelta,
    public_ids: dict[int, str],
) -> dict[int, list[_Report]]:
    """Reports of ``story_ids`` published within ``window`` of ``published_at``, newest first
    (at most ``MAX_ITEMS_PER_CANDIDATE`` per story)."""
    out: dict[int, list[_Report]] = {sid: [] for sid in story_ids}
    if not story_ids:
        return out
    params = {
        "b_stories": list(story_ids),
        "b_from": published_at - window,
        "b_to": published_at + window,
    }
    for row in conn.execute(_statements(conn.dialect.name).reports, params):
        public_ids[row.story_id] = row.public_id
        bucket = out[row.story_id]
        if len(bucket) < MAX_ITEMS_PER_CANDIDATE:
            text = item_match_text(row.title, row.summary_html, row.language, row.published_at)
            bucket.append(_Report(row.id, row.story_id, row.source_id, row.key, row.title, text))
    return out


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
    """Every candidate story of one item with its best decision, best match first."""
    found = find_candidates(conn, keys, published_at, window, exclude_story=own_story)
    if not found:
        return []
    public: dict[int, str] = {}
    reports = _reports(conn, [sid for sid, _ in found], published_at, window, public)
    scored: list[CandidateScore] = []
    for sid, shared in found:
        best: tuple[Decision, _Report] | None = None
        if any(r.source_id == source_id for r in reports[sid]):
            reports[sid] = []  # the source reported this story already: not a second time
        for report in reports[sid]:
            d = decide_pair(text, report.text, thresholds)
            if best is None or (d.same, d.score) > (best[0].same, best[0].score):
                best = (d, report)
        scored.append(
            CandidateScore(
                story_id=sid,
                public_id=str(public.get(sid, "")),
                shared_keys=shared,
                best_item_title=best[1].title if best else None,
                best_item_source=best[1].source_key if best else None,
                decision=best[0] if best else None,
            )
        )
    scored.sort(
        key=lambda c: (
            not (c.decision and c.decision.same),
            -(c.decision.score if c.decision else 0.0),
            c.story_id,
        )
    )
    return scored


# ---------------------------------------------------------------------------- entry point


def match_recent(
    engine: Engine,
    source_id: int,
    collected_at: datetime,
    *,
    window: timedelta = DEFAULT_WINDOW,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> MatchReport:
    """Match the items one apply inserted (``source_id``, ``collected_at`` = the apply's now).

    Items alone in their story (no URL match happened) are judged against candidate stories and
    merged into the best one that ``decide`` accepts; every new item's band keys are then
    indexed on its (surviving) story. One write transaction; errors become ``StorageError``.
    """
    with storage_errors(engine, "match stories"), engine.connect() as conn:
        conn.execution_options(**write_options())
        with conn.begin():
            return match_in(conn, source_id, collected_at, window=window, thresholds=thresholds)


def match_in(
    conn: Connection,
    source_id: int,
    collected_at: datetime,
    *,
    window: timedelta = DEFAULT_WINDOW,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> MatchReport:
    """:func:`match_recent` inside the caller's transaction (``now`` is ``collected_at``)."""
    i = items.c
    other = items.alias("other")
    alone = (
        select(func.count()).where(other.c.story_id == i.story_id, other.c.id != i.id)
    ).scalar_subquery()
    query = (
        select(
            i.id, i.story_id, i.title, i.summary_html, i.language, i.published_at, alone.label("n")
        )
        .where(i.source_id == source_id, i.collected_at == collected_at)
        .order_by(i.published_at, i.id)
    )
    rows = list(conn.execute(query))
    merged = indexed = 0
    moved: dict[int, int] = {}
    for row in rows:
        text = item_match_text(row.title, row.summary_html, row.language, row.published_at)
        keys = item_band_keys(text)
        story_id = int(row.story_id)
        while story_id in moved:  # merged earlier in this batch (apply itself follows merges)
            story_id = moved[story_id]
        if row.n == 0:
            scored = _judge(
                conn, text, keys, source_id, story_id, row.published_at, window, thresholds
            )
            if scored and scored[0].decision is not None and scored[0].decision.same:
                survivor = merge_stories(conn, story_id, scored[0].story_id, collected_at)
                for loser in (story_id, scored[0].story_id):
                    if loser != survivor:
                        moved[loser] = survivor
                story_id = survivor
                merged += 1
        if keys:
            index_story(conn, story_id, keys, row.published_at)
            indexed += 1
    return MatchReport(merged=merged, indexed=indexed)


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
            f" window ±{window}, {len(keys)} band keys"
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
