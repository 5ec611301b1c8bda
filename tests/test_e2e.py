"""End to end: publishers on 127.0.0.1 -> `aggregator poll` -> database -> exports.

Runs the real CLI in a subprocess against a real HTTP server, on SQLite and on PostgreSQL
(the ``db_url`` fixture), then validates the three exports and traces every exported item back
to the publisher feed it came from.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import text

from aggregator.store.db import make_engine
from tests.clirun import run_cli
from tests.feedcheck import assert_valid_atom, assert_valid_jsonfeed, assert_valid_rss
from tests.servers import FeedServer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "e2e"
SHARED = ROOT.parent / "shared" / "corpus" / "real"
# Real captured feeds (when ../shared is present): Chinese, GB2312, English Atom, JSON Feed.
REAL = [
    ("oschina", "zh/oschina-industry-news.rss.xml", "zh-cn"),
    ("acn-gb2312", "zh-legacy/acnnewswire-press-gb2312.rss.xml", "zh-cn"),
    ("verge-real", "en-news/theverge.atom.xml", "en"),
    ("inessential", "jsonfeed/inessential.json", "en"),
]
OWN = [
    ("ithome", "IT之家", "ithome.rss.xml", "zh-cn", 2.0),
    ("verge", "The Verge", "verge.atom.xml", "en", 1.0),
    ("blog", "JSON Blog", "blog.json", "en", 1.0),
]


def write_config(path: Path, server: FeedServer, db_url: str, real: bool) -> None:
    lines = [
        f'database_url = "{db_url}"',
        "parse_workers = 2",
        'log_format = "json"',
        "[server]",
        'base_url = "http://127.0.0.1:9999"',
        "[fetch]",
        "per_host_delay = 0.0",
        "per_host_concurrency = 8",
        "total_timeout = 20.0",
    ]
    for key, name, file, lang, weight in OWN:
        lines += [
            "[[sources]]",
            f'key = "{key}"',
            f'name = "{name}"',
            f'url = "{server.url("/own/" + file)}"',
            f'language = "{lang}"',
            f"weight = {weight}",
        ]
    if real:
        for key, rel, lang in REAL:
            lines += [
                "[[sources]]",
                f'key = "{key}"',
                f'url = "{server.url("/real/" + rel)}"',
                f'language = "{lang}"',
            ]
    lines += [
        "[[editions]]",
        'name = "all"',
        'title = "Everything"',
        "limit = 1000",
        "max_age_days = 100000",
        "[[editions]]",
        'name = "ai"',
        'title = "AI"',
        "max_age_days = 100000",
        "[[editions.include]]",
        'fields = ["title", "summary"]',
        'keywords = ["AI", "LLM", "大模型"]',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


cli = run_cli


def export(config: Path, edition: str, fmt: str) -> bytes:
    out = config.parent / f"{edition}.{fmt}"
    cli(config, "export", edition, "--format", fmt, "-o", str(out))
    return out.read_bytes()


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[tuple[FeedServer, Path, bool]]:
    real = SHARED.is_dir()
    with FeedServer() as server:
        server.serve_dir("/own", DATA)
        if real:
            server.serve_dir("/real", SHARED)
        config = tmp_path / "aggregator.toml"
        write_config(config, server, db_url, real)
        yield server, config, real


def expected_entries(real: bool) -> dict[str, int]:
    """feedparser's own entry count per source: the oracle for 'nothing lost'."""
    files = {key: DATA / file for key, _n, file, _l, _w in OWN}
    if real:
        files.update({key: SHARED / rel for key, rel, _l in REAL})
    counts = {}
    for key, path in files.items():
        if path.suffix == ".json":
            counts[key] = len(json.loads(path.read_bytes())["items"])
        else:
            counts[key] = len(feedparser.parse(path.read_bytes()).entries)
    return counts


def stored_counts(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT s.key, count(i.id) FROM sources s LEFT JOIN items i "
                    "ON i.source_id = s.id GROUP BY s.key"
                )
            ).all()
    finally:
        engine.dispose()
    return {key: n for key, n in rows}


