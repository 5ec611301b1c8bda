"""The runner: failures stay with their source; a whole-network outage is not held against any."""

from __future__ import annotations

import socket
from pathlib import Path

from aggregator.app import open_pipeline
from aggregator.config import load_settings
from aggregator.metrics import build_metrics
from tests.servers import FeedServer

DATA = Path(__file__).resolve().parent / "data" / "e2e"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_for(tmp_path: Path, db_url: str, urls: list[str]):  # type: ignore[no-untyped-def]
    lines = [f'database_url = "{db_url}"', "[fetch]", "per_host_delay = 0.0", "total_timeout = 5"]
    for i, url in enumerate(urls):
        lines += ["[[sources]]", f'key = "s{i}"', f'url = "{url}"']
    lines += ["[[editions]]", 'name = "all"', 'title = "All"', "max_age_days = 100000"]
    path = tmp_path / "agg.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(str(path), env={})


async def test_outage_of_every_source_is_not_counted(tmp_path: Path, db_url: str) -> None:
    dead = [f"http://127.0.0.1:{closed_port()}/feed.xml" for _ in range(3)]
    settings = settings_for(tmp_path, db_url, dead)
    async with open_pipeline(settings, workers=0) as pipeline:
        report = await pipeline.poll_all()
        assert report.failed == 3
        for src in pipeline.repo.list_sources():
            assert src.status == "error" and src.error_count == 0
            assert src.last_error and "network outage" in src.last_error


async def test_failing_source_is_counted_when_others_answer(tmp_path: Path, db_url: str) -> None:
    with FeedServer() as server:
        server.serve_dir("/own", DATA)
        dead = f"http://127.0.0.1:{closed_port()}/feed.xml"
        urls = [server.url("/own/ithome.rss.xml"), dead, server.url("/own/missing.xml")]
        settings = settings_for(tmp_path, db_url, urls)
        async with open_pipeline(settings, workers=0) as pipeline:
            report = await pipeline.poll_all()
            by_key = {s.key: s for s in pipeline.repo.list_sources()}
    assert report.new == 3 and report.ok == 1
    assert by_key["s0"].status == "ok"
    assert by_key["s1"].error_count == 1 and "connect" in (by_key["s1"].last_error or "")
    assert by_key["s2"].error_count == 1 and "http_404" in (by_key["s2"].last_error or "")


async def test_metrics_count_fetches_items_merges_and_renders(tmp_path: Path, db_url: str) -> None:
    with FeedServer() as server:
        server.serve_dir("/own", DATA)
        urls = [server.url("/own/ithome.rss.xml"), server.url("/own/verge.atom.xml")]
        settings = settings_for(tmp_path, db_url, urls)
        metrics = build_metrics()
        async with open_pipeline(settings, workers=0, metrics=metrics) as pipeline:
            await pipeline.poll_all()
            await pipeline.poll_all()

    def value(name: str, **labels: str) -> float:
        got = metrics.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

    assert value("aggregator_fetches_total", outcome="200") == 2
    assert value("aggregator_fetches_total", outcome="304") == 2
    assert value("aggregator_items_total", kind="new") == 5
    assert value("aggregator_stories_merged_total") == 1  # The Verge joins IT之家's DeepSeek story
    assert value("aggregator_export_renders_total", edition="all", format="atom") == 1
    assert value("aggregator_sources", status="not_modified") == 2
    assert value("aggregator_fetch_seconds_count") == 4
