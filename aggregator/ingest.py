"""Bytes in, normalized items out: parse + normalize for one response body (pure).

Runs in a worker process when parsing dominates (feedparser is CPU-bound), so it takes and
returns only picklable values, and it never raises: a body that is not a feed, or a parser bug
tripped by hostile input, becomes ``Ingested.error`` and is recorded against that source only.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from aggregator.errors import ParseError
from aggregator.model import Item, ParsedFeed
from aggregator.normalize import normalize_entry
from aggregator.parse import parse_feed
from aggregator.schedule import mean_gap_seconds


@dataclass(frozen=True, slots=True)
class Ingested:
    """The result of reading one body: feed metadata (entries dropped), items, posting rate."""

    feed: ParsedFeed | None
    items: tuple[Item, ...]
    mean_gap: float | None
    error: str | None = None
    skipped: int = 0  # entries that could not be normalized


def ingest(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    default_language: str | None,
    now: datetime,
) -> Ingested:
    """Parse ``body`` and normalize every entry; failures are values, not exceptions."""
    try:
        feed = parse_feed(body, headers, url)
    except ParseError as exc:
        return Ingested(None, (), None, error=str(exc))
    except Exception as exc:  # a parser bug on hostile input must not kill the tick
        return Ingested(None, (), None, error=f"unexpected parser failure: {exc!r}"[:500])
    items: list[Item] = []
    skipped = 0
    for entry in feed.entries:
        try:
            items.append(
                normalize_entry(
                    entry, feed, feed_url=url, default_language=default_language, now=now
                )
            )
        except Exception:  # one bad entry must not lose the others
            skipped += 1
    gap = mean_gap_seconds([e.published or e.updated for e in feed.entries], now=now)
    items = keep_distinguishing_fragments(items)
    return Ingested(dataclasses.replace(feed, entries=()), tuple(items), gap, skipped=skipped)


def keep_distinguishing_fragments(items: list[Item]) -> list[Item]:
    """Put the fragment back into canonical URLs where this feed uses it to tell posts apart.

    Canonical URLs drop the fragment (``article#comments`` is the article), but some publishers
    (Scripting News, day pages of link blogs) give each post of a page its own ``#anchor``.
    When one feed lists the same fragment-less URL with two or more different fragments, those
    fragments identify different items and must not be folded into one.
    """
    fragments: dict[str, set[str]] = defaultdict(set)
    for it in items:
        if it.canonical_url and it.url:
            fragments[it.canonical_url].add(urlsplit(it.url).fragment)
    split = {url for url, frags in fragments.items() if len(frags - {""}) > 1}
    if not split:
        return items
    out = []
    for it in items:
        if it.canonical_url in split and it.url and urlsplit(it.url).fragment:
            it = dataclasses.replace(
                it, canonical_url=f"{it.canonical_url}#{urlsplit(it.url).fragment}"
            )
        out.append(it)
    return out
