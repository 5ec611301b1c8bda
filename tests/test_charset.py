"""Encoding repair before feedparser: GBK mislabelled or unlabelled, stray invalid bytes."""

from __future__ import annotations

from aggregator.charset import declared_encoding, repair_encoding
from aggregator.parse import parse_feed

TITLE = "小米汽车月销量创新高"


def feed(title_bytes: bytes, decl: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0"' + decl + b'?><rss version="2.0"><channel><title>t</title>'
        b"<link>https://x.example/</link><description>d</description><item><title>"
        + title_bytes
        + b"</title><link>https://x.example/1</link></item><item><title>"
        + "第二条新闻".encode()
        + b"</title><link>https://x.example/2</link></item></channel></rss>"
    )


def test_valid_utf8_is_left_alone() -> None:
    body = feed(TITLE.encode())
    assert repair_encoding(body, {"content-type": "text/xml"}) == (
        body,
        {"content-type": "text/xml"},
    )


def test_gbk_served_as_utf8_is_read_as_gb18030() -> None:
    body = feed(TITLE.encode("gbk")).replace("第二条新闻".encode(), "第二条新闻".encode("gbk"))
    parsed = parse_feed(body, {"content-type": "application/rss+xml; charset=utf-8"}, "https://x/")
    assert [e.title for e in parsed.entries] == [TITLE, "第二条新闻"]


def test_stray_invalid_bytes_stay_local() -> None:
    body = feed("小米".encode() + b"\xff\xfe\xfd" + "汽车月销量创新高".encode())
    parsed = parse_feed(body, {}, "https://x/")
    titles = [e.title for e in parsed.entries]
    assert titles[1] == "第二条新闻"
    assert titles[0] is not None and titles[0].startswith("小米") and titles[0].endswith("新高")


def test_declared_other_charset_is_respected() -> None:
    latin = feed("café".encode("latin-1"), decl=b' encoding="iso-8859-1"')
    assert declared_encoding(latin, {}) == "iso8859-1"
    assert repair_encoding(latin, {})[0] == latin
    assert parse_feed(latin, {}, "https://x/").entries[0].title == "café"
