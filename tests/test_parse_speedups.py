"""The parse-path shortcuts return exactly what the slow paths return.

Sanitizer cleaners shared per site, text taken from sanitized markup by a regex over a prefix,
and feedparser's memoized URL joins and cp1252 table: each is checked against the reference
computation it replaces.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import feedparser
import feedparser.mixin
import feedparser.urls
import feedparser.util
import httpx
import pytest
from feedparser.html import _cp1252

from aggregator.fetch import _plain_headers
from aggregator.parse import _install_speedups
from aggregator.sanitize import (
    _absolute_http,
    _cleaner,
    html_to_text,
    sanitize_html,
    sanitized_text,
)

BASES = [
    "https://site.example/2026/11/post.html?utm=1#frag",
    "https://user:pw@site.example:8443/a/b/",
    "http://Site.Example/x",
    "https://site.example",
    "https://site.example\\odd/path",
    "mailto:someone@example.com",
    None,
]
SNIPPETS = [
    "<p>no links at all</p>",
    '<a href="/root/page">r</a><img src="/i.png">',
    "<a href='/root'>single quotes</a> <a href=/unquoted>u</a>",
    '<a href="//cdn.example/x.js">scheme-relative</a>',
    '<a href="  /spaced">leading space</a>',
    '<a href="../up.html">up</a><a href="same.html">same</a>',
    '<a href="?q=1">query</a><a href="#n">fragment</a><a href="">empty</a>',
    '<a href="https://abs.example/">abs</a><img src="/rel.png">',
    '<a href="&#47;encoded">entity start</a>',
    '<a HREF="/UPPER">case</a><IMG SRC="rel.png">',
    '<a href="javascript:alert(1)">js</a><a href=" javascript:alert(1)">js2</a>',
    '<img src="data:image/png;base64,AAAA"><a href="mailto:x@y.z">m</a>',
    '<p>text mentioning href="/looks-like" an attribute</p>',
    '<blockquote cite="/c">q</blockquote><a title="a>b" href="x">gt in attr</a>',
    '<a href="\\\\backslash">b</a><a href="\t/tab">t</a>',
    "<p>İstanbul <a href='/i'>dotted capital I lowers to two characters</a></p>",
]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("snippet", SNIPPETS)
def test_shared_cleaners_resolve_like_the_entry_base(snippet: str, base: str | None) -> None:
    """What ``sanitize_html`` returns equals cleaning with a cleaner built for the full base."""
    reference = _cleaner(_absolute_http(base)).clean(snippet).strip()
    assert sanitize_html(snippet, base) == reference


def test_entries_of_one_site_share_a_cleaner() -> None:
    _cleaner.cache_clear()
    for n in range(50):
        sanitize_html('<a href="/tag/x">t</a><img src="/i.png">', f"https://s.example/p/{n}")
    assert _cleaner.cache_info().currsize == 1  # one per site, not one per entry
    got = sanitize_html('<a href="/tag/x">t</a>', "https://s.example/p/7?x=1")
    assert 'href="https://s.example/tag/x"' in got


LONG = "".join(
    f'<p>Paragraph {n} with <b>bold</b> &amp; <a href="https://x.example/{n}" '
    f'title="a &gt; b">a link</a> 中文内容第{n}段。</p><ul><li>one</li><li>two</li></ul>'
    for n in range(400)
)


@pytest.mark.parametrize("limit", [0, 1, 80, 400, 2000, 10_000, 100_000])
def test_sanitized_text_is_the_start_of_html_to_text(limit: int) -> None:
    for raw in [LONG, LONG[:5000], "<p>short &nbsp; text</p>", "plain words", *SNIPPETS]:
        markup = sanitize_html(raw, "https://x.example/")
        assert sanitized_text(markup, limit) == html_to_text(markup)[:limit]


def test_feedparser_url_joins_are_memoized_and_unchanged() -> None:
    _install_speedups()  # the first parse of a process does it
    cases = [
        ("http://a.example/b/c", "../d"),
        ("http://a.example/b/c", "http:////x.example//y"),
        ("", "relative"),
        ("http://a.example/", "javascript:alert(1)"),
        ("http://a.example/", ""),
    ]
    for base, uri in cases:
        assert feedparser.mixin._urljoin(base, uri) == feedparser.urls._urljoin(base, uri)
        assert feedparser.mixin.make_safe_absolute_uri(
            base, uri
        ) == feedparser.urls.make_safe_absolute_uri(base, uri)
    assert feedparser.mixin._urljoin is not feedparser.urls._urljoin  # the cached wrapper


def _url_cases() -> list[str]:
    """Absolute-looking URLs, plain and tricky, built from parts (8,754)."""
    import itertools

    schemes = ["http", "https", "HTTP", "ftp", "javascript"]
    hosts = ["a.example", "A.Example:8080", "u:p@h.example", "[::1]", "h.例子", "h%41.x", ""]
    paths = ["", "/", "/p", "/a;b", "/a;", "//x", "/中文/页", "/a b", "/a\tb", "/%7e"]
    queries = ["", "?", "?a=1&b=2", "?a?b", "?x#"]
    fragments = ["", "#", "#f", "#f#g", "#f?x"]
    urls = [
        f"{sch}://{h}{p}{q}{f}"
        for sch, h, p, q, f in itertools.product(schemes, hosts, paths, queries, fragments)
    ]
    return [*urls, " http://a.example/x", "http://a.example/x ", "http:///a.example/x", "http:x"]


def test_absolute_url_shortcut_joins_like_feedparser() -> None:
    """Every URL the shortcut answers for itself gets what feedparser's functions return, and
    the shortcut does take the common case (a plain https link)."""
    from aggregator.parse import _PLAIN_ABSOLUTE, _absolute_first

    join = _absolute_first(feedparser.urls._urljoin)
    safe = _absolute_first(feedparser.urls.make_safe_absolute_uri)
    taken = 0
    for uri in _url_cases():
        taken += bool(_PLAIN_ABSOLUTE.match(uri))
        for base in ("https://b.example/feed", "http://b.example/", "", "feed.xml"):
            assert join(base, uri) == feedparser.urls._urljoin(base, uri), (base, uri)
            assert safe(base, uri) == feedparser.urls.make_safe_absolute_uri(base, uri), uri
    assert taken > 500
    assert _PLAIN_ABSOLUTE.match("https://www.ithome.com/0/900/123.htm?utm_source=rss#c")


def test_cp1252_table_translates_like_the_dict() -> None:
    _install_speedups()
    table = feedparser.mixin._cp1252
    assert isinstance(table, str) and len(table) == 0x10000
    text = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x10000)))
    text += "\U0001f600 emoji \U00020000 astral"
    assert text.translate(table) == text.translate(_cp1252)


@pytest.mark.parametrize(
    "raw",
    [
        [(b"ETag", b'"x"'), (b"Content-Type", b"text/xml; charset=utf-8")],
        [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"SET-COOKIE", b"c=3")],
        [(b"X-Name", "café".encode())],  # UTF-8
        [(b"X-Name", "café".encode("latin-1"))],  # not UTF-8: httpx falls back to latin-1
        [],
    ],
)
def test_fetch_header_dict_matches_httpx(raw: list[tuple[bytes, bytes]]) -> None:
    headers = httpx.Headers(raw)
    assert _plain_headers(headers) == dict(headers.items())


# --------------------------------------------------------------------------- feedparser itself

SHARED_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
FIXTURES = Path(__file__).resolve().parent / "data" / "feeds"


def _feed_files() -> list[Path]:
    files = sorted(p for p in FIXTURES.iterdir() if p.is_file())
    if SHARED_CORPUS.is_dir():  # a user's clone has no ../shared: the fixtures alone then
        files += sorted(p for p in SHARED_CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")
    return files


def _plain(value: object) -> object:
    """A feedparser result as plain data (exceptions by type and text), for comparing runs."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in dict.items(value)} | {"__type": type(value).__name__}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return value


