"""Repository behaviour on real SQLite and real PostgreSQL (see conftest ``db_url``/``repo``)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from aggregator.errors import StorageError
from aggregator.model import Item, ItemIntent, Snapshot, SourceUpdate, UpdatePlan
from aggregator.settings import SourceConfig
from aggregator.store import DuplicateSourceError, Repository, make_engine, story_public_id
from aggregator.store.schema import items, stories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def cfg(key: str, **kw: object) -> SourceConfig:
    """A source config with a URL derived from the key."""
    values: dict[str, object] = {"url": f"http://127.0.0.1:9/{key}.xml", "name": key.title()}
    values.update(kw)
    return SourceConfig(key=key, **values)  # type: ignore[arg-type]


def item(
    n: int | str,
    *,
    title: str | None = None,
    canonical: str | None = "auto",
    external: str | None = None,
    published: datetime | None = None,
    content_hash: str | None = None,
) -> Item:
    """A normalized item; ``canonical="auto"`` derives a unique URL from ``n``."""
    url = f"https://example.com/a/{n}" if canonical == "auto" else canonical
    return Item(
        guid=f"guid-{n}",
        url=url,
        canonical_url=url,
        title=title if title is not None else f"Title {n}",
        summary_html=f"<p>summary {n}</p>",
        content_html=f"<p>content {n}</p>",
        text=f"Title {n} summary {n}",
        author="Ann",
        categories=("tech", "新闻"),
        language="zh",
        published_at=published,
        updated_at=None,
        content_hash=content_hash or f"hash-{n}-{title}",
        external_url=external,
    )


def ok_update(now: datetime, **kw: object) -> SourceUpdate:
    """A successful poll's source update, due again in 15 minutes."""
    values: dict[str, object] = {
        "status": "ok",
        "last_error": None,
        "error_count": 0,
        "next_check_at": now + timedelta(minutes=15),
        "last_fetched_at": now,
        "etag": '"v1"',
        "last_success_at": now,
    }
    values.update(kw)
    return SourceUpdate(**values)  # type: ignore[arg-type]


def plan(source_id: int, now: datetime, *intents: ItemIntent) -> UpdatePlan:
    """An update plan with a successful source update."""
    return UpdatePlan(source_id=source_id, source_update=ok_update(now), intents=intents)


def ins(key: str, it: Item) -> ItemIntent:
    """An insert intent."""
    return ItemIntent(action="insert", item_key=key, item=it)


def count(repo: Repository, table: object) -> int:
    """Rows in a table, straight from the database."""
    with repo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def add(repo: Repository, key: str, now: datetime = T0, **kw: object) -> int:
    """Add an API source and return its id."""
    return repo.add_source(cfg(key, **kw), now).id


# ---------------------------------------------------------------------- sources


def test_sync_sources_upserts_by_key_and_disables_dropped(repo: Repository) -> None:
    repo.sync_sources([cfg("a"), cfg("b", weight=2.0, tags=("cn",))], T0)
    api = repo.add_source(cfg("manual"), T0)
    a = repo.get_source("a")
    assert a is not None and a.next_check_at == T0 and a.status == "new" and a.enabled
    b_id = repo.get_source("b").id  # type: ignore[union-attr]
    repo.apply(plan(b_id, T0, ins("k1", item(1))), T0)

    later = T0 + timedelta(hours=1)
    repo.sync_sources(
        [cfg("a", name="Renamed", weight=3.0, interval_seconds=600, language="en")], later
    )
    a2 = repo.get_source("a")
    assert a2 is not None
    assert (a2.name, a2.weight, a2.interval_seconds, a2.language) == ("Renamed", 3.0, 600, "en")
    assert a2.id == a.id and a2.next_check_at == T0  # existing source keeps its schedule
    b = repo.get_source("b")
    assert b is not None and not b.enabled  # dropped from config: disabled, not deleted
    assert count(repo, items) == 1
    manual = repo.get_source("manual")
    assert manual is not None and manual.enabled and manual.id == api.id

    repo.sync_sources([cfg("a"), cfg("b", enabled=True)], later)  # back in the config
    assert repo.get_source("b").enabled  # type: ignore[union-attr]


def test_sync_sources_url_change_resets_validators_and_rename_adopts_row(
    repo: Repository,
) -> None:
    repo.sync_sources([cfg("a")], T0)
    src = repo.get_source("a")
    assert src is not None
    repo.apply(plan(src.id, T0, ins("k1", item(1))), T0)
    later = T0 + timedelta(hours=2)
    repo.sync_sources([cfg("a", url="http://127.0.0.1:9/new.xml")], later)
    moved = repo.get_source("a")
    assert moved is not None and moved.etag is None and moved.next_check_at == later
    # Same URL under a new key: the row (and its items) is taken over, not duplicated.
    repo.sync_sources([cfg("a2", url="http://127.0.0.1:9/new.xml")], later)
    assert repo.get_source("a") is None
    renamed = repo.get_source("a2")
    assert renamed is not None and renamed.id == src.id
    assert count(repo, items) == 1
    with pytest.raises(DuplicateSourceError):
        repo.sync_sources(
            [cfg("x", url="http://127.0.0.1:9/same"), cfg("y", url="http://127.0.0.1:9/same")],
            later,
        )


