"""The poller against hostile and broken publishers, side by side with good ones.

One realistic run, shared by every test in this module: a config with the good fixture feeds
(plus real captured feeds when ``../shared/corpus/real`` is present) and one source per hostile
case of ``tests/hostile.py``, all served on 127.0.0.1. The first poll is ``poll_all`` (what
``aggregator poll`` does); then some routes change behaviour (a good feed turns hostile, GUIDs
churn) and the second poll is a scheduler ``tick`` five minutes later (an offset clock), so
only sources that are due are fetched, as in the daemon. Afterwards the real CLI runs
``aggregator sources list`` on the same config and database.

The tests then check, case by case: the status and last error recorded, error counts,
Retry-After and 410 handling, that nothing stored was lost and no junk was created, and that
the whole run stayed within bounded time and memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import psutil
import pytest
from sqlalchemy import select

from aggregator.app import open_pipeline, open_repository
from aggregator.config import load_settings
from aggregator.model import SourceState
from aggregator.normalize import MAX_HTML_CHARS
from aggregator.pipeline import SourceReport
from aggregator.settings import Settings
from aggregator.store.db import make_engine
from aggregator.store.schema import items as items_table
from aggregator.store.schema import sources as sources_table
from tests.clirun import run_cli
from tests.hostile import (
    FAR_DATES,
    RETRY_AFTER_DATE_SECONDS,
    RETRY_AFTER_SECONDS,
    UNRESOLVABLE_HOST,
    ZH_TITLES,
    HostileCase,
    SelfSignedTLSServer,
    good_feed,
    install_hostile,
    switch_for_second_poll,
)
from tests.servers import FeedServer, retry_after

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "tests" / "data" / "e2e"
SHARED = ROOT.parent / "shared" / "corpus" / "real"

#: Good publishers: (key, file under tests/data/e2e or ../shared/corpus/real, language).
GOOD_OWN = [
    ("good-ithome", "ithome.rss.xml", "zh-cn"),
    ("good-verge", "verge.atom.xml", "en"),
    ("good-blog", "blog.json", "en"),
]
GOOD_REAL = [
    ("good-oschina", "zh/oschina-industry-news.rss.xml", "zh-cn"),
    ("good-acn-gb2312", "zh-legacy/acnnewswire-press-gb2312.rss.xml", "zh-cn"),
    ("good-theverge", "en-news/theverge.atom.xml", "en"),
    ("good-inessential", "jsonfeed/inessential.json", "en"),
]

# Small limits so the run is quick; 12 MiB lets the 10 MB entry through and stops the rest.
MAX_BODY = 12 * 1024 * 1024
TOTAL_TIMEOUT = 3.0
READ_TIMEOUT = 1.0
ERROR_BACKOFF = 30.0
INTERVAL = 60
SECOND_POLL_AFTER = 300.0  # > every backoff and interval, < every Retry-After
MEMORY_BUDGET_MIB = 300
WALL_BUDGET_SECONDS = 40.0


class OffsetClock:
    """The real clock plus an offset the test moves forward (to make sources due)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class ItemRow:
    """One stored item, as the tests look at it."""

    id: int
    source: str
    title: str
    content_html: str
    summary_html: str
    guid: str | None
    published_at: datetime


@dataclass
class Run:
    """Everything the tests assert on, captured from the one shared run."""

    settings: Settings
    cases: dict[str, HostileCase]
    good: dict[str, int]  # good source key -> entries in its feed
    first: dict[str, SourceState]  # sources after the first poll
    final: dict[str, SourceState]  # sources after the second poll
    items_first: dict[int, ItemRow]
    items_final: dict[int, ItemRow]
    reports_first: dict[str, SourceReport]
    reports_second: dict[str, SourceReport]
    first_at: datetime
    second_at: datetime
    wall_seconds: float
    peak_rss_mib: float  # growth of this process's peak RSS plus the parse pool's peak
    requests: dict[str, int]  # route path -> requests served
    all_paths: list[str]
    server_errors: list[str]
    cli_output: str = ""
    after_cli: dict[str, SourceState] = field(default_factory=dict)
    snapshot_json: bytes | None = None


# --------------------------------------------------------------------------- the run


def good_sources(server: FeedServer) -> list[tuple[str, str, str, int]]:
    """(key, url, language, expected entries) of every good publisher available here."""
    out = []
    files = [(k, E2E / f, "/own/" + f, lang) for k, f, lang in GOOD_OWN]
    if SHARED.is_dir():
        files += [(k, SHARED / rel, "/real/" + rel, lang) for k, rel, lang in GOOD_REAL]
    for key, path, route, lang in files:
        body = path.read_bytes()
        if path.suffix == ".json":
            count = len(json.loads(body)["items"])
        else:
            count = len(feedparser.parse(body).entries)
        out.append((key, server.url(route), lang, count))
    return out