def test_feedparser_results_are_unchanged_by_the_dict_copy_and_pop_shortcuts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every fixture (and, when present, every file of ../shared/corpus) parses to the same
    result, key for key, with feedparser's own ``FeedParserDict`` methods, ``copy`` and
    ``pop``."""
    _install_speedups()
    fast = {p: _plain(feedparser.parse(p.read_bytes())) for p in _feed_files()}
    fpd = feedparser.util.FeedParserDict
    for name in ("__getitem__", "get", "__contains__", "__setitem__"):
        original = vars(fpd)[name].__wrapped__  # feedparser's own method
        assert original.__module__ == "feedparser.util"
        monkeypatch.setattr(fpd, name, original)
    monkeypatch.setattr(feedparser.mixin, "copy", copy)
    mixin = feedparser.mixin._FeedParserMixin
    monkeypatch.setattr(mixin, "pop", mixin.pop.__wrapped__)  # feedparser's own pop
    slow = {p: _plain(feedparser.parse(p.read_bytes())) for p in fast}
    assert len(fast) >= 10
    assert sum(1 for r in slow.values() if r["entries"]) >= 8  # type: ignore[index]
    for path, result in fast.items():
        assert result == slow[path], path


def test_feedparser_results_are_unchanged_by_the_lean_sax_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every fixture (and corpus file) parses to the same result with the standard library's
    expat driver as with ``aggregator.saxdriver`` (buffered text, cached names), and the lean
    driver is the one feedparser uses."""
    import feedparser.api

    from aggregator import saxdriver

    _install_speedups()
    assert feedparser.api.PREFERRED_XML_PARSERS == ["aggregator.saxdriver"]
    calls = 0
    real = saxdriver.create_parser

    def counting(*args: object) -> saxdriver.LeanExpatParser:
        nonlocal calls
        calls += 1
        return real(*args)

    monkeypatch.setattr(saxdriver, "create_parser", counting)
    lean = {p: _plain(feedparser.parse(p.read_bytes())) for p in _feed_files()}
    assert calls >= 10  # the strict parser ran on the lean driver
    seen = calls
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", [])  # expatreader itself
    standard = {p: _plain(feedparser.parse(p.read_bytes())) for p in lean}
    assert calls == seen  # the comparison run did not use the lean driver
    for path, result in lean.items():
        assert result == standard[path], path


