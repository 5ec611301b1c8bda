"""Find stored items by URL, with their story (read-only; used by ``editions explain``).

An item is found by its link, canonical URL or external URL, as given and canonicalized, like
``stories explain`` does. Only a few columns are read: enough to tell the user which story an
item is in and how recent that story is, when it falls outside what an edition looks at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from aggregator.store.db import storage_errors
from aggregator.store.schema import items, sources, stories
from aggregator.urls import canonical_url


@dataclass(frozen=True, slots=True)
class ItemLocation:
    """A stored item and the story it belongs to."""

    item_id: int
    source_key: str
    title: str
    url: str | None
    published_at: datetime
    story_id: int
    story_public_id: str
    story_updated_at: datetime
    merged_into: int | None


def url_variants(url: str) -> list[str]:
    """``url`` as given and canonicalized (tracking parameters and fragment removed)."""
    return sorted({u for u in (url.strip(), canonical_url(url.strip())) if u})


def find_items(engine: Engine, url: str) -> list[ItemLocation]:
    """Every stored item whose link, canonical or external URL is ``url`` (oldest first)."""
    wanted = url_variants(url)
    i = items.c
    query = (
        select(
            i.id,
            sources.c.key,
            i.title,
            i.url,
            i.published_at,
            stories.c.id.label("story_id"),
            stories.c.public_id,
            stories.c.updated_at,
            stories.c.merged_into,
        )
        .join(sources, sources.c.id == i.source_id)
        .join(stories, stories.c.id == i.story_id)
        .where(or_(i.url.in_(wanted), i.canonical_url.in_(wanted), i.external_url.in_(wanted)))
        .order_by(i.published_at, i.id)
    )
    with storage_errors(engine, "find items by URL"), engine.connect() as conn:
        return [
            ItemLocation(
                item_id=r.id,
                source_key=r.key,
                title=r.title,
                url=r.url,
                published_at=r.published_at,
                story_id=r.story_id,
                story_public_id=r.public_id,
                story_updated_at=r.updated_at,
                merged_into=r.merged_into,
            )
            for r in conn.execute(query)
        ]
