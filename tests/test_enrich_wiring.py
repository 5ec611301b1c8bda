"""Enrichment wiring: the ``[enrich]`` config checks, the daemon's scheduled job, and
``aggregator enrich`` on the command line (real feed and model servers on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.app import open_pipeline
from aggregator.cli import app
from aggregator.config import load_settings
from aggregator.daemon import Runner
from aggregator.enrich.worker import open_enricher
from aggregator.errors import ConfigError
from aggregator.metrics import build_metrics
from aggregator.store import Repository, make_engine
from tests.clirun import run_cli
from tests.llmserver import LLMServer
from tests.servers import FeedServer
from tests.test_enrich_e2e import rss

BASE = ["[[editions]]", 'name = "all"', 'title = "All"', "max_age_days = 100000"]


def config(tmp_path: Path, *lines: str, feed: str | None = None, db: str | None = None) -> Path:
    head = [f'database_url = "{db or "sqlite:///" + str(tmp_path / "a.db")}"']
    src = ["[[sources]]", 'key = "pub"', f'url = "{feed}"'] if feed else []
    path = tmp_path / "agg.toml"
    path.write_text("\n".join([*head, *lines, *src, *BASE]) + "\n", encoding="utf-8")
    return path


def counts(stdout: str) -> list[int]:
    """The numbers of the summary table's row."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{stdout}")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["[enrich]", "llm_enabled = true"], "enrich.llm_base_url: llm_enabled needs"),
        (["[enrich]", "llm_enabled = true", 'llm_base_url = "ftp://x"'], "enrich.llm_base_url"),
        (
            ["[enrich]", "llm_enabled = true", 'llm_base_url = "http://127.0.0.1:1/v1"'],
            "enrich.llm_model: llm_enabled needs a model name",
        ),
        (["[enrich]", 'llm_response_format = "xml"'], "enrich.llm_response_format: use one of"),
        (["[enrich]", "daily_token_budget = 0"], "enrich.daily_token_budget: must be positive"),
        (["[enrich]", "concurrency = 0"], "enrich.concurrency: must be positive"),
        (["[enrich]", "max_retries = -1"], "enrich.max_retries: must not be negative"),
        (["[enrich]", 'language = "english!"'], "enrich.language: expected a language tag"),
        (["[enrich]", "daily_cost_budget = 5.0"], "enrich.daily_cost_budget: set price_per"),
        (["[enrich]", "llm_enable = true"], "enrich.llm_enable"),  # a typo is an error
    ],
)
def test_enrich_config_errors_name_the_key(tmp_path: Path, lines: list[str], message: str) -> None:
    if "daily_cost_budget" in message:
        lines = [*lines, "llm_enabled = true", 'llm_base_url = "http://h/v1"', 'llm_model = "m"']
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config(tmp_path, *lines)), env={})
    assert message in str(caught.value) and "agg.toml" in str(caught.value)


def test_enrich_defaults_and_environment(tmp_path: Path) -> None:
    path = config(tmp_path)
    s = load_settings(str(path), env={})
    assert s.enrich.enabled and not s.enrich.llm_enabled and s.enrich.language == "en"
    env = {"AGGREGATOR_ENRICH_LLM_API_KEY": "sk-env", "AGGREGATOR_ENRICH_DAILY_TOKEN_BUDGET": "7"}
    s = load_settings(str(path), env=env)
    assert s.enrich.llm_api_key == "sk-env" and s.enrich.daily_token_budget == 7
    shipped = load_settings("config/aggregator.toml", env={})
    assert shipped.enrich.enabled and not shipped.enrich.llm_enabled


LLM_COUNTED = b'aggregator_enrichments_total{outcome="llm"} 3.0'


async def test_the_daemon_runs_enrichment_as_its_own_scheduled_job(tmp_path: Path) -> None:
    with FeedServer() as feeds, LLMServer() as llm:
        feeds.serve("/feed.xml", rss(3), content_type="application/rss+xml")
        lines = ["[fetch]", "per_host_delay = 0.0", "[enrich]", "interval_seconds = 0.3",
                 "llm_enabled = true", f'llm_base_url = "{llm.base_url}"', 'llm_model = "m"',
                 "timeout = 2"]  # fmt: skip
        settings = load_settings(str(config(tmp_path, *lines, feed=feeds.url("/feed.xml"))), {})
        metrics = build_metrics()
        async with open_pipeline(settings, workers=0, metrics=metrics) as pipeline:
            rerender = lambda: pipeline.run_in_db(pipeline.render_editions)  # noqa: E731
            async with open_enricher(
                settings, pipeline.repo.engine, clock=pipeline.clock, rerender=rerender
            ) as enricher:
                runner = Runner(pipeline, 0.2, enricher)
                job = runner.scheduler.get_job("enrich")
                assert job is not None and job.trigger.interval.total_seconds() == 0.3
                assert Runner(pipeline, 0.2).scheduler.get_job("enrich") is None
                runner.start()
                try:
                    deadline = time.monotonic() + 10
                    cards: list[object] = []
                    while time.monotonic() < deadline:
                        snap = pipeline.repo.get_snapshot("all", "json")
                        if snap is not None:
                            items = json.loads(snap.body)["items"]
                            cards = [(it["_aggregator"].get("card") or {}).get("backend")
                                     for it in items]  # fmt: skip
                            counted = LLM_COUNTED in metrics.render()
                            if cards == ["llm"] * 3 and counted:
                                break
                        await asyncio.sleep(0.05)
                finally:
                    await runner.stop()
    assert cards == ["llm"] * 3
    assert llm.calls() == 3  # once per story, however many passes ran
    assert LLM_COUNTED in metrics.render()  # /metrics: aggregator_enrichments_total


def test_enrich_command_runs_one_pass(tmp_path: Path) -> None:
    with FeedServer() as feeds:
        feeds.serve("/feed.xml", rss(3), content_type="application/rss+xml")
        path = config(tmp_path, "[fetch]", "per_host_delay = 0.0", feed=feeds.url("/feed.xml"))
        run_cli(path, "poll")
        done = run_cli(path, "enrich", "--limit", "2")
    assert "enrichment pass" in done.stdout
    assert counts(done.stdout) == [2, 2, 0, 0, 0, 1]  # stories, cards, LLM..., renders
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        repo = Repository(engine)
        cards = [s.card for s in repo.recent_stories(datetime(2000, 1, 1, tzinfo=UTC), 10)]
        snap = repo.get_snapshot("all", "json")
    finally:
        engine.dispose()
    assert sorted(c.backend if c else "none" for c in cards) == ["extractive"] * 2 + ["none"]
    assert snap is not None  # re-rendered with the cards:
    exported = [it["_aggregator"].get("card") for it in json.loads(snap.body)["items"]]
    assert sum(c is not None and c["backend"] == "extractive" for c in exported) == 2


def test_enrich_command_refuses_when_switched_off(tmp_path: Path) -> None:
    path = config(tmp_path, "[enrich]", "enabled = false")
    result = CliRunner().invoke(app, ["enrich", "--config", str(path)])
    assert result.exit_code == 2
    assert "enrich.enabled" in result.output
