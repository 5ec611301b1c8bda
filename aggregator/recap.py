"""The weekly recap (pure): one item per edition per ISO week listing the week's top stories.

A recap is built from the same stories an edition is curated from: ``build_edition`` selects
and scores the edition's stories as of the end of the week, with freshness decay turned off (a
story from Monday competes with one from Sunday on equal terms: score = source weight ×
coverage + rule boosts, see ``aggregator.rank``). Those whose lead was published in the week
(Monday 00:00 to Monday 00:00 in the configured time zone) are ranked by ``EditionEntry.score``
(then by how many publishers reported them, then by time: with all scores 0 that is the
fallback order) and the top N are listed, one line each: the title linked, the publisher, and
the card's TL;DR when the story has one. Per-publisher caps of the edition apply.

Its id is stable, ``recap:<edition>:<ISO week>`` (``recap:ai:2026-W48``), so rebuilding a week
replaces the item instead of adding one; it is published at the end of its week (or when built,
for a week still running). ``recap_entry`` turns it into an ordinary ``EditionEntry``.
Storage is ``aggregator.store.recaps``; the cron job and the CLI live in ``recap_cli``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aggregator.curate import build_edition
from aggregator.model import Card, EditionEntry, SourceRef, StoryRecord
from aggregator.render.card import RECAP_ID_PREFIX
from aggregator.render.common import _link
from aggregator.settings import EditionConfig

_WEEK = re.compile(r"(\d{4})-W(\d{2})")
TLDR_CHARS = 200  # one line of TL;DR per story
#: Stories of a week are looked up this far back in ``build_edition`` (a DST week is 7d +- 1h).
_WEEK_SPAN_DAYS = 8.0
_ALL = 100_000  # "no limit" for build_edition while the recap picks its own top N
#: Half-life that turns freshness off: a Monday story must not lose to a Sunday one only
#: because the week ended on Sunday. Score = source weight × coverage + rule boosts.
_NO_DECAY = math.inf


@dataclass(frozen=True, slots=True)
class RecapLine:
    """One story listed in a recap."""

    story_id: str
    title: str
    url: str | None
    publisher: str
    coverage: int  # publishers that reported it
    score: float
    published: datetime
    tldr: str = ""


@dataclass(frozen=True, slots=True)
class Recap:
    """A built (or stored) weekly recap of one edition."""

    id: str
    edition: str
    week: str  # ISO week, 2026-W48
    title: str
    content_html: str
    week_start: datetime  # UTC instant of the week's Monday 00:00 in the recap time zone
    published: datetime  # end of the week (or build time, for a week still running)
    updated: datetime  # when its content last changed
    lines: tuple[RecapLine, ...]
    url: str | None = None  # public page of the recap


# --------------------------------------------------------------------------- weeks


def parse_week(text: str) -> tuple[int, int]:
    """``"2026-W48"`` -> ``(2026, 48)``; ValueError naming the problem otherwise."""
    match = _WEEK.fullmatch(text.strip())
    if not match:
        raise ValueError(f"week: expected an ISO week like 2026-W48, got {text!r}")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValueError(f"week: {year} has no ISO week {week} (got {text!r})") from None
    return year, week


def format_week(year: int, week: int) -> str:
    """``(2026, 48)`` -> ``"2026-W48"``."""
    return f"{year:04d}-W{week:02d}"


def week_bounds(week: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of Monday 00:00 of ``week`` and of the next week, in time zone ``tz``."""
    year, number = parse_week(week)
    monday = date.fromisocalendar(year, number, 1)
    start = datetime.combine(monday, time(0), tzinfo=tz)
    end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def week_of(moment: datetime, tz: ZoneInfo) -> str:
    """The ISO week ``moment`` falls in, seen from time zone ``tz``."""
    year, week, _ = moment.astimezone(tz).isocalendar()
    return format_week(year, week)


def previous_week(now: datetime, tz: ZoneInfo) -> str:
    """The last complete ISO week before ``now`` in ``tz`` (what the Monday job recaps)."""
    local = now.astimezone(tz)
    return week_of(datetime.combine(local.date() - timedelta(days=7), time(12), tzinfo=tz), tz)


def recap_id(edition: str, week: str) -> str:
    """Stable id of an edition's recap for one week: ``recap:ai:2026-W48``."""
    return f"{RECAP_ID_PREFIX}{edition}:{week}"


def recap_url(base_url: str, edition: str, week: str) -> str:
    """Public page of a recap (served by ``web.py``)."""
    return f"{base_url.rstrip('/')}/editions/{edition}/recaps/{week}"


