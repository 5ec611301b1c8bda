"""Turn stored stories into an edition (pure): rules, lead choice, score, order, cap, limit.

An edition holds stories, not items: a story is in when any of its reports passes the edition's
rules (``aggregator.rules``), and it is exported once, as its lead report plus "also reported
by" the others. Every admitted story gets a score (``aggregator.rank``) whatever the sort order;
then the edition is sorted (``time`` or ``score``), capped per lead publisher and cut to
``limit``. ``decide`` returns that whole decision for every story, so the CLI can preview an
edition and explain why a story is in, or which step cut it; ``build_edition`` keeps the
stories that made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from aggregator.model import EditionEntry, EditionFeed, SourceRef, StoredItem, StoryRecord
from aggregator.rank import Candidate, Placement, ScoreParts, place, score_story, score_value
from aggregator.rules import EditionRules, ItemView, ReportVerdict, compile_edition, published_of
from aggregator.settings import LEADS, EditionConfig

__all__ = [
    "Curator",
    "StoryDecision",
    "build_edition",
    "choose_lead",
    "decide",
    "published_of",
    "score_parts",
    "to_entry",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# in: exported; not_matched: no report passes the rules; too_old: lead older than max_age_days;
# capped: the lead's publisher already fills max_per_source; over_limit: beyond ``limit``.
Status = Literal["in", "not_matched", "too_old", "capped", "over_limit"]


@dataclass(frozen=True, slots=True)
class Curator:
    """An edition's compiled rules, applied to reports and stories."""

    config: EditionConfig
    rules: EditionRules

    @classmethod
    def from_config(cls, config: EditionConfig) -> Curator:
        """Compiled once per distinct edition config (``rules.compile_edition`` caches)."""
        return cls(config, compile_edition(config))

    def _check_clock(self, now: datetime | None) -> None:
        if now is None and self.rules.needs_clock:
            raise ValueError(f"edition {self.config.name!r} has age rules: pass now")

    def views(self, story: StoryRecord, now: datetime | None) -> list[ItemView]:
        """One ``ItemView`` per report; the story card's tags count as tags of every report."""
        extra = story.card.tags if story.card is not None else ()
        return [ItemView(it, now, extra) for it in story.items]

    def admits(self, item: StoredItem, now: datetime | None = None) -> bool:
        """Whether one report passes the edition's include and exclude rules."""
        self._check_clock(now)
        return self.rules.admits(ItemView(item, now))

    def explain(self, item: StoredItem, now: datetime | None = None) -> ReportVerdict:
        """Which rule let one report in or kept it out, and why."""
        self._check_clock(now)
        return self.rules.explain(ItemView(item, now))


def choose_lead(items: Sequence[StoredItem], rule: str = "weight") -> StoredItem:
    """The report that leads a story (its title, link and date in an edition), by ``rule``.

    ``weight`` (the default): the earliest report from the highest-weight source, so a
    publisher the operator trusts more leads even when a syndicator was quicker.
    ``earliest``: the first report anywhere, whoever broke it. ``latest``: the newest report.
    ``fullest``: the report with the most HTML in its content or summary (excerpt-only feeds
    lose to full-text ones). Ties fall to the higher weight, then the earlier report, then the
    lower id, so the choice is stable from render to render.
    """
    if rule == "weight":
        return min(items, key=lambda it: (-it.source_weight, published_of(it), it.id))
    if rule == "earliest":
        return min(items, key=lambda it: (published_of(it), -it.source_weight, it.id))
    if rule == "latest":
        return min(items, key=lambda it: (-published_of(it).timestamp(), -it.source_weight, it.id))
    if rule == "fullest":
        return min(
            items,
            key=lambda it: (
                -max(len(it.content_html), len(it.summary_html)),
                -it.source_weight,
                published_of(it),
                it.id,
            ),
        )
    raise ValueError(f"unknown lead rule {rule!r} (use one of {', '.join(LEADS)})")


def to_entry(story: StoryRecord, lead: StoredItem, *, score: float = 0.0) -> EditionEntry:
    """Export shape of one story: the lead's fields plus every report as a ``SourceRef``."""
    others = sorted((it for it in story.items if it.id != lead.id), key=published_of)
    reports = (lead, *others)
    updated = max((it.updated_at or published_of(it)) for it in reports)
    return EditionEntry(
        id=story.public_id,
        title=lead.title,
        url=lead.url,
        publisher=lead.source_name,
        publisher_url=lead.source_site_url or lead.source_feed_url,
        publisher_feed_url=lead.source_feed_url,
        published=published_of(lead),
        updated=max(updated, published_of(lead)),
        collected_at=lead.collected_at,
        summary_html=lead.summary_html,
        content_html=lead.content_html,
        author=lead.author,
        categories=lead.categories,
        language=lead.language,
        sources=tuple(
            SourceRef(
                publisher=it.source_name, url=it.url, title=it.title, published=it.published_at
            )
            for it in reports
        ),
        score=score,
    )


