"""The fast paths of a poll keep their promises: nothing is skipped that changed.

A real FeedServer on 127.0.0.1, real SQLite (and PostgreSQL when configured), the real
pipeline; parse calls are observed through a recording executor, store calls through a
Repository subclass that counts them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from aggregator import parse as parse_module
from aggregator.app import open_pipeline
from aggregator.config import load_settings
from aggregator.ingest import Ingested, ingest
from aggregator.model import ApplyResult, ExistingItem, Fetched, UpdatePlan
from aggregator.parsepool import LazyProcessPool
from aggregator.pipeline import Pipeline
from aggregator.settings import Settings
from aggregator.store.repo import Repository
from aggregator.store.schema import items
from tests.servers import FeedServer


def rss(*entries: tuple[str, str]) -> bytes:
    """RSS 2.0 with (guid, body) entries."""
    body = "".join(
        f"<item><title>Title {g}</title><link>https://pub.example/p/{g}</link><guid>{g}</guid>"
        f"<description>&lt;p&gt;{text}&lt;/p&gt;</description></item>"
        for g, text in entries
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Pub</title>'
        f"<link>https://pub.example/</link><description>d</description>{body}</channel></rss>"
    ).encode()


def settings_for(tmp_path: Path, db_url: str, urls: list[str]) -> Settings:
    lines = [f'database_url = "{db_url}"', "[fetch]", "per_host_delay = 0.0", "total_timeout = 5"]
    for i, url in enumerate(urls):
        lines += ["[[sources]]", f'key = "s{i}"', f'url = "{url}"']
    lines += ["[[editions]]", 'name = "all"', 'title = "All"', "max_age_days = 100000"]
    path = tmp_path / "agg.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(str(path), env={})


class Recording(ThreadPoolExecutor):
    """Runs parse calls on a thread and keeps what each parse returned (the story-feature
    jobs the pipeline also sends to the pool are run but not recorded)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.results: list[Ingested] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(
            lambda f: self.results.append(f.result()) if isinstance(f.result(), Ingested) else None
        )
        return future


class CountingRepository(Repository):
    """Counts item-plan transactions and batched state writes."""

    applies: ClassVar[int] = 0
    state_batches: ClassVar[list[int]] = []

    def apply(self, plan: UpdatePlan, now: datetime, *args: Any, **kwargs: Any) -> ApplyResult:
        type(self).applies += 1
        return super().apply(plan, now, *args, **kwargs)

    def write_source_states(self, plans: Any, owner: str | None = None) -> list[bool]:
        type(self).state_batches.append(len(plans))
        return super().write_source_states(plans, owner)


def stored(pipeline: Pipeline) -> dict[str, str]:
    """Stored content by GUID (feedparser resolves these GUIDs against the feed URL); a content
    stored empty is the summary's (``store.repo._item_values``)."""
    with pipeline.repo.engine.connect() as conn:
        rows = conn.execute(select(items.c.guid, items.c.content_html, items.c.summary_html)).all()
    return {str(guid).rsplit("/", 1)[-1]: content or summary for guid, content, summary in rows}


async def test_unchanged_body_without_validators_is_not_parsed_again(
    tmp_path: Path, db_url: str
) -> None:
    recorder = Recording()
    with FeedServer() as server:
        server.serve("/f.xml", rss(("a", "one"), ("b", "two")), validators=False)
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=0) as pipeline:
            pipeline.parse_executor = recorder
            first = await pipeline.poll_all()
            second = await pipeline.poll_all()
            src = pipeline.repo.list_sources()[0]
    recorder.shutdown()
    assert server.statuses("/f.xml") == [200, 200]  # no validators: a full body each time
    assert (first.new, second.new) == (2, 0)
    assert len(recorder.results) == 1  # the second, identical body was never parsed
    assert second.sources[0].status == "not_modified" and src.status == "not_modified"


