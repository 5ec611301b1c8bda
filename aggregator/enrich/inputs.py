"""What a story's card is made from, and its hash (pure).

A card is made once per story and made again only when its input changes: the lead report's
title and body text, and the number of reports (a story that more publishers pick up deserves a
fresh look). ``input_hash`` is the SHA-256 of exactly those, under a format version that is
bumped when the way cards are made changes enough to redo them all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from aggregator.curate import choose_lead
from aggregator.model import StoryRecord
from aggregator.sanitize import html_to_text

INPUT_VERSION = 1
HTML_HEAD = 60_000  # characters of a report's HTML read for its text (cut after a tag)
TEXT_CHARS = 12_000  # characters of plain text kept per report


@dataclass(frozen=True, slots=True)
class CardInput:
    """A story as the enrichers see it: its lead report in plain text, plus the others."""

    story_id: int
    title: str
    text: str  # plain text of the lead's fullest body (content, else summary)
    language: str | None
    publisher: str
    url: str | None
    reports: int
    categories: tuple[str, ...] = ()
    others: tuple[tuple[str, str], ...] = ()  # (publisher, title) of the other reports

    @property
    def hash(self) -> str:
        """The input hash (see :func:`input_hash`)."""
        return input_hash(self.title, self.text, self.reports)


def input_hash(title: str, text: str, reports: int) -> str:
    """Stable hex SHA-256 of a card's input (JSON-encoded, so no separator can collide)."""
    payload = json.dumps([INPUT_VERSION, title, text, reports], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def body_text(content_html: str, summary_html: str) -> str:
    """Plain text of the fuller of a report's content and summary, bounded."""
    html = content_html if len(content_html) >= len(summary_html) else summary_html
    if len(html) > HTML_HEAD:
        cut = html.rfind(">", 0, HTML_HEAD)
        html = html[: cut + 1] if cut > 0 else html[:HTML_HEAD]
    return html_to_text(html)[:TEXT_CHARS]


def card_input(story: StoryRecord) -> CardInput:
    """The card input of ``story`` (which must have at least one report)."""
    if not story.items:
        raise ValueError(f"story {story.id} has no reports")
    lead = choose_lead(story.items)
    return CardInput(
        story_id=story.id,
        title=lead.title,
        text=body_text(lead.content_html, lead.summary_html),
        language=lead.language,
        publisher=lead.source_name,
        url=lead.url,
        reports=len(story.items),
        categories=lead.categories,
        others=tuple((it.source_name, it.title) for it in story.items if it.id != lead.id),
    )
