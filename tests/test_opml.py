"""OPML export and import: round trips, reader-style exports, and hostile documents refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from aggregator.errors import ParseError
from aggregator.model import SourceState
from aggregator.render.opml import OpmlOutline, parse_opml, render_opml

DATA = Path(__file__).resolve().parent / "data" / "opml"

SOURCES = (
    SourceState(
        id=1,
        key="ithome",
        url="https://www.ithome.com/rss/",
        name="IT之家",
        language="zh-CN",
        tags=("科技", "zh"),
        site_url="https://www.ithome.com/",
    ),
    SourceState(
        id=2,
        key="hostile",
        url="https://x.example/feed?a=1&b=2",
        name='X & <Y> "quoted" \x01',
        tags=("news",),
    ),
    SourceState(id=3, key="plain", url="https://plain.example.org/rss", name="Plain"),
    SourceState(
        id=4,
        key="sina",
        url="https://rss.sina.com.cn/tech.xml",
        name="新浪科技",
        tags=("科技",),
        site_url="https://tech.sina.com.cn/",
        enabled=False,
    ),
)


def test_round_trip_keeps_urls_titles_sites_and_first_tag() -> None:
    outlines = parse_opml(render_opml(SOURCES, "订阅 & subscriptions"))
    # Folders come in order of first appearance, so IT之家 and 新浪科技 share the 科技 folder.
    assert outlines == [
        OpmlOutline("https://www.ithome.com/rss/", "IT之家", "https://www.ithome.com/", "科技"),
        OpmlOutline(
            "https://rss.sina.com.cn/tech.xml", "新浪科技", "https://tech.sina.com.cn/", "科技"
        ),
        OpmlOutline("https://x.example/feed?a=1&b=2", 'X & <Y> "quoted"', None, "news"),
        OpmlOutline("https://plain.example.org/rss", "Plain", None, None),
    ]
    assert {o.url for o in outlines} == {s.url for s in SOURCES}


def test_render_is_well_formed_opml_2_and_deterministic() -> None:
    body = render_opml(SOURCES, "订阅 & subscriptions")
    assert body == render_opml(SOURCES, "订阅 & subscriptions")
    root = etree.fromstring(body)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "订阅 & subscriptions"
    feed = root.find(".//outline[@xmlUrl='https://www.ithome.com/rss/']")
    assert feed is not None
    assert feed.attrib == {
        "type": "rss",
        "text": "IT之家",
        "title": "IT之家",
        "xmlUrl": "https://www.ithome.com/rss/",
        "htmlUrl": "https://www.ithome.com/",
        "language": "zh-CN",
        "category": "/科技,/zh",
    }
    assert b"\x01" not in body  # XML-illegal control character dropped, document stays valid


def test_render_empty_list() -> None:
    assert parse_opml(render_opml([], "Nothing")) == []


def test_reader_export_is_flattened_with_folder_paths() -> None:
    outlines = parse_opml((DATA / "reader-export.opml").read_bytes())
    assert outlines == [
        OpmlOutline("https://www.ithome.com/rss/", "IT之家", "https://www.ithome.com/", "科技"),
        OpmlOutline(
            "https://importai.example/feed", "Import AI", "https://importai.example/", "科技/AI"
        ),
        OpmlOutline("https://news.example.com/atom.xml?lang=en&x=1", "Example News", None, "News"),
        # The duplicate IT之家 under News is dropped: first occurrence wins.
        OpmlOutline("https://loose.example.org/rss", "Loose feed", None, "Blogs/Personal"),
        OpmlOutline("https://untitled.example.org/feed", "https://untitled.example.org/feed"),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b"<opml><body><outline", "not well-formed"),
        (b"<html><body></body></html>", "root element is <html>, not <opml>"),
        (b'<opml version="2.0"><head/></opml>', "no <body>"),
        (b"\xff\xfe<\x00o\x00", "not well-formed"),
    ],
)
def test_bad_documents_raise_parse_error_naming_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse_opml(body)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<opml version="2.0"><head><title>&lol9;</title></head>
<body><outline type="rss" text="&lol9;" xmlUrl="https://a.example/feed"/></body></opml>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><head/><body><outline text="&xxe;" xmlUrl="https://a.example/f"/></body></opml>
"""

PLAIN_DOCTYPE = b"""<?xml version="1.0"?>
<!DOCTYPE opml>
<opml version="2.0"><head/><body><outline xmlUrl="https://a.example/f"/></body></opml>
"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, PLAIN_DOCTYPE])
def test_doctype_is_refused_so_no_entity_is_ever_expanded(body: bytes) -> None:
    with pytest.raises(ParseError, match="DOCTYPE is refused"):
        parse_opml(body)


def test_undeclared_entity_is_a_parse_error() -> None:
    body = b'<opml><body><outline text="&nope;" xmlUrl="https://a.example/f"/></body></opml>'
    with pytest.raises(ParseError, match=r"not well-formed.*undefined entity"):
        parse_opml(body)


def test_other_encodings_declared_in_the_prolog_are_read() -> None:
    text = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        '<opml><body><outline text="Caf\xe9" xmlUrl="https://c.example/f"/></body></opml>'
    )
    assert parse_opml(text.encode("latin-1")) == [OpmlOutline("https://c.example/f", "Café")]