@dataclass(frozen=True, slots=True)
class StoryDecision:
    """What the edition did with one story, and the numbers behind it."""

    story: StoryRecord
    status: Status
    lead: StoredItem | None = None  # set for every admitted story (all but not_matched)
    entry: EditionEntry | None = None  # the export shape, score filled (admitted stories)
    parts: ScoreParts | None = None  # score components (admitted stories)
    rank: int | None = None  # 1-based rank in the edition (status "in")
    position: int | None = None  # 1-based position in sort order before cap and limit
    capped_by: tuple[str, ...] = ()  # ids of the lead publisher's stories ahead (capped)


class _Admitted(NamedTuple):
    """An admitted story on the hot path: only what ordering needs, no export shape yet."""

    story: StoryRecord
    lead: StoredItem
    published: datetime
    score: float
    boosts: tuple[tuple[str, float], ...]


def score_parts(
    config: EditionConfig,
    story: StoryRecord,
    lead: StoredItem,
    boosts: Sequence[tuple[str, float]],
    now: datetime,
) -> ScoreParts:
    """The score of ``story`` in ``config`` with all its components (``rank.score_story``)."""
    return score_story(
        weight=lead.source_weight,
        publishers=len({it.source_key for it in story.items}),
        boosts=boosts,
        first_published=min(published_of(it) for it in story.items),
        now=now,
        half_life_seconds=config.half_life,
    )


def decide(
    config: EditionConfig,
    stories: Sequence[StoryRecord],
    *,
    now: datetime,
    details: bool = True,
) -> list[StoryDecision]:
    """The edition's decision for every story with reports: exported ones first, in order, then the
    admitted ones that were cut (sort order; too old last), then the ones no report of which
    passed the rules (input order).

    With ``details=False`` (``build_edition``) only exported stories get ``entry`` and
    ``parts``; the rest carry just their status. The export shape of a story is built once.
    """
    curator = Curator.from_config(config)
    rules = curator.rules
    filtering = bool(rules.include or rules.exclude)
    boosting = bool(rules.boosters())
    cutoff = now - timedelta(days=config.max_age_days)
    fresh: list[_Admitted] = []
    old: list[_Admitted] = []
    rejected: list[StoryDecision] = []
    for story in stories:
        if not story.items:
            continue
        views = curator.views(story, now) if filtering or boosting else []
        if filtering and not any(rules.admits(v) for v in views):
            rejected.append(StoryDecision(story, "not_matched"))
            continue
        lead = choose_lead(story.items, config.lead)
        boosts = rules.story_boost(views) if boosting else ()
        score = score_value(
            lead.source_weight,
            len({it.source_key for it in story.items}),
            sum(b for _, b in boosts),
            (now - min(published_of(it) for it in story.items)).total_seconds(),
            config.half_life,
        )
        adm = _Admitted(story, lead, published_of(lead), score, boosts)
        (fresh if adm.published >= cutoff else old).append(adm)
    placements = place(
        [
            Candidate(i, a.story.public_id, a.lead.source_key, a.published, a.score)
            for i, a in enumerate(fresh)
        ],
        sort=config.sort,
        limit=config.limit,
        max_per_source=config.max_per_source,
    )

    def decision(a: _Admitted, status: Status, placed: Placement | None = None) -> StoryDecision:
        full = details or status == "in"
        return StoryDecision(
            a.story,
            status,
            lead=a.lead,
            entry=to_entry(a.story, a.lead, score=a.score) if full else None,
            parts=score_parts(config, a.story, a.lead, a.boosts, now) if full else None,
            rank=placed.rank if placed else None,
            position=placed.position if placed else None,
            capped_by=placed.capped_by if placed else (),
        )

    ordered = [p for p in placements if p.status == "in"]
    ordered += [p for p in placements if p.status != "in"]
    old.sort(key=lambda a: (a.published, a.story.public_id), reverse=True)
    return [
        *(decision(fresh[p.key], p.status, p) for p in ordered),
        *(decision(a, "too_old") for a in old),
        *rejected,
    ]


def build_edition(
    config: EditionConfig,
    stories: Sequence[StoryRecord],
    *,
    base_url: str,
    now: datetime,
) -> EditionFeed:
    """Select, score, order (by time or score), cap per publisher and limit one edition."""
    decisions = decide(config, stories, now=now, details=False)
    entries = tuple(d.entry for d in decisions if d.status == "in" and d.entry is not None)
    updated = max((e.updated for e in entries), default=_EPOCH)
    return EditionFeed(
        name=config.name,
        title=config.title,
        description=config.description or config.title,
        base_url=base_url.rstrip("/"),
        updated=updated,
        entries=entries,
    )
