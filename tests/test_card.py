"""The story card in exports: HTML body, "collected in", JSON Feed ``_aggregator``, HTML page.

The card HTML must follow the reference page's structure (provenance, TL;DR, What changed ...
Key takeaways, Related updates, weekly recap link, Original source, Also reported by), escape
every card field (hostile strings cannot inject markup into a reader or the HTML page), keep the
three formats valid (tests/feedcheck.py) and render byte-identically twice.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import lxml.html
import pytest
from fastapi.testclient import TestClient
from feedcheck import assert_valid_atom, assert_valid_jsonfeed, assert_valid_rss
from lxml import etree

from aggregator.clock import FixedClock
from aggregator.model import Card, EditionEntry, EditionFeed, RelatedRef, Snapshot, SourceRef
from aggregator.render import make_snapshot
from aggregator.render.card import (
    collected_after_seconds,
    collected_in,
    entry_html,
    humanize_gap,
)
from aggregator.render.common import entry_html as common_entry_html
from aggregator.render.jsonfeed import render_jsonfeed
from aggregator.render.rss import render_rss
from aggregator.settings import EditionConfig, ServerSettings, Settings
from aggregator.web import create_app

T0 = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "q" ]]> \x0b'

LLM_CARD = Card(
    backend="llm",
    model="qwen2.5-7b-instruct",
    tldr="Tencent and Alibaba are in talks to invest over $20B in DeepSeek.",
    generated_at=T0 + timedelta(minutes=5),
    input_hash="abc",
    title="Tencent, Alibaba eye $20B+ DeepSeek investment",
    what_changed="Two of China's largest tech firms are negotiating stakes.",
    why_it_matters="It would be the biggest private AI round in China.",
    what_to_do_next="Watch for regulatory filings.",
    who_should_care="Investors and AI startups.",
    key_takeaways=("Valuation above $20B", "Talks are early"),
    tags=("AI", "investment"),
)
EXTRACTIVE_CARD = Card(
    backend="extractive",
    tldr="IT之家 11 月 28 日消息，腾讯、阿里洽谈投资 DeepSeek。",
    generated_at=T0,
    input_hash="def",
    tags=("DeepSeek",),
)
RELATED = (
    RelatedRef(
        "urn:uuid:00000000-0000-5000-8000-000000000009",
        "DeepSeek releases V3.1",
        "https://www.ithome.com/0/799/900.htm",
        T0 - timedelta(days=2),
    ),
    RelatedRef("urn:uuid:00000000-0000-5000-8000-000000000008", "No link here", None, T0),
)
STORY = EditionEntry(
    id="urn:uuid:5b1f2c3e-0000-4000-8000-000000000001",
    title="腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元",
    url="https://www.ithome.com/0/800/001.htm",
    publisher="IT之家",
    publisher_url="https://www.ithome.com/",
    publisher_feed_url="https://www.ithome.com/rss/",
    published=T0,
    updated=T0 + timedelta(minutes=10),
    collected_at=T0 + timedelta(minutes=3),
    summary_html="<p>IT之家 11 月 28 日消息……</p>",
    content_html="<p>IT之家 11 月 28 日消息，腾讯、阿里洽谈投资 DeepSeek。</p>",
    author=None,
    categories=("AI",),
    language="zh-CN",
    sources=(
        SourceRef("IT之家", "https://www.ithome.com/0/800/001.htm", "腾讯、阿里洽谈投资", T0),
        SourceRef(
            "The Verge", "https://www.theverge.com/ai/1", "Tencent, Alibaba eye DeepSeek", T0
        ),
    ),
    score=2.75,
    card=LLM_CARD,
    related=RELATED,
    recap_url="https://news.example.net/editions/ai/recaps/2026-W47",
)
FEED = EditionFeed(
    name="ai",
    title="AI",
    description="AI news",
    base_url="https://news.example.net",
    updated=T0 + timedelta(hours=1),
    entries=(STORY,),
)


def _doc(fragment: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(fragment, create_parent="div")


def _headings(fragment: str) -> list[str]:
    return [h.text_content() for h in _doc(fragment).iter("h3")]


# --------------------------------------------------------------------------- collected in


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "<1m"),
        (59, "<1m"),
        (180, "3m"),
        (3599, "59m"),
        (2 * 3600, "2h"),
        (2 * 3600 - 1, "1h"),
        (86400, "1d"),
        (7 * 86400, "7d"),
        (7 * 86400 + 1, None),  # a backfill of old items, not collection latency
        (-1, None),  # publisher clock ahead of ours
        (-7200, None),
        (None, None),
    ],
)
def test_humanize_gap(seconds: float | None, expected: str | None) -> None:
    assert humanize_gap(seconds) == expected


def test_collected_in_from_entry() -> None:
    assert collected_after_seconds(STORY) == 180
    assert collected_in(STORY) == "collected in 3m"
    later = replace(STORY, collected_at=T0 + timedelta(hours=2, minutes=5))
    assert collected_in(later) == "collected in 2h"
    # The feed gave no date: published *is* collected_at, so there is nothing to say.
    undated = replace(STORY, sources=(replace(STORY.sources[0], published=None),))
    assert collected_after_seconds(undated) is None and collected_in(undated) is None
    ahead = replace(STORY, collected_at=T0 - timedelta(minutes=5))
    assert collected_after_seconds(ahead) == -300 and collected_in(ahead) is None


# --------------------------------------------------------------------------- card HTML


def test_llm_card_follows_the_reference_structure() -> None:
    body = entry_html(STORY)
    assert _headings(body) == [
        "30-second TL;DR",
        "What changed",
        "Why it matters",
        "What to do next",
        "Who should care",
        "Key takeaways",
        "Related updates",
    ]
    doc = _doc(body)
    text = doc.text_content()
    assert "AI-generated analysis (qwen2.5-7b-instruct)" in text
    assert "Tencent, Alibaba eye $20B+ DeepSeek investment" in text  # translated title
    assert [li.text_content() for li in doc.xpath("//h3[.='Key takeaways']/following::ul[1]/li")]
    assert "Valuation above $20B" in text and "Talks are early" in text
    # The order of the parts: card, then the article, then related, recap, source, others.
    order = [
        text.index(s)
        for s in (
            "Tencent and Alibaba are in talks",
            "腾讯、阿里洽谈投资 DeepSeek。",
            "DeepSeek releases V3.1",
            "Read the weekly recap",
            "Original source: IT之家 · collected in 3m",
            "Also reported by:",
        )
    ]
    assert order == sorted(order)
    links = {a.text_content(): a.get("href") for a in doc.iter("a")}
    assert links["DeepSeek releases V3.1"] == "https://www.ithome.com/0/799/900.htm"
    assert links["Read the weekly recap"] == STORY.recap_url
    assert links["IT之家"] == STORY.url
    assert "No link here" in text and "No link here" not in links  # named, not linked
    assert "(2026-11-26)" in text  # the related story's date
    # Only headings, paragraphs, lists, links, emphasis and rules: readable without CSS.
    tags = {el.tag for el in doc.iter()} - {"div"}
    assert tags <= {"h3", "p", "ul", "li", "a", "em", "strong", "hr"}


def test_extractive_card_is_labelled_as_extracted_not_ai() -> None:
    body = entry_html(replace(STORY, card=EXTRACTIVE_CARD, related=(), recap_url=None))
    assert _headings(body) == ["Summary (extracted)"]
    assert "AI-generated" not in body
    assert "腾讯、阿里洽谈投资 DeepSeek。" in _doc(body).text_content()
    assert "Related updates" not in body and "weekly recap" not in body


def test_without_card_the_body_is_content_then_footer() -> None:
    plain = replace(STORY, card=None, related=(), recap_url=None)
    body = entry_html(plain)
    assert body.startswith(plain.content_html + "<hr/>")
    assert "<h3>" not in body
    assert common_entry_html(plain) == body  # the helper the renderers used keeps working


def test_hostile_card_fields_cannot_inject_markup() -> None:
    hostile_card = replace(
        LLM_CARD,
        model=HOSTILE,
        title=HOSTILE,
        tldr=HOSTILE,
        what_changed=HOSTILE,
        why_it_matters=HOSTILE,
        what_to_do_next=HOSTILE,
        who_should_care=HOSTILE,
        key_takeaways=(HOSTILE, "ok"),
    )
    entry = replace(
        STORY,
        card=hostile_card,
        related=(
            RelatedRef("urn:x:1", HOSTILE, "javascript:alert(1)", T0),
            RelatedRef("urn:x:2", "fine", 'https://e.example/"><script>x</script>', T0),
        ),
        recap_url="javascript:alert(2)",
    )
    body = entry_html(entry)
    doc = _doc(body)
    assert not doc.xpath("//script | //img | //*[@onerror]")
    assert all(not a.get("href", "").lower().startswith("javascript") for a in doc.iter("a"))
    assert "Read the weekly recap" not in body  # a non-http recap URL is dropped
    assert doc.text_content().count('<script>alert("x")</script>') >= 7  # shown as text
    # The same holds after the RSS round trip (CDATA, with "]]>" inside) and in JSON Feed.
    feed = replace(FEED, entries=(entry,))
    rss = render_rss(feed)
    assert_valid_rss(rss)
    description = etree.fromstring(rss).findtext("channel/item/description")
    assert description == body.replace("\x0b", "")
    assert not _doc(description).xpath("//script | //img | //*[@onerror]")
    item = json.loads(render_jsonfeed(feed))["items"][0]
    assert item["_aggregator"]["card"]["tldr"] == HOSTILE  # structured fields stay raw text
    assert not _doc(item["content_html"]).xpath("//script | //img | //*[@onerror]")
    assert item["_aggregator"]["related"][0]["url"] is None
    assert item["_aggregator"]["recap_url"] is None


# --------------------------------------------------------------------------- exports


def test_jsonfeed_aggregator_carries_card_related_recap() -> None:
    item = json.loads(render_jsonfeed(FEED))["items"][0]
    ext = item["_aggregator"]
    assert ext["kind"] == "story"
    assert ext["collected_after_seconds"] == 180
    assert "score" not in ext  # decays with the clock: exporting it would change every ETag
    assert ext["recap_url"] == STORY.recap_url
    assert ext["card"] == {
        "title": LLM_CARD.title,
        "tldr": LLM_CARD.tldr,
        "what_changed": LLM_CARD.what_changed,
        "why_it_matters": LLM_CARD.why_it_matters,
        "what_to_do_next": LLM_CARD.what_to_do_next,
        "who_should_care": LLM_CARD.who_should_care,
        "key_takeaways": ["Valuation above $20B", "Talks are early"],
        "tags": ["AI", "investment"],
        "ai_generated": True,
        "backend": "llm",
        "model": "qwen2.5-7b-instruct",
        "generated_at": "2026-11-28T08:35:00Z",
    }
    assert ext["related"] == [
        {
            "id": RELATED[0].id,
            "title": "DeepSeek releases V3.1",
            "url": "https://www.ithome.com/0/799/900.htm",
            "published": "2026-11-26T08:30:00Z",
        },
        {
            "id": RELATED[1].id,
            "title": "No link here",
            "url": None,
            "published": "2026-11-28T08:30:00Z",
        },
    ]
    assert item["summary"] == LLM_CARD.tldr  # the TL;DR is what JSON Feed's summary is for
    assert item["content_html"] == entry_html(STORY)
    plain = json.loads(render_jsonfeed(replace(FEED, entries=(replace(STORY, card=None),))))
    assert plain["items"][0]["_aggregator"]["card"] is None
    extractive = replace(STORY, card=EXTRACTIVE_CARD)
    ext2 = json.loads(render_jsonfeed(replace(FEED, entries=(extractive,))))["items"][0]
    assert ext2["_aggregator"]["card"]["ai_generated"] is False
    assert ext2["_aggregator"]["card"]["backend"] == "extractive"


@pytest.mark.parametrize("card", [LLM_CARD, EXTRACTIVE_CARD, None])
def test_validators_pass_and_bytes_are_deterministic(card: Card | None) -> None:
    entries = (
        replace(STORY, card=card),
        replace(STORY, id="urn:uuid:5b1f2c3e-0000-4000-8000-000000000002", card=card, related=()),
    )
    feed = replace(FEED, entries=entries)
    checks = {"rss": assert_valid_rss, "atom": assert_valid_atom, "json": assert_valid_jsonfeed}
    for fmt, check in checks.items():
        first = make_snapshot(feed, fmt, T0)
        check(first.body)
        again = make_snapshot(replace(feed, entries=tuple(entries)), fmt, T0 + timedelta(hours=1))
        assert again.body == first.body and again.etag == first.etag
    if card is not None:
        body = make_snapshot(feed, "atom", T0).body.decode()
        assert "30-second TL;DR" in body or "Summary (extracted)" in body


# --------------------------------------------------------------------------- HTML page


class _Store:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def get_snapshot(self, edition: str, fmt: str) -> Snapshot | None:
        return self.snapshot if (edition, fmt) == ("ai", "json") else None

    def ping(self) -> None:
        return None


def test_edition_page_shows_the_card() -> None:
    hostile = replace(
        STORY,
        id="urn:uuid:5b1f2c3e-0000-4000-8000-000000000003",
        title="Hostile",
        card=replace(LLM_CARD, tldr=HOSTILE, key_takeaways=(HOSTILE,)),
        related=(RelatedRef("urn:x", HOSTILE, "javascript:alert(1)", T0),),
    )
    feed = replace(FEED, entries=(STORY, hostile, replace(STORY, id="urn:x:plain", card=None)))
    settings = Settings(
        config_path="test.toml",
        server=ServerSettings(base_url="https://news.example.net"),
        editions=(EditionConfig(name="ai", title="AI"),),
    )
    app = create_app(settings, _Store(make_snapshot(feed, "json", T0)), clock=FixedClock(T0))
    with TestClient(app) as client:
        response = client.get("/editions/ai")
    assert response.status_code == 200
    page = lxml.html.fromstring(response.text)
    first = page.xpath("//article")[0]
    text = " ".join(first.text_content().split())
    for part in (
        "collected in 3m",
        "AI-generated analysis (qwen2.5-7b-instruct)",
        "30-second TL;DR",
        LLM_CARD.tldr,
        "What changed",
        "Who should care",
        "Key takeaways",
        "Talks are early",
        "Related updates",
        "DeepSeek releases V3.1",
        "Read the weekly recap",
        "Also reported by",
        "Original source: IT之家",
    ):
        assert part in text, part
    links = {a.text_content(): a.get("href") for a in first.iter("a")}
    assert links["DeepSeek releases V3.1"] == RELATED[0].url
    assert links["Read the weekly recap"] == STORY.recap_url
    assert not page.xpath("//script | //img | //*[@onerror]")
    assert not page.xpath('//a[starts-with(@href, "javascript")]')
    assert HOSTILE.split("\x0b")[0].strip() in page.xpath("//article")[1].text_content()
    plain = " ".join(page.xpath("//article")[2].text_content().split())
    assert "TL;DR" not in plain and "IT之家 11 月 28 日消息" in plain  # no card: the summary


def test_renders_an_hour_apart_give_the_same_bytes_when_nothing_changed() -> None:
    """Score decays with the clock; nothing clock-dependent may leak into the exported bytes,
    or every render would change the ETag and readers would never get a 304."""
    from datetime import timedelta

    from aggregator.publish import render_all
    from aggregator.settings import EditionConfig
    from tests.factories import T0, make_stored, make_story

    stories = [
        make_story(1, make_stored(1, source_key="a", source_name="A")),
        make_story(
            2,
            make_stored(2, source_key="a", source_name="A", title="Same event"),
            make_stored(3, source_key="b", source_name="B", title="Same event"),
        ),
    ]
    edition = EditionConfig(name="top", title="Top", sort="score")
    first = render_all([edition], stories, base_url="http://x", now=T0 + timedelta(hours=1))
    later = render_all([edition], stories, base_url="http://x", now=T0 + timedelta(hours=3))
    assert [s.etag for s in first] == [s.etag for s in later]
