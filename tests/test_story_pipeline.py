"""Text story matching in the poll (``[stories] match_text = true``), end to end.

Real feeds from a FeedServer on 127.0.0.1, the real pipeline on SQLite and PostgreSQL: matching
runs in the apply's transaction, with features prepared in a parse worker when there is a pool
(``workers=1``) or inline (``workers=0``); an edited headline is re-indexed and matched again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from aggregator.app import open_pipeline
from aggregator.config import load_settings
from aggregator.dedupe.prepare import item_band_keys, item_match_text
from aggregator.metrics import build_metrics
from aggregator.settings import Settings
from aggregator.store.schema import items, story_bands
from tests.clirun import run_cli
from tests.embedserver import EmbedServer
from tests.servers import FeedServer

NOW = datetime.now(UTC).replace(microsecond=0)
SMOG = "Heavy smog hits north China city, flights cancelled at Harbin airport"


def feed(*entries: tuple[str, str, str]) -> bytes:
    """A JSON Feed of ``(id, url, title)`` entries published an hour ago."""
    published = (NOW - timedelta(hours=1)).isoformat()
    return json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "T",
            "items": [
                {"id": i, "url": u, "title": t, "content_text": t, "date_published": published}
                for i, u, t in entries
            ],
        }
    ).encode()


def settings_for(
    tmp_path: Path, db_url: str, urls: list[str], stories: list[str] | None = None
) -> Settings:
    lines = [f'database_url = "{db_url}"', "[fetch]", "per_host_delay = 0.0", "total_timeout = 5"]
    lines += ["[stories]", "match_text = true", *(stories or [])]
    for i, url in enumerate(urls):
        lines += ["[[sources]]", f'key = "s{i}"', f'url = "{url}"']
    lines += ["[[editions]]", 'name = "all"', 'title = "All"', "max_age_days = 100000"]
    path = tmp_path / "agg.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(str(path), env={})


@pytest.mark.parametrize("workers", [0, 1])
async def test_poll_matches_reworded_reports_and_rematches_an_edit(
    tmp_path: Path, db_url: str, workers: int
) -> None:
    with FeedServer() as server:
        server.serve("/a.json", feed(("a1", "https://a.example/1", SMOG)), "application/json")
        server.serve(
            "/b.json",
            feed(("b1", "https://b.example/1", SMOG.title() + " - report")),
            "application/json",
        )
        typo = "Hvy smgo hit nrth Chnia cty, fligts cancled at Harbn airprt"
        server.serve("/c.json", feed(("c1", "https://c.example/1", typo)), "application/json")
        urls = [server.url(f"/{k}.json") for k in "abc"]
        settings = settings_for(tmp_path, db_url, urls)
        metrics = build_metrics()
        async with open_pipeline(settings, workers=workers, metrics=metrics) as pipeline:
            await pipeline.poll_all()
            stories = pipeline.repo.recent_stories(NOW - timedelta(days=7), 10)
            groups = {tuple(sorted(i.source_key for i in s.items)) for s in stories}
            assert groups == {("s0", "s1"), ("s2",)}
            (alone,) = [s.id for s in stories if len(s.items) == 1]
            typo_keys = indexed_keys(pipeline.repo.engine, alone)
            server.serve(  # the publisher corrects its headline: same id, same URL
                "/c.json", feed(("c1", "https://c.example/1", SMOG)), "application/json"
            )
            report = await pipeline.poll_all()
            assert report.updated == 1 and report.new == 0
            (story,) = pipeline.repo.recent_stories(NOW - timedelta(days=7), 10)
            indexed = indexed_keys(pipeline.repo.engine, story.id)
            current = current_keys(pipeline.repo.engine)
    assert sorted(i.source_key for i in story.items) == ["s0", "s1", "s2"]
    assert typo_keys and current <= indexed
    assert not (typo_keys - current) & indexed  # the typo's keys went when it was re-indexed
    merged = metrics.registry.get_sample_value("aggregator_stories_merged_total")
    assert merged == 2  # s1 joined s0 in the first poll, the corrected s2 in the second


def indexed_keys(engine: Engine, story_id: int) -> set[int]:
    """Band keys stored for ``story_id``."""
    with engine.connect() as conn:
        query = select(story_bands.c.band_key).where(story_bands.c.story_id == story_id)
        return set(conn.execute(query).scalars())


def current_keys(engine: Engine) -> set[int]:
    """Band keys of every stored item's current text."""
    i = items.c
    with engine.connect() as conn:
        rows = conn.execute(select(i.title, i.summary_html, i.language, i.published_at))
        return {k for r in rows for k in item_band_keys(item_match_text(*r))}


@pytest.mark.parametrize("backend", ["none", "concepts", "embeddings"])
async def test_a_configured_semantic_backend_joins_reworded_reports(
    tmp_path: Path, db_url: str, backend: str
) -> None:
    """``[stories] semantic`` from the config file reaches the poll and ``stories explain``:
    the test backend, and the shipped embeddings backend against a real embeddings server."""
    probe = "Senate panel opens probe into Boeing 737 MAX door plug blowout"
    inquiry = "Senate committee launches investigation into Boeing 737 MAX door plug blowout"
    synonyms = [["panel", "committee"], ["probe", "investigation"], ["opens", "launches"]]
    with FeedServer() as server, EmbedServer(synonyms) as embedder:
        stories = ["window_days = 2.5"]
        if backend == "concepts":
            stories += [
                'semantic = "tests.semantic_fake:make"',
                "[stories.semantic_options]",
                f"synonyms = {json.dumps(synonyms)}",
            ]
        elif backend == "embeddings":
            stories += [
                'semantic = "aggregator.dedupe.embeddings:make"',
                "[stories.semantic_options]",
                f'base_url = "{embedder.base_url}"',
                'model = "test-embed"',
            ]
        server.serve("/a.json", feed(("a1", "https://a.example/1", probe)), "application/json")
        server.serve("/b.json", feed(("b1", "https://b.example/1", inquiry)), "application/json")
        urls = [server.url("/a.json"), server.url("/b.json")]
        settings = settings_for(tmp_path, db_url, urls, stories)
        async with open_pipeline(settings, workers=0) as pipeline:
            await pipeline.poll_all()
            found = pipeline.repo.recent_stories(NOW - timedelta(days=7), 10)
        groups = sorted(tuple(sorted(i.source_key for i in s.items)) for s in found)
        assert groups == ([("s0",), ("s1",)] if backend == "none" else [("s0", "s1")])
        if backend == "embeddings":  # the batch's texts went in one request, before the pair
            assert [sorted(r["input"]) for r in embedder.requests] == [sorted([probe, inquiry])]
        out = run_cli(tmp_path / "agg.toml", "stories", "explain", "https://b.example/1").stdout
    assert "window ±2.5 days" in out  # the configured window, not the default 3 days
    verdict = {
        "none": "semantic (",
        "concepts": "semantic (concepts): similarity 1.00 >= 0.80",
        "embeddings": "semantic (embeddings test-embed): similarity 1.00 >= 0.85",
    }[backend]
    assert (verdict in out) is (backend != "none"), out
    if backend == "embeddings":
        assert len(embedder.requests) == 2  # and the CLI asked the endpoint again