def test_lean_sax_driver_reports_text_in_one_piece_per_run() -> None:
    """An escaped description arrives as one ``characters`` call, not one per entity."""
    import xml.sax
    import xml.sax.handler

    from aggregator.saxdriver import create_parser

    pieces: list[str] = []
    names: list[tuple[str | None, str]] = []

    class Handler(xml.sax.handler.ContentHandler):
        def characters(self, content: str) -> None:
            pieces.append(content)

        def startElementNS(
            self, name: tuple[str | None, str], qname: object, attrs: object
        ) -> None:
            names.append(name)

    parser = create_parser()
    parser.setFeature(xml.sax.handler.feature_namespaces, 1)
    parser.setContentHandler(Handler())
    doc = (
        b'<rss xmlns:dc="http://purl.org/dc/elements/1.1/"><d>&lt;p&gt;a &amp; b&lt;/p&gt;'
        b"<![CDATA[<i>c</i>]]></d><dc:creator>x</dc:creator><d/></rss>"
    )
    parser.parse(io.BytesIO(doc))
    assert pieces == ["<p>a & b</p><i>c</i>", "x"]
    assert names == [
        (None, "rss"),
        (None, "d"),
        ("http://purl.org/dc/elements/1.1/", "creator"),
        (None, "d"),
    ]


def test_dict_shortcuts_answer_like_feedparser_for_special_and_aliased_keys() -> None:
    _install_speedups()
    d = feedparser.util.FeedParserDict(
        {
            "tags": [{"term": "ai"}],
            "links": [{"rel": "enclosure", "href": "e.mp3"}, {"rel": "license", "href": "l"}],
            "summary": "s",
            "id": "i",
            "published": "p",
        }
    )
    assert d["category"] == "ai" and d["license"] == "l"
    assert d["enclosures"] == [{"href": "e.mp3"}]
    assert d["description"] == "s" and d["guid"] == "i" and d.get("guid") == "i"
    assert "description" in d and "copyright" not in d and d.get("copyright", 7) == 7
    with pytest.warns(DeprecationWarning):
        assert d["updated"] == "p"  # feedparser's temporary fallback, kept
    assert "updated" not in d
    assert d.get("missing") is None and "missing" not in d
    with pytest.raises(KeyError):
        d["missing"]
    d["description"] = "new"  # an alias: stored under its real key
    d["guid"] = "j"
    assert dict.get(d, "summary") == "new" and dict.get(d, "id") == "j"
    assert "guid" not in dict.keys(d)
    assert d.summary == "new"
    with pytest.raises(AttributeError):
        d.nothing  # noqa: B018


