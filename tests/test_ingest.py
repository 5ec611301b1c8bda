"""ingest: bytes to items, never raising; fragments that tell posts apart are kept."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.ingest import ingest
from aggregator.plan import keyed_items

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def rss(*links: str) -> bytes:
    items = "".join(
        f"<item><title>Post {i}</title><link>{link}</link><guid>g{i}</guid>"
        f"<description>Body {i}</description></item>"
        for i, link in enumerate(links)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://day.example/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def test_day_page_anchors_stay_distinct_items() -> None:
    body = rss(*(f"https://day.example/2026/11/28.html#a{i}" for i in range(5)))
    got = ingest(
        body, {"content-type": "application/rss+xml"}, "https://day.example/rss", None, NOW
    )
    urls = [it.canonical_url for it in got.items]
    assert len(set(urls)) == 5 and all(u and "#a" in u for u in urls)
    assert len(keyed_items(list(got.items))) == 5


def test_a_lone_fragment_is_still_dropped() -> None:
    body = rss("https://news.example/story.html#comments", "https://news.example/other.html")
    got = ingest(body, {}, "https://news.example/rss", None, NOW)
    assert [it.canonical_url for it in got.items] == [
        "https://news.example/story.html",
        "https://news.example/other.html",
    ]


def test_not_a_feed_is_an_error_value() -> None:
    got = ingest(b"<html><body>maintenance</body></html>", {}, "https://x/", None, NOW)
    assert got.items == () and got.error
