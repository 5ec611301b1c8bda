"""parse_feed: bytes + headers -> ParsedFeed, for RSS, Atom and JSON Feed, and safely."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.parse import parse_date, parse_feed

DATA = Path(__file__).resolve().parent / "data" / "feeds"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
URL = "https://feeds.example.com/feed"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


# ------------------------------------------------------------------ charsets


def test_gb2312_declared_in_xml() -> None:
    feed = parse_feed(load("gb2312.rss.xml"), {}, URL)
    assert feed.format == "rss20"
    assert feed.title == "科技新闻"
    assert feed.language == "zh-cn"
    entry = feed.entries[0]
    assert entry.title == "国产芯片取得重大突破"
    assert entry.summary is not None and "研究人员" in entry.summary
    assert entry.categories == ("科技",)


def test_charset_from_http_header_wins_and_lowercase_names_work() -> None:
    body = load("gb2312-undeclared.rss.xml")
    for headers in (
        {"Content-Type": "application/rss+xml; charset=GB2312"},
        {"content-type": "application/rss+xml; charset=gb2312"},
    ):
        feed = parse_feed(body, headers, URL)
        assert feed.title == "经济日报"
        assert feed.entries[0].title == "股市今日大涨"
    # Without the header the bytes are not UTF-8; feedparser alone would fall back to
    # windows-1252 (mojibake), but charset.repair_encoding recognises GB18030 first.
    guessed = parse_feed(body, {}, URL)
    assert guessed.entries[0].title == "股市今日大涨"


def test_big5() -> None:
    feed = parse_feed(load("big5.rss.xml"), {"Content-Type": "text/xml; charset=big5"}, URL)
    assert feed.title == "臺灣新聞"
    assert feed.language == "zh-tw"
    assert feed.entries[0].title == "颱風即將登陸臺灣東部"
    assert feed.entries[0].published == datetime(2024, 1, 10, 6, 0, tzinfo=UTC)
    assert feed.entries[0].updated is None  # no updated->published aliasing


# ------------------------------------------------------------------ feed-level fields


def test_ttl_skip_hours_skip_days_language() -> None:
    feed = parse_feed(load("rss-skip-hints.rss.xml"), {}, URL)
    assert feed.ttl_minutes == 90
    assert feed.skip_hours == frozenset({0, 1, 23})  # 24 means 0, 99 is dropped
    assert feed.skip_days == frozenset({"Saturday", "Sunday"})
    assert feed.language == "en-gb"
    assert feed.link == "https://hints.example.com/"
    assert feed.warning is None


def test_content_language_header_is_the_fallback_language() -> None:
    body = (
        b'<rss version="2.0"><channel><title>t</title><item><title>a</title></item></channel></rss>'
    )
    feed = parse_feed(body, {"Content-Language": "de-DE"}, URL)
    assert feed.language == "de-de"


# ------------------------------------------------------------------ entries


def test_missing_fields_are_none_not_errors() -> None:
    feed = parse_feed(load("rss-missing-fields.rss.xml"), {}, URL)
    assert len(feed.entries) == 5
    first, second = feed.entries[0], feed.entries[1]
    assert first.title is None and first.link is None and first.published is None
    assert first.guid == "sparse-1"
    assert second.title == "No link and no date"
    assert second.summary is None and second.content is None and second.link is None
    assert feed.entries[4].published is None  # "not a date at all"


def test_atom_xml_base_resolves_links_and_content() -> None:
    feed = parse_feed(load("atom-xml-base.atom.xml"), {}, URL)
    assert feed.format == "atom10"
    assert feed.link == "https://blog.example.net/"
    first, second = feed.entries
    assert first.link == "https://blog.example.net/posts/2024/relative-links.html"
    assert first.content is not None
    assert 'src="https://blog.example.net/media/pic.png"' in first.content
    assert 'href="https://blog.example.net/other.html#top"' in first.content
    assert 'href="https://elsewhere.example.org/x"' in first.content
    assert first.summary is None  # feedparser's copy of the content is not a summary
    assert first.language == "en-us"
    assert first.updated == datetime(2024, 2, 1, 9, 0, tzinfo=UTC)
    # a text/plain title arrives HTML-escaped, so normalize can treat every title as HTML
    assert second.title == "Plain &lt;b&gt; title &amp;amp; more"
    assert second.summary == '<a href="https://blog.example.net/notes/1">n</a>'
    assert second.published == datetime(2024, 1, 31, 9, 0, tzinfo=UTC)


def test_content_location_header_is_the_base() -> None:
    body = (
        b'<rss version="2.0"><channel><title>t</title><item><title>a</title>'
        b'<link>story/1</link><description>&lt;a href="x.html"&gt;x&lt;/a&gt;</description>'
        b"</item></channel></rss>"
    )
    feed = parse_feed(body, {"Content-Location": "https://mirror.example.org/feeds/"}, URL)
    assert feed.entries[0].link == "https://mirror.example.org/feeds/story/1"
    assert feed.entries[0].summary == '<a href="https://mirror.example.org/feeds/x.html">x</a>'


def test_bozo_feed_with_entries_is_accepted_with_warning() -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>one &amp; only</title><link>https://e.example/1</link></item>"
        b"<item><title>broken <b>tag</title></item></channel></rss>"
    )
    feed = parse_feed(body, {"Content-Type": "application/rss+xml"}, URL)
    assert feed.warning is not None and "SAXParseException" in feed.warning
    assert [e.link for e in feed.entries][:1] == ["https://e.example/1"]


def test_chinese_dates_feedparser_misreads() -> None:
    body = (
        b'<rss version="2.0"><channel><title>t</title><language>zh-cn</language>'
        b"<item><title>a</title><pubDate>2020/1/10 14:33:00</pubDate></item>"
        b"<item><title>b</title><pubDate>2014-02-27 10:15:06.727</pubDate></item>"
        b"<item><title>c</title><pubDate>Mon, 27 Feb 2014 10:15:06 +0800</pubDate></item>"
        b"</channel></rss>"
    )
    a, b, c = parse_feed(body, {}, URL).entries
    assert a.published == datetime(2020, 1, 10, 6, 33, tzinfo=UTC)  # not 1 November
    assert b.published == datetime(2014, 2, 27, 2, 15, 6, tzinfo=UTC)  # China time
    assert c.published == datetime(2014, 2, 27, 2, 15, 6, tzinfo=UTC)


# ------------------------------------------------------------------ JSON Feed


def test_json_feed_1_0() -> None:
    feed = parse_feed(load("jsonfeed-1.0.json"), {"Content-Type": "application/feed+json"}, URL)
    assert feed.format == "json10"
    assert feed.title == "Example Link Blog"
    assert feed.link == "https://linkblog.example.org/"
    first, second = feed.entries
    assert first.guid == "42"  # numeric ids become strings
    assert first.external_url == "https://publisher.example.com/story?id=7&utm_campaign=x"
    assert first.author == "Jane Doe"
    assert first.categories == ("links", "Links", "news")
    assert first.published == datetime(2024, 1, 10, 13, 0, tzinfo=UTC)
    assert first.content is not None and "<script>" in first.content  # sanitized later
    assert second.title is None
    assert second.content == "<p>First paragraph with a &lt; sign.</p><p>Second paragraph.</p>"
    assert second.updated == datetime(2024, 1, 9, 13, 30, tzinfo=UTC)


def test_json_feed_1_1_detected_without_content_type() -> None:
    feed = parse_feed(load("jsonfeed-1.1.json"), {}, URL)
    assert feed.format == "json11"
    assert feed.language == "zh-cn"
    entry = feed.entries[0]
    assert entry.title == "人工智能大会在上海开幕"
    assert entry.author == "张三, 李四"
    assert entry.language == "zh-hans-cn"
    assert entry.summary == "大会吸引了众多企业参加。"
    assert entry.published == datetime(2024, 7, 4, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "", "empty"),
        (b"   \n ", "application/rss+xml", "empty"),
        (b'{"items": [1, 2', "application/feed+json", "invalid JSON"),
        (b'{"rss": {"channel": {}}}', "application/json", "not a JSON Feed"),
        (b"[1, 2, 3]", "application/feed+json", "not a JSON Feed"),
        (b"\x00\x01\x02 binary garbage \xff\xfe", "application/octet-stream", "not a feed"),
        (b"just some text, not xml", "text/plain", "not a feed"),
    ],
)
def test_not_a_feed_raises_parse_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_feed(body, {"Content-Type": content_type}, URL)


def test_html_page_raises_parse_error() -> None:
    with pytest.raises(ParseError, match="HTML page"):
        parse_feed(load("not-a-feed.html"), {"Content-Type": "text/html"}, URL)


def test_body_naming_a_local_file_is_not_opened() -> None:
    # feedparser.parse(bytes) treats a short byte string as a *file name*; parse_feed must not.
    path = str(DATA / "gb2312.rss.xml").encode()
    with pytest.raises(ParseError):
        parse_feed(path, {}, URL)


# ------------------------------------------------------------------ XML entity attacks


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(ParseError, match="entity"):
        parse_feed(load("billion-laughs.rss.xml"), {}, URL)
    assert time.perf_counter() - started < 1.0


def test_quadratic_blowup_is_refused_quickly() -> None:
    # 13 KB that feedparser's fallback parser would expand to 10 MB of title
    started = time.perf_counter()
    with pytest.raises(ParseError, match="entity"):
        parse_feed(load("quadratic-blowup.rss.xml"), {}, URL)
    assert time.perf_counter() - started < 1.0


def test_entity_declarations_on_one_line_and_in_utf16_are_seen() -> None:
    one_line = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + b"y" * 500 + b'">]>'
        b'<rss version="2.0"><channel><item><title>&a;&a;</title></item></channel></rss>'
    )
    with pytest.raises(ParseError, match="entity"):
        parse_feed(one_line, {}, URL)
    with pytest.raises(ParseError, match="entity"):
        parse_feed(b"\xff\xfe" + one_line.decode().encode("utf-16-le"), {}, URL)


def test_entity_value_with_markup_cannot_smuggle_a_dtd() -> None:
    # feedparser splits the prolog at the first "<letter>", so an entity value holding "<a>"
    # hides the rest of the DTD from its entity stripping and hands it to expat as-is.
    laughs = b"".join(b'<!ENTITY l%d "%s">' % (i, (b"&l%d;" % (i - 1)) * 10) for i in range(1, 10))
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "<a>"><!ENTITY l0 "lol">'
        + laughs
        + b']><rss version="2.0"><channel><item><title>&l9;</title></item></channel></rss>'
    )
    with pytest.raises(ParseError, match="entity"):
        parse_feed(body, {}, URL)


def test_doctype_text_inside_cdata_is_not_a_dtd() -> None:
    body = (
        b'<rss version="2.0"><channel><item><title>t</title><description><![CDATA['
        b'<!DOCTYPE x [<!ENTITY a "' + b"z" * 100 + b'">]>]]></description></item>'
        b"</channel></rss>"
    )
    assert len(parse_feed(body, {}, URL).entries) == 1


def test_small_safe_entity_still_works() -> None:
    body = (
        b'<!DOCTYPE rss [\n  <!ENTITY id "tag:example.com,">\n]>\n<rss version="2.0"><channel>'
        b'<item><guid isPermaLink="false">&id;2006:/blog/</guid></item></channel></rss>'
    )
    assert parse_feed(body, {}, URL).entries[0].guid == "tag:example.com,2006:/blog/"


def test_external_entities_are_not_expanded() -> None:
    feed = parse_feed(load("xxe.rss.xml"), {}, URL)
    entry = feed.entries[0]
    for value in (entry.title or "", entry.summary or ""):
        assert "root:" not in value
    assert entry.title is not None and entry.title.startswith("before")


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A real TCP listener on 127.0.0.1 that records every connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    hits: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    hits.append(conn.recv(200) or b"<connected>")
                except OSError:
                    hits.append(b"<connected>")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join(2)
    server.close()


def test_parse_path_fetches_nothing(listener: tuple[int, list[bytes]]) -> None:
    port, hits = listener
    base = f"http://127.0.0.1:{port}"
    documents = [
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY net SYSTEM "{base}/ent">\n]>\n'
        '<rss version="2.0"><channel><item><title>a&net;b</title></item></channel></rss>',
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY net SYSTEM "{base}/ent">]>'
        '<rss version="2.0"><channel><item><title>a&net;b</title></item></channel></rss>',
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY % p SYSTEM "{base}/dtd">\n%p;\n]>\n'
        '<rss version="2.0"><channel><item><title>x</title></item></channel></rss>',
        f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{base}/rss.dtd">\n'
        '<rss version="2.0"><channel><item><title>x &amp; y</title></item></channel></rss>',
        f'<?xml version="1.0"?><?xml-stylesheet href="{base}/style.xsl"?>'
        f'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:xi="http://www.w3.org/2001/XInclude">'
        f'<entry><title>t</title><xi:include href="{base}/inc"/></entry></feed>',
    ]
    for document in documents:
        feed = parse_feed(document.encode(), {}, URL)
        assert feed.entries, document
    time.sleep(0.3)
    assert hits == []


# ------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("raw", "language", "expected"),
    [
        ("2024-01-10T08:00:00-05:00", None, datetime(2024, 1, 10, 13, 0, tzinfo=UTC)),
        ("2024-01-10T08:00:00.123456Z", None, datetime(2024, 1, 10, 8, 0, tzinfo=UTC)),
        ("Wed, 10 Jan 2024 06:00:00 GMT", None, datetime(2024, 1, 10, 6, 0, tzinfo=UTC)),
        ("Wed,10 Jan 2024 06:00:00 +0100", None, datetime(2024, 1, 10, 5, 0, tzinfo=UTC)),
        ("Thu, 30 Apr 2015 08:57:00 MEST", None, datetime(2015, 4, 30, 6, 57, tzinfo=UTC)),
        ("2020/1/10 14:33:00", "zh-cn", datetime(2020, 1, 10, 6, 33, tzinfo=UTC)),
        ("2020-01-10 14:33", "ja", datetime(2020, 1, 10, 5, 33, tzinfo=UTC)),
        ("2020-01-10 14:33:00", "en", datetime(2020, 1, 10, 14, 33, tzinfo=UTC)),
        ("2020-01-10 14:33:00", None, datetime(2020, 1, 10, 14, 33, tzinfo=UTC)),
        ("2020-01-10", "zh-tw", datetime(2020, 1, 9, 16, 0, tzinfo=UTC)),
        ("2003-12-31T25:14:55Z", None, None),
        ("2013-02-30 10:00:00", None, None),
        ("9999-12-31T23:59:59-99:99", None, None),
        ("not a date", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_date(raw: str | None, language: str | None, expected: datetime | None) -> None:
    assert parse_date(raw, language) == expected


# Junk that a lenient feedparser sub-parser still reads as some date.
KNOWN_DATE_DISAGREEMENTS = {
    "-0312",
    "031231",
    "03-12-31",
    "-03-12",
    "03335",
    "2013-01-27-01",
}


def test_feedparser_date_vectors() -> None:
    path = SHARED / "corpus" / "torture" / "dates" / "feedparser_date_vectors.json"
    if not path.exists():
        pytest.skip(f"{path} is absent (shared corpus not available)")
    vectors = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    disagreements = set()
    for vector in vectors:
        expected_tuple = vector["expected_value"]
        expected = None
        if expected_tuple:
            year, month, day, hour, minute, second = expected_tuple[:6]
            expected = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        if parse_date(vector["input_value"]) != expected:
            disagreements.add(vector["input_value"])
    assert len(vectors) > 60
    assert disagreements <= KNOWN_DATE_DISAGREEMENTS
