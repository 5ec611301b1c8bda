"""End to end: publishers and an OpenAI-compatible model, both real servers on 127.0.0.1.

Polls a local feed, runs enrichment passes against ``tests.llmserver.LLMServer`` and reads the
exported JSON Feed snapshot, on SQLite and (with ``AGGREGATOR_TEST_POSTGRES_URL``) PostgreSQL:

1. the model answers: every story gets its LLM card, marked AI-generated in the export;
2. the model fails (500), then is slow (beyond the timeout): stories polled meanwhile are
   exported at once by the poll itself (the model is not called by polling), get their
   extractive card from the next pass even while the model hangs, and are retried later;
3. the model recovers: the next due pass gives them their LLM card;
4. the daily token budget stops calls when reached and lets them resume the next UTC day.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator.app import open_pipeline
from aggregator.clock import FixedClock
from aggregator.config import load_settings
from aggregator.enrich.worker import Enricher, open_enricher
from aggregator.pipeline import Pipeline
from aggregator.settings import Settings
from aggregator.store.enrichments import EnrichmentStore
from tests.llmserver import LLMServer
from tests.servers import FeedServer

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ITEMS = [  # (guid, title, description)
    (
        "101",
        "腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元",
        "IT之家 11 月 28 日消息，据报道，腾讯和阿里巴巴正在洽谈投资深度求索。",
    ),
    (
        "102",
        "Nvidia ships Blackwell to cloud providers",
        "Nvidia started shipping Blackwell GPUs. Cloud providers get them first.",
    ),
    ("103", "小米发布新款手环，售价 249 元", "小米今日发布新款手环。续航 21 天。"),
    (
        "104",
        "Apple releases iOS 26.1 with a new Photos app",
        "Apple released iOS 26.1 today. The update redesigns Photos.",
    ),
    ("105", "英伟达发布新一代 AI 芯片", "英伟达今日发布新一代数据中心芯片，面向大模型训练。"),
    ("106", "OpenAI opens an office in Tokyo", "OpenAI opened an office in Tokyo. It hires."),
    ("107", "华为发布鸿蒙新版本", "华为今日发布鸿蒙新版本。新增多项功能。"),
]


def rss(count: int) -> bytes:
    """A feed holding the first ``count`` of ``ITEMS``."""
    entries = "".join(
        f"<item><title>{title}</title><link>https://pub.example/{n}</link>"
        f"<guid>https://pub.example/{n}</guid><pubDate>Sat, 28 Nov 2026 08:{i:02d}:00 GMT</pubDate>"
        f"<description>{body}</description></item>"
        for i, (n, title, body) in enumerate(ITEMS[:count])
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Pub</title>'
        f"<link>https://pub.example/</link>{entries}</channel></rss>"
    ).encode()


def write_settings(tmp_path: Path, db_url: str, feed_url: str, llm_url: str) -> Settings:
    lines = [
        f'database_url = "{db_url}"',
        "[fetch]",
        "per_host_delay = 0.0",
        "[enrich]",
        "llm_enabled = true",
        f'llm_base_url = "{llm_url}"',
        'llm_model = "fake-model"',
        "timeout = 0.4",
        "max_retries = 1",
        "retry_base_seconds = 600",
        "llm_max_output_tokens = 200",
        "concurrency = 2",
        "[[sources]]",
        'key = "pub"',
        'name = "Pub"',
        f'url = "{feed_url}"',
        "[[editions]]",
        'name = "all"',
        'title = "All"',
        "max_age_days = 100000",
    ]
    path = tmp_path / "agg.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(str(path), env={"AGGREGATOR_ENRICH_LLM_API_KEY": "sk-e2e"})


def exported(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """The JSON Feed snapshot's items by title: each item's ``_aggregator.card`` (or None)."""
    snap = pipeline.repo.get_snapshot("all", "json")
    assert snap is not None
    feed = json.loads(snap.body)
    return {it["title"]: it["_aggregator"].get("card") for it in feed["items"]}


def backends(pipeline: Pipeline) -> dict[str, str | None]:
    """Each exported story's card backend (None: no card)."""
    return {t: (c or {}).get("backend") for t, c in exported(pipeline).items()}


def title(n: int) -> str:
    return ITEMS[n][1]


async def test_cards_survive_a_failing_slow_and_over_budget_model(
    tmp_path: Path, db_url: str
) -> None:
    clock = FixedClock(T0)
    with FeedServer() as feeds, LLMServer() as llm:
        feeds.serve("/feed.xml", rss(2), content_type="application/rss+xml")
        settings = write_settings(tmp_path, db_url, feeds.url("/feed.xml"), llm.base_url)
        async with open_pipeline(settings, clock=clock, workers=0) as pipeline:

            def rerender() -> Any:
                return pipeline.run_in_db(pipeline.render_editions)

            async with open_enricher(
                settings, pipeline.repo.engine, clock=clock, rerender=rerender
            ) as enricher:
                await _answers(pipeline, enricher, llm)
                await _fails_then_slow(pipeline, enricher, llm, feeds)
                await _recovers(pipeline, enricher, llm, clock)
            await _budget(pipeline, settings, llm, feeds, clock)


