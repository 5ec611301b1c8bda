"""Entry caches: cutting unchanged entry spans out before parsing changes no item identity.

Unit tests for the span split, then an equivalence check on every XML feed of the fixtures
(and of ``../shared/corpus`` when present): ingesting a body with the cache of an earlier body
yields the same keys, content hashes and posting rate as ingesting it in full, and the entries
it did parse are the very items a full ingest makes.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator import entrycache
from aggregator.entrycache import split_entries, without
from aggregator.ingest import Ingested, ingest
from aggregator.parse import parse_feed
from aggregator.plan import keyed_items

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
URL = "https://pub.example/feed"
HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}
DATA = Path(__file__).parent / "data" / "feeds"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def rss(*entries: str, root: str = '<rss version="2.0">') -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{root}<channel><title>T</title>'
        f"<link>https://pub.example/</link>{''.join(entries)}</channel></rss>"
    ).encode()


def item(guid: str, text: str = "body") -> str:
    return (
        f"<item><title>Title {guid}</title><link>https://pub.example/{guid}</link>"
        f"<guid>{guid}</guid><description>{text}</description>"
        "<pubDate>Tue, 17 Mar 2026 10:34:00 +0000</pubDate></item>"
    )


def test_split_finds_items_and_entries_in_order() -> None:
    body = rss(item("a"), item("b"), item("c"))
    spans = split_entries(body, URL)
    assert spans is not None and len(spans.spans) == 3
    assert [body[a:b].startswith(b"<item>") for a, b in spans.spans] == [True] * 3
    assert body[spans.spans[1][0] : spans.spans[1][1]] == item("b").encode()
    atom = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<entry><id>1</id></entry><entry xml:lang='en'><id>2</id></entry><entry/></feed>"
    )
    spans = split_entries(atom, URL)
    assert spans is not None and [atom[a:b] for a, b in spans.spans] == [
        b"<entry><id>1</id></entry>",
        b"<entry xml:lang='en'><id>2</id></entry>",
        b"<entry/>",
    ]


def test_split_skips_cdata_comments_and_lookalike_names() -> None:
    tricky = (
        "<item><title>t</title><description><![CDATA[<p>an </item> in CDATA</p>]]>"
        "</description><!-- <item> in a comment --><items/><itemized>x</itemized></item>"
    )
    body = rss(tricky, item("b"))
    spans = split_entries(body, URL)
    assert spans is not None and len(spans.spans) == 2
    assert body[spans.spans[0][0] : spans.spans[0][1]] == tricky.encode()


@pytest.mark.parametrize(
    "body",
    [
        rss("<item><title>a</title><item>nested</item></item>"),
        rss("<item><title>unclosed</title>"),
        rss("<title>no items at all</title>"),
        rss(item("a")).replace(b"<rss", b'<!DOCTYPE rss [<!ENTITY x "y">]><rss', 1),
        b"not xml at all",
    ],
    ids=["nested", "unclosed", "no-items", "internal-subset", "garbage"],
)
def test_split_gives_up_on_what_it_cannot_read(body: bytes) -> None:
    assert split_entries(body, URL) is None


def test_digests_depend_on_the_span_and_its_context() -> None:
    base = split_entries(rss(item("a"), item("b")), URL, "application/xml")
    assert base is not None
    moved = split_entries(rss(item("x"), item("a")), URL, "application/xml")
    assert moved is not None and moved.digests[1] == base.digests[0]  # same span, same digest
    for other in (
        split_entries(rss(item("a")), URL + "?2", "application/xml"),
        split_entries(rss(item("a")), URL, "text/xml; charset=gbk"),
        split_entries(rss(item("a"), root='<rss version="2.0" xml:base="/x/">'), URL, ""),
    ):
        assert other is not None and other.digests[0] != base.digests[0]


def test_without_cuts_exactly_the_given_spans() -> None:
    body = rss(item("a"), item("b"), item("c"))
    spans = split_entries(body, URL)
    assert spans is not None
    assert without(body, spans.spans, [0, 2]) == rss(item("b"))
    assert without(body, spans.spans, []) == body


def test_cache_round_trips_and_rejects_junk() -> None:
    got = ingest(rss(item("a"), item("b")), HEADERS, URL, None, NOW)
    cache = entrycache.load(got.cache)
    assert cache is not None and cache.link == "https://pub.example/"
    assert sorted(e.guid or "" for e in cache.entries.values()) == [it.guid for it in got.items]
    assert all(e.date == datetime(2026, 3, 17, 10, 34, tzinfo=UTC) for e in cache.entries.values())
    for junk in (None, b"", b"not zlib", entrycache.zlib.compress(b'{"v": 999}')):
        assert entrycache.load(junk) is None


def _identity(got: Ingested) -> list[tuple[str, str, str | None]]:
    return [(k, it.content_hash, it.canonical_url) for k, it in keyed_items(got.items)]


def _full_items(got: Ingested) -> list[object]:
    return [it for i, it in enumerate(got.items) if i not in got.stubs]


def test_changed_body_parses_only_new_spans_and_matches_a_full_ingest() -> None:
    first = ingest(rss(item("a"), item("b"), item("c")), HEADERS, URL, None, NOW)
    body = rss(item("new"), item("a"), item("b", "EDITED"), item("c"))
    feed = parse_feed(body, HEADERS, URL, entrycache.load(first.cache).entries)  # type: ignore[union-attr]
    assert feed.dropped == (1, 3) and len(feed.entries) == 2
    cached = ingest(body, HEADERS, URL, None, NOW, cache=first.cache)
    full = ingest(body, HEADERS, URL, None, NOW)
    assert _identity(cached) == _identity(full)
    assert cached.stubs == frozenset({1, 3})
    assert _full_items(cached) == [full.items[0], full.items[2]]
    assert cached.mean_gap == full.mean_gap
    assert cached.cache == full.cache  # the next poll gets the same cache either way


def test_a_changed_site_link_parses_everything_again() -> None:
    first = ingest(rss(item("a")), HEADERS, URL, None, NOW)
    moved = rss(item("a"), item("b")).replace(b"https://pub.example/</link>", b"/other/</link>")
    got = ingest(moved, HEADERS, URL, None, NOW, cache=first.cache)
    assert got.stubs == frozenset() and len(got.items) == 2


def test_repeated_guids_keep_the_keys_a_full_ingest_gives() -> None:
    """A new entry reusing a cached entry's GUID changes both keys, as in a full ingest."""
    first = ingest(rss(item("a"), item("b")), HEADERS, URL, None, NOW)
    clash = "<item><title>Other</title><link>https://pub.example/z</link><guid>a</guid></item>"
    body = rss(clash, item("a"), item("b"))
    cached = ingest(body, HEADERS, URL, None, NOW, cache=first.cache)
    full = ingest(body, HEADERS, URL, None, NOW)
    assert _identity(cached) == _identity(full)
    assert len({k for k, _, _ in _identity(full)}) == 3