async def test_changed_feed_skips_known_entries_and_still_sees_edits(
    tmp_path: Path, db_url: str
) -> None:
    recorder = Recording()
    with FeedServer() as server:
        server.serve("/f.xml", rss(("a", "one"), ("b", "two"), ("c", "three")))
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=0) as pipeline:
            pipeline.parse_executor = recorder
            await pipeline.poll_all()
            server.serve(
                "/f.xml", rss(("new", "fresh"), ("a", "one"), ("b", "EDITED"), ("c", "three"))
            )
            report = await pipeline.poll_all()
            html = stored(pipeline)
    recorder.shutdown()
    assert (report.new, report.updated) == (1, 1)
    changed = recorder.results[-1]
    assert len(changed.stubs) == 2  # a and c were recognised, not sanitized again
    assert {changed.items[i].title for i in changed.stubs} == {"Title a", "Title c"}
    assert "EDITED" in html["b"] and "fresh" in html["new"]
    assert "one" in html["a"] and "three" in html["c"]  # stubs never overwrite stored HTML


class StaleCache(Pipeline):
    """Hands over an entry cache of the served feed although none of its items is stored."""

    body = b""
    url = ""

    def _known_items(self, source_id: int) -> tuple[list[ExistingItem], bytes | None]:
        headers = {"content-type": "application/rss+xml; charset=utf-8"}  # as served
        got = ingest(self.body, headers, self.url, None, datetime.now(UTC))
        return [], got.cache


async def test_stale_entry_cache_falls_back_to_full_entries(tmp_path: Path, db_url: str) -> None:
    body = rss(("a", "one"), ("b", "two"))
    recorder = Recording()
    with FeedServer() as server:
        server.serve("/f.xml", body)
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=0) as pipeline:
            stale = StaleCache(
                settings, pipeline.repo, pipeline.fetcher, clock=pipeline.clock, owner="t"
            )
            stale.body, stale.url = body, server.url("/f.xml")
            stale.parse_executor = recorder
            try:
                report = await stale.poll_all()
            finally:
                stale.close()
            html = stored(pipeline)
    recorder.shutdown()
    assert report.new == 2
    assert [len(r.stubs) for r in recorder.results] == [2, 0]  # cut out first, then in full
    assert "one" in html["a"] and "two" in html["b"]


async def test_changed_feed_parses_only_its_new_and_edited_entries(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    real = parse_module._feedparse

    def counting(body: bytes, headers: dict[str, str]) -> Any:
        result = real(body, headers)
        parsed.append(len(result.get("entries") or ()))
        return result

    monkeypatch.setattr(parse_module, "_feedparse", counting)
    entries = [(f"e{i}", f"body {i}") for i in range(20)]
    with FeedServer() as server:
        server.serve("/f.xml", rss(*entries))
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=0) as pipeline:
            first = await pipeline.poll_all()
            edited = [("new", "fresh"), *entries[:5], ("e5", "EDITED"), *entries[6:]]
            server.serve("/f.xml", rss(*edited))
            second = await pipeline.poll_all()
            third = await pipeline.poll_all()  # 304: nothing parsed
            html = stored(pipeline)
    assert (first.new, second.new, second.updated, third.new) == (20, 1, 1, 0)
    assert parsed == [20, 2]  # the second body: only the new and the edited entry
    assert "EDITED" in html["e5"] and "fresh" in html["new"] and "body 7" in html["e7"]
    assert len(html) == 21


async def test_not_modified_sources_are_written_in_batches(tmp_path: Path, db_url: str) -> None:
    with FeedServer() as server:
        paths = [f"/f{i}.xml" for i in range(12)]
        for i, path in enumerate(paths):
            server.serve(path, rss((f"g{i}", f"body {i}")))
        settings = settings_for(tmp_path, db_url, [server.url(p) for p in paths])
        async with open_pipeline(settings, workers=0) as pipeline:
            repo = CountingRepository(pipeline.repo.engine)
            pipeline.repo = repo
            await pipeline.poll_all()
            before = {s.key: s for s in repo.list_sources()}
            CountingRepository.applies, CountingRepository.state_batches = 0, []
            report = await pipeline.poll_all()
            after = {s.key: s for s in repo.list_sources()}
            claimed = repo.claim_sources(list(after), datetime.now(UTC), "other", 60)
    assert [s.status for s in report.sources] == ["not_modified"] * 12
    assert CountingRepository.applies == 0  # no per-source transaction for a 304
    assert sum(CountingRepository.state_batches) == 12
    assert len(CountingRepository.state_batches) < 12  # grouped, not one each
    for i in range(12):
        old, new = before[f"s{i}"], after[f"s{i}"]
        assert new.etag == old.etag is not None  # each source keeps its own validator
        assert new.last_modified == old.last_modified is not None
        assert new.status == "not_modified" and new.error_count == 0
        assert old.last_fetched_at is not None and new.last_fetched_at is not None
        assert new.last_fetched_at >= old.last_fetched_at
        assert new.next_check_at is not None and new.next_check_at > new.last_fetched_at
    assert len(claimed) == 12  # every lease was cleared


