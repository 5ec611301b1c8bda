"""The weekly recap: ISO weeks in a time zone, building, storing, exporting, CLI and cron job.

Building is pure (fixed clocks); storage runs on SQLite and PostgreSQL (``repo`` fixture); the
CLI runs for real (``python -m aggregator recap``) against a temporary SQLite database filled
through the repository; the cron trigger's next fire times are checked across time zones.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from clirun import run_cli
from factories import make_stored, make_story
from fastapi.testclient import TestClient
from feedcheck import assert_valid_atom, assert_valid_jsonfeed, assert_valid_rss

from aggregator.clock import FixedClock
from aggregator.config import load_settings
from aggregator.curate import build_edition
from aggregator.daemon import Runner
from aggregator.errors import ConfigError
from aggregator.model import (
    Card,
    EditionEntry,
    Item,
    ItemIntent,
    SourceRef,
    SourceUpdate,
    StoryRecord,
    UpdatePlan,
)
from aggregator.publish import render_all
from aggregator.recap import (
    build_recap,
    parse_week,
    previous_week,
    recap_entry,
    top_entries,
    week_bounds,
    week_of,
)
from aggregator.recap_cli import build_and_store, recap_trigger, weekly_recaps
from aggregator.settings import (
    EditionConfig,
    RecapSettings,
    Rule,
    ServerSettings,
    Settings,
    SourceConfig,
)
from aggregator.store.db import make_engine, upgrade
from aggregator.store.recaps import RecapStore
from aggregator.store.repo import Repository
from aggregator.web import create_app

UTC_TZ = ZoneInfo("UTC")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
BASE = "https://news.example.net"
WEEK = "2026-W48"  # Monday 23 November 2026 .. Sunday 29 November 2026
MON = datetime(2026, 11, 23, tzinfo=UTC)
AFTER = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # the Monday job's time
ALL = EditionConfig(name="all", title="Everything")


def story(n: int, title: str, published: datetime, *pubs: tuple[str, float]) -> StoryRecord:
    """A story with one report per (publisher, weight), all published at ``published``."""
    reports = [
        make_stored(
            n * 10 + i,
            title=title,
            source_id=i + 1,
            source_key=name.lower().replace(" ", "-"),
            source_name=name,
            source_weight=weight,
            published_at=published + timedelta(minutes=i),
            collected_at=published + timedelta(minutes=i + 3),
            url=f"https://{name.lower().replace(' ', '')}.example/{n}",
            canonical_url=f"https://{name.lower().replace(' ', '')}.example/{n}",
        )
        for i, (name, weight) in enumerate(pubs or (("Solo", 1.0),))
    ]
    return make_story(n, *reports)


def week_stories() -> list[StoryRecord]:
    """Six stories in 2026-W48 (UTC), one the week before and one the week after."""
    return [
        story(1, "Monday wire story", MON + timedelta(hours=9), ("A", 1.0), ("B", 1.0), ("C", 1.0)),
        story(2, "Tuesday solo", MON + timedelta(days=1), ("A", 1.0)),
        story(3, "Wednesday heavy source", MON + timedelta(days=2), ("Heavy", 3.0)),
        story(4, "Thursday pair", MON + timedelta(days=3), ("A", 1.0), ("B", 1.0)),
        story(5, "Saturday DeepSeek", MON + timedelta(days=5), ("A", 0.5)),
        story(6, "Sunday night solo", MON + timedelta(days=6, hours=23), ("B", 1.0)),
        story(7, "Previous week", MON - timedelta(hours=1), ("A", 9.0), ("B", 9.0)),
        story(8, "Next week", MON + timedelta(days=7), ("A", 9.0), ("B", 9.0)),
    ]


# --------------------------------------------------------------------------- ISO weeks


def test_parse_week_names_the_problem() -> None:
    assert parse_week("2026-W48") == (2026, 48)
    assert parse_week(" 2020-W53 ") == (2020, 53)
    for bad, words in (
        ("2026-48", "expected an ISO week like 2026-W48"),
        ("2026-W5", "expected an ISO week"),
        ("2026-W00", "has no ISO week 0"),
        ("2027-W53", "2027 has no ISO week 53"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_week(bad)


def test_week_bounds_follow_the_configured_time_zone() -> None:
    assert week_bounds(WEEK, UTC_TZ) == (MON, MON + timedelta(days=7))
    start, end = week_bounds(WEEK, SHANGHAI)  # UTC+8: Monday 00:00 is Sunday 16:00 UTC
    assert start == datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    # New York leaves daylight saving time on Sunday 1 November 2026: that week is 7d + 1h.
    start, end = week_bounds("2026-W44", NEW_YORK)
    assert start == datetime(2026, 10, 26, 4, 0, tzinfo=UTC)
    assert end - start == timedelta(days=7, hours=1)
    # Week 1 of 2027 starts on Monday 4 January 2027; 1-3 January belong to 2026-W53.
    assert week_of(datetime(2027, 1, 2, 12, tzinfo=UTC), UTC_TZ) == "2026-W53"
    assert week_bounds("2027-W01", UTC_TZ)[0] == datetime(2027, 1, 4, tzinfo=UTC)


def test_previous_week_depends_on_the_time_zone() -> None:
    sunday_evening_utc = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)  # Monday 04:00 in Shanghai
    assert previous_week(sunday_evening_utc, UTC_TZ) == "2026-W47"
    assert previous_week(sunday_evening_utc, SHANGHAI) == "2026-W48"
    assert previous_week(AFTER, UTC_TZ) == WEEK


# --------------------------------------------------------------------------- building


def test_top_entries_by_score_then_coverage_then_time() -> None:
    def entry(n: int, score: float, publishers: int, hours: int) -> EditionEntry:
        published = MON + timedelta(hours=hours)
        return EditionEntry(
            id=f"urn:{n}", title=f"t{n}", url=None, publisher="P", publisher_url=None,
            publisher_feed_url="https://p.example/feed", published=published, updated=published,
            collected_at=published, summary_html="", content_html="", author=None,
            categories=(), language=None,
            sources=tuple(SourceRef(f"P{i}", None, "t", None) for i in range(publishers)),
            score=score,
        )  # fmt: skip

    scored = [entry(1, 1.0, 1, 1), entry(2, 3.0, 1, 2), entry(3, 2.0, 5, 3), entry(4, 0.5, 9, 4)]
    assert [e.id for e in top_entries(scored, 3)] == ["urn:2", "urn:3", "urn:1"]
    # All scores 0: the fallback is coverage, then the newer story.
    zero = [entry(1, 0.0, 1, 1), entry(2, 0.0, 3, 2), entry(3, 0.0, 1, 3), entry(4, 0.0, 3, 1)]
    assert [e.id for e in top_entries(zero, 4)] == ["urn:2", "urn:4", "urn:3", "urn:1"]
    assert top_entries(zero, 0) == []


def test_build_recap_lists_the_weeks_top_stories_by_score() -> None:
    stories = week_stories()
    recap = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=3, base_url=BASE, now=AFTER)
    assert recap is not None
    assert recap.id == "recap:all:2026-W48"
    assert recap.week_start == MON and recap.published == MON + timedelta(days=7)
    assert recap.url == f"{BASE}/editions/all/recaps/2026-W48"
    # weight x (1 + ln publishers), freshness off: Heavy 3.0, wire 2.10, pair 1.69, solos 1.0
    assert [line.title for line in recap.lines] == [
        "Wednesday heavy source",
        "Monday wire story",
        "Thursday pair",
    ]
    assert [line.coverage for line in recap.lines] == [1, 3, 2]
    scores = [line.score for line in recap.lines]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 1.0
    titles = " ".join(line.title for line in recap.lines)
    assert "Previous week" not in titles and "Next week" not in titles
    page = lxml.html.fragment_fromstring(recap.content_html, create_parent="div")
    items = page.xpath("//ol/li")
    assert len(items) == 3
    assert items[1].text_content().startswith("Monday wire story (A and 2 more)")
    assert items[0].xpath("a/@href") == ["https://heavy.example/3"]
    assert "of 6 in the edition that week" in page.text_content()
    assert recap.title == "Everything: weekly recap, 23–29 Nov 2026"


def test_rule_boosts_count_and_an_empty_week_gives_no_recap() -> None:
    boosted = replace(
        ALL, boost=(Rule(fields=("title",), keywords=("DeepSeek",), boost=10.0, name="ds"),)
    )
    recap = build_recap(
        boosted, week_stories(), week=WEEK, tz=UTC_TZ, top_n=1, base_url=BASE, now=AFTER
    )
    assert recap is not None and [line.title for line in recap.lines] == ["Saturday DeepSeek"]
    nothing = build_recap(
        ALL, week_stories(), week="2026-W40", tz=UTC_TZ, top_n=5, base_url=BASE, now=AFTER
    )
    assert nothing is None


def test_recap_is_stable_across_rebuilds() -> None:
    stories = week_stories()
    first = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=10, base_url=BASE, now=AFTER)
    later = AFTER + timedelta(days=2)
    again = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=10, base_url=BASE, now=later)
    assert first is not None and again is not None
    assert (again.id, again.published, again.content_html, again.lines) == (
        first.id,
        first.published,
        first.content_html,
        first.lines,
    )
    # A week still running is dated when built (not in the future) and keeps its id.
    running = build_recap(
        ALL, stories, week=WEEK, tz=UTC_TZ, top_n=10, base_url=BASE, now=MON + timedelta(days=3)
    )
    assert running is not None and running.id == first.id
    assert running.published == MON + timedelta(days=3)
    assert [line.title for line in running.lines] == [
        "Wednesday heavy source",
        "Monday wire story",
        "Thursday pair",
        "Tuesday solo",
    ]


def test_week_membership_uses_the_configured_time_zone() -> None:
    # 17:00 UTC on Sunday 22 November is 01:00 on Monday 23 November in Shanghai.
    s = story(1, "Shanghai Monday", datetime(2026, 11, 22, 17, 0, tzinfo=UTC))
    in_shanghai = build_recap(ALL, [s], week=WEEK, tz=SHANGHAI, top_n=5, base_url=BASE, now=AFTER)
    assert in_shanghai is not None and in_shanghai.lines[0].title == "Shanghai Monday"
    assert build_recap(ALL, [s], week=WEEK, tz=UTC_TZ, top_n=5, base_url=BASE, now=AFTER) is None
    previous = build_recap(ALL, [s], week="2026-W47", tz=UTC_TZ, top_n=5, base_url=BASE, now=AFTER)
    assert previous is not None


def test_tldr_line_and_escaping() -> None:
    card = Card(
        backend="llm",
        tldr="First sentence of the card.\nSecond line " + "long " * 80,
        generated_at=MON,
        input_hash="h",
        model="m",
    )
    hostile = story(1, "<script>alert(1)</script> & co", MON + timedelta(hours=1))
    stories = [replace(hostile, card=card)]
    recap = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=5, base_url=BASE, now=AFTER)
    assert recap is not None
    line = recap.lines[0]
    assert line.tldr.startswith("First sentence of the card. Second line")
    assert len(line.tldr) <= 200 and "\n" not in line.tldr and line.tldr.endswith("…")
    page = lxml.html.fragment_fromstring(recap.content_html, create_parent="div")
    assert not page.xpath("//script")
    assert "<script>alert(1)</script> & co (Solo): First sentence" in page.text_content()


# --------------------------------------------------------------------------- exporting


def test_render_all_exports_the_recap_as_an_item_and_links_it() -> None:
    stories = week_stories()
    recap = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=5, base_url=BASE, now=AFTER)
    assert recap is not None
    snaps = {
        s.format: s
        for s in render_all([ALL], stories, base_url=BASE, now=AFTER, recaps={"all": recap})
    }
    assert_valid_rss(snaps["rss"].body)
    assert_valid_atom(snaps["atom"].body)
    assert_valid_jsonfeed(snaps["json"].body)
    items = json.loads(snaps["json"].body)["items"]
    recap_items = [i for i in items if i["_aggregator"]["kind"] == "recap"]
    assert [i["id"] for i in recap_items] == ["recap:all:2026-W48"]
    assert recap_items[0]["url"] == recap.url
    assert recap_items[0]["_aggregator"]["collected_after_seconds"] is None
    # Placed by its publication time (Monday 30 Nov 00:00) among stories sorted newest first.
    dates = [i["date_published"] for i in items]
    assert dates == sorted(dates, reverse=True)
    assert items.index(recap_items[0]) == 1  # only "Next week" (Monday 30 Nov 00:00+) is newer
    stories_only = [i for i in items if i["_aggregator"]["kind"] == "story"]
    assert stories_only and all(i["_aggregator"]["recap_url"] == recap.url for i in stories_only)
    assert b"recap:all:2026-W48" in snaps["rss"].body
    # Twice the same bytes; an old recap is no longer an item but still linked.
    again = render_all([ALL], stories, base_url=BASE, now=AFTER, recaps={"all": recap})
    assert {s.format: s.etag for s in again} == {f: s.etag for f, s in snaps.items()}
    late = AFTER + timedelta(days=9)  # the recap is 9 days old, the edition keeps 7 days
    fresh = [*stories, story(30, "Fresh", late - timedelta(hours=1))]
    snaps_late = render_all([ALL], fresh, base_url=BASE, now=late, recaps={"all": recap})
    old = json.loads(next(s.body for s in snaps_late if s.format == "json"))["items"]
    assert [i["title"] for i in old] == ["Fresh"]
    assert old[0]["_aggregator"]["recap_url"] == recap.url


def test_recap_entry_shape() -> None:
    recap = build_recap(
        ALL, week_stories(), week=WEEK, tz=UTC_TZ, top_n=2, base_url=BASE, now=AFTER
    )
    assert recap is not None
    entry = recap_entry(recap, edition_title="Everything", base_url=BASE + "/")
    assert entry.id == recap.id and entry.url == recap.url
    assert entry.publisher == "Everything"
    assert entry.publisher_url == f"{BASE}/editions/all"
    assert entry.publisher_feed_url == f"{BASE}/feeds/all.rss"
    assert entry.published == recap.published and entry.card is None
    assert entry.summary_html.startswith("<p>The 2 top stories of Everything")
    assert entry.summary_html.endswith("</p>") and "<ol>" not in entry.summary_html
    assert entry.content_html == recap.content_html


# --------------------------------------------------------------------------- storage


def test_recap_storage(repo: Repository) -> None:
    store = RecapStore(repo.engine)
    stories = week_stories()
    recap = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=3, base_url=BASE, now=AFTER)
    assert recap is not None
    assert store.get("all", WEEK) is None and store.latest(["all"]) == {}
    store.save(recap, AFTER)
    got = store.get("all", WEEK)
    assert got == recap  # every field round-trips, lines included
    # An identical rebuild later changes nothing (the stored updated time stays).
    rebuilt = replace(recap, updated=AFTER + timedelta(days=1))
    assert store.save(rebuilt, AFTER + timedelta(days=1)).updated == AFTER
    assert store.get("all", WEEK) == recap
    # A changed rebuild replaces the row under the same id.
    changed = build_recap(
        ALL, stories, week=WEEK, tz=UTC_TZ, top_n=2, base_url=BASE, now=AFTER + timedelta(days=2)
    )
    assert changed is not None and changed.id == recap.id
    store.save(changed, AFTER + timedelta(days=2))
    stored = store.get("all", WEEK)
    assert stored is not None and len(stored.lines) == 2
    assert stored.updated == AFTER + timedelta(days=2)
    assert [r.id for r in store.history("all")] == [recap.id]
    # latest: the newest by publication time, per edition.
    older = build_recap(
        ALL, [story(9, "Older", MON - timedelta(days=3))], week="2026-W47", tz=UTC_TZ, top_n=3,
        base_url=BASE, now=AFTER,
    )  # fmt: skip
    assert older is not None
    store.save(older, AFTER)
    latest = store.latest(["all", "none"])
    assert list(latest) == ["all"] and latest["all"].week == WEEK
    assert [r.week for r in store.history("all")] == [WEEK, "2026-W47"]


# --------------------------------------------------------------------------- job and CLI


def _fill(repo: Repository, now: datetime, published: list[tuple[str, datetime, str]]) -> None:
    """Store items through the repository: (title, published, source key) each."""
    keys = sorted({key for _, _, key in published})
    repo.sync_sources(
        [
            SourceConfig(key=k, url=f"http://127.0.0.1:9/{k}.xml", name=k.upper(), weight=1.0)
            for k in keys
        ],
        now,
    )
    ids = {s.key: s.id for s in repo.list_sources()}
    for n, (title, when, key) in enumerate(published):
        url = f"https://{key}.example/{n}"
        item = Item(
            guid=url, url=url, canonical_url=url, title=title, summary_html=f"<p>{title}</p>",
            content_html=f"<p>{title} body</p>", text=title, author=None, categories=(),
            language="en", published_at=when, updated_at=None, content_hash=f"h{n}",
        )  # fmt: skip
        update = SourceUpdate(
            status="ok", last_error=None, error_count=0, next_check_at=now + timedelta(hours=1),
            last_fetched_at=now, last_success_at=now,
        )  # fmt: skip
        intent = ItemIntent(action="insert", item_key=url, item=item)
        repo.apply(UpdatePlan(ids[key], update, (intent,)), now)


def test_weekly_job_builds_every_edition_and_rerenders(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'job.db'}")
    upgrade(engine)
    repo = Repository(engine)
    ai = EditionConfig(
        name="ai", title="AI", include=(Rule(fields=("title",), keywords=("DeepSeek",)),)
    )
    settings = Settings(
        config_path="test.toml",
        server=ServerSettings(base_url=BASE),
        editions=(ALL, ai, EditionConfig(name="empty", title="E", include=(ai.include[0],))),
        recap=RecapSettings(timezone="Asia/Shanghai", top_n=5),
    )
    settings = replace(
        settings,
        editions=(
            ALL,
            ai,
            EditionConfig(
                name="empty", title="E", include=(Rule(fields=("title",), keywords=("Nope",)),)
            ),
        ),
    )
    now = datetime(2026, 11, 30, 7, 0, tzinfo=SHANGHAI)
    _fill(
        repo,
        now.astimezone(UTC),
        [
            ("DeepSeek ships R2", datetime(2026, 11, 24, 3, tzinfo=UTC), "a"),
            ("Rust 1.80", datetime(2026, 11, 25, 3, tzinfo=UTC), "b"),
            ("Too early", datetime(2026, 11, 22, 15, tzinfo=UTC), "a"),  # W47 in Shanghai
        ],
    )
    run = weekly_recaps(settings, repo, now.astimezone(UTC))
    assert run.week == "2026-W48"
    assert sorted(r.id for r in run.stored) == ["recap:ai:2026-W48", "recap:all:2026-W48"]
    assert run.empty == ("empty",)
    assert run.rendered > 0
    snapshot = repo.get_snapshot("all", "json")
    assert snapshot is not None
    items = json.loads(snapshot.body)["items"]
    assert "recap:all:2026-W48" in [i["id"] for i in items]
    stored = RecapStore(engine).get("all", "2026-W48")
    assert stored is not None and [line.title for line in stored.lines] == [
        "Rust 1.80",
        "DeepSeek ships R2",
    ]
    # Running again (another replica, or a restart) keeps one recap per week and edition.
    again = build_and_store(settings, repo, now.astimezone(UTC), week="2026-W48")
    assert [r.updated for r in again.stored] == [r.updated for r in run.stored]
    assert again.rendered == 0  # nothing changed: no snapshot rewritten
    assert len(RecapStore(engine).history("all")) == 1
    engine.dispose()


def _config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "aggregator.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{db}"
log_format = "text"
log_level = "WARNING"

[server]
base_url = "{BASE}"

[recap]
timezone = "Asia/Shanghai"
top_n = 2

[[editions]]
name = "all"
title = "Everything"
""",
        encoding="utf-8",
    )
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGGREGATOR_CONFIG": str(config), "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
    )


