"""The exported item body: the story card, the article, related updates, recap link, footer.

Pure and deterministic (no clock: "collected in 3m" is collected_at minus publication time), so
identical editions still render to identical bytes. The HTML is meant for feed readers: only
headings, paragraphs, lists and links, readable without any CSS. Every card field is plain text
and is escaped here; links are emitted only for http(s) targets (``common._link``).

Layout, after the reference page a story should arrive as::

    [AI-generated analysis (model) | Summary (extracted)]    provenance, when there is a card
    30-second TL;DR / What changed / Why it matters / What to do next / Who should care
    Key takeaways (a list)
    <hr/> the lead report's own content (or its summary)
    <hr/> Related updates (links) / Weekly recap link
    Original source: <publisher> · collected in 3m / Also reported by: ...
"""

from __future__ import annotations

import html
from datetime import timedelta

from aggregator.model import Card, EditionEntry, RelatedRef
from aggregator.render.common import _link, as_utc, entry_footer

#: Item ids of weekly recaps start with this (``recap:<edition>:<ISO week>``).
RECAP_ID_PREFIX = "recap:"
AI_LABEL = "AI-generated analysis"
EXTRACTED_LABEL = "Summary (extracted)"
TLDR_HEADING = "30-second TL;DR"
#: Card text fields in display order, with their headings (the TL;DR comes first, apart).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("what_changed", "What changed"),
    ("why_it_matters", "Why it matters"),
    ("what_to_do_next", "What to do next"),
    ("who_should_care", "Who should care"),
)
#: Past this, "collected in ..." says nothing useful (a backfill of old items, a bad date).
MAX_COLLECTED_GAP = timedelta(days=7)


def is_recap(entry: EditionEntry) -> bool:
    """True for a weekly recap item (exported like a story, but it is not one)."""
    return entry.id.startswith(RECAP_ID_PREFIX)


def collected_after_seconds(entry: EditionEntry) -> int | None:
    """Seconds from publication to collection of the lead report, or None when unknown.

    Unknown when the publisher gave no date (then ``published`` *is* ``collected_at``) or for a
    recap. May be negative (a publisher clock ahead of ours): the raw fact, for ``_aggregator``.
    """
    if is_recap(entry) or (entry.sources and entry.sources[0].published is None):
        return None
    return int((as_utc(entry.collected_at) - as_utc(entry.published)).total_seconds())


def humanize_gap(seconds: float | None) -> str | None:
    """``3m``, ``2h``, ``1d`` (``<1m`` under a minute); None when negative, over 7 days or None.

    Units are floored, the largest that fits: 119 minutes is ``1h``. Negative gaps (publisher
    clock ahead) and huge ones (old items seen for the first time) would only mislead.
    """
    if seconds is None or seconds < 0 or seconds > MAX_COLLECTED_GAP.total_seconds():
        return None
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def collected_in(entry: EditionEntry) -> str | None:
    """``collected in 3m`` for ``entry``, or None when there is nothing sensible to say."""
    gap = humanize_gap(collected_after_seconds(entry))
    return f"collected in {gap}" if gap else None


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _paragraphs(value: str) -> str:
    """Plain text as escaped ``<p>`` paragraphs, one per non-blank line."""
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    return "".join(f"<p>{_text(line)}</p>" for line in lines)


def provenance(card: Card) -> str:
    """Who wrote the card, as shown: ``AI-generated analysis (model)`` or the extractive label."""
    if card.ai_generated:
        return f"{AI_LABEL} ({card.model})" if card.model else AI_LABEL
    return EXTRACTED_LABEL


def card_html(card: Card, entry_title: str = "") -> str:
    """The card's sections as HTML (empty fields are left out; everything is escaped).

    An LLM card opens with its provenance line and a "30-second TL;DR"; an extractive one has
    the TL;DR under "Summary (extracted)". A translated title (``card.title``) different from
    the entry's title is shown first, so a foreign-language story reads in the edition's
    language.
    """
    parts: list[str] = []
    if card.ai_generated:
        parts.append(f"<p><em>{_text(provenance(card))}</em></p>")
    title = card.title.strip() if card.title else ""
    if title and title != entry_title.strip():
        parts.append(f"<p><strong>{_text(title)}</strong></p>")
    tldr = _paragraphs(card.tldr)
    if tldr:
        heading = TLDR_HEADING if card.ai_generated else EXTRACTED_LABEL
        parts.append(f"<h3>{heading}</h3>{tldr}")
    for name, heading in SECTIONS:
        body = _paragraphs(getattr(card, name))
        if body:
            parts.append(f"<h3>{heading}</h3>{body}")
    takeaways = [t.strip() for t in card.key_takeaways if t.strip()]
    if takeaways:
        items = "".join(f"<li>{_text(t)}</li>" for t in takeaways)
        parts.append(f"<h3>Key takeaways</h3><ul>{items}</ul>")
    return "".join(parts)


def related_html(related: tuple[RelatedRef, ...]) -> str:
    """The "Related updates" list: one item per earlier story, linked when its URL is http(s)."""
    if not related:
        return ""
    items = "".join(
        f"<li>{_link(ref.url, ref.title)} ({as_utc(ref.published).strftime('%Y-%m-%d')})</li>"
        for ref in related
    )
    return f"<h3>Related updates</h3><ul>{items}</ul>"


def recap_link_html(recap_url: str | None) -> str:
    """A paragraph linking the edition's latest weekly recap (nothing for a non-http URL)."""
    link = _link(recap_url, "Read the weekly recap")
    return f"<p>{link}</p>" if link.startswith("<a ") else ""


def entry_html(entry: EditionEntry) -> str:
    """The exported body of one item (RSS ``description``, Atom ``content``, ``content_html``).

    Card first, then the lead's content (its summary when the content is empty), then related
    updates, the recap link and the footer naming the original source. Without card, related
    updates and recap it is exactly ``content<hr/>footer``.
    """
    head = card_html(entry.card, entry.title) if entry.card is not None else ""
    body = entry.content_html or entry.summary_html
    tail = (
        related_html(entry.related)
        + recap_link_html(entry.recap_url)
        + entry_footer(entry, note=collected_in(entry))
    )
    if head:
        head += "<hr/>"
    return f"{head}{body}<hr/>{tail}" if body else f"{head}{tail}"
