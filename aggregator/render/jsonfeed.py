"""Render an edition as JSON Feed 1.1, with an ``_aggregator`` extension object per item.

The extension carries what a plain JSON Feed cannot: the story id, when the lead report was
collected (and how long after publication), every publisher that reported the story, the
story card as structured fields (``card``, with ``ai_generated``, ``backend``
and ``model`` for provenance), related earlier stories and the edition's latest weekly recap.
``kind`` is ``story`` or ``recap``. Pure and deterministic. The ranking score is not exported:
it decays with the clock, so it would change the bytes (and the ETag) of every render.
"""

from __future__ import annotations

import json
from typing import Any

from aggregator.model import Card, EditionEntry, EditionFeed, RelatedRef, SourceRef
from aggregator.render.card import collected_after_seconds, entry_html, is_recap
from aggregator.render.common import (
    is_http_url,
    language_tag,
    plain_summary,
    rfc3339,
)

VERSION = "https://jsonfeed.org/version/1.1"


def _source(ref: SourceRef) -> dict[str, Any]:
    """One ``_aggregator.sources`` object."""
    return {
        "publisher": ref.publisher,
        "url": ref.url,
        "title": ref.title,
        "published": rfc3339(ref.published) if ref.published else None,
    }


def _card(card: Card) -> dict[str, Any]:
    """``_aggregator.card``: the story card's fields and who wrote it."""
    return {
        "title": card.title,
        "tldr": card.tldr,
        "what_changed": card.what_changed,
        "why_it_matters": card.why_it_matters,
        "what_to_do_next": card.what_to_do_next,
        "who_should_care": card.who_should_care,
        "key_takeaways": list(card.key_takeaways),
        "tags": list(card.tags),
        "ai_generated": card.ai_generated,
        "backend": card.backend,
        "model": card.model,
        "generated_at": rfc3339(card.generated_at),
    }


def _related(ref: RelatedRef) -> dict[str, Any]:
    """One ``_aggregator.related`` object."""
    return {
        "id": ref.id,
        "title": ref.title,
        "url": ref.url if is_http_url(ref.url) else None,
        "published": rfc3339(ref.published),
    }


def _summary(entry: EditionEntry) -> str:
    """The card's TL;DR when there is one (what ``summary`` is for), else the lead's summary."""
    if entry.card is not None and entry.card.tldr.strip():
        text = " ".join(entry.card.tldr.split())
        return text if len(text) <= 280 else text[:279].rstrip() + "…"
    return plain_summary(entry)


def _item(entry: EditionEntry) -> dict[str, Any]:
    """One JSON Feed item for ``entry``."""
    item: dict[str, Any] = {"id": entry.id}
    if entry.url and is_http_url(entry.url):
        item["url"] = entry.url
    item["title"] = entry.title
    item["content_html"] = entry_html(entry)
    summary = _summary(entry)
    if summary:
        item["summary"] = summary
    item["date_published"] = rfc3339(entry.published)
    item["date_modified"] = rfc3339(entry.updated)
    author: dict[str, str] = {"name": entry.author or entry.publisher}
    if not entry.author and entry.publisher_url and is_http_url(entry.publisher_url):
        author["url"] = entry.publisher_url
    item["authors"] = [author]
    if entry.categories:
        item["tags"] = list(entry.categories)
    language = language_tag(entry.language)
    if language:
        item["language"] = language
    item["_aggregator"] = {
        "story_id": entry.id,
        "collected_at": rfc3339(entry.collected_at),
        "publisher": entry.publisher,
        "publisher_url": entry.publisher_url,
        "publisher_feed_url": entry.publisher_feed_url,
        "sources": [_source(ref) for ref in entry.sources],
        "kind": "recap" if is_recap(entry) else "story",
        "collected_after_seconds": collected_after_seconds(entry),
        "card": _card(entry.card) if entry.card is not None else None,
        "related": [_related(ref) for ref in entry.related],
        "recap_url": entry.recap_url if is_http_url(entry.recap_url) else None,
    }
    return item


def render_jsonfeed(feed: EditionFeed) -> bytes:
    """Serialize ``feed`` as a JSON Feed 1.1 document (UTF-8, non-ASCII kept as is)."""
    document: dict[str, Any] = {
        "version": VERSION,
        "title": feed.title,
        "home_page_url": feed.html_url,
        "feed_url": feed.feed_url("json"),
    }
    if feed.description:
        document["description"] = feed.description
    language = language_tag(feed.language)
    if language:
        document["language"] = language
    publisher: dict[str, str] = {"name": feed.title}
    if is_http_url(feed.base_url):
        publisher["url"] = feed.base_url
    document["authors"] = [publisher]
    document["items"] = [_item(entry) for entry in feed.entries]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8",
        "replace",  # a lone surrogate in untrusted text becomes "?", never an error
    )