def test_recap_cli_builds_stores_and_exports(tmp_path: Path) -> None:
    db = tmp_path / "data" / "cli.db"
    config = _config(tmp_path, db)
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    repo = Repository(engine)
    now = datetime.now(UTC)
    week = previous_week(now, SHANGHAI)
    start, _ = week_bounds(week, SHANGHAI)
    _fill(
        repo,
        now,
        [
            ("Tuesday story", start + timedelta(days=1), "a"),
            ("Tuesday story", start + timedelta(days=1, minutes=5), "b"),  # not merged: no URL
            ("Friday story", start + timedelta(days=4), "a"),
            ("Saturday story", start + timedelta(days=5), "b"),
        ],
    )
    first = run_cli(config, "recap", "all", "--week", week)
    assert f"recap:all:{week}: 2 stories" in first.stdout
    assert f"{BASE}/editions/all/recaps/{week}" in first.stdout
    stored = RecapStore(engine).get("all", week)
    assert stored is not None and len(stored.lines) == 2
    snapshot = repo.get_snapshot("all", "rss")
    assert snapshot is not None and f"recap:all:{week}".encode() in snapshot.body
    assert_valid_rss(snapshot.body)
    # Again, and with the default week (last week): the same id, one row, same bytes.
    etag = snapshot.etag
    second = run_cli(config, "recap", "all")
    assert f"recap:all:{week}" in second.stdout and "0 snapshots re-rendered" in second.stdout
    assert len(RecapStore(engine).history("all")) == 1
    again = repo.get_snapshot("all", "rss")
    assert again is not None and again.etag == etag
    engine.dispose()
    bad = _cli(config, "recap", "all", "--week", "2026-48")
    assert bad.returncode == 2
    assert "--week: expected an ISO week like 2026-W48, got '2026-48'" in bad.stderr
    unknown = _cli(config, "recap", "nope")
    assert unknown.returncode == 2 and "no edition named 'nope'" in unknown.stderr
    empty = _cli(config, "recap", "all", "--week", "2020-W01")
    assert empty.returncode == 0 and "no stories in 2020-W01" in empty.stdout


