"""Small builders for value types, so tests state only what matters to them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from aggregator.model import Item, StoredItem, StoryRecord

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make_item(**kw: Any) -> Item:
    """An ``Item`` with sensible defaults; content_hash follows title + content."""
    title = kw.pop("title", "A title")
    content = kw.pop("content_html", "<p>Body</p>")
    base: dict[str, Any] = {
        "guid": None,
        "url": None,
        "canonical_url": None,
        "summary_html": "",
        "text": title,
        "author": None,
        "categories": (),
        "language": "en",
        "published_at": T0,
        "updated_at": None,
    }
    base.update(kw)
    if base["url"] and not base["canonical_url"]:
        base["canonical_url"] = base["url"]
    digest = hashlib.sha256(f"{title}\n{content}".encode()).hexdigest()
    return Item(title=title, content_html=content, content_hash=digest, **base)


def make_stored(id: int, **kw: Any) -> StoredItem:
    """A ``StoredItem`` as the repository would return it."""
    base: dict[str, Any] = {
        "source_id": 1,
        "source_key": "pub",
        "source_name": "Publisher",
        "source_weight": 1.0,
        "source_site_url": "https://pub.example/",
        "source_feed_url": "https://pub.example/feed",
        "source_tags": (),
        "guid": None,
        "url": f"https://pub.example/{id}",
        "canonical_url": f"https://pub.example/{id}",
        "title": f"Story {id}",
        "summary_html": "<p>summary</p>",
        "content_html": "<p>content</p>",
        "author": None,
        "categories": (),
        "language": "en",
        "published_at": T0,
        "updated_at": None,
        "collected_at": T0,
    }
    base.update(kw)
    return StoredItem(id=id, **base)


def make_story(id: int, *items: StoredItem) -> StoryRecord:
    """A story holding ``items``."""
    return StoryRecord(
        id=id,
        public_id=f"urn:uuid:{id:08d}-0000-5000-8000-000000000000",
        created_at=T0,
        updated_at=T0,
        items=tuple(items),
    )