def test_poll_store_export_and_trace(world: tuple[FeedServer, Path, bool], db_url: str) -> None:
    server, config, real = world
    first = cli(config, "poll")
    assert "poll summary" in first.stdout
    expected = expected_entries(real)
    assert stored_counts(db_url) == expected

    # a second poll: every publisher answers 304 to our conditional requests, nothing is added
    server.clear_log()
    second = cli(config, "poll")
    statuses = server.statuses()
    assert statuses and all(s == 304 for s in statuses), statuses
    assert all("if-none-match" in r.headers or "if-modified-since" in r.headers for r in server.log)
    assert stored_counts(db_url) == expected
    assert "failed sources" not in second.stdout

    rss, atom, js = (export(config, "all", f) for f in ("rss", "atom", "json"))
    assert_valid_rss(rss)
    assert_valid_atom(atom)
    assert_valid_jsonfeed(js)

    # trace every exported item back to its publisher's feed
    links_by_publisher: dict[str, set[str]] = {}
    for _key, name, file, _l, _w in OWN:
        parsed = feedparser.parse(server.url("/own/" + file)) if file.endswith(".xml") else None
        if parsed is not None:
            links_by_publisher[name] = {e.link for e in parsed.entries}
    feed = json.loads(js)
    by_publisher: dict[str, int] = {}
    for item in feed["items"]:
        agg = item["_aggregator"]
        by_publisher[agg["publisher"]] = by_publisher.get(agg["publisher"], 0) + 1
        for src in agg["sources"]:
            if src["publisher"] in links_by_publisher:
                assert src["url"] in links_by_publisher[src["publisher"]], (src, item["id"])
    # one story for the DeepSeek report: IT之家 leads (higher weight), The Verge also reported it
    deepseek = [i for i in feed["items"] if "DeepSeek" in i["title"]]
    assert len(deepseek) == 1
    sources = deepseek[0]["_aggregator"]["sources"]
    assert [s["publisher"] for s in sources] == ["IT之家", "The Verge"]
    assert (
        deepseek[0]["url"]
        == "https://www.ithome.example/0/900/101.htm?utm_source=rss&utm_medium=feed"
    )
    total_items = sum(expected.values())
    assert len(feed["items"]) == total_items - 1  # everything, with the shared story once

    # RSS names the publisher in <source url=feed>; nothing hostile survives
    root = ET.fromstring(rss)
    for item in root.iter("item"):
        src = item.find("source")
        assert src is not None and src.text and src.get("url", "").startswith("http")
    for body in (rss, atom, js):
        lowered = body.lower()
        assert b"<script" not in lowered and b"javascript:" not in lowered
        assert b"onclick" not in lowered

    # the ai edition holds the AI stories only
    ai = json.loads(export(config, "ai", "json"))
    titles = {i["title"] for i in ai["items"]}
    assert "腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元" in titles
    assert "英伟达发布新一代 AI 芯片" in titles
    assert "小米发布新款手环，售价 249 元" not in titles

    # a publisher gains an item and edits another: exactly one new, one updated, same story ids
    ids_before = {i["id"] for i in feed["items"]}
    body = (DATA / "ithome.rss.xml").read_text(encoding="utf-8")
    body = body.replace(
        "<item>",
        "<item><title>OpenAI 发布新模型</title><link>https://www.ithome.example/0/900/104.htm"
        "</link><guid>https://www.ithome.example/0/900/104.htm</guid>"
        "<pubDate>Sat, 28 Nov 2026 09:00:00 GMT</pubDate><description>新模型。</description>"
        "</item><item>",
        1,
    ).replace("售价 249 元", "售价 199 元")
    server.serve("/own/ithome.rss.xml", body.encode("utf-8"), content_type="application/rss+xml")
    third = cli(config, "poll")
    assert "1" in third.stdout
    counts = stored_counts(db_url)
    assert counts["ithome"] == expected["ithome"] + 1
    after = json.loads(export(config, "all", "json"))
    ids_after = {i["id"] for i in after["items"]}
    assert ids_before < ids_after and len(ids_after - ids_before) == 1
    assert any(i["title"] == "小米发布新款手环，售价 199 元" for i in after["items"])


def test_sources_list_shows_status_and_errors(tmp_path: Path, db_url: str) -> None:
    with FeedServer() as server:
        server.serve_dir("/own", DATA)
        config = tmp_path / "aggregator.toml"
        write_config(config, server, db_url, real=False)
        broken = server.url("/missing.xml")
        text_ = config.read_text(encoding="utf-8").replace(server.url("/own/blog.json"), broken)
        config.write_text(text_, encoding="utf-8")
        poll = cli(config, "poll")
        assert "failed sources" in poll.stdout and "http_404" in poll.stdout
        listing = cli(config, "sources", "list").stdout
        assert "ithome" in listing and "http_404" in listing
