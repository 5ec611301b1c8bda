"""Exporters: RSS 2.0, Atom 1.0 and JSON Feed 1.1 from one fixed edition.

Each format must pass its validator (tests/feedcheck.py), carry the story ids, escape untrusted
text, name every source, and render identically twice. The validators must also reject broken
documents, otherwise passing them proves nothing.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
import pytest
from feedcheck import assert_valid_atom, assert_valid_jsonfeed, assert_valid_rss

from aggregator.model import EditionEntry, EditionFeed, SourceRef
from aggregator.render import CONTENT_TYPES, FORMATS, make_snapshot, render_feed
from aggregator.render.atom import render_atom
from aggregator.render.common import entry_html, plain_summary, rfc822, rfc3339
from aggregator.render.jsonfeed import render_jsonfeed
from aggregator.render.rss import render_rss

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
T0 = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

CHINESE = EditionEntry(
    id="urn:uuid:5b1f2c3e-0000-4000-8000-000000000001",
    title="华为发布新款 Mate 手机：搭载麒麟芯片",
    url="https://www.ithome.com/0/800/001.htm",
    publisher="IT之家",
    publisher_url="https://www.ithome.com/",
    publisher_feed_url="https://www.ithome.com/rss/",
    published=T0,
    updated=T0 + timedelta(minutes=5),
    collected_at=T0 + timedelta(minutes=1),
    summary_html="<p>IT之家 11 月 28 日消息，华为今日发布……</p>",
    content_html="<p>IT之家 11 月 28 日消息，华为今日<b>正式发布</b>新款手机。</p>",
    author="故渊",
    categories=("手机", "华为"),
    language="zh_CN",
    sources=(
        SourceRef(
            "IT之家",
            "https://www.ithome.com/0/800/001.htm",
            "华为发布新款 Mate 手机：搭载麒麟芯片",
            T0,
        ),
        SourceRef(
            "新浪科技 <Sina>",
            "https://tech.sina.com.cn/x/2026-11-28/doc-1.shtml?a=1&b=2",
            'Huawei "Mate" & more',
            T0 + timedelta(minutes=10),
        ),
        SourceRef("Reuters", None, "Huawei unveils new Mate phone <script>x</script>", None),
    ),
)
HOSTILE = EditionEntry(
    id="urn:uuid:5b1f2c3e-0000-4000-8000-000000000002",
    title='Ben & Jerry\'s <b>"tag"</b> \x0b title',
    url="https://example.com/a?x=1&y=2",
    publisher='Evil <script>alert("pub")</script> & Co',
    publisher_url="javascript:alert(1)",
    publisher_feed_url="https://example.com/feed.xml",
    published=datetime(2026, 11, 27, 23, 0, tzinfo=timezone(timedelta(hours=8))),
    updated=datetime(2026, 11, 27, 23, 0, tzinfo=timezone(timedelta(hours=8))),
    collected_at=T0,
    summary_html="",
    content_html="<p>Body with &lt;escaped&gt; text and ]]> end</p>",  # ]]> ends CDATA
    author=None,  # no author: the publisher stands in, the feed author covers Atom's rule
    categories=(),
    language=None,
    sources=(SourceRef('Evil <script>alert("pub")</script> & Co', None, "t", None),),
)
SUMMARY_ONLY = EditionEntry(
    id="https://blog.example.org/posts/42",
    title="Summary only",
    url="https://blog.example.org/posts/42",
    publisher="Example Blog",
    publisher_url=None,
    publisher_feed_url="https://blog.example.org/atom.xml",
    published=T0 - timedelta(days=1),
    updated=T0 - timedelta(days=1),
    collected_at=T0 - timedelta(hours=20),
    summary_html="<p>Just the summary.</p>",
    content_html="",
    author="Ann Author",
    categories=("blog",),
    language="en",
    sources=(SourceRef("Example Blog", "https://blog.example.org/posts/42", "Summary only", T0),),
)
FEED = EditionFeed(
    name="tech",
    title="科技 Tech edition",
    description="Technology news from several publishers & more",
    base_url="https://news.example.net",
    updated=T0 + timedelta(hours=1),
    entries=(CHINESE, HOSTILE, SUMMARY_ONLY),
    language="zh-CN",
)


# --------------------------------------------------------------------------- shared pieces


def test_entry_html_footer_escapes_and_lists_other_reports() -> None:
    html = entry_html(CHINESE)
    assert html.startswith(CHINESE.content_html)
    assert 'Original source: <a href="https://www.ithome.com/0/800/001.htm">IT之家</a>' in html
    assert "Also reported by:" in html
    assert (
        '<a href="https://tech.sina.com.cn/x/2026-11-28/doc-1.shtml?a=1&amp;b=2">'
        "新浪科技 &lt;Sina&gt;: Huawei &quot;Mate&quot; &amp; more</a>"
    ) in html
    # A source without URL is named, not linked; its title's markup is text.
    assert "<li>Reuters: Huawei unveils new Mate phone &lt;script&gt;x&lt;/script&gt;</li>" in html


def test_entry_html_never_links_unsafe_schemes_and_escapes_publisher() -> None:
    html = entry_html(replace(HOSTILE, url=None))
    assert "javascript:" not in html
    assert "<script>" not in html
    assert "Evil &lt;script&gt;alert(&quot;pub&quot;)&lt;/script&gt; &amp; Co" in html
    assert "Also reported by" not in html


def test_entry_html_falls_back_to_summary() -> None:
    assert entry_html(SUMMARY_ONLY).startswith("<p>Just the summary.</p>")


def test_plain_summary_strips_markup_and_truncates() -> None:
    assert plain_summary(CHINESE) == "IT之家 11 月 28 日消息，华为今日发布……"
    long = replace(SUMMARY_ONLY, summary_html="<p>" + "word " * 200 + "</p>")
    text = plain_summary(long, limit=50)
    assert len(text) == 50 and text.endswith("…") and "<" not in text


def test_dates_are_utc() -> None:
    local = datetime(2026, 11, 27, 23, 0, tzinfo=timezone(timedelta(hours=8)))
    assert rfc3339(local) == "2026-11-27T15:00:00Z"
    assert rfc822(local) == "Fri, 27 Nov 2026 15:00:00 GMT"


# --------------------------------------------------------------------------- RSS


def test_rss_is_valid_and_carries_every_field() -> None:
    body = render_rss(FEED)
    assert_valid_rss(body)
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    channel = ET.fromstring(body).find("channel")
    assert channel is not None
    assert channel.findtext("title") == FEED.title
    assert channel.findtext("link") == "https://news.example.net/editions/tech"
    assert channel.findtext("language") == "zh-CN"
    assert channel.findtext("lastBuildDate") == "Sat, 28 Nov 2026 09:30:00 GMT"
    assert (channel.findtext("generator") or "").startswith("aggregator")
    self_link = channel.find(f"{ATOM}link")
    assert self_link is not None
    assert self_link.attrib == {
        "rel": "self",
        "type": "application/rss+xml",
        "href": "https://news.example.net/feeds/tech.rss",
    }
    items = channel.findall("item")
    assert len(items) == 3
    first, hostile, blog = items

    assert first.findtext("title") == CHINESE.title
    assert first.findtext("link") == CHINESE.url
    guid = first.find("guid")
    assert guid is not None and guid.text == CHINESE.id and guid.get("isPermaLink") == "false"
    assert parsedate_to_datetime(first.findtext("pubDate") or "") == T0
    assert first.findtext(f"{DC}creator") == "故渊"
    assert [c.text for c in first.findall("category")] == ["手机", "华为"]
    source = first.find("source")
    assert source is not None and source.text == "IT之家"
    assert source.get("url") == "https://www.ithome.com/rss/"
    assert first.findtext("description") == entry_html(CHINESE)

    # Untrusted text survives as text; XML-illegal control characters are dropped.
    assert hostile.findtext("title") == 'Ben & Jerry\'s <b>"tag"</b>  title'
    assert hostile.findtext("description") == entry_html(HOSTILE)
    assert hostile.find(f"{DC}creator") is None
    assert hostile.findtext("source") == HOSTILE.publisher
    assert parsedate_to_datetime(hostile.findtext("pubDate") or "") == HOSTILE.published

    blog_guid = blog.find("guid")
    assert blog_guid is not None and blog_guid.get("isPermaLink") == "true"


def test_rss_raw_bytes_escape_markup() -> None:
    body = render_rss(FEED).decode("utf-8")
    assert "<script>" not in body
    assert "&lt;script&gt;" in body
    assert "华为发布新款" in body  # UTF-8 text, not character references


# --------------------------------------------------------------------------- Atom


def test_atom_is_valid_and_carries_every_field() -> None:
    body = render_atom(FEED)
    assert_valid_atom(body)
    root = ET.fromstring(body)
    assert root.findtext(f"{ATOM}id") == "https://news.example.net/feeds/tech.atom"
    assert root.findtext(f"{ATOM}updated") == "2026-11-28T09:30:00Z"
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links == {
        "self": "https://news.example.net/feeds/tech.atom",
        "alternate": "https://news.example.net/editions/tech",
    }
    assert root.findtext(f"{ATOM}author/{ATOM}name") == FEED.title
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 3
    first, hostile, blog = entries

    assert first.findtext(f"{ATOM}id") == CHINESE.id
    assert first.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-CN"
    assert first.findtext(f"{ATOM}published") == "2026-11-28T08:30:00Z"
    assert first.findtext(f"{ATOM}updated") == "2026-11-28T08:35:00Z"
    alternate = first.find(f"{ATOM}link[@rel='alternate']")
    assert alternate is not None and alternate.get("href") == CHINESE.url
    assert first.findtext(f"{ATOM}author/{ATOM}name") == "故渊"
    assert [c.get("term") for c in first.findall(f"{ATOM}category")] == ["手机", "华为"]
    content = first.find(f"{ATOM}content")
    assert content is not None and content.get("type") == "html"
    assert content.text == entry_html(CHINESE)
    assert first.findtext(f"{ATOM}summary") == CHINESE.summary_html
    assert first.findtext(f"{ATOM}source/{ATOM}title") == "IT之家"
    assert first.findtext(f"{ATOM}source/{ATOM}id") == "https://www.ithome.com/rss/"
    source_site = first.find(f"{ATOM}source/{ATOM}link[@rel='alternate']")
    assert source_site is not None and source_site.get("href") == "https://www.ithome.com/"

    # No article author: the publisher is named; an unsafe publisher URL is not emitted.
    assert hostile.findtext(f"{ATOM}author/{ATOM}name") == HOSTILE.publisher
    assert hostile.find(f"{ATOM}author/{ATOM}uri") is None
    assert hostile.find(f"{ATOM}summary") is None  # empty summary is left out
    assert hostile.findtext(f"{ATOM}updated") == "2026-11-27T15:00:00Z"
    assert b"javascript:" not in body

    assert hostile.findtext(f"{ATOM}content") == entry_html(HOSTILE)
    assert blog.findtext(f"{ATOM}content") == entry_html(SUMMARY_ONLY)


def test_atom_feed_id_without_http_base_is_a_stable_urn() -> None:
    feed = replace(FEED, base_url="")
    first = ET.fromstring(render_atom(feed)).findtext(f"{ATOM}id") or ""
    assert first.startswith("urn:uuid:")
    assert ET.fromstring(render_atom(feed)).findtext(f"{ATOM}id") == first
    other = ET.fromstring(render_atom(replace(feed, name="other"))).findtext(f"{ATOM}id")
    assert other != first


# --------------------------------------------------------------------------- JSON Feed


def test_jsonfeed_is_valid_and_carries_every_field() -> None:
    body = render_jsonfeed(FEED)
    assert_valid_jsonfeed(body)
    doc = json.loads(body)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["home_page_url"] == "https://news.example.net/editions/tech"
    assert doc["feed_url"] == "https://news.example.net/feeds/tech.json"
    assert doc["language"] == "zh-CN"
    assert "华为" in body.decode("utf-8")  # non-ASCII kept as UTF-8
    first, hostile, blog = doc["items"]
    assert first["id"] == CHINESE.id
    assert first["url"] == CHINESE.url
    assert first["title"] == CHINESE.title
    assert first["content_html"] == entry_html(CHINESE)
    assert first["summary"] == "IT之家 11 月 28 日消息，华为今日发布……"
    assert first["date_published"] == "2026-11-28T08:30:00Z"
    assert first["date_modified"] == "2026-11-28T08:35:00Z"
    assert first["authors"] == [{"name": "故渊"}]
    assert first["tags"] == ["手机", "华为"]
    assert first["language"] == "zh-CN"
    ext = first["_aggregator"]
    assert ext["story_id"] == CHINESE.id
    assert ext["collected_at"] == "2026-11-28T08:31:00Z"
    assert ext["publisher"] == "IT之家"
    assert ext["sources"] == [
        {
            "publisher": "IT之家",
            "url": "https://www.ithome.com/0/800/001.htm",
            "title": "华为发布新款 Mate 手机：搭载麒麟芯片",
            "published": "2026-11-28T08:30:00Z",
        },
        {
            "publisher": "新浪科技 <Sina>",
            "url": "https://tech.sina.com.cn/x/2026-11-28/doc-1.shtml?a=1&b=2",
            "title": 'Huawei "Mate" & more',
            "published": "2026-11-28T08:40:00Z",
        },
        {
            "publisher": "Reuters",
            "url": None,
            "title": "Huawei unveils new Mate phone <script>x</script>",
            "published": None,
        },
    ]
    assert hostile["authors"] == [{"name": HOSTILE.publisher}]  # unsafe URL not emitted
    assert hostile["summary"] == "Body with <escaped> text and ]]> end"  # from content
    assert "tags" not in hostile and "language" not in hostile
    assert blog["summary"] == "Just the summary."


def test_jsonfeed_omits_summary_when_there_is_no_text() -> None:
    bare = replace(HOSTILE, content_html="<img src='https://example.com/x.png'>")
    doc = json.loads(render_jsonfeed(replace(FEED, entries=(bare,))))
    assert "summary" not in doc["items"][0]


# --------------------------------------------------------------------------- all formats


@pytest.mark.parametrize("fmt", FORMATS)
def test_rendering_is_deterministic(fmt: str) -> None:
    twin = replace(FEED, entries=tuple(replace(entry) for entry in FEED.entries))
    assert render_feed(FEED, fmt) == render_feed(twin, fmt)
    first = make_snapshot(FEED, fmt, T0)
    second = make_snapshot(twin, fmt, T0 + timedelta(hours=1))
    assert first.etag == second.etag and first.etag.startswith('"')
    assert first.content_type == CONTENT_TYPES[fmt]
    changed = make_snapshot(replace(FEED, title="Other"), fmt, T0)
    assert changed.etag != first.etag


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_edition_is_valid(fmt: str) -> None:
    body = render_feed(replace(FEED, entries=(), language=None, description=""), fmt)
    {"rss": assert_valid_rss, "atom": assert_valid_atom, "json": assert_valid_jsonfeed}[fmt](body)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feed format 'xml'"):
        render_feed(FEED, "xml")


def test_large_edition_still_validates() -> None:
    """100 entries of about 20 KB each (speed is measured in bench/, not here)."""
    paragraph = "<p>" + ("新闻 news & <i>more</i> " * 20) + "</p>"
    content = paragraph * (20_000 // len(paragraph.encode()) + 1)
    entries = tuple(
        replace(CHINESE, id=f"urn:uuid:00000000-0000-4000-8000-{n:012d}", content_html=content)
        for n in range(100)
    )
    feed = replace(FEED, entries=entries)
    for fmt, check in (
        ("rss", assert_valid_rss),
        ("atom", assert_valid_atom),
        ("json", assert_valid_jsonfeed),
    ):
        body = render_feed(feed, fmt)
        check(body)
        assert len(body) > 100 * 20_000


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_a_real_reader_sees_ids_links_authors_and_footer(fmt: str) -> None:
    parsed = feedparser.parse(render_feed(FEED, fmt))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.title == FEED.title
    first, hostile, blog = parsed.entries
    assert (first.id, first.link, first.title) == (CHINESE.id, CHINESE.url, CHINESE.title)
    assert first.author == "故渊"
    assert [tag.term for tag in first.tags] == ["手机", "华为"]
    assert first.source.title == "IT之家"
    body = first.content[0].value if fmt == "atom" else first.summary
    assert "Also reported by:" in body and "正式发布" in body
    assert hostile.title == HOSTILE.title.replace("\x0b", "")
    assert hostile.source.title == HOSTILE.publisher
    assert blog.id == SUMMARY_ONLY.id


# --------------------------------------------------------------------------- validators bite


def _bad(body: bytes, old: bytes, new: bytes) -> bytes:
    assert old in body, f"fixture text {old!r} not in document"
    return body.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        (b"<id>urn:uuid:5b1f", b"<id>5b1f", "not an absolute IRI"),
        (b"<updated>2026-11-28T09:30:00Z", b"<updated>yesterday", "RELAX NG"),
        (b"<published>", b"<bogus /><published>", "RELAX NG"),
        (b"</feed>", b"", "not well-formed"),
    ],
)
def test_atom_checker_rejects(old: bytes, new: bytes, rule: str) -> None:
    body = _bad(render_atom(replace(FEED, entries=(HOSTILE,))), old, new)
    with pytest.raises(AssertionError, match=rule):
        assert_valid_atom(body)


def test_atom_checker_requires_an_author_somewhere() -> None:
    body = render_atom(replace(FEED, entries=(HOSTILE,)))
    broken = body.replace(b"<author>", b"<contributor>").replace(b"</author>", b"</contributor>")
    with pytest.raises(AssertionError, match=r"entry #0 .*no author and the feed has none"):
        assert_valid_atom(broken)


def test_atom_checker_requires_alternate_link_or_content() -> None:
    body = render_atom(replace(FEED, entries=(CHINESE,)))
    root = ET.fromstring(body)
    entry = root.find(f"{ATOM}entry")
    assert entry is not None
    for child in list(entry):
        if child.tag in (f"{ATOM}content",) or (
            child.tag == f"{ATOM}link" and child.get("rel") == "alternate"
        ):
            entry.remove(child)
    broken = ET.tostring(root)
    with pytest.raises(AssertionError, match="neither a link rel=alternate nor content"):
        assert_valid_atom(broken)


def _json_with(mutate: object) -> bytes:
    doc = json.loads(render_jsonfeed(FEED))
    assert callable(mutate)
    mutate(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda d: d.update(version="https://jsonfeed.org/version/2"), "schema"),
        (lambda d: d["items"][0].pop("id"), "schema"),
        (lambda d: d.update(version="https://jsonfeed.org/version/1"), "version"),
        (lambda d: d["items"][1].pop("_aggregator"), r"item #1 .*_aggregator missing"),
        (lambda d: d["items"][0]["_aggregator"].pop("story_id"), "story_id missing"),
        (lambda d: d["items"][0]["_aggregator"].update(collected_at="now"), "collected_at"),
        (lambda d: d["items"][0]["_aggregator"]["sources"][2].pop("url"), r"lacks \['url'\]"),
        (
            lambda d: d["items"][0]["_aggregator"]["sources"][0].update(published="28/11"),
            r"sources\[0\]\.published",
        ),
        (lambda d: d["items"][0].update(date_published="2026-11-28"), "date_published"),
        (lambda d: d["items"][2].update(id=d["items"][0]["id"]), "duplicate id"),
        (lambda d: d.update(feed_url="/feeds/tech.json"), "feed_url"),
    ],
)
def test_jsonfeed_checker_rejects(mutate: object, rule: str) -> None:
    with pytest.raises(AssertionError, match=rule):
        assert_valid_jsonfeed(_json_with(mutate))


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        (b'isPermaLink="false"', b'isPermaLink="true"', "isPermaLink true"),
        (b'isPermaLink="false"', b"", "isPermaLink true"),
        (b"<pubDate>Sat, 28 Nov 2026", b"<pubDate>2026-11-28 Sat", "not an RFC 822 date"),
        (b'<atom:link rel="self"', b'<atom:link rel="related"', "atom:link rel=self"),
        (b' url="https://www.ithome.com/rss/"', b"", "<source> lacks"),
        (
            b"<description>Technology news from several publishers &amp; more</description>",
            b"<description />",
            "<description> missing",
        ),
        (b"</channel>", b"", "not well-formed"),
    ],
)
def test_rss_checker_rejects(old: bytes, new: bytes, rule: str) -> None:
    body = _bad(render_rss(FEED), old, new)
    with pytest.raises(AssertionError, match=rule):
        assert_valid_rss(body)


def test_rss_checker_requires_title_or_description() -> None:
    body = render_rss(replace(FEED, entries=(replace(SUMMARY_ONLY, title=""),)))
    root = ET.fromstring(body)
    item = root.find("channel/item")
    assert item is not None
    description = item.find("description")
    assert description is not None
    item.remove(description)
    with pytest.raises(AssertionError, match=r"item #0 .*neither title nor description"):
        assert_valid_rss(ET.tostring(root))


# --------------------------------------------------------------------------- shared validators


def test_shared_jsonfeed_examples_pass_the_schema_part() -> None:
    examples = SHARED / "validators" / "jsonfeed" / "examples"
    if not examples.is_dir():
        pytest.skip(f"shared validator examples not found at {examples}")
    from feedcheck import _jsonfeed_validator

    for path in sorted(examples.glob("v1.1-*.json")):
        errors = list(_jsonfeed_validator().iter_errors(json.loads(path.read_bytes())))
        assert not errors, f"{path.name}: {errors[0].message}"