def _day_range(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """``23–29 Nov 2026``, ``30 Nov – 6 Dec 2026`` or ``28 Dec 2026 – 3 Jan 2027``."""
    first = start.astimezone(tz).date()
    last = end.astimezone(tz).date() - timedelta(days=1)
    if first.year != last.year:
        return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"
    if first.month != last.month:
        return f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
    return f"{first.day}–{last.day} {last:%b %Y}"


# --------------------------------------------------------------------------- building


def one_line(text: str, limit: int = TLDR_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (cut at a space when one is near)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 3 // 4:
        cut = cut[:space]
    return cut.rstrip(" ,.;:，。；：、") + "…"


def rank_key(entry: EditionEntry) -> tuple[float, int, datetime, str]:
    """Recap order (descending): score, then publishers reporting it, then time, then id."""
    return (entry.score, len(entry.sources), entry.published, entry.id)


def top_entries(entries: Sequence[EditionEntry], top_n: int) -> list[EditionEntry]:
    """The ``top_n`` best entries by :func:`rank_key`."""
    return sorted(entries, key=rank_key, reverse=True)[: max(0, top_n)]


def _line(entry: EditionEntry, card: Card | None) -> RecapLine:
    return RecapLine(
        story_id=entry.id,
        title=entry.title,
        url=entry.url,
        publisher=entry.publisher,
        coverage=len(entry.sources),
        score=entry.score,
        published=entry.published,
        tldr=one_line(card.tldr) if card is not None and card.tldr.strip() else "",
    )


def recap_html(intro: str, lines: Sequence[RecapLine]) -> str:
    """The recap body: an intro paragraph and an ordered list, one escaped line per story."""
    items: list[str] = []
    for line in lines:
        who = html.escape(line.publisher, quote=True)
        if line.coverage > 1:
            who += f" and {line.coverage - 1} more"
        text = f"{_link(line.url, line.title)} ({who})"
        if line.tldr:
            text += f": {html.escape(line.tldr, quote=True)}"
        items.append(f"<li>{text}</li>")
    return f"<p>{html.escape(intro, quote=True)}</p><ol>{''.join(items)}</ol>"


def build_recap(
    config: EditionConfig,
    stories: Sequence[StoryRecord],
    *,
    week: str,
    tz: ZoneInfo,
    top_n: int,
    base_url: str,
    now: datetime,
) -> Recap | None:
    """The recap of ``config``'s edition for ``week``, or None when no story of it was in.

    ``stories`` must cover the week (``Repository.recent_stories`` since its start will do).
    The edition's rules, scores and caps are those of ``build_edition`` run as of the week's end.
    ``now`` is the build time: it dates a week still running and becomes ``updated``.
    """
    start, end = week_bounds(week, tz)
    as_of = min(end, now)
    wide = replace(config, limit=_ALL, max_age_days=_WEEK_SPAN_DAYS, half_life=_NO_DECAY)
    feed = build_edition(wide, stories, base_url=base_url, now=as_of)
    in_week = [e for e in feed.entries if start <= e.published < end and e.published <= as_of]
    if not in_week:
        return None
    cards = {s.public_id: s.card for s in stories if s.card is not None}
    lines = tuple(_line(e, cards.get(e.id)) for e in top_entries(in_week, top_n))
    days = _day_range(start, end, tz)
    intro = (
        f"The {len(lines)} top {'story' if len(lines) == 1 else 'stories'} of "
        f"{config.title}, {days} ({week}), of {len(in_week)} in the edition that week."
    )
    return Recap(
        id=recap_id(config.name, week),
        edition=config.name,
        week=week,
        title=f"{config.title}: weekly recap, {days}",
        content_html=recap_html(intro, lines),
        week_start=start,
        published=as_of,
        updated=now,
        lines=lines,
        url=recap_url(base_url, config.name, week),
    )


def _intro_html(content_html: str) -> str:
    """The intro paragraph of a recap body (what ``recap_html`` puts first), or ""."""
    end = content_html.find("</p>")
    return content_html[: end + 4] if content_html.startswith("<p>") and end > 0 else ""


def recap_entry(recap: Recap, *, edition_title: str, base_url: str) -> EditionEntry:
    """A recap as an ordinary edition entry (the edition is its publisher; the intro sentence
    is its summary, the whole list its content)."""
    base = base_url.rstrip("/")
    page = recap.url or recap_url(base, recap.edition, recap.week)
    return EditionEntry(
        id=recap.id,
        title=recap.title,
        url=page,
        publisher=edition_title,
        publisher_url=f"{base}/editions/{recap.edition}",
        publisher_feed_url=f"{base}/feeds/{recap.edition}.rss",
        published=recap.published,
        updated=max(recap.updated, recap.published),
        collected_at=recap.published,
        summary_html=_intro_html(recap.content_html),
        content_html=recap.content_html,
        author=None,
        categories=("Weekly recap",),
        language=None,
        sources=(SourceRef(edition_title, page, recap.title, recap.published),),
    )