# ------------------------------------------------------------------ the parse pool


def _worker_state() -> tuple[object, bool]:
    return sys.modules["__main__"].__dict__.get("__file__"), "aggregator.cli" in sys.modules


def test_parse_workers_do_not_import_the_program() -> None:
    main = sys.modules["__main__"]
    before = (main.__dict__.get("__file__"), main.__dict__.get("__spec__"))
    pool = LazyProcessPool(1)
    try:
        main_file, cli_loaded = pool.submit(_worker_state).result(timeout=60)
    finally:
        pool.shutdown()
    assert main_file is None and not cli_loaded
    assert (main.__dict__.get("__file__"), main.__dict__.get("__spec__")) == before


def test_the_parse_workers_preload_leaves_out_the_config_validator() -> None:
    """What the forkserver imports for the workers does not load pydantic (0.1 s and 6 MB
    each start: only ``config.py`` validates; the ``not`` alias is tested in test_rules)."""
    import subprocess

    code = (
        "import sys, aggregator.parsepreload\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_render_keys_are_computed_by_started_workers_and_inline_otherwise() -> None:
    from aggregator.pipeline import POOL_KEYS_MIN
    from aggregator.related import summary_keys_many

    inputs = [
        ((f"Tencent {n} DeepSeek V3.{n}",), f"<p>Nvidia H{n} 腾讯 {n}</p>") for n in range(80)
    ]
    assert len(inputs) >= POOL_KEYS_MIN
    pool = LazyProcessPool(2)
    pipeline = Pipeline.__new__(Pipeline)
    pipeline.parse_executor, pipeline._workers = pool, pool.workers
    try:
        assert pipeline._keys(inputs) == summary_keys_many(inputs)
        assert not pool.started  # a lazy pool is not started for them
        pool.warm_up()
        sent: list[int] = []
        real_submit = pool.submit

        def submit(fn: Any, *args: Any) -> Any:
            sent.append(len(args[0]))
            return real_submit(fn, *args)

        pool.submit = submit  # type: ignore[method-assign]
        assert pipeline._keys(inputs) == summary_keys_many(inputs)
        assert sum(sent) == len(inputs) and len(sent) > 1  # spread over the workers
        sent.clear()
        assert pipeline._keys(inputs[:3]) == summary_keys_many(inputs[:3]) and not sent
    finally:
        pool.shutdown()


def test_parse_pool_replaces_a_dead_worker() -> None:
    pool = LazyProcessPool(1)
    try:
        assert pool.submit(int, "7").result(timeout=60) == 7
        with pytest.raises(BrokenProcessPool):
            pool.submit(os._exit, 1).result(timeout=60)
        assert pool.submit(int, "8").result(timeout=60) == 8
        assert pool.restarts == 1
    finally:
        pool.shutdown()


def _worker_pid() -> int:
    return os.getpid()


async def test_one_shot_polls_stop_the_workers_before_rendering(
    tmp_path: Path, db_url: str
) -> None:
    with FeedServer() as server:
        server.serve("/f.xml", rss(("a", "one")))
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=1) as pipeline:
            pool = pipeline.parse_executor
            assert isinstance(pool, LazyProcessPool) and not pipeline.keep_workers
            first = await pipeline.poll_all()
            assert first.new == 1 and first.rendered > 0 and not pool.started
            server.serve("/f.xml", rss(("a", "one"), ("b", "two")))
            second = await pipeline.poll_all()  # the pool starts again when needed
            assert second.new == 1 and not pool.started
        async with open_pipeline(settings, workers=1, warm=True) as daemon:
            assert daemon.keep_workers
            await daemon.poll_all()
            assert isinstance(daemon.parse_executor, LazyProcessPool)
            assert daemon.parse_executor.started  # the daemon keeps its workers between ticks


