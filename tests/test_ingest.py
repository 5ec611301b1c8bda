"""ingest: bytes to items, never raising; fragments that tell posts apart are kept."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.ingest import Ingested, ingest, pack_digests, stored_digest
from aggregator.model import Item
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


# ------------------------------------------------------------------ known entries (stubs)


def feed(*entries: tuple[str, str]) -> bytes:
    """RSS with (guid, body) entries; titles and links derive from the guid."""
    items = "".join(
        f"<item><title>Title {g}</title><link>/p/{g}</link><guid>{g}</guid>"
        f"<description>&lt;p&gt;{body} &lt;a href='/x/{g}'&gt;more&lt;/a&gt;&lt;/p&gt;"
        "</description></item>"
        for g, body in entries
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://pub.example/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def digests_of(got: Ingested) -> bytes:
    """What the pipeline sends as ``known`` once ``got``'s items are stored."""
    return pack_digests([stored_digest(k, it.content_hash) for k, it in keyed_items(got.items)])


URL = "https://pub.example/rss"


def test_known_entries_come_back_as_stubs_and_edits_are_still_seen() -> None:
    first = ingest(feed(("a", "one"), ("b", "two"), ("c", "three")), {}, URL, None, NOW)
    assert first.stubs == frozenset() and len(first.items) == 3
    body = feed(("new", "fresh"), ("a", "one"), ("b", "two EDITED"), ("c", "three"))
    full = ingest(body, {}, URL, None, NOW)
    got = ingest(body, {}, URL, None, NOW, known=digests_of(first))
    assert got.stubs == frozenset({1, 3})  # a and c: stored unchanged
    for i, (item, ref) in enumerate(zip(got.items, full.items, strict=True)):
        identity = (item.guid, item.url, item.canonical_url, item.title, item.content_hash)
        assert identity == (ref.guid, ref.url, ref.canonical_url, ref.title, ref.content_hash)
        if i in got.stubs:
            assert item.content_html == "" and item.text == ""
        else:
            assert item == ref  # the new entry and the edited one are normalized in full
    assert "EDITED" in got.items[2].content_html
    assert [k for k, _ in keyed_items(got.items)] == [k for k, _ in keyed_items(full.items)]


def test_stubs_need_every_entry_to_have_an_identity() -> None:
    first = ingest(feed(("a", "one"), ("b", "two")), {}, URL, None, NOW)
    untitled = feed(("a", "one"), ("b", "two")).replace(b"<title>Title b</title>", b"")
    got = ingest(untitled, {}, URL, None, NOW, known=digests_of(first))
    assert got.stubs == frozenset()  # b's title would be derived from its body: no shortcut
    assert all(it.content_html for it in got.items)


def test_unknown_digests_change_nothing() -> None:
    body = feed(("a", "one"), ("b", "two"))
    plain = ingest(body, {}, URL, None, NOW)
    other = ingest(feed(("z", "zzz")), {}, URL, None, NOW)
    got = ingest(body, {}, URL, None, NOW, known=digests_of(other))
    assert got.stubs == frozenset() and got.items == plain.items


def test_items_pickle_by_position_and_round_trip() -> None:
    """Items cross the process boundary from parse workers: pickled as ``Item(*values)``
    (cheaper to load than the dataclass default) and equal after the trip."""
    import pickle

    result = ingest(
        rss("https://a.example/1", "https://a.example/2"), {}, "https://a.example/f", None, NOW
    )
    assert len(result.items) == 2
    for item in result.items:
        assert item.__reduce__()[0] is Item
        assert pickle.loads(pickle.dumps(item)) == item
    assert pickle.loads(pickle.dumps(result)) == result
