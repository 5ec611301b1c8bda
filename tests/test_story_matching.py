"""Text-similarity story matching in the database (``aggregator.store.matching``).

Runs on real SQLite and real PostgreSQL (``repo`` fixture). Items are written with
``Repository.apply`` exactly as the pipeline does, then ``match_recent`` runs for that apply.
Also the identity traps end to end (feed bytes -> ingest -> plan -> apply -> match).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from aggregator.dedupe.prepare import item_band_keys, item_match_text
from aggregator.dedupe.stories import DEFAULT_THRESHOLDS
from aggregator.ingest import ingest
from aggregator.model import Item, ItemIntent, SourceUpdate, UpdatePlan
from aggregator.plan import keyed_items, plan_items
from aggregator.settings import SourceConfig
from aggregator.store import Repository, make_engine
from aggregator.store.db import (
    SQLITE_CACHE_KIB,
    SQLITE_JOURNAL_SIZE_LIMIT_BYTES,
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
)
from aggregator.store.matching import (
    MAX_TEXT_STORY,
    MatchAfterApply,
    MatchReport,
    _upsert_bands,
    explain_item,
    index_story,
    match_recent,
    merge_stories,
    render_explanation,
    write_bands,
)
from aggregator.store.schema import items, stories, story_bands
from tests.factories import make_item

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SINCE = T0 - timedelta(days=30)


def add(repo: Repository, key: str) -> int:
    """Add a source and return its id."""
    cfg = SourceConfig(key=key, url=f"http://127.0.0.1:9/{key}.xml", name=key.title())
    return repo.add_source(cfg, T0).id


def ok_update(now: datetime) -> SourceUpdate:
    """A successful poll's source update."""
    return SourceUpdate(
        status="ok",
        last_error=None,
        error_count=0,
        next_check_at=now + timedelta(minutes=15),
        last_fetched_at=now,
        last_success_at=now,
    )


def put(repo: Repository, source_id: int, now: datetime, *pairs: tuple[str, Item]) -> MatchReport:
    """Apply inserts for ``pairs`` (key, item) at ``now``, then match them like the pipeline."""
    intents = tuple(ItemIntent("insert", key, it) for key, it in pairs)
    repo.apply(UpdatePlan(source_id, ok_update(now), intents), now)
    return match_recent(repo.engine, source_id, now)


def apply_feed(repo: Repository, source_id: int, body: bytes, url: str, now: datetime) -> int:
    """Feed bytes through ingest -> plan -> apply -> match, as the pipeline does; new items."""
    got = ingest(body, {}, url, None, now)
    assert got.error is None, got.error
    keyed = keyed_items(got.items)
    existing = repo.existing_items(
        source_id, [k for k, _ in keyed], [i.canonical_url for _, i in keyed if i.canonical_url]
    )
    intents = plan_items(keyed, existing, repo.tombstoned(source_id, [k for k, _ in keyed]))
    result = repo.apply(UpdatePlan(source_id, ok_update(now), intents), now)
    match_recent(repo.engine, source_id, now)
    return result.new


def report(n: str, title: str, summary: str = "", published: datetime = T0, **kw: object) -> Item:
    """An English report at a unique URL."""
    url = f"https://{n}.example/{abs(hash(title)) % 10**8}"
    return make_item(
        guid=url,
        url=url,
        title=title,
        summary_html=f"<p>{summary}</p>",
        published_at=published,
        **kw,
    )


APPLE = "Apple releases iOS 18.2 with ChatGPT integration and Genmoji for iPhone users"
APPLE_B = "Apple releases iOS 18.2 with ChatGPT integration, Genmoji for iPhone"
LEAD = "The update brings Image Playground and Visual Intelligence to the newest iPhones."