def test_a_pool_started_soon_is_ready_once_and_restarts_after_shutdown() -> None:
    pool = LazyProcessPool(2)
    try:
        assert not pool.started and not pool.ready
        thread = pool.start_soon()
        pool.warm_up()  # waits for the start under way instead of starting a second one
        assert pool.ready
        thread.join(timeout=60)
        pids = {pool.submit(_worker_pid).result(timeout=60) for _ in range(8)}
        assert 1 <= len(pids) <= 2 and os.getpid() not in pids
        pool.shutdown()
        assert not pool.started and not pool.ready
        pool.warm_up()  # a later run starts it afresh
        assert pool.ready and pool.submit(int, "5").result(timeout=60) == 5
    finally:
        pool.shutdown()


async def test_big_one_shot_polls_start_their_workers_during_start_up(
    tmp_path: Path, db_url: str
) -> None:
    from aggregator.app import EAGER_POOL_SOURCES

    with FeedServer() as server:
        server.serve("/f.xml", rss(("a", "one")))
        few = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(few, workers=1) as pipeline:
            pool = pipeline.parse_executor
            assert isinstance(pool, LazyProcessPool) and not pool.started
        urls = [server.url(f"/f.xml?n={n}") for n in range(EAGER_POOL_SOURCES)]
        many = settings_for(tmp_path, db_url, urls)
        async with open_pipeline(many, workers=1) as pipeline:
            pool = pipeline.parse_executor
            assert isinstance(pool, LazyProcessPool) and pool.started  # before any run
            report = await pipeline.poll_all()
            assert report.ok == EAGER_POOL_SOURCES and not pool.started  # stopped as before
            assert report.new >= 1
            pool.start_soon()
            quiet = await pipeline.poll_all()  # nothing new: no render, so no stop to wait for
            assert quiet.new == quiet.updated == quiet.rendered == 0 and pool.started
        assert not pool.started  # the command's exit stopped it


def test_planner_reads_get_their_own_thread_unless_the_database_is_in_memory() -> None:
    from sqlalchemy import make_url

    from aggregator.pipeline import _shared_database

    assert _shared_database(make_url("sqlite:////var/lib/aggregator/a.db"))
    assert not _shared_database(make_url("sqlite://"))
    assert not _shared_database(make_url("sqlite:///:memory:"))
    assert not _shared_database(make_url("sqlite:///file:x?mode=memory&uri=true"))
    assert _shared_database(make_url("postgresql+psycopg://u@127.0.0.1:1/db"))


def test_poll_json_reports_counts_and_timings(tmp_path: Path) -> None:
    import json

    from tests.clirun import run_cli

    with FeedServer() as server:
        server.serve("/f.xml", rss(("a", "one"), ("b", "two")))
        settings_for(tmp_path, f"sqlite:///{tmp_path / 'agg.db'}", [server.url("/f.xml")])
        first = json.loads(run_cli(tmp_path / "agg.toml", "poll", "--json").stdout)
        second = json.loads(run_cli(tmp_path / "agg.toml", "poll", "--json").stdout)
    assert (first["sources"], first["ok"], first["failed"], first["new"]) == (1, 1, 0, 2)
    assert first["snapshots"] > 0 and first["cycle_seconds"] >= first["render_seconds"] > 0
    assert (second["new"], second["snapshots"], second["render_seconds"]) == (0, 0, 0)


