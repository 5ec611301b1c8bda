"""Ranking (``aggregator.rank``) and its use in editions: the score formula, both sort orders,
the per-publisher cap, age and limit cuts (fixture stories, fixed clock)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from aggregator.curate import build_edition, decide
from aggregator.model import StoredItem, StoryRecord
from aggregator.rank import Candidate, coverage, freshness, place, score_story
from aggregator.settings import EditionConfig, Rule
from tests.factories import T0, make_stored, make_story

H = 3600.0


def report(
    id: int, source: str, *, hours_ago: float, weight: float = 1.0, **kw: object
) -> StoredItem:
    """A report by publisher ``source`` published ``hours_ago`` before T0."""
    return make_stored(
        id,
        source_key=source,
        source_name=source.title(),
        source_weight=weight,
        published_at=T0 - timedelta(hours=hours_ago),
        url=f"https://{source}.example/{id}",
        **kw,
    )


def test_coverage_and_freshness_curves() -> None:
    assert coverage(1) == 1.0
    assert coverage(3) == pytest.approx(1 + math.log(3))
    assert coverage(0) == 1.0  # never below one publisher
    assert coverage(10) - coverage(9) < coverage(2) - coverage(1)  # diminishing
    assert freshness(0, 24 * H) == 1.0
    assert freshness(24 * H, 24 * H) == pytest.approx(0.5)
    assert freshness(48 * H, 24 * H) == pytest.approx(0.25)
    assert freshness(-5 * H, 24 * H) == 1.0  # a future date is not fresher than now


def test_score_parts_follow_the_documented_formula() -> None:
    parts = score_story(
        weight=1.2,
        publishers=3,
        boosts=(("launch", 0.5), ("zh", 0.25)),
        first_published=T0 - timedelta(hours=12),
        now=T0,
        half_life_seconds=24 * H,
    )
    expected = (1.2 * (1 + math.log(3)) + 0.75) * 0.5 ** (12 / 24)
    assert parts.score == pytest.approx(expected)
    assert (parts.publishers, parts.boost, parts.age_seconds) == (3, 0.75, 12 * H)
    assert "[3 publishers]" in parts.formula() and "half-life 1d" in parts.formula()
    demoted = score_story(
        weight=1.0, publishers=1, boosts=(("x", -5.0),), first_published=T0, now=T0
    )
    assert demoted.score == 0.0  # clamped, never negative


def test_place_caps_per_source_then_limits() -> None:
    cands = [
        Candidate(i, f"id{i}", "fire" if i < 6 else f"s{i}", T0 - timedelta(hours=i), 10.0 - i)
        for i in range(10)
    ]
    placed = place(cands, sort="score", limit=5, max_per_source=2)
    status = {p.key: p.status for p in placed}
    assert [p.key for p in placed if p.status == "in"] == [0, 1, 6, 7, 8]
    assert all(status[k] == "capped" for k in (2, 3, 4, 5))
    assert status[9] == "over_limit"
    capped = next(p for p in placed if p.key == 2)
    assert capped.capped_by == ("id0", "id1") and capped.position == 3
    assert [p.rank for p in placed if p.status == "in"] == [1, 2, 3, 4, 5]
    unlimited = place(cands, sort="time", limit=100)
    assert all(p.status == "in" for p in unlimited)
    with pytest.raises(ValueError, match="unknown sort"):
        place(cands, sort="random", limit=1)


def stories_fixture() -> list[StoryRecord]:
    """A firehose (6 single-report stories, the newest), a 3-publisher story from 10 h ago and
    a heavy-weight single report from 6 h ago."""
    fire = [
        make_story(i, report(i, "firehose", hours_ago=i * 0.5, title=f"Fire {i}"))
        for i in range(1, 7)
    ]
    big = make_story(
        20,
        report(20, "alpha", hours_ago=10, title="Big story"),
        report(21, "beta", hours_ago=9, title="Big story again"),
        report(22, "gamma", hours_ago=8, title="Big story too"),
    )
    heavy = make_story(30, report(30, "heavy", hours_ago=6, weight=2.0, title="Heavy"))
    return [*fire, big, heavy]


def test_time_sort_keeps_newest_first_and_fills_scores() -> None:
    ed = EditionConfig(name="t", title="t", limit=50)
    feed = build_edition(ed, stories_fixture(), base_url="http://h", now=T0)
    assert [e.title for e in feed.entries] == [
        "Fire 1",
        "Fire 2",
        "Fire 3",
        "Fire 4",
        "Fire 5",
        "Fire 6",
        "Heavy",
        "Big story",
    ]
    assert all(e.score > 0 for e in feed.entries)
    fire1 = feed.entries[0]
    assert fire1.score == pytest.approx(1.0 * 0.5 ** (0.5 / 24))


def test_score_sort_prefers_coverage_and_weight_over_recency() -> None:
    ed = EditionConfig(name="s", title="s", limit=50, sort="score", half_life=24 * H)
    feed = build_edition(ed, stories_fixture(), base_url="http://h", now=T0)
    titles = [e.title for e in feed.entries]
    # heavy: 2.0 x 0.5^(6/24) = 1.68; big: (1 + ln 3) x 0.5^(10/24) = 1.57; fire 1: 0.99
    assert titles[:3] == ["Heavy", "Big story", "Fire 1"]
    heavy, big = feed.entries[0], feed.entries[1]
    assert big.score == pytest.approx((1 + math.log(3)) * 0.5 ** (10 / 24))
    assert heavy.score == pytest.approx(2.0 * 0.5 ** (6 / 24))
    # a short half-life makes recency win again
    quick = build_edition(
        EditionConfig(name="q", title="q", sort="score", half_life=H),
        stories_fixture(),
        base_url="http://h",
        now=T0,
    )
    assert quick.entries[0].title == "Fire 1"


def test_score_order_does_not_change_with_the_clock_alone() -> None:
    ed = EditionConfig(name="s", title="s", sort="score", max_age_days=30)
    now = [build_edition(ed, stories_fixture(), base_url="http://h", now=T0)]
    now.append(build_edition(ed, stories_fixture(), base_url="http://h", now=T0 + timedelta(3)))
    assert [e.id for e in now[0].entries] == [e.id for e in now[1].entries]
    assert now[1].entries[0].score < now[0].entries[0].score


def test_boost_rules_lift_a_story() -> None:
    boosted = EditionConfig(
        name="b",
        title="b",
        sort="score",
        boost=(Rule(name="fire6", fields=("title",), keywords=("Fire 6",), boost=3.0),),
    )
    feed = build_edition(boosted, stories_fixture(), base_url="http://h", now=T0)
    assert feed.entries[0].title == "Fire 6"
    top = decide(boosted, stories_fixture(), now=T0)[0]
    assert top.parts is not None and top.parts.boosts == (("fire6", 3.0),)


def test_per_publisher_cap_in_both_sort_orders() -> None:
    for sort in ("time", "score"):
        ed = EditionConfig(name="c", title="c", sort=sort, limit=5, max_per_source=2)
        decisions = decide(ed, stories_fixture(), now=T0)
        kept = [d for d in decisions if d.status == "in"]
        assert len(kept) == 4  # two firehose stories + big + heavy: the cap leaves room
        leads = [d.lead.source_key for d in kept if d.lead is not None]
        assert leads.count("firehose") == 2
        capped = [d for d in decisions if d.status == "capped"]
        assert len(capped) == 4 and all(len(d.capped_by) == 2 for d in capped)
        feed = build_edition(ed, stories_fixture(), base_url="http://h", now=T0)
        assert [e.id for e in feed.entries] == [d.story.public_id for d in kept]


def test_cap_counts_by_the_lead_publisher() -> None:
    # the firehose also reported the big story, but alpha (weight 2) leads it
    stories = stories_fixture()
    big = make_story(
        20,
        report(20, "alpha", hours_ago=10, weight=2.0, title="Big story"),
        report(23, "firehose", hours_ago=9.5, title="Big story, firehose copy"),
    )
    stories = [s if s.id != 20 else big for s in stories]
    ed = EditionConfig(name="c", title="c", max_per_source=1)
    feed = build_edition(ed, stories, base_url="http://h", now=T0)
    assert [e.publisher for e in feed.entries] == ["Firehose", "Heavy", "Alpha"]


def test_age_and_limit_cuts_are_reported() -> None:
    stories = [*stories_fixture(), make_story(40, report(40, "old", hours_ago=24 * 8))]
    ed = EditionConfig(
        name="c", title="c", limit=3, include=(Rule(sources=("firehose", "old", "heavy")),)
    )
    decisions = decide(ed, stories, now=T0)
    by_status: dict[str, list[int]] = {}
    for d in decisions:
        by_status.setdefault(d.status, []).append(d.story.id)
    assert by_status["in"] == [1, 2, 3]
    assert sorted(by_status["over_limit"]) == [4, 5, 6, 30]
    assert by_status["too_old"] == [40]
    assert by_status["not_matched"] == [20]
    over = next(d for d in decisions if d.story.id == 30)
    assert over.position == 7 and over.rank is None and over.entry is not None
    assert over.entry.score > 0
