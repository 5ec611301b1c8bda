"""Normalize stage (pure): one ``ParsedEntry`` -> one ``Item``.

Everything downstream (identity, story matching, curation, export) relies on what this
module guarantees: absolute http(s) URLs and a canonical form of the link, aware-UTC dates,
HTML that is safe to re-publish, a non-empty plain-text title, a bounded plain-text ``text``
for matching, a lower-case language tag and a stable ``content_hash``.

Decisions (also recorded in the README's design notes):
- A date more than ``FUTURE_TOLERANCE`` (2 days) ahead of ``now`` is dropped (None): feeds with
  broken clocks or scheduled posts must not pin themselves to the top of every edition; the
  store then falls back to ``collected_at``. Clamping needs the time, so it happens only when
  the caller passes ``now`` (the function stays pure). Dates before 1970-01-02 (epoch-zero
  placeholders) are dropped too. ``published_at`` falls back to ``updated`` when the feed
  only gives one date.
- ``content_hash`` is taken over the plain title and the *raw* body the publisher sent (before
  sanitizing), so upgrading nh3 or the allow-list does not mark every stored item as edited.
- Bodies are cut to ``MAX_HTML_CHARS`` characters before sanitizing (a 10 MB entry costs
  the same as a 512 KiB one); ``text`` is built from at most ``TEXT_SOURCE_CHARS`` of markup.
- When the entry has no summary, ``summary_html`` is a short plain-text excerpt of the content
  (so summaries stay small); when it has no content, ``content_html`` is the summary.
- ``external_url`` is set when the feed says so (JSON Feed) or when the entry links to another
  publisher's site than the feed's own (a link blog): the canonical form of that link.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta

from aggregator.model import Item, ParsedEntry, ParsedFeed
from aggregator.sanitize import html_to_text, sanitize_html, sanitized_text, strip_markup
from aggregator.urls import canonical_url, resolve_url, same_site

__all__ = ["entry_identity", "normalize_entry"]

MAX_HTML_CHARS = 512 * 1024
TEXT_SOURCE_CHARS = 64 * 1024
MAX_TITLE_CHARS = 1000
MAX_TEXT_CHARS = 2000
DERIVED_TITLE_CHARS = 80
EXCERPT_CHARS = 400
MAX_CATEGORIES = 50
MAX_CATEGORY_CHARS = 100
UNTITLED = "(untitled)"
FUTURE_TOLERANCE = timedelta(days=2)
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)

_SENTENCE_END = re.compile(r"[。！？]+|[.!?]+(?=\s)")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")


def _cap(value: str | None, limit: int = MAX_HTML_CHARS) -> str | None:
    if not value:
        return None
    return value if len(value) <= limit else value[:limit]


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, at a word boundary for space-separated scripts."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    next_char = text[limit]
    if next_char != " " and space >= limit // 2 and cut[space - 1 : space].isascii():
        cut = cut[:space]
    return cut.rstrip(" ,;:、，；：") + "…"


def _derive_title(text: str) -> str:
    """First sentence of ``text`` (CJK or Latin punctuation), or its first ~80 characters."""
    match = _SENTENCE_END.search(text, 0, DERIVED_TITLE_CHARS + 1)
    if match and match.start() > 0:
        sentence = text[: match.end()].strip()
        return sentence.rstrip("。.") or sentence
    return _truncate(text, DERIVED_TITLE_CHARS)


def _language(*candidates: str | None) -> str | None:
    for value in candidates:
        if not value:
            continue
        tag = value.strip().split(",")[0].split(";")[0].strip().replace("_", "-").lower()
        if _LANGUAGE.fullmatch(tag):
            return tag
    return None


def _categories(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        term = " ".join(value.split())[:MAX_CATEGORY_CHARS]
        key = term.casefold()
        if term and key not in seen:
            seen.add(key)
            out.append(term)
            if len(out) >= MAX_CATEGORIES:
                break
    return tuple(out)


def _clamp(value: datetime | None, now: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value < EARLIEST:
        return None
    if now is not None and value > now + FUTURE_TOLERANCE:
        return None
    return value


def _plain(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    text = html_to_text(value) if ("<" in value or "&" in value) else " ".join(value.split())
    return text[:limit] or None


def _content_hash(title: str, body: str) -> str:
    digest = hashlib.sha256()
    digest.update(title.encode("utf-8", "surrogatepass"))
    digest.update(b"\x1f")
    digest.update(body.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _entry_title(entry: ParsedEntry) -> str | None:
    """The entry's own title as plain text (None when it has none: derived from the body)."""
    title = _plain(_cap(entry.title, 4 * MAX_TITLE_CHARS), MAX_TITLE_CHARS)
    return (strip_markup(title) or None) if title else None


