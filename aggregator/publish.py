"""Curate and render every edition into snapshots (pure): the bytes the web server hands out.

``build_edition`` (curate) picks, scores and orders each edition's stories; ``attach`` then adds
what the export shows beyond the lead report: the story card (``StoryRecord.card``, by public
id), the related earlier stories (``aggregator.related``, computed once for all editions) and
the edition's newest weekly recap, which is linked from every entry and, while recent, is
itself an item of the edition placed by its publication time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from aggregator.curate import build_edition
from aggregator.model import Card, EditionEntry, EditionFeed, RelatedRef, Snapshot, StoryRecord
from aggregator.recap import Recap, recap_entry
from aggregator.related import related_updates
from aggregator.render import FORMATS, make_snapshot
from aggregator.settings import EditionConfig

#: A recap stays an item of its edition at least this long (a weekly item must outlive the
#: week even in an edition whose ``max_age_days`` is shorter).
RECAP_MIN_AGE = timedelta(days=8)


def _insert_by_time(
    entries: tuple[EditionEntry, ...], extra: EditionEntry
) -> tuple[EditionEntry, ...]:
    """``entries`` (newest first) with ``extra`` placed before the first one older than it."""
    for i, entry in enumerate(entries):
        if (entry.published, entry.id) < (extra.published, extra.id):
            return (*entries[:i], extra, *entries[i:])
    return (*entries, extra)


def attach(
    feed: EditionFeed,
    *,
    cards: Mapping[str, Card],
    related: Mapping[str, tuple[RelatedRef, ...]],
    related_limit: int,
    recap: Recap | None,
    now: datetime,
    max_age_days: float,
) -> EditionFeed:
    """``feed`` with each entry's card, related updates and recap link, plus the recap item.

    A card the entry already carries is kept. The recap becomes an entry when it was published
    within ``max(max_age_days, 8 days)`` of ``now``.
    """
    recap_link = recap.url if recap is not None else None
    entries = tuple(
        replace(
            entry,
            card=entry.card or cards.get(entry.id),
            related=related.get(entry.id, ())[: max(0, related_limit)],
            recap_url=recap_link,
        )
        for entry in feed.entries
    )
    updated = feed.updated
    if recap is not None:
        horizon = max(timedelta(days=max_age_days), RECAP_MIN_AGE)
        if now - horizon <= recap.published <= now:
            item = recap_entry(recap, edition_title=feed.title, base_url=feed.base_url)
            entries = _insert_by_time(entries, item)
            updated = max(updated, item.updated)
    return replace(feed, entries=entries, updated=updated)


def story_window(editions: Sequence[EditionConfig]) -> tuple[float, int]:
    """(days, count) of recent stories every edition is rendered from: the widest age window
    and 20x the largest limit (rules drop many). The daemon, ``export`` and ``editions
    preview/explain`` all use it, so they see the same stories."""
    days = max((e.max_age_days for e in editions), default=7.0)
    count = max((e.limit for e in editions), default=100) * 20
    return days, count


def render_all(
    editions: Sequence[EditionConfig],
    stories: Sequence[StoryRecord],
    *,
    base_url: str,
    now: datetime,
    recaps: Mapping[str, Recap] | None = None,
) -> list[Snapshot]:
    """Snapshots of every edition, in every format, from the same set of recent stories.

    ``recaps`` maps edition names to their newest stored recap (``RecapStore.latest``).
    """
    cards = {s.public_id: s.card for s in stories if s.card is not None}
    feeds = [build_edition(cfg, stories, base_url=base_url, now=now) for cfg in editions]
    most = max((cfg.related for cfg in editions), default=0)
    shown = {entry.id for feed in feeds for entry in feed.entries}
    related = related_updates(stories, now=now, limit=most, only=shown) if most > 0 else {}
    snaps: list[Snapshot] = []
    for cfg, feed in zip(editions, feeds, strict=True):
        feed = attach(
            feed,
            cards=cards,
            related=related,
            related_limit=cfg.related,
            recap=(recaps or {}).get(cfg.name),
            now=now,
            max_age_days=cfg.max_age_days,
        )
        snaps.extend(make_snapshot(feed, fmt, now) for fmt in FORMATS)
    return snaps
