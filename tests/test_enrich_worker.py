"""The enrichment pass and its storage on real SQLite and PostgreSQL (no LLM here: see
``test_enrich_e2e``): cards once per story, again only when the input changes, merged stories,
cards attached by ``recent_stories`` in one query, damaged rows, exclusive LLM claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, update

from aggregator.clock import FixedClock
from aggregator.enrich.inputs import input_hash
from aggregator.enrich.worker import Enricher
from aggregator.model import Card, Item, ItemIntent, SourceUpdate, UpdatePlan
from aggregator.settings import EnrichSettings, SourceConfig
from aggregator.store import Repository, make_engine
from aggregator.store.cards import card_from_json, card_to_json
from aggregator.store.enrichments import EnrichmentStore
from aggregator.store.schema import enrichments, items, stories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SINCE = T0 - timedelta(days=30)


def news(n: int, title: str, body: str, *, url: str | None = None) -> Item:
    url = url or f"https://pub.example/{n}"
    return Item(
        guid=f"g{n}",
        url=url,
        canonical_url=url,
        title=title,
        summary_html=f"<p>{body}</p>",
        content_html=f"<p>{body}</p>",
        text=f"{title} {body}",
        author=None,
        categories=(),
        language="en",
        published_at=T0,
        updated_at=None,
        content_hash=f"{title}|{body}",
    )


def apply(repo: Repository, source_id: int, now: datetime, *intents: ItemIntent) -> None:
    upd = SourceUpdate(
        status="ok", last_error=None, error_count=0, next_check_at=now + timedelta(hours=1),
        last_fetched_at=now,
    )  # fmt: skip
    repo.apply(UpdatePlan(source_id, upd, intents), now)


def source(repo: Repository, key: str) -> int:
    return repo.add_source(SourceConfig(key=key, url=f"http://127.0.0.1:9/{key}", name=key), T0).id


def enricher(repo: Repository, clock: FixedClock, **over: object) -> Enricher:
    es = EnrichSettings(**over)  # type: ignore[arg-type]
    return Enricher(es, EnrichmentStore(repo.engine), clock=clock, horizon_days=30)


async def test_each_story_gets_one_card_until_its_input_changes(repo: Repository) -> None:
    clock = FixedClock(T0)
    sid = source(repo, "pub")
    first_news = news(1, "Nvidia ships Blackwell", "Nvidia shipped it. More.")
    second_news = news(2, "Apple updates iOS", "Apple released iOS 26.1.")
    apply(
        repo, sid, T0, ItemIntent("insert", "a", first_news), ItemIntent("insert", "b", second_news)
    )
    worker = enricher(repo, clock)
    first = await worker.run_once()
    assert (first.looked_at, first.cards, first.llm_cards) == (2, 2, 0)
    by_title = {s.items[0].title: s for s in repo.recent_stories(SINCE, 10)}
    card = by_title["Nvidia ships Blackwell"].card
    assert card is not None and card.backend == "extractive"
    assert card.tldr == "Nvidia shipped it. More."
    assert card.input_hash == input_hash("Nvidia ships Blackwell", "Nvidia shipped it. More.", 1)
    assert (await worker.run_once()).looked_at == 0  # nothing changed: nothing to do

    clock.advance(60)  # the publisher edits one report: its story's card is made again
    edited = news(1, "Nvidia ships Blackwell", "Nvidia shipped Blackwell GPUs today.")
    apply(repo, sid, clock.now(), ItemIntent("update", "a", edited))
    again = await worker.run_once()
    assert (again.looked_at, again.cards) == (1, 1)
    card = {s.items[0].title: s for s in repo.recent_stories(SINCE, 10)}[edited.title].card
    assert card is not None and card.tldr == "Nvidia shipped Blackwell GPUs today."

    clock.advance(60)  # an update that changes nothing the card reads: looked at, not remade
    same_text = news(1, "Nvidia ships Blackwell", "Nvidia shipped Blackwell GPUs today.")
    apply(repo, sid, clock.now(), ItemIntent("update", "a", same_text))
    touched = await worker.run_once()
    assert (touched.looked_at, touched.cards) == (1, 0)
    assert (await worker.run_once()).looked_at == 0


async def test_a_second_report_changes_the_input_and_merged_stories_lose_their_row(
    repo: Repository,
) -> None:
    clock = FixedClock(T0)
    a, b = source(repo, "a"), source(repo, "b")
    apply(repo, a, T0, ItemIntent("insert", "x", news(1, "Chip news", "First report.")))
    apply(repo, b, T0, ItemIntent("insert", "y", news(2, "Chip news too", "Second report.")))
    worker = enricher(repo, clock)
    await worker.run_once()
    s1, s2 = sorted(s.id for s in repo.recent_stories(SINCE, 10))
    clock.advance(60)
    with repo.engine.begin() as conn:  # what story matching does when it merges two stories
        conn.execute(update(items).where(items.c.story_id == s2).values(story_id=s1))
        conn.execute(update(stories).where(stories.c.id == s2).values(merged_into=s1))
        conn.execute(update(stories).where(stories.c.id == s1).values(updated_at=clock.now()))
    report = await worker.run_once()
    assert (report.looked_at, report.cards) == (1, 1)
    store = EnrichmentStore(repo.engine)
    assert store.get(s2) is None  # the merged story's row is gone
    state = store.get(s1)
    assert state is not None and state.input_hash == input_hash("Chip news", "First report.", 2)


async def test_recent_stories_attaches_cards_with_one_extra_query(repo: Repository) -> None:
    clock = FixedClock(T0)
    sid = source(repo, "pub")
    apply(repo, sid, T0, *(ItemIntent("insert", f"k{n}", news(n, f"T{n}", f"Body {n}."))
                           for n in range(30)))  # fmt: skip
    await enricher(repo, clock).run_once()
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(repo.engine, "before_cursor_execute", count)
    try:
        got = repo.recent_stories(SINCE, 100)
    finally:
        event.remove(repo.engine, "before_cursor_execute", count)
    assert len(got) == 30 and all(s.card is not None for s in got)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3  # stories, items, cards: not one per story


async def test_a_damaged_card_row_does_not_hide_the_story(repo: Repository) -> None:
    clock = FixedClock(T0)
    sid = source(repo, "pub")
    apply(repo, sid, T0, ItemIntent("insert", "a", news(1, "Title", "Body.")))
    await enricher(repo, clock).run_once()
    with repo.engine.begin() as conn:
        conn.execute(update(enrichments).values(card={"format": 99}))
    (story,) = repo.recent_stories(SINCE, 10)
    assert story.card is None and story.items[0].title == "Title"
    assert (await enricher(repo, clock).run_once()).looked_at == 0  # not rescanned for it
    clock.advance(60)  # once the story is touched (even with the same text) it is made again
    apply(repo, sid, clock.now(), ItemIntent("update", "a", news(1, "Title", "Body.")))
    report = await enricher(repo, clock).run_once()
    assert (report.looked_at, report.cards) == (1, 1)
    (story,) = repo.recent_stories(SINCE, 10)
    assert story.card is not None and story.card.tldr == "Body."


def test_card_json_round_trip_and_errors_name_the_field() -> None:
    card = Card(
        backend="llm", tldr="t", generated_at=T0, input_hash="h", model="m", title="标题",
        what_changed="c", key_takeaways=("a", "b"), tags=("x",),
    )  # fmt: skip
    assert card_from_json(card_to_json(card)) == card
    broken = {**card_to_json(card), "key_takeaways": "a"}
    try:
        card_from_json(broken)
    except ValueError as exc:
        assert "key_takeaways" in str(exc)
    else:
        raise AssertionError("a string for key_takeaways was accepted")


async def test_only_one_replica_claims_a_stories_llm_call(db_url: str, repo: Repository) -> None:
    clock = FixedClock(T0)
    sid = source(repo, "pub")
    apply(repo, sid, T0, ItemIntent("insert", "a", news(1, "Title", "Body.")))
    await enricher(repo, clock).run_once()
    (story,) = repo.recent_stories(SINCE, 10)
    digest = input_hash("Title", "Body.", 1)
    other = make_engine(db_url)
    try:
        stores = [EnrichmentStore(repo.engine), EnrichmentStore(other)]
        until = T0 + timedelta(minutes=2)
        assert stores[0].claim_llm(story.id, digest, T0, until)
        assert not stores[1].claim_llm(story.id, digest, T0, until)  # leased
        assert not stores[1].claim_llm(story.id, "other-hash", until, until)  # stale input
        assert stores[1].claim_llm(story.id, digest, until, until + timedelta(minutes=2))
    finally:
        other.dispose()