def test_add_remove_enable_sources(repo: Repository) -> None:
    a = repo.add_source(cfg("a", tags=("x", "y")), T0)
    assert a.tags == ("x", "y") and a.next_check_at == T0
    with pytest.raises(DuplicateSourceError, match="key"):
        repo.add_source(cfg("a", url="http://127.0.0.1:9/other.xml"), T0)
    with pytest.raises(DuplicateSourceError, match="URL"):
        repo.add_source(cfg("other", url=a.url), T0)
    b_id = add(repo, "b")
    shared = "https://example.com/shared"
    repo.apply(plan(a.id, T0, ins("k1", item(1)), ins("k2", item(2, canonical=shared))), T0)
    repo.apply(plan(b_id, T0, ins("k1", item(3, canonical=shared))), T0)
    assert count(repo, stories) == 2

    assert repo.set_enabled("a", False) and not repo.get_source("a").enabled  # type: ignore[union-attr]
    assert not repo.set_enabled("nope", True)
    assert repo.remove_source("a")
    assert not repo.remove_source("a")
    assert [s.key for s in repo.list_sources()] == ["b"]
    assert count(repo, items) == 1 and count(repo, stories) == 1  # shared story survives


# ---------------------------------------------------------------------- leases


def test_claim_due_sources_orders_leases_and_expires(repo: Repository) -> None:
    for i, key in enumerate(["late", "later", "future", "off"]):
        add(repo, key, now=T0 + timedelta(minutes=[0, 5, 60, 0][i]))
    repo.set_enabled("off", False)
    now = T0 + timedelta(minutes=10)
    got = repo.claim_due_sources(now, 10, "w1", 60)
    assert [s.key for s in got] == ["late", "later"]
    assert repo.claim_due_sources(now, 10, "w2", 60) == []  # leased
    assert [s.key for s in repo.claim_due_sources(now + timedelta(seconds=61), 1, "w2", 60)] == [
        "late"
    ]  # expired lease: claimable again, limit respected


def test_claim_source_respects_foreign_lease(repo: Repository) -> None:
    add(repo, "a", now=T0 + timedelta(hours=1))  # not due yet
    assert repo.claim_source("a", T0, "w1", 60) is not None  # ignores next_check_at
    assert repo.claim_source("a", T0, "w2", 60) is None
    assert repo.claim_source("a", T0, "w1", 60) is not None  # own lease: renew
    assert repo.claim_source("a", T0 + timedelta(seconds=61), "w2", 60) is not None
    assert repo.claim_source("missing", T0, "w1", 60) is None