def test_similar_reports_of_two_publishers_become_one_story(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    assert put(repo, a, T0, ("a1", report("a", APPLE, LEAD))) == MatchReport(merged=0, indexed=1)
    first = repo.recent_stories(SINCE, 10)[0]
    later = T0 + timedelta(hours=2)
    assert put(repo, b, later, ("b1", report("b", APPLE_B, "Different lead."))).merged == 1
    (story,) = repo.recent_stories(SINCE, 10)
    assert story.public_id == first.public_id  # the older story survives with its id
    assert sorted(i.source_key for i in story.items) == ["a", "b"]
    with repo.engine.connect() as conn:
        merged = conn.execute(select(stories).where(stories.c.merged_into.is_not(None))).all()
        assert [m.merged_into for m in merged] == [story.id]
        owners = set(conn.execute(select(story_bands.c.story_id).distinct()).scalars())
        assert owners == {story.id}  # the loser's band rows moved to the survivor


def test_conflicting_numbers_same_source_and_window_keep_stories_apart(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    put(repo, a, T0, ("a1", report("a", APPLE, LEAD)))
    # same wording, other version number: a different release
    put(repo, b, T0, ("b1", report("b", APPLE.replace("18.2", "18.3"), LEAD)))
    # the same source again: the identity layer's business, never merged by text
    put(repo, a, T0 + timedelta(minutes=5), ("a2", report("a2", APPLE_B, LEAD)))
    # the same text five days later: outside the window
    late = T0 + timedelta(days=5)
    put(repo, b, late, ("b2", report("b2", APPLE_B, LEAD, published=late)))
    assert len(repo.recent_stories(SINCE, 10)) == 4


def test_best_candidate_wins_and_index_survives_a_restart(db_url: str, repo: Repository) -> None:
    a, b, c = add(repo, "a"), add(repo, "b"), add(repo, "c")
    put(repo, a, T0, ("a1", report("a", APPLE, LEAD)))
    other = "Apple releases iPadOS 18.2 with ChatGPT integration for iPad Pro users"
    put(repo, b, T0, ("b1", report("b", other, "Tablets get the features.")))
    assert len(repo.recent_stories(SINCE, 10)) == 2
    fresh = make_engine(db_url)  # a new process: nothing but the database is shared
    try:
        got = match_recent(fresh, c, T0)  # nothing collected at T0 for c yet
        assert got == MatchReport(0, 0)
        repo2 = Repository(fresh)
        assert put(repo2, c, T0 + timedelta(hours=1), ("c1", report("c", APPLE, ""))).merged == 1
    finally:
        fresh.dispose()
    by_source = {
        tuple(sorted(i.source_key for i in s.items)) for s in repo.recent_stories(SINCE, 10)
    }
    assert by_source == {("a", "c"), ("b",)}


def test_merged_story_items_follow_the_survivor(repo: Repository) -> None:
    a, b, c = add(repo, "a"), add(repo, "b"), add(repo, "c")
    old = report("a", "Rust 2.0 announced at RustConf keynote in Montreal")
    put(repo, a, T0, ("a1", old))
    young = report("b", "Völlig anders: Kubernetes bekommt neuen Scheduler im Release")
    put(repo, b, T0 + timedelta(minutes=1), ("b1", young))
    s_old, s_young = sorted(s.id for s in repo.recent_stories(SINCE, 10))
    with repo.engine.begin() as conn:
        assert merge_stories(conn, s_young, s_old, T0 + timedelta(hours=1)) == s_old
        assert merge_stories(conn, s_old, s_young, T0 + timedelta(hours=1)) == s_old  # no-op
    (story,) = repo.recent_stories(SINCE, 10)
    assert story.id == s_old and len(story.items) == 2
    assert story.updated_at == T0 + timedelta(hours=1)
    # a later report with the merged story's URL joins the survivor (apply follows merged_into)
    put(repo, c, T0 + timedelta(hours=2), ("c1", replace(young, guid="other-guid")))
    (story,) = repo.recent_stories(SINCE, 10)
    assert story.id == s_old and len(story.items) == 3
    with repo.engine.connect() as conn:
        stray = conn.execute(
            select(func.count()).select_from(items).where(items.c.story_id == s_young)
        ).scalar_one()
        assert stray == 0


def test_explain_shows_candidates_scores_and_threshold(repo: Repository) -> None:
    a, b, c = add(repo, "a"), add(repo, "b"), add(repo, "c")
    first, second = report("a", APPLE, LEAD), report("b", APPLE_B, "Other lead.")
    put(repo, a, T0, ("a1", first))
    put(repo, b, T0, ("b1", second))
    near = report("c", APPLE.replace("18.2", "18.3"), LEAD)
    put(repo, c, T0, ("c1", near))
    with repo.engine.connect() as conn:
        (joined,) = explain_item(conn, f"{second.url}?utm_source=x#top")
        (apart,) = explain_item(conn, near.url or "")
        assert explain_item(conn, "https://nowhere.example/x") == []
    assert joined.text_peers[0][0] == "a" and joined.text_peers[0][2].same
    text = render_explanation(joined)
    assert "SAME" in text and f"threshold {DEFAULT_THRESHOLDS.en:.3f}" in text
    assert apart.candidates and not any(c.decision and c.decision.same for c in apart.candidates)
    rendered = render_explanation(apart)
    assert "conflict" in rendered and "different" in rendered and "alone in its story" in rendered


# ---------------------------------------------------------------------- identity traps, end to end


def _json_feed(*entries: dict[str, object]) -> bytes:
    """A JSON Feed 1.1 document with ``entries``."""
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": list(entries)}
    return json.dumps(doc).encode()


def _entry(guid: str, url: str, title: str, **kw: object) -> dict[str, object]:
    """One JSON Feed item published at T0."""
    return {"id": guid, "url": url, "title": title, "date_published": T0.isoformat(), **kw}


def test_corrected_title_under_the_same_guid_is_an_update(repo: Repository) -> None:
    src = add(repo, "pub")
    url = "https://pub.example/post/1"
    assert apply_feed(repo, src, _json_feed(_entry("g1", url, "Teh title")), "http://f/", T0) == 1
    fixed = _json_feed(_entry("g1", url, "The title"))
    assert apply_feed(repo, src, fixed, "http://f/", T0 + timedelta(hours=1)) == 0
    (story,) = repo.recent_stories(SINCE, 10)
    assert [i.title for i in story.items] == ["The title"]


def test_same_url_under_two_guids_is_one_item(repo: Repository) -> None:
    src = add(repo, "pub")
    url = "https://pub.example/post/2"
    body = _json_feed(_entry("g1", url, "Same post"), _entry("g2", url + "?utm_medium=rss", "Same"))
    assert apply_feed(repo, src, body, "http://f/", T0) == 1
    churned = _json_feed(_entry("g3", url, "Same post"))  # the GUID changed on the next poll
    assert apply_feed(repo, src, churned, "http://f/", T0 + timedelta(hours=1)) == 0
    (story,) = repo.recent_stories(SINCE, 10)
    assert len(story.items) == 1


def test_link_blog_with_tracking_and_fragment_joins_the_article_story(repo: Repository) -> None:
    pub, blog = add(repo, "pub"), add(repo, "blog")
    article = "https://news.example/2026/11/28/big-story"
    apply_feed(repo, pub, _json_feed(_entry("p1", article, "Big story")), "http://p/", T0)
    linked = _entry(
        "l1",
        "https://blog.example/linked/big-story",
        "Worth reading",
        external_url=f"{article}?utm_source=blog&utm_medium=rss#comments",
    )
    apply_feed(repo, blog, _json_feed(linked), "http://b/", T0 + timedelta(hours=1))
    (story,) = repo.recent_stories(SINCE, 10)
    assert sorted(i.source_key for i in story.items) == ["blog", "pub"]


# ---------------------------------------------------------------------- bounded work


def test_look_alikes_end_in_bounded_stories_and_stay_fast(repo: Repository) -> None:
    """Near-identical reports from as many sources (2.4x the cap): text-only merges stop at
    MAX_TEXT_STORY, so no mega-story absorbs them all, and each item is judged against a
    bounded set (the run stays fast)."""
    started = time.perf_counter()
    total = 2 * MAX_TEXT_STORY + 20
    for n in range(total):
        src = add(repo, f"s{n}")
        title = f"{APPLE} ({'!' * (n % 3)})"
        put(repo, src, T0 + timedelta(seconds=n), (f"k{n}", report(f"s{n}", title, LEAD)))
    elapsed = time.perf_counter() - started
    with repo.engine.connect() as conn:
        sizes = list(
            conn.execute(
                select(func.count())
                .select_from(items)
                .group_by(items.c.story_id)
                .order_by(func.count().desc())
            ).scalars()
        )
    assert sum(sizes) == total
    assert max(sizes) <= MAX_TEXT_STORY
    assert len(sizes) >= 3  # a handful of capped stories, not one
    assert sizes[0] == MAX_TEXT_STORY  # and the text matching did merge them
    assert elapsed < 15, f"{total} look-alike applies took {elapsed:.1f} s"


def test_one_apply_merges_each_story_at_most_once_per_source(repo: Repository) -> None:
    """Two new items of one source whose best candidate is the same story: only the first joins
    it (one publisher does not report one event twice), the other stays apart."""
    a, b = add(repo, "a"), add(repo, "b")
    put(repo, a, T0, ("a1", report("a", APPLE, LEAD)))
    got = put(
        repo,
        b,
        T0 + timedelta(hours=1),
        ("b1", report("b", APPLE_B, LEAD)),
        ("b2", report("b2", APPLE_B + " today", LEAD)),
    )
    assert got == MatchReport(merged=1, indexed=2)
    sizes = sorted(len(s.items) for s in repo.recent_stories(SINCE, 10))
    assert sizes == [1, 2]


def test_one_apply_merges_into_several_stories_at_once(repo: Repository) -> None:
    """The batched merge path: one apply's items join two different older stories, whose
    public ids survive."""
    a, c, b = add(repo, "a"), add(repo, "c"), add(repo, "b")
    other = "Nvidia unveils Blackwell Ultra GPU for data centers at GTC keynote in San Jose"
    first, second = report("a", APPLE, LEAD), report("c", other, "Faster training.")
    put(repo, a, T0, ("a1", first))
    put(repo, c, T0, ("c1", second))
    ids = {s.public_id for s in repo.recent_stories(SINCE, 10)}
    got = put(
        repo,
        b,
        T0 + timedelta(hours=1),
        ("b1", report("b", APPLE_B, "Other lead.")),
        ("b2", report("b2", other.replace("Ultra GPU", "Ultra GPUs"), "More.")),
    )
    assert got == MatchReport(merged=2, indexed=2)
    stories_now = repo.recent_stories(SINCE, 10)
    assert {s.public_id for s in stories_now} == ids
    assert sorted(tuple(sorted(i.source_key for i in s.items)) for s in stories_now) == [
        ("a", "b"),
        ("b", "c"),
    ]


# ---------------------------------------------------------------------- edits and one transaction


def _band_keys_of(repo: Repository, story_id: int) -> set[int]:
    with repo.engine.connect() as conn:
        query = select(story_bands.c.band_key).where(story_bands.c.story_id == story_id)
        return set(conn.execute(query).scalars())


def _story_of(repo: Repository, url: str) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(select(items.c.story_id).where(items.c.url == url)).scalar_one())


def _keys(it: Item) -> set[int]:
    text = item_match_text(it.title, it.summary_html, it.language, it.published_at)
    return set(item_band_keys(text))


SMOG = "Heavy smog hits north China city, flights cancelled at Harbin airport"
TYPO = "Hvy smgo hit nrth Chnia cty, fligts cancled at Harbn airprt"


def test_an_edited_title_is_reindexed_and_matched_again(repo: Repository) -> None:
    """A report first published with a garbled title, then corrected under the same key: its
    story's band rows are rebuilt from the corrected text (the old keys go), and the report,
    alone in its story, joins the story it now matches."""
    a, c = add(repo, "a"), add(repo, "c")
    put(repo, a, T0, ("a1", report("a", SMOG, "Visibility fell below 50 metres.")))
    first = report("c", TYPO, "Flights were grounded.")
    put(repo, c, T0 + timedelta(minutes=5), ("c1", first))
    own = _story_of(repo, first.url or "")
    assert _band_keys_of(repo, own) == _keys(first)  # indexed, and alone: no match yet
    fixed = replace(first, title=SMOG.replace("Harbin", "Harbin's"))
    now = T0 + timedelta(hours=1)
    intents = (ItemIntent("update", "c1", fixed),)
    repo.apply(UpdatePlan(c, ok_update(now), intents), now)
    got = match_recent(repo.engine, c, now, edited_keys=["c1"])
    assert got == MatchReport(merged=1, indexed=1)
    (story,) = repo.recent_stories(SINCE, 10)
    assert sorted(i.source_key for i in story.items) == ["a", "c"]
    indexed = _band_keys_of(repo, story.id)
    assert _keys(fixed) <= indexed
    assert not (_keys(first) - _keys(fixed)) & indexed  # the garbled title's keys are gone
    assert _band_keys_of(repo, own) == set()


def test_an_edit_inside_a_story_rebuilds_its_rows_from_every_report(repo: Repository) -> None:
    """An edited report that shares its story (by URL) with another: the story's rows are
    rebuilt from both current texts, and nothing is merged or split."""
    a, b = add(repo, "a"), add(repo, "b")
    article = report("a", "Apple ships Vision Pro 2 with M5 chip", "Preorders open Friday.")
    put(repo, a, T0, ("a1", article))
    link = make_item(
        guid="https://b.example/l1",
        url="https://b.example/l1",
        external_url=article.url,
        title="Worth reading: Teh new headset",
        published_at=T0,
    )
    put(repo, b, T0 + timedelta(minutes=1), ("l1", link))
    (story,) = repo.recent_stories(SINCE, 10)
    assert _keys(link) <= _band_keys_of(repo, story.id)
    fixed = replace(link, title="Worth reading: the new headset from Apple")
    now = T0 + timedelta(hours=1)
    repo.apply(UpdatePlan(b, ok_update(now), (ItemIntent("update", "l1", fixed),)), now)
    assert match_recent(repo.engine, b, now, edited_keys=["l1"]) == MatchReport(indexed=1)
    assert _band_keys_of(repo, story.id) == _keys(article) | _keys(fixed)


def test_matching_runs_in_the_apply_transaction_and_a_failure_keeps_the_items(
    repo: Repository,
) -> None:
    """``MatchAfterApply`` as the ``then`` hook of ``apply``: matched and indexed in the same
    transaction; when matching fails, its savepoint is rolled back, the items stay."""
    a, b = add(repo, "a"), add(repo, "b")
    put(repo, a, T0, ("a1", report("a", APPLE, LEAD)))
    now = T0 + timedelta(hours=1)
    second = report("b", APPLE_B, "Other lead.")
    hook = MatchAfterApply(b, now)
    plan = UpdatePlan(b, ok_update(now), (ItemIntent("insert", "b1", second),))
    assert repo.apply(plan, now, then=hook).new == 1
    assert hook.report == MatchReport(merged=1, indexed=1) and not hook.failed
    (story,) = repo.recent_stories(SINCE, 10)
    assert len(story.items) == 2
    broken = report("b", "Nvidia unveils Blackwell Ultra GPU at GTC", "Faster training.")
    bad = {(broken.title, broken.summary_html): "not prepared"}  # matching raises on it
    later = now + timedelta(hours=1)
    hook = MatchAfterApply(b, later, prepared=bad)  # type: ignore[arg-type]
    plan = UpdatePlan(b, ok_update(later), (ItemIntent("insert", "b2", broken),))
    assert repo.apply(plan, later, then=hook).new == 1
    assert hook.failed and hook.report == MatchReport()
    assert _band_keys_of(repo, _story_of(repo, broken.url or "")) == set()  # rolled back alone
    assert len(repo.recent_stories(SINCE, 10)) == 2  # ...and the item was kept


def test_band_rows_store_timestamps_like_every_other_write(repo: Repository) -> None:
    """Matching writes band rows through the driver on SQLite: their ``published_at`` must be
    stored exactly as SQLAlchemy stores it (the window filter compares the stored values)."""
    a = add(repo, "a")
    published = datetime(2026, 11, 28, 20, 0, 5, 123456, tzinfo=timezone(timedelta(hours=8)))
    first = report("a", APPLE, LEAD, published=published)
    put(repo, a, T0, ("a1", first))
    story = _story_of(repo, first.url or "")
    with repo.engine.begin() as conn:
        index_story(conn, story, [12345], published)
        stored = conn.execute(
            select(func.count(func.distinct(story_bands.c.published_at))).where(
                story_bands.c.story_id == story
            )
        ).scalar_one()
        raw = {
            r[0]
            for r in conn.exec_driver_sql(
                f"SELECT CAST(published_at AS TEXT) FROM story_bands WHERE story_id = {story}"
            )
        }
    assert stored == 1 and len(raw) == 1  # one timestamp, one spelling


def test_band_rows_keep_the_newest_time_and_skip_older_rewrites(repo: Repository) -> None:
    """A band row keeps the newest ``published_at`` of its story's reports: an older or equal
    time leaves the row as it is (the upsert's ``WHERE``: no rewrite), a newer one replaces it,
    through ``index_story``, the batched SQLite write of matching and a merge's move alike."""
    a, b = add(repo, "a"), add(repo, "b")
    first, second = report("a", APPLE, LEAD), report("b", "Unrelated harbour news today", "")
    put(repo, a, T0, ("a1", first))
    put(repo, b, T0, ("b1", second))
    story, other = _story_of(repo, first.url or ""), _story_of(repo, second.url or "")
    later, earlier = T0 + timedelta(hours=5), T0 - timedelta(hours=5)
    newer = later + timedelta(minutes=1)

    def stamp(conn: Any, sid: int, key: int) -> datetime:
        got = conn.execute(
            select(story_bands.c.published_at).where(
                story_bands.c.story_id == sid, story_bands.c.band_key == key
            )
        ).scalar_one()
        assert isinstance(got, datetime)
        return got

    def rewrites(conn: Any, sid: int, key: int, published: datetime) -> bool:
        """Whether upserting (key, sid) at ``published`` writes the row (SQLite: the changes
        count; PostgreSQL: an updated row is a new tuple, at a new ``ctid``)."""
        row = {"band_key": key, "story_id": sid, "published_at": published}
        if conn.dialect.name == "sqlite":
            return bool(conn.execute(_upsert_bands(conn), row).rowcount)
        ctid = f"SELECT ctid FROM story_bands WHERE band_key = {key} AND story_id = {sid}"
        before = conn.exec_driver_sql(ctid).scalar()
        conn.execute(_upsert_bands(conn), row)
        return before != conn.exec_driver_sql(ctid).scalar()

    with repo.engine.begin() as conn:
        index_story(conn, story, [111, 222], later)
        index_story(conn, story, [111], earlier)  # older: kept at ``later``
        assert stamp(conn, story, 111) == later
        assert not rewrites(conn, story, 111, later)  # same time: the row is not written
        assert rewrites(conn, story, 111, newer)
        assert stamp(conn, story, 111) == newer
        write_bands(conn, {(222, story): earlier, (333, story): earlier})  # the matcher's write
        assert stamp(conn, story, 222) == later and stamp(conn, story, 333) == earlier
        write_bands(conn, {(333, story): later + timedelta(hours=1)})  # newer: replaced
        assert stamp(conn, story, 333) == later + timedelta(hours=1)
        index_story(conn, other, [111, 444], later + timedelta(hours=2))
        survivor = merge_stories(conn, story, other, T0)
        loser = other if survivor == story else story
        newest = later + timedelta(hours=2)
        assert stamp(conn, survivor, 111) == newest  # moved rows keep the newest of both
        assert stamp(conn, survivor, 444) == newest
        assert stamp(conn, survivor, 333) == later + timedelta(hours=1)
        left = conn.execute(select(func.count()).where(story_bands.c.story_id == loser))
        assert left.scalar_one() == 0


def test_sqlite_connections_checkpoint_less_often_and_cache_more(tmp_path: Path) -> None:
    """Band rows land on random pages: SQLite connections keep a 32 MB WAL between automatic
    checkpoints and a 16 MB page cache (bench/stories_scale.md), and still sync safely."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            got = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("wal_autocheckpoint", "cache_size", "journal_size_limit")
            }
            synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        assert got == {
            "wal_autocheckpoint": SQLITE_WAL_AUTOCHECKPOINT_PAGES,
            "cache_size": -SQLITE_CACHE_KIB,
            "journal_size_limit": SQLITE_JOURNAL_SIZE_LIMIT_BYTES,
        }
        assert SQLITE_WAL_AUTOCHECKPOINT_PAGES > 1_000 and SQLITE_CACHE_KIB > 2_000
        assert synchronous == 1  # NORMAL: never OFF
    finally:
        engine.dispose()