def test_cron_trigger_fires_at_the_configured_local_time() -> None:
    shanghai = recap_trigger(RecapSettings(day_of_week="mon", hour=7, minute=30,
                                           timezone="Asia/Shanghai"))  # fmt: skip
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert shanghai.get_next_fire_time(None, saturday) == datetime(
        2026, 11, 29, 23, 30, tzinfo=UTC
    )  # Monday 07:30 in Shanghai is Sunday 23:30 UTC
    # New York: 07:30 local is 11:30 UTC in daylight time, 12:30 UTC after 1 November.
    ny = recap_trigger(RecapSettings(day_of_week="mon", hour=7, minute=30,
                                     timezone="America/New_York"))  # fmt: skip
    assert ny.get_next_fire_time(None, datetime(2026, 10, 20, tzinfo=UTC)) == datetime(
        2026, 10, 26, 11, 30, tzinfo=UTC
    )
    assert ny.get_next_fire_time(None, datetime(2026, 10, 27, tzinfo=UTC)) == datetime(
        2026, 11, 2, 12, 30, tzinfo=UTC
    )
    default = recap_trigger(RecapSettings())
    assert default.get_next_fire_time(None, saturday) == datetime(2026, 11, 30, 7, tzinfo=UTC)


def test_runner_schedules_the_recap_job_only_when_enabled() -> None:
    on = Settings(config_path="t", recap=RecapSettings(day_of_week="sun", hour=22))
    runner = Runner(SimpleNamespace(settings=on), 5.0)  # type: ignore[arg-type]
    job = runner.scheduler.get_job("recap")
    assert job is not None
    fire = job.trigger.get_next_fire_time(None, datetime(2026, 11, 28, tzinfo=UTC))
    assert fire == datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
    off = replace(on, recap=RecapSettings(enabled=False))
    assert Runner(SimpleNamespace(settings=off), 5.0).scheduler.get_job("recap") is None  # type: ignore[arg-type]


