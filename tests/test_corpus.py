"""Every captured feed of the shared corpus goes through parse + normalize.

``real/``: 82 captures from real publishers (manifest.json has feedparser's entry counts).
``torture/``: feedparser's 1,485-file test suite (encodings, entities, xml:base, XSS vectors).
Each corpus is parsed once per session; the tests then check what came out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.model import Item, ParsedFeed
from aggregator.normalize import normalize_entry
from aggregator.parse import parse_feed
from aggregator.sanitize import ALLOWED_TAGS

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "corpus" / "real"
TORTURE = SHARED / "corpus" / "torture"


@dataclass
class Outcome:
    """What parse + normalize made of one corpus file."""

    feed: ParsedFeed | None = None
    items: list[Item] = field(default_factory=list)
    parse_error: str | None = None


def run(body: bytes, headers: dict[str, str], url: str) -> Outcome:
    """Parse and normalize; only ParseError is an allowed failure (anything else propagates)."""
    try:
        feed = parse_feed(body, headers, url)
    except ParseError as exc:
        return Outcome(parse_error=str(exc))
    items = [normalize_entry(e, feed, feed_url=url) for e in feed.entries]
    return Outcome(feed=feed, items=items)


def require(path: Path) -> None:
    if not (path / "manifest.json").exists():
        pytest.skip(f"shared corpus not available at {path}")


# ------------------------------------------------------------------ real captures


@pytest.fixture(scope="session")
def real_manifest() -> dict[str, dict[str, str]]:
    require(REAL)
    entries = json.loads((REAL / "manifest.json").read_text(encoding="utf-8"))
    return {e["file"]: e for e in entries}


@pytest.fixture(scope="session")
def real_outcomes(real_manifest: dict[str, dict[str, str]]) -> dict[str, Outcome]:
    outcomes = {}
    for path in sorted(REAL.rglob("*")):
        if not path.is_file() or path.name in ("manifest.json", "PROVENANCE.md"):
            continue
        name = path.relative_to(REAL).as_posix()
        outcomes[name] = run(path.read_bytes(), {}, f"https://feeds.example.com/{name}")
    return outcomes


def expected_count(summary: str) -> int | None:
    """Entry count from the manifest's parse summary; None when it must not be a feed."""
    if summary.startswith("-") or "no top-level items" in summary:
        return None
    match = re.search(r"(\d+) (?:entries|items)", summary)
    assert match, summary
    return int(match.group(1))


def test_every_real_file_is_in_the_manifest(
    real_manifest: dict[str, dict[str, str]], real_outcomes: dict[str, Outcome]
) -> None:
    assert set(real_outcomes) == set(real_manifest)
    assert len(real_outcomes) >= 80


def test_real_item_counts_match_feedparser(
    real_manifest: dict[str, dict[str, str]], real_outcomes: dict[str, Outcome]
) -> None:
    for name, outcome in real_outcomes.items():
        count = expected_count(real_manifest[name]["parse"])
        if count is None:
            assert outcome.parse_error is not None, name
        else:
            assert outcome.parse_error is None, (name, outcome.parse_error)
            assert len(outcome.items) == count, name


def test_hexun_html_page_is_a_parse_error(real_outcomes: dict[str, Outcome]) -> None:
    outcome = real_outcomes["zh/hexun-blog-feed-url-returns-gbk-html.html.xml"]
    assert outcome.parse_error is not None and "HTML" in outcome.parse_error


def test_real_items_meet_the_item_contract(real_outcomes: dict[str, Outcome]) -> None:
    for name, outcome in real_outcomes.items():
        for item in outcome.items:
            assert item.title and item.title == item.title.strip(), name
            assert "\ufffd" not in item.title, name
            assert len(item.text) <= 2000
            assert item.url is None or item.url.startswith(("http://", "https://")), name
            assert "<script" not in item.content_html.lower(), name
            for when in (item.published_at, item.updated_at):
                assert when is None or when.utcoffset() is not None, name