def _corpus() -> list[Path]:
    files = sorted(p for p in DATA.glob("*.xml"))
    if SHARED.is_dir():
        files += sorted(p for p in (SHARED / "real").rglob("*.xml"))
    return files


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_corpus_feeds_ingest_the_same_with_a_cache(path: Path) -> None:
    body = path.read_bytes()
    full = ingest(body, HEADERS, URL, None, NOW)
    if full.cache is None:
        # no cache only for a body that is no feed, is ill-formed, or that the split refuses
        reasons = full.error or (full.feed and full.feed.warning)
        assert reasons or split_entries(body, URL, HEADERS["content-type"]) is None, path.name
        again = ingest(body, HEADERS, URL, None, NOW, cache=full.cache)
        assert _identity(again) == _identity(full) and not again.stubs
        return
    again = ingest(body, HEADERS, URL, None, NOW, cache=full.cache)
    assert _identity(again) == _identity(full)
    assert len(again.stubs) == len(again.items)  # nothing was parsed again
    assert again.mean_gap == full.mean_gap
    spans = split_entries(body, URL, HEADERS["content-type"])
    assert spans is not None
    # drop the first entry and edit the last: the kept ones come from the cache
    a, b = spans.spans[-1]
    last = body[a:b]
    edited = re.sub(rb"(<title[^>]*>)", rb"\1EDITED ", last, count=1)
    changed = body[: spans.spans[0][0]] + body[spans.spans[0][1] : a] + edited + body[b:]
    cached = ingest(changed, HEADERS, URL, None, NOW, cache=full.cache)
    fresh = ingest(changed, HEADERS, URL, None, NOW)
    assert _identity(cached) == _identity(fresh)
    assert _full_items(cached) == [
        fresh.items[i] for i in range(len(fresh.items)) if i not in cached.stubs
    ]
    assert cached.mean_gap == fresh.mean_gap


@pytest.mark.parametrize(
    "tail",
    [b"<!--" * 200_000, b"<![CDATA[" * 100_000, b"<?" * 400_000, b"<item " * 200_000],
    ids=["comments", "cdata", "instructions", "open-tags"],
)
def test_unterminated_markup_is_refused_in_linear_time(tail: bytes) -> None:
    """Hostile bodies full of openers that never close: the split gives up after one scan
    (a lazy regex retried from every opener took seconds for 80 KB)."""
    body = rss(item("a")).replace(b"</channel></rss>", tail)
    started = time.perf_counter()
    assert split_entries(body, URL) is None
    assert time.perf_counter() - started < 1.0, "quadratic scan"


def test_an_unterminated_comment_ending_in_a_tag_is_not_taken_as_closed() -> None:
    body = rss(item("a"), item("b")).replace(b"</channel></rss>", b"<!-- never closed </rss>")
    assert split_entries(body, URL) is None


@pytest.mark.parametrize("prefix", [b"\n", b"\r\n\r\n  ", b"\xef\xbb\xbf\n"])
def test_blank_lines_before_the_declaration_parse_strictly_and_are_cached(prefix: bytes) -> None:
    """The WordPress stray-newline bug: XML forbids anything before ``<?xml``; feedparser would
    call it ill-formed (loose parse, no entry cache). Trimmed, it parses as the clean feed."""
    clean = (
        b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>T</title>'
        b"<item><guid>a</guid><title>One</title></item>"
        b"<item><guid>b</guid><title>Two &amp; more</title></item></channel></rss>"
    )
    strict = parse_feed(clean, HEADERS, URL)
    sloppy = parse_feed(prefix + clean, HEADERS, URL)
    assert strict.warning is None and sloppy.warning is None
    assert len(strict.entries) == 2 and sloppy.entries == strict.entries
    assert len(sloppy.entry_digests) == 2  # cacheable, like the clean feed
    # text before the declaration is still an error, not something to trim away
    assert parse_feed(b"junk" + clean, HEADERS, URL).warning is not None