async def test_planning_with_known_rows_equals_looking_everything_up(
    tmp_path: Path, db_url: str
) -> None:
    """Rows of items known stored unchanged are taken from the recent-items read instead of
    being looked up again; the plan must be the one a lookup of every key and URL gives,
    including for new items sharing a stored item's URL under another GUID and for edits."""
    first = rss(("a", "one"), ("b", "two"), ("c", "three"), ("d", "four"))
    # b edited; "b2" is b's URL under a new GUID (dropped as the same item); "e" is new;
    # "c" edited and republished under a new GUID but its old URL (matched by URL)
    second = (
        first.replace(b"two", b"EDITED")
        .replace(b"<guid>c</guid>", b"<guid>c-new</guid>")
        .replace(b"three", b"THREE")
    )
    second = second.replace(
        b"</channel>",
        b"<item><title>Title e</title><link>https://pub.example/p/e</link><guid>e</guid>"
        b"<description>five</description></item>"
        b"<item><title>Title b2</title><link>https://pub.example/p/b</link><guid>b2</guid>"
        b"<description>dup</description></item></channel>",
    )
    with FeedServer() as server:
        server.serve("/f.xml", first)
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=0) as pipeline:
            await pipeline.poll_all()
            server.serve("/f.xml", second)
            source = pipeline.repo.list_sources()[0]
            fetched = await pipeline.fetcher.fetch(source.url)
            assert isinstance(fetched, Fetched)
            now = datetime.now(UTC)
            ingested = ingest(fetched.body, fetched.headers, fetched.url, None, now)
            recent, _ = pipeline._known_items(source.id)
            assert len(recent) == 4
            fast = await pipeline._plan_items(source, fetched, ingested, "h", now, recent)
            slow = await pipeline._plan_items(source, fetched, ingested, "h", now)
    assert fast.intents == slow.intents
    summary = sorted((i.action, i.item.title) for i in fast.intents)
    assert summary == [("insert", "Title e"), ("update", "Title b"), ("update", "Title c")]


# ------------------------------------------------------------------ planning in a worker


async def test_changed_feed_is_planned_in_a_worker_as_in_process(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With parse workers, a changed body is planned whole in a worker (its own read
    connection), with the outcome the in-process path gives the same feeds
    (``test_changed_feed_skips_known_entries_and_still_sees_edits``); the main process opens
    no reader of its own."""
    from aggregator import planchanged

    calls: list[str] = []
    real = Pipeline._plan_in_worker

    async def spy(self: Pipeline, source: Any, *args: Any) -> UpdatePlan:
        calls.append(source.key)
        return await real(self, source, *args)

    monkeypatch.setattr(Pipeline, "_plan_in_worker", spy)
    readers_before = dict(planchanged._readers)
    with FeedServer() as server:
        server.serve("/f.xml", rss(("a", "one"), ("b", "two"), ("c", "three")))
        settings = settings_for(tmp_path, db_url, [server.url("/f.xml")])
        async with open_pipeline(settings, workers=1, warm=True) as pipeline:
            first = await pipeline.poll_all()
            server.serve(
                "/f.xml", rss(("new", "fresh"), ("a", "one"), ("b", "EDITED"), ("c", "three"))
            )
            second = await pipeline.poll_all()
            third = await pipeline.poll_all()  # 304: nothing to plan
            html = stored(pipeline)
    assert calls == ["s0", "s0"]  # both changed bodies, and nothing else
    assert (first.new, second.new, second.updated, third.new) == (3, 1, 1, 0)
    assert "EDITED" in html["b"] and "fresh" in html["new"]
    assert "one" in html["a"] and "three" in html["c"]  # stubs never overwrite stored HTML
    assert planchanged._readers == readers_before  # the reads happened in the worker


def test_plan_changed_parses_in_full_when_a_cached_entry_was_stale() -> None:
    """The worker path's fallback: an entry cache whose entries are not stored would make
    the plan write identity stubs, so the body is ingested again in full."""
    import random

    from aggregator.model import SourceState
    from aggregator.planchanged import plan_changed
    from aggregator.settings import ScheduleSettings

    url = "http://127.0.0.1:9/f.xml"
    body = rss(("a", "one"), ("b", "two"))
    headers = {"content-type": "application/rss+xml; charset=utf-8"}
    now = datetime.now(UTC)
    stale = ingest(body, headers, url, None, now).cache
    assert stale is not None

    class Reads:
        def known_items(self, source_id: int, limit: int) -> tuple[list[ExistingItem], bytes]:
            return [], stale

        def planner_lookups(self, *args: Any) -> tuple[list[ExistingItem], set[str]]:
            return [], set()

        def tombstoned(self, source_id: int, item_keys: Any) -> set[str]:
            return set()

    source = SourceState(id=1, key="s", url=url, name="S")
    result = Fetched(url=url, status_code=200, headers=headers, body=body, elapsed=0.0)
    plan = plan_changed(Reads(), source, result, "h", now, ScheduleSettings(), random.Random(1))
    assert [i.action for i in plan.intents] == ["insert", "insert"]
    assert sorted(i.item.summary_html for i in plan.intents) == ["<p>one</p>", "<p>two</p>"]