def write_config(
    path: Path, db: Path, good: list[tuple[str, str, str, int]], cases: list[HostileCase]
) -> None:
    """A complete config: small fetch limits, fixed 60 s intervals, every source."""
    lines = [
        f'database_url = "sqlite:///{db}"',
        "parse_workers = 1",  # one parse process, as the daemon runs (its memory is measured)
        "[server]",
        'base_url = "http://127.0.0.1:9999"',
        "[fetch]",
        f"max_body_bytes = {MAX_BODY}",
        f"total_timeout = {TOTAL_TIMEOUT}",
        f"read_timeout = {READ_TIMEOUT}",
        "connect_timeout = 1.0",
        "per_host_delay = 0.0",
        "per_host_concurrency = 100",
        "concurrency = 100",
        "max_redirects = 5",
        "[schedule]",
        f"error_backoff_base = {ERROR_BACKOFF}",
        "jitter = 0.1",
    ]
    for key, url, lang, _count in good:
        lines += ["[[sources]]", f'key = "{key}"', f'url = "{url}"', f'language = "{lang}"']
        lines.append(f"interval = {INTERVAL}")
    for case in cases:
        lines += ["[[sources]]", f'key = "{case.key}"', f'url = "{case.url}"']
        lines.append(f"interval = {INTERVAL}")
    lines += [
        "[[editions]]",
        'name = "all"',
        'title = "Everything"',
        "limit = 1000",
        "max_age_days = 100000",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_items(settings: Settings) -> dict[int, ItemRow]:
    """Every stored item with its source key (through the schema's typed columns)."""
    engine = make_engine(settings.database_url)
    query = select(
        items_table.c.id,
        sources_table.c.key,
        items_table.c.title,
        items_table.c.content_html,
        items_table.c.summary_html,
        items_table.c.guid,
        items_table.c.published_at,
    ).join(sources_table, sources_table.c.id == items_table.c.source_id)
    try:
        with engine.connect() as conn:
            return {r[0]: ItemRow(*r) for r in conn.execute(query)}
    finally:
        engine.dispose()


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident set size (VmHWM) of a process so far, in MiB; 0 where unknown."""
    try:
        status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_peak_rss_mib() -> float:
    """The sum of the peak RSS of this process's children (the parse pool)."""
    return sum(peak_rss_mib(child.pid) for child in psutil.Process().children(recursive=True))


async def two_polls(settings: Settings, server: FeedServer, cases: list[HostileCase]) -> Run:
    """Poll everything, switch the changing routes, then tick five minutes later."""
    clock = OffsetClock()
    by_key = {c.key: c for c in cases}
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    async with open_pipeline(settings, clock=clock, warm=True) as pipeline:
        repo = pipeline.repo
        first_at = clock.now()
        async with asyncio.timeout(WALL_BUDGET_SECONDS):  # a hang fails, it does not stall
            first = await pipeline.poll_all()
        state_first = {s.key: s for s in repo.list_sources()}
        items_first = read_items(settings)
        switch_for_second_poll(server, cases)
        clock.offset = timedelta(seconds=SECOND_POLL_AFTER)
        second_at = clock.now()
        for key, case in by_key.items():
            held = state_first[key]
            if case.polls == 1 and case.enabled and held.next_check_at is not None:
                # re-polling it would wait for its host's Retry-After hold and stall the tick
                # (test_a_retry_after_hold_does_not_stall_the_tick): fail now, and say why
                assert held.next_check_at > second_at, f"{key} is due again: {held.last_error}"
        try:
            async with asyncio.timeout(WALL_BUDGET_SECONDS):
                second = await pipeline.tick()
        except TimeoutError:
            stuck = [
                s.key
                for s in repo.list_sources()
                if s.last_fetched_at == state_first[s.key].last_fetched_at and s.enabled
            ]
            raise AssertionError(
                f"the second poll hung; sources not finished (or not due): {stuck}"
            ) from None
        state_final = {s.key: s for s in repo.list_sources()}
        snapshot = repo.get_snapshot("all", "json")
        children_rss = children_peak_rss_mib()
    wall = time.perf_counter() - started
    return Run(
        settings=settings,
        cases=by_key,
        good={},
        first=state_first,
        final=state_final,
        items_first=items_first,
        items_final=read_items(settings),
        reports_first={r.key: r for r in first.sources},
        reports_second={r.key: r for r in second.sources},
        first_at=first_at,
        second_at=second_at,
        wall_seconds=wall,
        peak_rss_mib=peak_rss_mib() - rss_before + children_rss,
        requests={},
        all_paths=[],
        server_errors=[],
        snapshot_json=snapshot.body if snapshot is not None else None,
    )


def cli(config: Path, *args: str) -> str:
    """Run the real CLI in a subprocess; return its stdout."""
    return run_cli(config, *args).stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The shared run (see the module doc)."""
    tmp = tmp_path_factory.mktemp("hostile")
    tls = SelfSignedTLSServer(tmp) if SelfSignedTLSServer.available() else None
    with FeedServer() as server:
        if tls is not None:
            tls.start()
        try:
            server.serve_dir("/own", E2E)
            if SHARED.is_dir():
                server.serve_dir("/real", SHARED)
            good = good_sources(server)
            cases = install_hostile(server, tls_server_port=tls.port if tls else None)
            config = tmp / "aggregator.toml"
            write_config(config, tmp / "db" / "aggregator.db", good, cases)
            settings = load_settings(str(config), env={})
            result = asyncio.run(two_polls(settings, server, cases))
            result.good = {key: count for key, _u, _l, count in good}
            result.all_paths = [r.path for r in server.log]
            for case in cases:
                if case.path is not None:
                    result.requests[case.key] = len(server.requests(case.path))
            result.server_errors = list(server.errors)
            result.cli_output = cli(config, "sources", "list")
            result.after_cli = read_sources(settings)
            yield result
        finally:
            if tls is not None:
                tls.close()


def read_sources(settings: Settings) -> dict[str, SourceState]:
    """Every source by key, read afresh from the database."""
    engine, repo = open_repository(settings, migrate=False)
    try:
        return {s.key: s for s in repo.list_sources()}
    finally:
        engine.dispose()


def items_of(run: Run, key: str, *, final: bool = True) -> list[ItemRow]:
    rows = (run.items_final if final else run.items_first).values()
    return sorted((r for r in rows if r.source == key), key=lambda r: r.id)


# --------------------------------------------------------------------------- the tests


def test_run_is_bounded_in_time_and_memory(run: Run) -> None:
    assert run.wall_seconds < WALL_BUDGET_SECONDS, run.wall_seconds
    assert 0 < run.peak_rss_mib < MEMORY_BUDGET_MIB, run.peak_rss_mib
    slack = 2.0  # scheduling, parsing and the database write after the fetch budget ran out
    for reports in (run.reports_first, run.reports_second):
        slow = {
            k: round(r.elapsed, 2) for k, r in reports.items() if r.elapsed > TOTAL_TIMEOUT + slack
        }
        assert not slow, f"sources that took longer than the fetch budget: {slow}"
    assert run.server_errors == []


def test_every_source_was_polled_as_scheduled(run: Run) -> None:
    expected_first = set(run.good) | set(run.cases)
    assert set(run.reports_first) == expected_first
    # the second poll is a tick: the Retry-After and 410 sources are not due / disabled
    skipped = {k for k, c in run.cases.items() if c.polls == 1}
    assert set(run.reports_second) == expected_first - skipped
    for key in skipped:
        assert run.requests[key] == 1, key


def test_each_hostile_source_shows_a_clear_status_and_error(run: Run) -> None:
    problems = []
    for key, case in run.cases.items():
        src = run.final[key]
        want = {"ok", "not_modified"} if case.status == "ok" else {case.status}
        if src.status not in want:
            problems.append(f"{key}: status {src.status!r}, want {case.status!r} ({case.why})")
        if case.error is None:
            if src.last_error is not None or src.error_count != 0:
                problems.append(f"{key}: unexpected error {src.last_error!r}")
        elif case.error not in (src.last_error or ""):
            problems.append(f"{key}: last_error {src.last_error!r} lacks {case.error!r}")
        if src.enabled != case.enabled:
            problems.append(f"{key}: enabled={src.enabled}, want {case.enabled}")
        if case.status == "error" and case.second is None and src.error_count != case.polls:
            problems.append(f"{key}: error_count {src.error_count}, want {case.polls}")
    assert not problems, "\n".join(problems)


def test_hostile_sources_hold_exactly_their_real_items(run: Run) -> None:
    """No junk: failed fetches add nothing, odd-but-valid feeds add one item per entry."""
    counts = {key: len(items_of(run, key)) for key in run.cases}
    expected = {key: case.items for key, case in run.cases.items()}
    assert counts == expected


def test_good_sources_are_complete_and_healthy(run: Run) -> None:
    assert len(run.good) >= 3
    for key, count in run.good.items():
        src = run.final[key]
        assert src.status in ("ok", "not_modified"), (key, src.status, src.last_error)
        assert src.last_error is None and src.error_count == 0, key
        assert len(items_of(run, key)) == count, key
    total = sum(run.good.values()) + sum(c.items for c in run.cases.values())
    assert len(run.items_final) == total


def test_nothing_stored_is_lost(run: Run) -> None:
    """Every item of the first poll is still stored, unchanged, after the second poll."""
    assert run.items_first
    for item_id, first in run.items_first.items():
        final = run.items_final.get(item_id)
        assert final is not None, f"item {first.title!r} of {first.source} disappeared"
        assert (final.source, final.title, final.content_html) == (
            first.source,
            first.title,
            first.content_html,
        )


def test_good_feed_turning_hostile_keeps_its_items(run: Run) -> None:
    turned = [c for c in run.cases.values() if c.key.startswith("turns-")]
    assert len(turned) >= 4
    for case in turned:
        assert run.first[case.key].status == "ok", case.key
        assert run.final[case.key].status == case.status, case.key
        assert run.final[case.key].last_success_at == run.first[case.key].last_success_at
        titles = [r.title for r in items_of(run, case.key)]
        assert titles == [f"{case.key} story {i}" for i in range(4)], case.key


def test_retry_after_pushes_the_next_check_back(run: Run) -> None:
    for key, seconds in (
        ("http-503-retry-after", RETRY_AFTER_SECONDS),
        ("http-429-retry-after", RETRY_AFTER_DATE_SECONDS),
    ):
        src = run.final[key]
        assert src.next_check_at is not None
        # an HTTP-date has whole-second precision: allow the second it was rounded to
        earliest = run.first_at + timedelta(seconds=seconds - 2)
        assert src.next_check_at >= earliest, (key, src.next_check_at, earliest)
        assert src.error_count == 1
        assert run.requests[key] == 1  # the tick five minutes later left it alone
    # without Retry-After the usual (short) backoff applies and the source was retried
    for key in ("http-503", "http-429"):
        src = run.first[key]
        assert src.next_check_at is not None
        assert src.next_check_at <= run.first_at + timedelta(seconds=ERROR_BACKOFF * 1.2)
        assert run.requests[key] == 2


def test_gone_disables_the_source_and_keeps_its_items(run: Run) -> None:
    assert not run.final["http-410"].enabled
    assert run.requests["http-410"] == 1
    gone = run.final["turns-gone"]
    assert not gone.enabled and gone.status == "gone"
    assert len(items_of(run, "turns-gone")) == 4


def test_gone_source_stays_disabled_after_a_config_sync(run: Run) -> None:
    assert run.after_cli["http-410"].status == "gone"
    assert not run.after_cli["http-410"].enabled
    assert not run.after_cli["turns-gone"].enabled
    row = next(line for line in run.cli_output.splitlines() if " http-410 " in line)
    assert "(disabled)" in row


def test_permanent_redirect_survives_a_config_sync(run: Run) -> None:
    moved = run.after_cli["redirect-permanent"]
    assert moved.url == run.final["redirect-permanent"].url
    assert moved.etag is not None


def test_permanent_redirect_chain_moves_the_source(run: Run) -> None:
    src = run.first["redirect-permanent"]
    assert src.url.endswith("/hostile/moved-final"), src.url
    assert len(items_of(run, "redirect-permanent")) == 3


def test_xml_attacks_fetch_nothing_and_leak_nothing(run: Run) -> None:
    assert not [p for p in run.all_paths if p.startswith("/hostile/xxe-canary")]
    (row,) = items_of(run, "xxe")
    assert row.title.startswith("before") and row.title.endswith("after"), row.title
    for item in run.items_final.values():
        for text in (item.title, item.summary_html, item.content_html):
            assert "root:x:0:0" not in text, item.source
            assert "lollollol" not in text, item.source


def test_repeated_guids_keep_one_item_per_entry(run: Run) -> None:
    for key in ("same-guid", "same-guid-no-links"):
        titles = sorted(r.title for r in items_of(run, key))
        assert titles == [f"Same-guid entry {i}" for i in range(5)], key
        assert run.requests[key] == 2  # re-fetched and re-parsed (its body changed)
        assert {r.id for r in items_of(run, key)} == {r.id for r in items_of(run, key, final=False)}


def test_churning_guids_do_not_grow_the_source(run: Run) -> None:
    first = items_of(run, "guid-churn", final=False)
    final = items_of(run, "guid-churn")
    assert len(first) == len(final) == 4
    assert [r.id for r in first] == [r.id for r in final]
    assert run.reports_second["guid-churn"].status == "ok"
    assert run.reports_second["guid-churn"].new == 0


def test_far_future_and_far_past_dates_are_not_stored(run: Run) -> None:
    rows = items_of(run, "far-dates")
    assert len(rows) == len(FAR_DATES)
    latest = run.second_at + timedelta(days=2)
    earliest = datetime(1970, 1, 2, tzinfo=UTC)
    for row in run.items_final.values():
        assert earliest <= row.published_at <= latest, (row.source, row.title, row.published_at)
    sane = next(r for r in rows if r.title == f"Dated entry {FAR_DATES.index('yesterday')}")
    assert abs(sane.published_at - (run.first_at - timedelta(days=1))) < timedelta(minutes=5)
    # and the export does not carry them either
    assert run.snapshot_json is not None
    exported = json.loads(run.snapshot_json)["items"]
    dates = [datetime.fromisoformat(i["date_published"]) for i in exported]
    assert dates and all(earliest <= d <= latest for d in dates)


def test_ten_megabyte_entry_is_stored_within_limits(run: Run) -> None:
    huge, small = items_of(run, "big-entry")
    assert huge.title == "Huge entry" and small.title == "Small entry"
    assert 100_000 < len(huge.summary_html + huge.content_html) <= 2 * MAX_HTML_CHARS + 100


@pytest.mark.parametrize(
    "key",
    [
        "gbk-declared-as-utf8",
        "utf8-as-gbk",
        "gbk-as-utf8",
        "gbk-no-charset",
    ],
)
def test_wrong_or_missing_charset_gives_readable_titles(run: Run, key: str) -> None:
    assert [r.title for r in items_of(run, key)] == list(ZH_TITLES)


def test_invalid_utf8_bytes_damage_only_their_own_text(run: Run) -> None:
    titles = [r.title for r in items_of(run, "invalid-utf8")]
    assert titles[0] == ZH_TITLES[0] and titles[2] == ZH_TITLES[2]
    assert titles[1].startswith("小米") and titles[1].endswith("汽车月销量创新高")


def test_dns_failure_case_sends_no_query(run: Run) -> None:
    # a DNS query carries at most 255 bytes of name: longer names fail inside the resolver
    assert len(UNRESOLVABLE_HOST) > 255 and UNRESOLVABLE_HOST.endswith(".invalid")
    assert "dns" in (run.final["dns-failure"].last_error or "")


def test_cli_sources_list_shows_status_and_last_error(run: Run) -> None:
    lines = run.cli_output.splitlines()
    for key, case in run.cases.items():
        row = next((line for line in lines if f" {key} " in line), None)
        assert row is not None, f"{key} missing from `aggregator sources list`"
        src = run.final[key]
        assert f" {src.status} " in row, (key, row)
        if case.error is not None:
            assert case.error in row, (key, row)
    for key in run.good:
        assert any(f" {key} " in line for line in lines), key


# --------------------------------------------------------------------------- a held host


async def test_a_retry_after_hold_does_not_stall_the_tick(tmp_path: Path) -> None:
    """A 503 + Retry-After on one feed must not freeze polling of its host's other feeds."""
    with FeedServer() as server:
        server.handle("/busy", retry_after(503, "3600"))
        server.serve("/neighbour", good_feed("neighbour", 2))
        cases = [
            HostileCase("busy", server.url("/busy"), "503 + Retry-After 3600", "error"),
            HostileCase("neighbour", server.url("/neighbour"), "a good feed", "ok", items=2),
        ]
        config = tmp_path / "aggregator.toml"
        write_config(config, tmp_path / "aggregator.db", [], cases)
        settings = load_settings(str(config), env={})
        async with open_pipeline(settings, workers=0) as pipeline:
            repo, owner = pipeline.repo, pipeline.owner
            busy = repo.claim_source("busy", pipeline.clock.now(), owner, 60)
            assert busy is not None
            await pipeline.run([busy])  # 503 + Retry-After: the host is held for an hour
            neighbour = repo.claim_source("neighbour", pipeline.clock.now(), owner, 60)
            assert neighbour is not None
            started = time.perf_counter()
            try:
                async with asyncio.timeout(TOTAL_TIMEOUT):
                    report = await pipeline.run([neighbour])
            except TimeoutError:
                pytest.fail(
                    f"the run was still waiting after {time.perf_counter() - started:.1f} s"
                )
            # fetching or deferring the neighbour are both fine; hanging is not
            assert [r.key for r in report.sources] == ["neighbour"]