def race_claims(repos: list[Repository], now: datetime, limit: int) -> list[list[int]]:
    """Let every repository claim due sources at the same moment, each in its own thread."""
    barrier = threading.Barrier(len(repos))
    results: list[list[int]] = [[] for _ in repos]

    def claim(index: int) -> None:
        barrier.wait()
        claimed = repos[index].claim_due_sources(now, limit, f"w{index}", 60)
        results[index] = [s.id for s in claimed]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(repos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def test_two_concurrent_claimers_get_disjoint_sources(db_url: str, repo: Repository) -> None:
    for i in range(40):
        add(repo, f"s{i:02d}", now=T0 - timedelta(seconds=i))
    other = Repository(make_engine(db_url))  # a second "replica" with its own pool
    try:
        for round_ in range(3):  # each round an hour later: the last round's leases expired
            first, second = race_claims([repo, other], T0 + timedelta(hours=round_), 25)
            assert set(first).isdisjoint(second)
            assert len(first) + len(second) == 40
    finally:
        other.engine.dispose()


# ---------------------------------------------------------------------- apply


def test_apply_is_idempotent(repo: Repository) -> None:
    sid = add(repo, "a")
    p = plan(sid, T0, ins("k1", item(1)), ins("k2", item(2)), ins("k3", item(3, canonical=None)))
    first = repo.apply(p, T0)
    assert (first.new, first.updated, first.new_stories) == (3, 0, 3)
    second = repo.apply(p, T0 + timedelta(minutes=1))
    assert (second.new, second.new_stories) == (0, 0) and second.updated == 3
    assert count(repo, items) == 3 and count(repo, stories) == 3
    src = repo.get_source("a")
    assert src is not None and src.status == "ok" and src.etag == '"v1"'
    assert src.next_check_at == T0 + timedelta(minutes=15)  # the replayed plan's value


def test_a_body_that_is_both_summary_and_content_is_stored_once(repo: Repository) -> None:
    """An RSS entry with only a description has the same HTML as summary and content: the
    row keeps one copy, the read gives both back; different content, and an update that
    makes them differ, keep their own."""
    sid = add(repo, "a")
    body = "<p>" + "the only body " * 50 + "</p>"
    same = replace(item(1), summary_html=body, content_html=body)
    repo.apply(plan(sid, T0, ins("k1", same), ins("k2", item(2))), T0)
    with repo.engine.connect() as conn:
        stored = dict(conn.execute(select(items.c.item_key, items.c.content_html)).all())
    assert stored == {"k1": "", "k2": "<p>content 2</p>"}
    read = {it.guid: it for s in repo.recent_stories(T0 - timedelta(days=1), 10) for it in s.items}
    assert read["guid-1"].summary_html == read["guid-1"].content_html == body
    assert read["guid-2"].content_html == "<p>content 2</p>"
    existing = repo.existing_items(sid, ["k1"], [])[0]
    longer = replace(same, content_html=body + "<p>more</p>", content_hash="longer")
    upd = ItemIntent(action="update", item_key="k1", item=longer, existing_id=existing.id)
    repo.apply(plan(sid, T0 + timedelta(hours=1), upd), T0 + timedelta(hours=1))
    read = {it.guid: it for s in repo.recent_stories(T0 - timedelta(days=1), 10) for it in s.items}
    assert read["guid-1"].content_html == body + "<p>more</p>"
    assert read["guid-1"].summary_html == body


def test_update_changes_in_place_keeping_identity(repo: Repository) -> None:
    sid = add(repo, "a")
    repo.apply(plan(sid, T0, ins("k1", item(1, published=T0 - timedelta(hours=1)))), T0)
    before = repo.recent_stories(T0 - timedelta(days=1), 10)[0]
    existing = repo.existing_items(sid, ["k1"], [])
    assert [e.item_key for e in existing] == ["k1"]
    later = T0 + timedelta(hours=1)
    edited = item(1, title="Edited title", content_hash="new")
    upd = ItemIntent(action="update", item_key="k1", item=edited, existing_id=existing[0].id)
    result = repo.apply(plan(sid, later, upd), later)
    assert (result.new, result.updated) == (0, 1)
    after = repo.recent_stories(T0 - timedelta(days=1), 10)[0]
    (old_item,), (new_item,) = before.items, after.items
    assert new_item.title == "Edited title" and new_item.id == old_item.id
    assert new_item.collected_at == old_item.collected_at == T0
    assert new_item.published_at == T0 - timedelta(hours=1)  # kept when the update has none
    assert after.public_id == before.public_id and after.id == before.id
    assert after.updated_at == later and before.updated_at == T0
    assert repo.existing_items(sid, [], ["https://example.com/a/1"])[0].content_hash == "new"


def test_same_canonical_url_from_two_sources_is_one_story(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    url = "https://example.com/big-news"
    r1 = repo.apply(plan(a, T0, ins("a1", item("a1", canonical=url))), T0)
    r2 = repo.apply(plan(b, T0, ins("b1", item("b1", canonical=url))), T0 + timedelta(minutes=5))
    assert (r1.new_stories, r2.new_stories, r2.new) == (1, 0, 1)
    (story,) = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert [i.source_key for i in story.items] == ["a", "b"]
    assert story.public_id == story_public_id(url, "a", "a1")
    assert story.public_id.startswith("urn:uuid:")


def test_replicas_racing_on_the_same_urls_share_stories(db_url: str, repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    urls = [f"https://example.com/race/{i}" for i in range(10)]
    other = Repository(make_engine(db_url))
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(r: Repository, source_id: int, prefix: str) -> None:
        intents = [
            ins(f"{prefix}{i}", item(f"{prefix}{i}", canonical=u)) for i, u in enumerate(urls)
        ]
        barrier.wait()
        try:
            r.apply(plan(source_id, T0, *intents), T0)
        except BaseException as exc:  # asserted below
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(repo, a, "a")),
        threading.Thread(target=run, args=(other, b, "b")),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    finally:
        other.engine.dispose()
    assert failures == []
    got = repo.recent_stories(T0 - timedelta(days=1), 100)
    assert len(got) == 10 and all(len(s.items) == 2 for s in got)
    assert {s.public_id for s in got} == {story_public_id(u, "", "") for u in urls}


@pytest.mark.parametrize("link_first", [False, True])
def test_link_blog_external_url_joins_story(repo: Repository, link_first: bool) -> None:
    pub, blog = add(repo, "pub"), add(repo, "blog")
    article = "https://news.example.com/story"
    original = plan(pub, T0, ins("p1", item("p1", canonical=article)))
    link = plan(
        blog, T0, ins("l1", item("l1", canonical="https://blog.example/l1", external=article))
    )
    for p in [link, original] if link_first else [original, link]:
        repo.apply(p, T0)
    (story,) = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert sorted(i.source_key for i in story.items) == ["blog", "pub"]


def test_same_story_public_id_without_canonical_url_is_stable(repo: Repository) -> None:
    sid = add(repo, "a")
    repo.apply(plan(sid, T0, ins("k", item("k", canonical=None))), T0)
    (story,) = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert story.public_id == story_public_id(None, "a", "k")
    repo.apply(plan(sid, T0, ins("k", item("k", canonical=None, title="changed"))), T0)
    assert repo.recent_stories(T0 - timedelta(days=1), 10)[0].public_id == story.public_id


def test_crash_mid_apply_writes_nothing(repo: Repository) -> None:
    sid = add(repo, "a")
    repo.claim_source("a", T0, "w1", 60)
    bad = replace(item(2), title=None)  # type: ignore[arg-type]  # violates NOT NULL
    doomed = plan(sid, T0, ins("k1", item(1)), ins("k2", bad))
    with pytest.raises(StorageError, match="apply update plan failed on"):
        repo.apply(doomed, T0, owner="w1")
    assert count(repo, items) == 0 and count(repo, stories) == 0
    src = repo.get_source("a")
    assert src is not None and src.status == "new" and src.etag is None
    assert repo.claim_source("a", T0, "w2", 60) is None  # lease untouched: still w1's


def test_apply_with_lost_lease_keeps_items_but_not_poll_state(repo: Repository) -> None:
    sid = add(repo, "a")
    repo.claim_source("a", T0, "w1", 60)
    late = T0 + timedelta(seconds=120)
    assert repo.claim_source("a", late, "w2", 60) is not None  # w1's lease expired, w2 took it
    result = repo.apply(plan(sid, late, ins("k1", item(1))), late, owner="w1")
    assert result.new == 1
    src = repo.get_source("a")
    assert src is not None and src.status == "new"
    assert repo.claim_source("a", late, "w3", 60) is None  # w2 still holds it
    repo.apply(plan(sid, late, ins("k1", item(1))), late, owner="w2")
    assert repo.get_source("a").status == "ok"  # type: ignore[union-attr]
    assert repo.claim_source("a", late, "w3", 60) is not None  # lease cleared by apply


def test_source_update_fields(repo: Repository) -> None:
    sid = add(repo, "a")
    add(repo, "b")
    moved = "http://127.0.0.1:9/moved.xml"
    upd = ok_update(T0, url=moved, site_url="https://example.com/", mean_gap_seconds=90.0)
    repo.apply(UpdatePlan(sid, upd), T0)
    src = repo.get_source("a")
    assert src is not None
    assert (src.url, src.site_url, src.mean_gap_seconds) == (moved, "https://example.com/", 90.0)
    assert src.last_success_at == T0 and src.last_fetched_at == T0
    failed = SourceUpdate(
        status="error",
        last_error="timeout",
        error_count=1,
        next_check_at=T0 + timedelta(minutes=5),
        last_fetched_at=T0 + timedelta(minutes=1),
        etag='"v1"',
        url=repo.get_source("b").url,  # type: ignore[union-attr]  # taken: URL kept
        enabled=False,
    )
    repo.apply(UpdatePlan(sid, failed), T0)
    src = repo.get_source("a")
    assert src is not None and src.status == "error" and src.error_count == 1
    assert src.url == moved and src.last_success_at == T0 and src.site_url is not None
    assert not src.enabled


def test_existing_items_and_datetimes_are_utc(repo: Repository) -> None:
    sid = add(repo, "a")
    other = add(repo, "b")
    cet = timezone(timedelta(hours=8))
    published = datetime(2026, 11, 28, 20, 0, tzinfo=cet)
    repo.apply(plan(sid, T0, ins("k1", item(1, published=published)), ins("k2", item(2))), T0)
    repo.apply(plan(other, T0, ins("k1", item(1))), T0)
    found = repo.existing_items(sid, ["k1", "zzz"], ["https://example.com/a/2"])
    assert sorted(e.item_key for e in found) == ["k1", "k2"]
    many = repo.existing_items(sid, [f"x{i}" for i in range(1200)] + ["k2"], [])
    assert [e.item_key for e in many] == ["k2"]  # chunked IN lists
    story = repo.recent_stories(T0 - timedelta(days=1), 10)
    first = next(i for s in story for i in s.items if i.guid == "guid-1" and i.source_key == "a")
    assert first.published_at == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert first.published_at.tzinfo == UTC and first.collected_at.tzinfo == UTC
    src = repo.get_source("a")
    assert src is not None and src.next_check_at is not None
    assert src.next_check_at.tzinfo == UTC


# ---------------------------------------------------------------------- reading


def test_recent_stories_order_contents_and_filters(repo: Repository) -> None:
    a = add(repo, "a")
    b = add(repo, "b", tags=("en",), weight=2.0)
    url = "https://example.com/shared"
    h = timedelta(hours=1)
    repo.apply(plan(a, T0, ins("old", item("old", published=T0 - 5 * h))), T0)
    repo.apply(plan(a, T0, ins("mid", item("mid", published=T0 - 3 * h))), T0)
    repo.apply(plan(a, T0, ins("s-a", item("s-a", canonical=url, published=T0 - 4 * h))), T0)
    repo.apply(plan(b, T0, ins("s-b", item("s-b", canonical=url, published=T0 - 1 * h))), T0)
    repo.apply(plan(b, T0, ins("nodate", item("nodate"))), T0 - 2 * h)  # published = collected
    repo.set_enabled("b", False)

    got = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert [[i.guid for i in s.items] for s in got] == [
        ["guid-s-a", "guid-s-b"],  # latest report T0-1h
        ["guid-nodate"],  # T0-2h (its collection time)
        ["guid-mid"],
        ["guid-old"],
    ]
    shared_b = got[0].items[1]
    assert shared_b.source_key == "b" and shared_b.source_name == "B"
    assert shared_b.source_weight == 2.0 and shared_b.source_tags == ("en",)
    assert shared_b.source_feed_url == "http://127.0.0.1:9/b.xml"
    assert shared_b.categories == ("tech", "新闻") and shared_b.summary_html == "<p>summary s-b</p>"
    assert [len(s.items) for s in repo.recent_stories(T0 - timedelta(days=1), 2)] == [2, 1]
    assert repo.recent_stories(T0 + h, 10) == []  # nothing updated since
    later = T0 + 2 * h
    repo.apply(plan(a, later, ins("new", item("new", published=T0 - 10 * h))), later)
    assert [s.items[0].guid for s in repo.recent_stories(T0 + h, 10)] == ["guid-new"]


def test_merged_stories_are_hidden_and_new_items_follow_the_merge(repo: Repository) -> None:
    sid = add(repo, "a")
    repo.apply(plan(sid, T0, ins("k1", item(1)), ins("k2", item(2))), T0)
    s1, s2 = sorted(s.id for s in repo.recent_stories(T0 - timedelta(days=1), 10))
    with repo.engine.begin() as conn:  # what a future merge step would do
        conn.execute(items.update().where(items.c.story_id == s2).values(story_id=s1))
        conn.execute(stories.update().where(stories.c.id == s2).values(merged_into=s1))
    assert [s.id for s in repo.recent_stories(T0 - timedelta(days=1), 10)] == [s1]
    other = add(repo, "b")
    repo.apply(plan(other, T0, ins("x", item(2))), T0)  # same URL as the merged story's item
    (story,) = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert len(story.items) == 3


# ---------------------------------------------------------------------- snapshots


def test_snapshots_round_trip_bytes(repo: Repository) -> None:
    body = "<rss>新闻</rss>".encode() + bytes(range(256))
    snap = Snapshot("tech", "rss", body, '"e1"', "application/rss+xml; charset=utf-8", T0)
    repo.save_snapshots([snap, replace(snap, format="json", body=b"{}")])
    repo.save_snapshots([replace(snap, edition="all")])
    got = repo.get_snapshot("tech", "rss")
    assert got == snap and isinstance(got.body, bytes)
    newer = replace(snap, body=b"v2", etag='"e2"', generated_at=T0 + timedelta(minutes=1))
    repo.save_snapshots([newer])
    assert repo.get_snapshot("tech", "rss") == newer
    assert repo.get_snapshot("tech", "atom") is None
    assert repo.list_snapshot_editions() == ["all", "tech"]


# ---------------------------------------------------------------------- retention


def test_purge_writes_tombstones_and_drops_empty_stories(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    url = "https://example.com/shared"
    repo.apply(plan(a, T0, ins("old", item("old")), ins("shared-a", item("sa", canonical=url))), T0)
    later = T0 + timedelta(days=10)
    repo.apply(plan(b, later, ins("shared-b", item("sb", canonical=url))), later)
    repo.apply(plan(a, later, ins("new", item("new"))), later)
    assert repo.purge_items(T0 + timedelta(days=1)) == 2
    assert repo.purge_items(T0 + timedelta(days=1)) == 0
    assert repo.tombstoned(a, ["old", "shared-a", "new"]) == {"old", "shared-a"}
    assert repo.tombstoned(b, ["old"]) == set()
    stats = repo.stats()
    assert (stats["items"], stats["stories"], stats["tombstones"]) == (2, 2, 2)
    story_items = {len(s.items) for s in repo.recent_stories(T0, 10)}
    assert story_items == {1}  # the shared story survives with b's report


# ---------------------------------------------------------------------- health


def test_stats_ping_overdue(repo: Repository) -> None:
    add(repo, "a", now=T0 - timedelta(seconds=30))
    add(repo, "b", now=T0 + timedelta(seconds=30))
    add(repo, "c", now=T0 - timedelta(hours=1))
    repo.set_enabled("c", False)
    repo.ping()
    assert repo.overdue_seconds(T0) == 30.0
    assert repo.overdue_seconds(T0 - timedelta(hours=1)) == 0.0
    stats = repo.stats()
    assert stats["sources"] == 3 and stats["sources_enabled"] == 2
    assert stats["sources_status_new"] == 3 and stats["items"] == 0


def test_unreachable_database_raises_storage_error_with_masked_password() -> None:
    repo = Repository(make_engine("postgresql+psycopg://user:s3cret@127.0.0.1:1/nope"))
    with pytest.raises(StorageError) as info:
        repo.ping()
    assert "s3cret" not in str(info.value) and "127.0.0.1:1" in str(info.value)
    assert "***" in str(info.value)
    repo.engine.dispose()


def test_sqlite_engine_creates_directory_and_tunes_connections(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'x.db'}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": 10_000,
            "synchronous": 1,
        }
        assert (tmp_path / "deep" / "er").is_dir()
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match="invalid database URL"):
        make_engine("not a url")


# ---------------------------------------------------------------------- batched apply


def stories_by_guid(repo: Repository) -> dict[str, int]:
    """``{item guid: story id}`` straight from the database."""
    with repo.engine.connect() as conn:
        return {g: s for g, s in conn.execute(select(items.c.guid, items.c.story_id))}


def test_items_of_one_plan_sharing_urls_share_one_story(repo: Repository) -> None:
    sid, other = add(repo, "a"), add(repo, "b")
    u = "https://example.com/"
    p = plan(
        sid,
        T0,
        ins("x1", item("x1", canonical=u + "x")),  # same canonical URL twice
        ins("x2", item("x2", canonical=u + "x")),
        ins("y1", item("y1", canonical=u + "y", external=u + "z")),  # external -> later canonical
        ins("z1", item("z1", canonical=u + "z")),
        ins("w1", item("w1", canonical=u + "w")),  # canonical -> later external
        ins("v1", item("v1", canonical=u + "v", external=u + "w")),
        ins("p1", item("p1", canonical=u + "p")),  # a chain p <- q <- r
        ins("q1", item("q1", canonical=u + "q", external=u + "p")),
        ins("r1", item("r1", canonical=u + "r", external=u + "q")),
        ins("solo", item("solo", canonical=None)),
    )
    result = repo.apply(p, T0)
    assert (result.new, result.updated, result.new_stories) == (10, 0, 5)
    story = stories_by_guid(repo)
    groups = [["x1", "x2"], ["y1", "z1"], ["w1", "v1"], ["p1", "q1", "r1"], ["solo"]]
    assert [len({story[f"guid-{g}"] for g in group}) for group in groups] == [1, 1, 1, 1, 1]
    assert len({story[f"guid-{group[0]}"] for group in groups}) == 5
    assert count(repo, stories) == 5
    # Another source reporting z later joins the y/z story.
    later = repo.apply(plan(other, T0, ins("z", item("bz", canonical=u + "z"))), T0)
    assert (later.new, later.new_stories) == (1, 0)
    assert stories_by_guid(repo)["guid-bz"] == story["guid-y1"]


def test_apply_runs_a_constant_number_of_statements(repo: Repository) -> None:
    """The write path is batched: 100 new (or edited) items cost what 5 do."""
    a, b = add(repo, "a"), add(repo, "b")
    shared = "https://example.com/shared"
    repo.apply(plan(a, T0, ins("s", item("s", canonical=shared))), T0)
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    def statements_for(p: UpdatePlan) -> int:
        statements.clear()
        event.listen(repo.engine, "before_cursor_execute", record)
        try:
            repo.apply(p, T0)
        finally:
            event.remove(repo.engine, "before_cursor_execute", record)
        return len(statements)

    def intents(prefix: str, n: int) -> list[ItemIntent]:
        first = ins(f"{prefix}0", item(f"{prefix}0", canonical=shared))  # joins a stored story
        return [first] + [ins(f"{prefix}{i}", item(f"{prefix}{i}")) for i in range(1, n)]

    small = statements_for(plan(b, T0, *intents("s", 5)))
    big = statements_for(plan(b, T0, *intents("b", 100)))
    assert big == small <= 10, statements
    existing = {e.item_key: e.id for e in repo.existing_items(b, [f"b{i}" for i in range(100)], [])}
    edits = [
        ItemIntent("update", k, item(k, title="edited"), existing_id=i) for k, i in existing.items()
    ]
    assert statements_for(plan(b, T0, *edits)) <= 6
    assert statements_for(plan(b, T0)) <= 3  # a 304: the source update (and BEGIN)


def test_duplicate_key_in_one_plan_updates_the_inserted_row(repo: Repository) -> None:
    sid = add(repo, "a")
    second = item(1, title='第二条 "second" \\ é')  # non-ASCII and JSON escapes survive
    result = repo.apply(plan(sid, T0, ins("k", item(1)), ins("k", second)), T0)
    assert (result.new, result.updated, result.new_stories) == (1, 1, 1)
    (story,) = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert [i.title for i in story.items] == [second.title]
    repo.apply(plan(sid, T0, ins("k2", second)), T0)  # the same text through the insert path
    assert repo.recent_stories(T0 - timedelta(days=1), 10)[0].items[0].title == second.title


def test_update_intent_whose_row_vanished_inserts_it(repo: Repository) -> None:
    sid = add(repo, "a")
    gone = ItemIntent(action="update", item_key="k9", item=item(9), existing_id=987654)
    result = repo.apply(plan(sid, T0, gone), T0)
    assert (result.new, result.updated, result.new_stories) == (1, 0, 1)
    assert [e.item_key for e in repo.existing_items(sid, ["k9"], [])] == ["k9"]


def test_updates_of_one_row_in_one_plan_apply_in_order(repo: Repository) -> None:
    sid = add(repo, "a")
    repo.apply(plan(sid, T0, ins("k", item(1, published=T0 - timedelta(days=2)))), T0)
    (row,) = repo.existing_items(sid, ["k"], [])
    cst = timezone(timedelta(hours=8))
    first = item(1, title="one", published=datetime(2026, 11, 28, 10, 0, tzinfo=cst))
    second = item(1, title="two", published=None)  # keeps the first update's date
    result = repo.apply(
        plan(
            sid,
            T0,
            ItemIntent("update", "k", first, existing_id=row.id),
            ItemIntent("update", "k", second, existing_id=row.id),
        ),
        T0,
    )
    assert (result.new, result.updated) == (0, 2)
    (stored,) = repo.recent_stories(T0 - timedelta(days=3), 10)[0].items
    assert stored.title == "two" and stored.id == row.id
    assert stored.published_at == datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def test_new_item_joins_story_by_public_id_when_no_item_has_its_url(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    old_url = "https://example.com/old"
    repo.apply(plan(a, T0, ins("k", item("k", canonical=old_url))), T0)
    (row,) = repo.existing_items(a, ["k"], [])
    moved = ItemIntent("update", "k", item("k", canonical="https://example.com/new"), row.id)
    repo.apply(plan(a, T0, moved), T0)  # no stored item carries old_url any more
    result = repo.apply(plan(b, T0, ins("x", item("x", canonical=old_url))), T0)
    assert (result.new, result.new_stories) == (1, 0)
    (story,) = repo.recent_stories(T0 - timedelta(days=1), 10)
    assert story.public_id == story_public_id(old_url, "", "") and len(story.items) == 2


def test_new_items_follow_a_chain_of_merges(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    urls = [f"https://example.com/m{i}" for i in range(3)]
    repo.apply(
        plan(a, T0, *(ins(f"k{i}", item(f"k{i}", canonical=u)) for i, u in enumerate(urls))), T0
    )
    ids = stories_by_guid(repo)
    s0, s1, s2 = (ids[f"guid-k{i}"] for i in range(3))
    with repo.engine.begin() as conn:  # s2 -> s1 -> s0, items left where they were
        conn.execute(stories.update().where(stories.c.id == s2).values(merged_into=s1))
        conn.execute(stories.update().where(stories.c.id == s1).values(merged_into=s0))
    result = repo.apply(plan(b, T0, ins("x", item("x", canonical=urls[2]))), T0)
    assert (result.new, result.new_stories) == (1, 0)
    assert stories_by_guid(repo)["guid-x"] == s0


def test_plans_larger_than_one_chunk(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    n = 620  # more keys and URLs than one IN list / array chunk holds
    shared = [f"https://example.com/big/{i}" for i in range(n)]
    first = repo.apply(
        plan(a, T0, *(ins(f"k{i}", item(f"a{i}", canonical=u)) for i, u in enumerate(shared))), T0
    )
    assert (first.new, first.new_stories) == (n, n)
    second = repo.apply(
        plan(b, T0, *(ins(f"k{i}", item(f"b{i}", canonical=u)) for i, u in enumerate(shared))), T0
    )
    assert (second.new, second.new_stories) == (n, 0)
    assert count(repo, stories) == n
    replay = repo.apply(
        plan(b, T0, *(ins(f"k{i}", item(f"b{i}", canonical=u)) for i, u in enumerate(shared))), T0
    )
    assert (replay.new, replay.updated) == (0, n)
    assert len(repo.existing_items(b, [f"k{i}" for i in range(n)], shared)) == n


def test_claim_sources_claims_many_at_once_and_respects_leases(repo: Repository) -> None:
    for key in ["a", "b", "c", "d"]:
        add(repo, key, now=T0 + timedelta(hours=1))  # none due: claimed anyway
    repo.set_enabled("d", False)
    assert repo.claim_source("b", T0, "w2", 60) is not None
    got = repo.claim_sources(["d", "c", "a", "b", "missing", "c"], T0, "w1", 60)
    assert [s.key for s in got] == ["d", "c", "a"]  # b is w2's; order of the keys given
    assert repo.claim_source("a", T0, "w3", 60) is None  # now w1's
    again = repo.claim_sources(["a", "b"], T0 + timedelta(seconds=61), "w3", 60)
    assert [s.key for s in again] == ["a", "b"]  # expired leases
    assert repo.claim_sources([], T0, "w1", 60) == []


def test_sync_keeps_what_polling_learned(repo: Repository) -> None:
    """A restart's config sync must not undo a permanent redirect or a 410 disable."""
    repo.sync_sources([cfg("a"), cfg("b")], T0)
    a, b = repo.get_source("a"), repo.get_source("b")
    assert a is not None and b is not None
    moved = replace(plan(a.id, T0).source_update, url="http://127.0.0.1:9/moved.xml", etag='"m"')
    repo.apply(UpdatePlan(a.id, moved), T0)
    gone = replace(plan(b.id, T0).source_update, status="gone", enabled=False)
    repo.apply(UpdatePlan(b.id, gone), T0)
    repo.sync_sources([cfg("a"), cfg("b")], T0 + timedelta(hours=1))
    a2, b2 = repo.get_source("a"), repo.get_source("b")
    assert a2 is not None and a2.url == "http://127.0.0.1:9/moved.xml" and a2.etag == '"m"'
    assert b2 is not None and not b2.enabled
    # an actual config change still applies
    repo.sync_sources([cfg("a", url="http://127.0.0.1:9/other.xml"), cfg("b", enabled=False)], T0)
    repo.sync_sources([cfg("a", url="http://127.0.0.1:9/other.xml"), cfg("b")], T0)
    a3, b3 = repo.get_source("a"), repo.get_source("b")
    assert a3 is not None and a3.url == "http://127.0.0.1:9/other.xml" and a3.etag is None
    assert b3 is not None and b3.enabled


def test_inserted_items_read_back_exactly_and_store_what_sqlalchemy_would(
    repo: Repository,
) -> None:
    """Items and stories are inserted from one JSON parameter; values must survive unchanged
    (aware datetimes in any zone, microseconds, CJK and emoji, empty and None fields), and on
    SQLite datetimes must be stored as the text SQLAlchemy's DATETIME writes, which the
    window queries compare as strings."""
    sid = add(repo, "exact")
    cet = timezone(timedelta(hours=1))
    published = datetime(2026, 11, 28, 9, 30, 5, 123456, tzinfo=cet)
    odd = replace(
        item("x1", title="标题 “quoted” \\ back 😀", published=published),
        author=None,
        categories=("tech", "新闻", 'with "quote"'),
        summary_html="",
        updated_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
    )
    plain = replace(item("x2", published=None), categories=(), language=None)
    result = repo.apply(plan(sid, T0, ins("k1", odd), ins("k2", plain)), T0)
    assert (result.new, result.new_stories) == (2, 2)
    found = repo.recent_stories(T0 - timedelta(days=1), 10)
    [first] = [s for s in found if s.items[0].guid == "guid-x1"]
    [second] = [s for s in found if s.items[0].guid == "guid-x2"]
    got = first.items[0]
    assert got.title == odd.title and got.categories == odd.categories and got.author is None
    assert got.published_at == published and got.published_at.tzinfo == UTC
    assert got.updated_at == odd.updated_at and got.collected_at == T0
    assert second.items[0].published_at == T0  # no date: collected time
    assert second.items[0].categories == () and second.items[0].language is None
    assert first.public_id == story_public_id(odd.canonical_url, "exact", "k1")
    assert first.created_at == T0 == first.updated_at
    if repo.engine.dialect.name == "sqlite":
        with repo.engine.connect() as conn:
            raw = conn.execute(
                text("SELECT published_at, collected_at FROM items WHERE item_key = 'k1'")
            ).one()
            story_raw = conn.execute(text("SELECT created_at FROM stories LIMIT 1")).scalar()
        assert tuple(raw) == ("2026-11-28 08:30:05.123456", "2026-11-28 12:00:00.000000")
        assert story_raw == "2026-11-28 12:00:00.000000"