def test_deepcopy_shortcut_copies_like_copy_deepcopy() -> None:
    _install_speedups()
    fpd = feedparser.util.FeedParserDict
    params = fpd({"type": "text/html", "language": None, "base": "http://x/", "base64": False})
    fast = feedparser.mixin.copy.deepcopy(params)
    assert fast == copy.deepcopy(params) and type(fast) is fpd and fast is not params
    nested = fpd({"links": [fpd({"href": "x"})]})
    deep = feedparser.mixin.copy.deepcopy(nested)  # not atoms only: the real deepcopy
    assert deep == nested and deep["links"][0] is not nested["links"][0]


def test_plain_segment_shortcut_joins_like_feedparser() -> None:
    """A GUID that is one plain path segment, resolved against every kind of base, gets what
    feedparser's functions return, and the shortcut takes the common case."""
    import itertools

    from aggregator.parse import _PLAIN_SEGMENT, _absolute_first, _base_directory

    join = _absolute_first(feedparser.urls._urljoin)
    safe = _absolute_first(feedparser.urls.make_safe_absolute_uri)
    hosts = ["a.example", "A.Example:8080", "u:p@h.example", "h.example:", "[::1]", "h.例子"]
    paths = [
        "", "/", "/feed", "/feed/", "/a/b/c.xml", "/a//b/c", "//x", "/a/./b", "/a/../b",
        "/.hidden/x", "/a/.", "/a/..", "/a;p/b", "/%7e/x", "/中文/页", "/a b/c",
    ]  # fmt: skip
    tails = ["", "?", "?q=1", "?a/b", "#", "#f", "#f/g", "?q#f"]
    bases = [
        f"{s}://{h}{p}{t}"
        for s, h, p, t in itertools.product(["http", "https", "HTTP", "ftp"], hosts, paths, tails)
    ] + ["", "feed.xml", "/rel/base", "http:///x", "http://a.example\\\\x/y"]
    uris = [
        "12345", "pub0-51", "post-7.html", "a.b", "A~_!$&'()*+,=@-", ".", "..", ".x", "a:b",
        "a/b", "a?b", "a#b", "a;b", "%41", "中文", "a b", "", " x", "x ", "-", "_",
    ]  # fmt: skip
    taken = 0
    for base, uri in itertools.product(bases, uris):
        assert join(base, uri) == feedparser.urls._urljoin(base, uri), (base, uri)
        assert safe(base, uri) == feedparser.urls.make_safe_absolute_uri(base, uri), (base, uri)
        taken += bool(_PLAIN_SEGMENT.match(uri) and _base_directory(base) is not None)
    assert taken > 1000
    assert join("https://pub0.example/feed?x=1", "pub0-51") == "https://pub0.example/pub0-51"


C1_FEED = (
    "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
    "<title>Pub \u0093quoted\u0094</title><link>https://pub.example/</link>"
    "<description>plain ASCII</description>"
    "<item><title>\u4e2d\u0093\u6587\u0094 \u0080 \u0081 \u009f</title>"
    "<description>&lt;p&gt;caf\u00e9 \u0085 \u2019 \u4e2d\u6587&lt;/p&gt;</description>"
    "<guid>a</guid></item>"
    "<item><title>\u4e2d\u6587 only</title><description>\u201ccurly\u201d</description>"
    "<guid>b</guid></item></channel></rss>"
).encode()


def test_pop_translates_c1_controls_only_where_there_are_some(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guarded ``pop`` is installed on this feedparser and maps C1 controls (in titles,
    HTML, Chinese text) exactly as feedparser's own ``pop`` does; text without one is left
    as it is."""
    _install_speedups()
    mixin = feedparser.mixin._FeedParserMixin
    guarded = mixin.pop
    assert guarded.__wrapped__.__code__.co_filename.endswith("mixin.py")
    fast = feedparser.parse(C1_FEED)
    assert fast.entries[0].title == "\u4e2d\u201c\u6587\u201d \u20ac \u0081 \u0178"
    assert fast.feed.title == "Pub \u201cquoted\u201d"
    assert fast.entries[1].summary == "\u201ccurly\u201d"
    monkeypatch.setattr(mixin, "pop", guarded.__wrapped__)
    assert _plain(feedparser.parse(C1_FEED)) == _plain(fast)


def test_pop_is_left_alone_when_its_source_is_not_the_expected_one() -> None:
    from aggregator.parse import _guarded_pop

    class Other:
        def pop(self, element: str) -> str:
            return element.upper()

    assert _guarded_pop(Other) is None