CJK_TITLES = {
    "zh-legacy/kc0011-forum-gb2312.rss.xml": "建国35周年纪念，华表，和平鸽",
    "zh-legacy/acnnewswire-press-gb2312.rss.xml": "与中国银联",
    "zh-legacy/softsea-gb2312.rss.xml": "病毒码",
    "zh-legacy/cnblog-org-gb2312.rss.xml": "开放图书项目",
    "zh-legacy/w3cn-org-gb2312.rss.xml": "如何以及何时使用sIFR",
    "zh-legacy/westca-blog14-gb2312.rdf.xml": "想要飞 却怎么样也飞不高",
    "zh-legacy/blogcn-chen56-gb2312.rdf.xml": "软件开发人员是工程师吗",
    "zh-legacy/blogspot-eighthday-gb2312.atom03.xml": "梦醒时分",
    "zh-legacy/cappuccinos-wordpress-gb2312.rss.xml": "圣诞晚餐好失败",
    "zh-legacy/coolloud-news-big5.rdf.xml": "不見棺材不走人",
    "zh-legacy/ebao-latestnews-big5.rss.xml": "新唐人全球華人新年晚會",
    "zh-legacy/digitalwall-big5.rss.xml": "再談軟體與媒體的典範轉移",
    "zh-legacy/sinica-big5.atom03.xml": "基礎理論密碼學",
    "zh-legacy/upsaid-big5.rdf.xml": "人民有抗暴權",
    "zh-legacy/pchome-myblog-big5.rss.xml": "愛力真正的源頭",
    "zh/people-com-cn-sports.rss.xml": "女足出征阿尔加夫杯",
}
MOJIBAKE = re.compile(r"[\u0080-\u00ff]")


def test_legacy_chinese_encodings_decode(real_outcomes: dict[str, Outcome]) -> None:
    for name, needle in CJK_TITLES.items():
        items = real_outcomes[name].items
        assert any(needle in item.title for item in items), name
        for item in items:
            assert "\ufffd" not in item.title + item.text, name
            assert not MOJIBAKE.search(item.title), (name, item.title)
    big5_english_titles = real_outcomes["zh-legacy/unoriginalblog-big5.rss.xml"].items
    assert any("試下今日用中文打日記先" in item.text for item in big5_english_titles)
    legacy = [n for n in real_outcomes if n.startswith("zh-legacy/")]
    assert set(legacy) <= set(CJK_TITLES) | {"zh-legacy/unoriginalblog-big5.rss.xml"}


def test_non_rfc822_chinese_dates(real_outcomes: dict[str, Outcome]) -> None:
    kc = real_outcomes["zh-legacy/kc0011-forum-gb2312.rss.xml"].items
    assert all(i.published_at is not None for i in kc)
    people = real_outcomes["zh/people-com-cn-sports.rss.xml"].items
    assert all(i.published_at is not None for i in people)


# ------------------------------------------------------------------ torture corpus


@pytest.fixture(scope="session")
def torture_outcomes() -> dict[str, Outcome]:
    require(TORTURE)
    manifest = json.loads((TORTURE / "manifest.json").read_text(encoding="utf-8"))
    outcomes = {}
    for case in manifest:
        headers = {}
        for line in case["http_headers"]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        body = (TORTURE / case["file"]).read_bytes()
        outcomes[case["file"]] = run(body, headers, f"http://127.0.0.1:8097/{case['file']}")
    return outcomes


def test_torture_corpus_raises_nothing_but_parse_error(
    torture_outcomes: dict[str, Outcome],
) -> None:
    assert len(torture_outcomes) >= 1485
    failed = {name for name, outcome in torture_outcomes.items() if outcome.parse_error}
    # feedparser calls almost all of these feeds (bozo or not); only the empty document is
    # not a feed at all.
    assert len(failed) <= 5, failed
    assert "illformed/rss_empty_document.xml" in failed


DANGER = re.compile(
    r"<script|<iframe|<object|<embed|<applet|<form|<style|\son[a-z]+\s*=|"
    r"(?:href|src|action|data)\s*=\s*[\"']?\s*(?:javascript|vbscript|data):",
    re.I,
)


def test_torture_sanitizer_cases_are_clean(torture_outcomes: dict[str, Outcome]) -> None:
    checked = 0
    for name, outcome in torture_outcomes.items():
        for item in outcome.items:
            for html in (item.summary_html, item.content_html):
                assert not DANGER.search(html), (name, html[:300])
                assert "javascript:" not in html.lower(), (name, html[:300])
            if name.startswith("wellformed/sanitize/"):
                checked += 1
    assert checked >= 500


TABLE_PARTS = {"caption", "col", "colgroup", "tbody", "td", "th", "thead", "tr", "tfoot"}


def test_torture_acceptable_elements_survive(torture_outcomes: dict[str, Outcome]) -> None:
    survived = 0
    for name, outcome in torture_outcomes.items():
        if "/acceptable_element_" not in name:
            continue
        element = name.rsplit("acceptable_element_", 1)[1].removesuffix(".xml")
        if element not in ALLOWED_TAGS or element in TABLE_PARTS:
            continue  # not allowed, or dropped by HTML5 parsing outside a <table>
        html = " ".join(item.content_html for item in outcome.items)
        assert f"<{element}" in html, (name, html[:200])
        survived += 1
    assert survived >= 50
