"""Edition curation: rules, lead choice, ordering, age and limit (fixed clock, fixture data)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aggregator.curate import Curator, build_edition, choose_lead
from aggregator.settings import EditionConfig, Rule
from tests.factories import T0, make_stored, make_story

AI = EditionConfig(
    name="ai",
    title="AI",
    include=(Rule(fields=("title", "summary"), keywords=("AI", "大模型", "LLM")),),
    exclude=(Rule(fields=("title",), keywords=("优惠",)),),
    limit=10,
)


def test_latin_keywords_match_whole_words_only() -> None:
    cur = Curator.from_config(AI)
    assert cur.admits(make_stored(1, title="OpenAI ships new AI model"))
    assert not cur.admits(make_stored(2, title="He said the rain would stop", summary_html=""))
    assert cur.admits(make_stored(3, title="An llm benchmark"))  # case-insensitive


def test_chinese_keywords_match_anywhere_and_exclude_wins() -> None:
    cur = Curator.from_config(AI)
    assert cur.admits(make_stored(1, title="阿里发布新一代大模型", summary_html=""))
    assert not cur.admits(make_stored(2, title="大模型会员优惠", summary_html=""))


def test_regex_and_other_fields() -> None:
    ed = EditionConfig(
        name="x",
        title="x",
        include=(
            Rule(fields=("categories",), regex=r"^GPU$"),
            Rule(fields=("source",), keywords=("ithome",)),
            Rule(fields=("tags",), keywords=("zh",)),
        ),
    )
    cur = Curator.from_config(ed)
    assert cur.admits(make_stored(1, categories=("GPU",)))
    assert cur.admits(make_stored(2, source_key="ithome"))
    assert cur.admits(make_stored(3, source_tags=("zh",)))
    assert not cur.admits(make_stored(4, categories=("GPUs",)))


def test_lead_is_earliest_report_of_highest_weight_source() -> None:
    a = make_stored(1, source_weight=1.0, published_at=T0)
    b = make_stored(2, source_weight=2.0, published_at=T0 + timedelta(minutes=5))
    c = make_stored(3, source_weight=2.0, published_at=T0 + timedelta(minutes=1))
    assert choose_lead([a, b, c]).id == 3
    assert choose_lead([a, b, c], "weight").id == 3


def test_lead_rules_pick_first_newest_and_fullest_report() -> None:
    short = "<p>excerpt</p>"
    a = make_stored(1, source_weight=1.0, published_at=T0, content_html="", summary_html=short)
    b = make_stored(
        2, source_weight=2.0, published_at=T0 + timedelta(minutes=5), content_html="<p>" + "x" * 500
    )
    c = make_stored(3, source_weight=1.0, published_at=T0 + timedelta(minutes=9), content_html="")
    assert choose_lead([a, b, c], "earliest").id == 1
    assert choose_lead([a, b, c], "latest").id == 3
    assert choose_lead([a, b, c], "fullest").id == 2
    # ties: same time -> higher weight; same text length -> higher weight, then earlier
    twin = make_stored(4, source_weight=3.0, published_at=T0, content_html="", summary_html=short)
    assert choose_lead([a, twin], "earliest").id == 4
    assert choose_lead([a, twin, c], "fullest").id == 4
    with pytest.raises(ValueError, match="unknown lead rule 'loudest'"):
        choose_lead([a], "loudest")


def test_edition_lead_rule_changes_the_entry_but_not_its_id() -> None:
    first = make_stored(1, title="AI first", source_name="Fast", source_weight=1.0, published_at=T0)
    trusted = make_stored(
        2,
        title="AI trusted",
        source_name="Trusted",
        source_weight=2.0,
        published_at=T0 + timedelta(minutes=30),
    )
    story = make_story(1, first, trusted)
    now = T0 + timedelta(hours=1)
    by_weight = build_edition(AI, [story], base_url="http://h/", now=now).entries[0]
    ed = EditionConfig(name="ai", title="AI", include=AI.include, lead="earliest")
    by_time = build_edition(ed, [story], base_url="http://h/", now=now).entries[0]
    assert (by_weight.title, by_weight.publisher) == ("AI trusted", "Trusted")
    assert (by_time.title, by_time.publisher) == ("AI first", "Fast")
    assert by_weight.id == by_time.id == story.public_id
    assert [s.publisher for s in by_time.sources] == ["Fast", "Trusted"]


def test_edition_exports_story_once_with_all_sources_newest_first() -> None:
    s1 = make_story(
        1,
        make_stored(1, title="AI one", source_name="A", published_at=T0),
        make_stored(2, title="AI one again", source_name="B", published_at=T0 + timedelta(1 / 24)),
    )
    s2 = make_story(2, make_stored(3, title="AI two", published_at=T0 + timedelta(hours=2)))
    s3 = make_story(3, make_stored(4, title="Weather", summary_html=""))
    feed = build_edition(AI, [s1, s2, s3], base_url="http://h/", now=T0 + timedelta(hours=3))
    assert [e.title for e in feed.entries] == ["AI two", "AI one"]
    assert [s.publisher for s in feed.entries[1].sources] == ["A", "B"]
    assert feed.entries[1].id == s1.public_id
    assert feed.base_url == "http://h"
    assert feed.updated == T0 + timedelta(hours=2)


def test_age_limit_and_item_limit() -> None:
    stories = [
        make_story(i, make_stored(i, title=f"AI {i}", published_at=T0 - timedelta(hours=i)))
        for i in range(1, 30)
    ]
    ed = EditionConfig(name="ai", title="AI", limit=5, max_age_days=1)
    feed = build_edition(ed, stories, base_url="http://h", now=T0)
    assert len(feed.entries) == 5
    old = build_edition(ed, stories, base_url="http://h", now=T0 + timedelta(days=3))
    assert old.entries == ()


def test_story_with_missing_publication_date_uses_collection_time() -> None:
    s = make_story(
        1,
        make_stored(
            1, title="AI undated", published_at=None, collected_at=T0 - timedelta(minutes=3)
        ),
    )
    feed = build_edition(AI, [s], base_url="http://h", now=T0)
    assert feed.entries[0].published == T0 - timedelta(minutes=3)
