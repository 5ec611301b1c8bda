"""normalize_entry: ParsedEntry -> Item, the guarantees downstream stages rely on."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from aggregator.model import Item, ParsedEntry, ParsedFeed
from aggregator.normalize import (
    MAX_HTML_CHARS,
    MAX_TEXT_CHARS,
    UNTITLED,
    normalize_entry,
)
from aggregator.parse import parse_feed

DATA = Path(__file__).resolve().parent / "data" / "feeds"
FEED_URL = "https://feeds.example.com/rss"
NOW = datetime(2024, 7, 5, 12, 0, tzinfo=UTC)

FEED = ParsedFeed(
    format="rss20",
    title="Site",
    link="https://www.site.example/",
    language="en-US",
    entries=(),
)


def entry(**fields: object) -> ParsedEntry:
    base: dict[str, object] = {
        "guid": "g1",
        "link": "https://www.site.example/posts/1",
        "title": "Title",
        "summary": "<p>Summary text.</p>",
        "content": None,
    }
    base.update(fields)
    return ParsedEntry(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ dates


def test_dates_become_aware_utc() -> None:
    plus8 = timezone(timedelta(hours=8))
    item = normalize_entry(
        entry(published=datetime(2024, 1, 1, 8, 0, tzinfo=plus8), updated=datetime(2024, 1, 2)),
        FEED,
        feed_url=FEED_URL,
    )
    assert item.published_at == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    assert item.published_at is not None and item.published_at.utcoffset() == timedelta(0)
    assert item.updated_at == datetime(2024, 1, 2, tzinfo=UTC)  # naive is read as UTC


def test_future_dates_are_dropped_only_when_now_is_given() -> None:
    soon = NOW + timedelta(days=1)
    far = NOW + timedelta(days=3)
    assert normalize_entry(entry(published=soon), FEED, feed_url=FEED_URL, now=NOW).published_at
    item = normalize_entry(entry(published=far, updated=far), FEED, feed_url=FEED_URL, now=NOW)
    assert item.published_at is None and item.updated_at is None
    assert normalize_entry(entry(published=far), FEED, feed_url=FEED_URL).published_at == far


def test_epoch_placeholder_and_missing_dates() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    item = normalize_entry(entry(published=epoch), FEED, feed_url=FEED_URL)
    assert item.published_at is None
    assert normalize_entry(entry(), FEED, feed_url=FEED_URL).published_at is None


def test_published_falls_back_to_updated() -> None:
    updated = datetime(2024, 3, 1, tzinfo=UTC)
    item = normalize_entry(entry(updated=updated), FEED, feed_url=FEED_URL)
    assert item.published_at == updated and item.updated_at == updated


# ------------------------------------------------------------------ URLs


def test_relative_urls_resolve_against_entry_then_feed_then_feed_url() -> None:
    item = normalize_entry(
        entry(link="/posts/2?utm_source=rss#c", summary='<a href="img/x.png">x</a>'),
        FEED,
        feed_url=FEED_URL,
    )
    assert item.url == "https://www.site.example/posts/2?utm_source=rss#c"
    assert item.canonical_url == "https://www.site.example/posts/2"
    assert 'href="https://www.site.example/posts/img/x.png"' in item.summary_html

    no_site = replace(FEED, link=None)
    item = normalize_entry(entry(link="p/3"), no_site, feed_url=FEED_URL)
    assert item.url == "https://feeds.example.com/p/3"

    item = normalize_entry(entry(link=None, summary='<img src="/i.png">'), FEED, feed_url=FEED_URL)
    assert item.url is None and item.canonical_url is None
    assert 'src="https://www.site.example/i.png"' in item.summary_html


def test_non_http_links_are_dropped() -> None:
    item = normalize_entry(entry(link="javascript:alert(1)"), FEED, feed_url=FEED_URL)
    assert item.url is None and item.canonical_url is None


def test_external_url_for_link_blogs() -> None:
    item = normalize_entry(
        entry(link="https://other.example.org/story?utm_medium=feed&id=5"),
        FEED,
        feed_url=FEED_URL,
    )
    assert item.url == "https://other.example.org/story?utm_medium=feed&id=5"
    assert item.external_url == "https://other.example.org/story?id=5"
    # a subdomain of the same publisher is not external
    same = normalize_entry(entry(link="https://news.site.example/a"), FEED, feed_url=FEED_URL)
    assert same.external_url is None
    # JSON Feed's explicit external_url wins
    explicit = normalize_entry(
        entry(external_url="https://pub.example.com/x#frag"), FEED, feed_url=FEED_URL
    )
    assert explicit.external_url == "https://pub.example.com/x"
    assert explicit.url == "https://www.site.example/posts/1"


# ------------------------------------------------------------------ text fields


def test_title_is_plain_text() -> None:
    item = normalize_entry(
        entry(title="  AT&amp;T <b>buys</b>\n\n  x &lt; y  "), FEED, feed_url=FEED_URL
    )
    assert item.title == "AT&T buys x < y"
    hostile = normalize_entry(
        entry(title="Hi &lt;img src=x onerror=alert(1)&gt;"), FEED, feed_url=FEED_URL
    )
    assert hostile.title == "Hi"


def test_missing_title_is_derived_from_the_body() -> None:
    english = normalize_entry(
        entry(title=None, summary="<p>First sentence here. Second one.</p>"),
        FEED,
        feed_url=FEED_URL,
    )
    assert english.title == "First sentence here"
    chinese = normalize_entry(
        entry(title=None, summary="苹果公司今天发布了新产品。市场反应热烈。"),
        FEED,
        feed_url=FEED_URL,
    )
    assert chinese.title == "苹果公司今天发布了新产品"
    long_cjk = "很" * 200
    cut = normalize_entry(entry(title=None, summary=long_cjk), FEED, feed_url=FEED_URL)
    assert cut.title == "很" * 80 + "…"
    words = " ".join(["word"] * 40)
    cut_words = normalize_entry(entry(title=None, summary=words), FEED, feed_url=FEED_URL)
    assert cut_words.title.endswith("word…") and len(cut_words.title) <= 81
    untitled = normalize_entry(entry(title="  ", summary=None), FEED, feed_url=FEED_URL)
    assert untitled.title == UNTITLED


def test_text_is_title_plus_summary_and_capped() -> None:
    item = normalize_entry(entry(title="T", summary="<p>a &amp; b</p>"), FEED, feed_url=FEED_URL)
    assert item.text == "T a & b"
    big = normalize_entry(entry(summary="<p>" + "x " * 5000 + "</p>"), FEED, feed_url=FEED_URL)
    assert len(big.text) == MAX_TEXT_CHARS


def test_summary_and_content_fallbacks() -> None:
    content_only = normalize_entry(
        entry(summary=None, content="<p>" + "Long body. " * 100 + "</p>"), FEED, feed_url=FEED_URL
    )
    assert content_only.content_html.startswith("<p>Long body.")
    excerpt = re.sub(r"</?p>", "", content_only.summary_html)
    assert 300 < len(excerpt) <= 402 and excerpt.endswith("…")
    summary_only = normalize_entry(entry(summary="<b>s</b>"), FEED, feed_url=FEED_URL)
    assert summary_only.content_html == summary_only.summary_html == "<b>s</b>"


def test_language_precedence_and_format() -> None:
    assert normalize_entry(entry(language="zh_CN"), FEED, feed_url=FEED_URL).language == "zh-cn"
    assert normalize_entry(entry(), FEED, feed_url=FEED_URL).language == "en-us"
    bare = replace(FEED, language=None)
    item = normalize_entry(entry(), bare, feed_url=FEED_URL, default_language="ZH-TW")
    assert item.language == "zh-tw"
    assert normalize_entry(entry(language="!!"), bare, feed_url=FEED_URL).language is None


def test_categories_are_deduped() -> None:
    item = normalize_entry(
        entry(categories=("News", "news", " Tech  Stuff ", "NEWS", "", "科技")),
        FEED,
        feed_url=FEED_URL,
    )
    assert item.categories == ("News", "Tech Stuff", "科技")


def test_content_hash_is_stable_and_detects_edits() -> None:
    first = normalize_entry(entry(), FEED, feed_url=FEED_URL)
    again = normalize_entry(entry(), FEED, feed_url=FEED_URL)
    assert first.content_hash == again.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", first.content_hash)
    retitled = normalize_entry(entry(title="Other"), FEED, feed_url=FEED_URL)
    edited = normalize_entry(entry(summary="<p>Summary text!</p>"), FEED, feed_url=FEED_URL)
    moved = normalize_entry(entry(link="https://www.site.example/x"), FEED, feed_url=FEED_URL)
    assert retitled.content_hash != first.content_hash
    assert edited.content_hash != first.content_hash
    assert moved.content_hash == first.content_hash  # the link is identity, not content


def test_huge_body_is_capped() -> None:
    huge = "<p>" + "<b>word</b> " * 1_000_000 + "</p>"  # ~12 MB
    started = time.perf_counter()
    item = normalize_entry(entry(content=huge, summary=huge), FEED, feed_url=FEED_URL)
    elapsed = time.perf_counter() - started
    assert len(item.content_html) <= MAX_HTML_CHARS + 64
    assert len(item.text) <= MAX_TEXT_CHARS
    assert elapsed < 5.0


# ------------------------------------------------------------------ fixtures end to end


def normalize_file(name: str, headers: dict[str, str] | None = None) -> list[Item]:
    url = f"https://feeds.example.com/{name}"
    feed = parse_feed((DATA / name).read_bytes(), headers or {}, url)
    return [normalize_entry(e, feed, feed_url=url, now=NOW) for e in feed.entries]


def test_hostile_fixture_is_clean() -> None:
    (item,) = normalize_file("hostile.rss.xml")
    danger = re.compile(
        r"<script|<style|<iframe|<object|<embed|<form|<svg|<math|\son\w+\s*=|"
        r"javascript:|vbscript:|data:",
        re.I,
    )
    for html in (item.summary_html, item.content_html):
        assert not danger.search(html), html
    assert 'href="https://evil.example.com/safe" rel="noopener noreferrer"' in item.content_html
    assert 'src="https://evil.example.com/ok.png"' in item.summary_html
    assert item.title == "Click me"
    assert "<" not in item.text


def test_missing_fields_fixture() -> None:
    items = normalize_file("rss-missing-fields.rss.xml")
    assert [i.title for i in items] == [
        "No title here",
        "No link and no date",
        "这是一条没有标题的中文条目，它只有正文内容，而且正文比较长，用来测试从正文里截取标题的逻辑是否正确处理中文字符",
        "An English description without any sentence end that keeps going and going well…",
        UNTITLED,
    ]
    assert all(i.published_at is None for i in items)
    assert items[4].url is None  # javascript: link


def test_jsonfeed_fixtures() -> None:
    first, second = normalize_file("jsonfeed-1.0.json")
    assert first.external_url == "https://publisher.example.com/story?id=7"
    assert "<script" not in first.content_html
    assert 'href="https://linkblog.example.org/about"' in first.content_html
    assert first.categories == ("links", "news")
    assert second.url == "https://linkblog.example.org/posts/plain"
    assert second.title == "First paragraph with a < sign"
    (zh,) = normalize_file("jsonfeed-1.1.json")
    assert zh.language == "zh-hans-cn" and zh.author == "张三, 李四"
    assert zh.published_at == datetime(2024, 7, 4, 1, 0, tzinfo=UTC)


def test_gb2312_fixture_canonical_url() -> None:
    (item,) = normalize_file("gb2312.rss.xml")
    assert item.title == "国产芯片取得重大突破"
    assert item.canonical_url == "http://news.example.cn/2024/01/chip.html"
    assert item.language == "zh-cn"
    assert item.published_at == datetime(2024, 1, 10, 6, 33, tzinfo=UTC)