async def _answers(pipeline: Pipeline, enricher: Enricher, llm: LLMServer) -> None:
    """1. The model answers: the stories get their LLM card, exported as AI-generated."""
    await pipeline.poll_all()
    assert backends(pipeline) == {title(0): None, title(1): None}  # published before any card
    report = await enricher.run_once()
    assert (report.cards, report.llm_cards, report.llm_failed) == (2, 2, 0)
    assert llm.calls() == 2 and llm.headers[0]["authorization"] == "Bearer sk-e2e"
    cards = exported(pipeline)
    zh, en = cards[title(0)], cards[title(1)]
    assert zh is not None and en is not None
    assert zh["backend"] == "llm" and zh["ai_generated"] is True and zh["model"] == "fake-model-1"
    assert zh["tldr"] == f"Summary of: {title(0)}"
    assert zh["title"] == "Translated headline" and en["title"] is None  # only foreign stories
    assert zh["key_takeaways"] == ["First point", "Second point"] and "Tencent" in zh["tags"]
    store = EnrichmentStore(pipeline.repo.engine)
    assert store.usage("2026-11-28").tokens == 2 * 200  # settled to the reported usage
    assert (await enricher.run_once()).looked_at == 0  # once per story: nothing more to do
    assert llm.calls() == 2


async def _fails_then_slow(
    pipeline: Pipeline, enricher: Enricher, llm: LLMServer, feeds: FeedServer
) -> None:
    """2. The model fails, then hangs: new stories still publish and get extractive cards."""
    llm.mode = "http_500"
    feeds.serve("/feed.xml", rss(3), content_type="application/rss+xml")
    calls = llm.calls()
    started = time.monotonic()
    await pipeline.poll_all()
    assert time.monotonic() - started < 2.0 and llm.calls() == calls  # polling never asks it
    assert backends(pipeline)[title(2)] is None  # exported on time, without a card
    report = await enricher.run_once()
    assert (report.cards, report.llm_cards, report.llm_failed) == (1, 0, 1)
    assert llm.calls() == calls + 2  # the call and its one retry
    assert backends(pipeline)[title(2)] == "extractive"
    assert exported(pipeline)[title(2)]["tldr"] == "小米今日发布新款手环。续航 21 天。"
    assert backends(pipeline)[title(0)] == "llm"  # earlier cards are untouched
    stored = pipeline.repo.recent_stories(T0 - timedelta(days=9), 50)
    failed = next(s for s in stored if s.items[0].title == title(2))
    state = EnrichmentStore(pipeline.repo.engine).get(failed.id)
    assert state is not None and state.llm_status == "error" and state.llm_attempts == 1
    assert state.llm_last_error is not None and "http_500" in state.llm_last_error
    assert state.llm_next_attempt_at == T0 + timedelta(seconds=600)

    llm.mode = "slow"
    llm.delay = 3.0
    feeds.serve("/feed.xml", rss(4), content_type="application/rss+xml")
    calls = llm.calls()
    started = time.monotonic()
    await pipeline.poll_all()
    assert time.monotonic() - started < 2.0 and llm.calls() == calls
    assert backends(pipeline)[title(3)] is None
    task = asyncio.create_task(enricher.run_once())
    while llm.calls() == calls and not task.done():  # wait for the model call to hang
        await asyncio.sleep(0.01)
    assert not task.done()
    assert backends(pipeline)[title(3)] == "extractive"  # exported while the model hangs
    started = time.monotonic()
    report = await task
    assert time.monotonic() - started < 1.5  # bounded by timeout x attempts, not the delay
    assert (report.cards, report.llm_failed) == (1, 1) and "timeout" in report.errors[0]
    assert llm.calls() == calls + 2  # the earlier failure is not due yet: not asked again


async def _recovers(
    pipeline: Pipeline, enricher: Enricher, llm: LLMServer, clock: FixedClock
) -> None:
    """3. The model recovers: once their retry is due, the stories get their LLM card."""
    llm.mode = "good"
    assert (await enricher.run_once()).looked_at == 0  # retries not due yet
    clock.advance(601)
    calls = llm.calls()
    report = await enricher.run_once()
    assert (report.llm_cards, report.llm_failed) == (2, 0)
    assert llm.calls() == calls + 2
    assert set(backends(pipeline).values()) == {"llm"}
    assert exported(pipeline)[title(3)]["tldr"] == f"Summary of: {title(3)}"


async def _budget(
    pipeline: Pipeline, settings: Settings, llm: LLMServer, feeds: FeedServer, clock: FixedClock
) -> None:
    """4. The daily budget: one call fits, then calls stop until 00:00 UTC."""
    clock.current = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)  # a new day, a fresh budget
    llm.usage = (900, 600)  # each call reports 1500 tokens
    es = replace(settings.enrich, daily_token_budget=1500, concurrency=1)
    tight = replace(settings, enrich=es)

    def rerender() -> Any:
        return pipeline.run_in_db(pipeline.render_editions)

    feeds.serve("/feed.xml", rss(7), content_type="application/rss+xml")
    await pipeline.poll_all()
    calls = llm.calls()
    async with open_enricher(tight, pipeline.repo.engine, clock=clock, rerender=rerender) as e:
        report = await e.run_once()
        assert (report.cards, report.llm_cards, report.over_budget) == (3, 1, 2)
        assert llm.calls() == calls + 1  # refused calls are never sent
        assert "daily budget reached" in report.errors[0]
        shown = backends(pipeline)
        assert sorted(shown[title(n)] or "" for n in (4, 5, 6)) == ["extractive", "extractive",
                                                                    "llm"]  # fmt: skip
        store = EnrichmentStore(pipeline.repo.engine)
        assert store.usage("2026-11-29").tokens == 1500 and store.usage("2026-11-29").refused == 2
        clock.advance(3600)
        assert (await e.run_once()).looked_at == 0  # waits for the next UTC day
        assert llm.calls() == calls + 1
        clock.current = datetime(2026, 11, 30, 0, 0, 1, tzinfo=UTC)
        report = await e.run_once()
        assert (report.llm_cards, report.over_budget) == (1, 1)  # one more fits in the new day
        assert llm.calls() == calls + 2