def test_recap_config_section(tmp_path: Path) -> None:
    def load(section: str) -> Settings:
        path = tmp_path / "c.toml"
        path.write_text(f'[recap]\n{section}\n[[editions]]\nname = "all"\ntitle = "All"\n')
        return load_settings(str(path), env={})

    loaded = load('day_of_week = "fri"\nhour = 18\nminute = 5\ntimezone = "Europe/Berlin"')
    assert loaded.recap == RecapSettings(
        day_of_week="fri", hour=18, minute=5, timezone="Europe/Berlin"
    )
    for section, words in (
        ('timezone = "Mars/Olympus"', "recap.timezone: unknown time zone 'Mars/Olympus'"),
        ('day_of_week = "someday"', "recap.day_of_week: expected a cron day"),
        ("hour = 24", "recap.hour: must be between 0 and 23"),
        ("top_n = 0", "recap.top_n: must be between 1 and 100"),
        ("colour = 1", "recap.colour"),
    ):
        with pytest.raises(ConfigError, match=words):
            load(section)


# --------------------------------------------------------------------------- web page


def test_recap_page_is_served_escaped(repo: Repository) -> None:
    stories = [*week_stories(), story(20, "<script>alert(1)</script>", MON + timedelta(hours=2))]
    recap = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=10, base_url=BASE, now=AFTER)
    assert recap is not None
    store = RecapStore(repo.engine)
    store.save(recap, AFTER)
    settings = Settings(config_path="t", server=ServerSettings(base_url=BASE), editions=(ALL,))
    app = create_app(settings, repo, clock=FixedClock(AFTER), recaps=store)
    with TestClient(app) as client:
        page = client.get(f"/editions/all/recaps/{WEEK}")
        missing = client.get("/editions/all/recaps/2026-W01")
        wrong = client.get("/editions/nope/recaps/2026-W48")
        junk = client.get("/editions/all/recaps/latest")
    assert page.status_code == 200
    doc = lxml.html.fromstring(page.text)
    assert doc.findtext(".//h1") == recap.title
    lines = doc.xpath("//ol[contains(@class, 'recap-list')]/li")
    assert len(lines) == len(recap.lines) == 7
    assert lines[0].xpath("a/@href") == ["https://heavy.example/3"]
    assert not doc.xpath("//body//script")
    assert "<script>alert(1)</script>" in doc.text_content()
    assert (missing.status_code, wrong.status_code, junk.status_code) == (404, 404, 404)
    without = create_app(settings, repo, clock=FixedClock(AFTER))
    with TestClient(without) as client:
        assert client.get(f"/editions/all/recaps/{WEEK}").status_code == 404


def test_build_edition_scores_match_the_recap_order() -> None:
    """The recap ranks by the edition's own scores (freshness off), not by a private formula."""
    stories = week_stories()
    recap = build_recap(ALL, stories, week=WEEK, tz=UTC_TZ, top_n=6, base_url=BASE, now=AFTER)
    assert recap is not None
    flat = replace(ALL, half_life=math.inf, limit=1000, max_age_days=8)
    scores = {e.id: e.score for e in build_edition(flat, stories, base_url=BASE, now=AFTER).entries}
    assert [line.score for line in recap.lines] == [scores[line.story_id] for line in recap.lines]