def entry_identity(entry: ParsedEntry, feed: ParsedFeed, *, feed_url: str) -> Item | None:
    """The fields of ``normalize_entry(entry, ...)`` that identify it, computed cheaply.

    Returns an ``Item`` whose ``guid``, ``url``, ``canonical_url``, ``title`` and
    ``content_hash`` equal those of the full normalization (the same helpers compute them),
    without sanitizing any HTML: its ``summary_html``, ``content_html`` and ``text`` are empty
    and its other fields unset. Ingest uses it to recognise entries already stored unchanged,
    which then skip the expensive part. None when the entry has no title of its own (the
    title, and so the hash, would be derived from the sanitized body).
    """
    title = _entry_title(entry)
    if title is None:
        return None
    url = resolve_url(entry.link, feed.link, feed_url)
    raw = _cap(entry.content) or _cap(entry.summary) or ""
    guid = (entry.guid.strip() or None) if entry.guid else None
    return identity_item(guid, url, title, _content_hash(title, raw))


def identity_item(guid: str | None, url: str | None, title: str, content_hash: str) -> Item:
    """An identity-only ``Item``: the fields that identify an entry, the rest empty or unset
    (``entry_identity``, and the entries an entry cache knows: ``aggregator.entrycache``)."""
    return Item(
        guid=guid,
        url=url,
        canonical_url=canonical_url(url),
        title=title,
        summary_html="",
        content_html="",
        text="",
        author=None,
        categories=(),
        language=None,
        published_at=None,
        updated_at=None,
        content_hash=content_hash,
    )


def normalize_entry(
    entry: ParsedEntry,
    feed: ParsedFeed,
    *,
    feed_url: str,
    default_language: str | None = None,
    now: datetime | None = None,
) -> Item:
    """Turn a parsed entry into an ``Item`` (pure: no IO, time only through ``now``).

    ``feed_url`` is the URL the feed was fetched from (base of last resort for relative URLs);
    ``default_language`` is the source's configured language, used when neither the entry nor
    the feed declares one; ``now``, when given, enables dropping dates too far in the future.
    """
    site = resolve_url(feed.link, feed_url) or feed_url
    url = resolve_url(entry.link, feed.link, feed_url)
    base = url or site

    raw_content = _cap(entry.content)
    raw_summary = _cap(entry.summary)
    content_html = sanitize_html(raw_content, base) if raw_content else ""
    if raw_summary is not None and raw_summary == raw_content:
        summary_html = content_html
    else:
        summary_html = sanitize_html(raw_summary, base) if raw_summary else ""

    # only the start of the body's text is ever used (excerpt, derived title, ``text``)
    body_text = sanitized_text((summary_html or content_html)[:TEXT_SOURCE_CHARS], MAX_TEXT_CHARS)
    if not summary_html and body_text:
        summary_html = f"<p>{html.escape(_truncate(body_text, EXCERPT_CHARS), quote=False)}</p>"
    if not content_html:
        content_html = summary_html

    title = _entry_title(entry)
    if not title:
        title = _derive_title(body_text) if body_text else UNTITLED
    text = f"{title} {body_text}".strip() if body_text else title
    text = text[:MAX_TEXT_CHARS]

    external = resolve_url(entry.external_url, url, site)
    if external is None and url is not None and not same_site(url, site):
        external = url

    return Item(
        guid=(entry.guid.strip() or None) if entry.guid else None,
        url=url,
        canonical_url=canonical_url(url),
        title=title,
        summary_html=summary_html,
        content_html=content_html,
        text=text,
        author=_plain(entry.author, 200),
        categories=_categories(entry.categories),
        language=_language(entry.language, feed.language, default_language),
        published_at=_clamp(entry.published or entry.updated, now),
        updated_at=_clamp(entry.updated, now),
        content_hash=_content_hash(title, raw_content or raw_summary or ""),
        external_url=canonical_url(external),
    )
