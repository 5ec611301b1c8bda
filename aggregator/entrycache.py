"""Recognise a feed's unchanged entries from their raw bytes, before feedparser sees them.

A busy feed that gained two items still repeats forty it already had, and parsing those forty
again with feedparser is most of what a changed poll costs. This module splits an RSS or Atom
body into the byte spans of its top-level ``<item>`` / ``<entry>`` elements and digests each
span together with what could change its meaning (the feed URL, the Content-Type, and the
prolog up to and including the root element's start tag: XML declaration, encoding,
namespaces, ``xml:base``). A source keeps an *entry cache* (``EntryCache``): for every digest
of its last parsed body, the identity of the item that span became (GUID, link, title,
content hash, date). On the next changed body, spans whose digest is in the cache are cut out
before parsing and come back as identity stubs; only new or edited spans are parsed.

Safety: the split gives up (``None``: the whole body is parsed) on anything it cannot read
with certainty: nested or unbalanced item elements, a DOCTYPE with an internal subset, no
root element. Comments, CDATA sections and processing instructions are skipped as units, so an
``</item>`` written inside CDATA does not end a span. Everything else is checked after the
parse: a reduced body that is not well-formed, or that yields another number of entries than
the spans it kept, is parsed again in full (``aggregator.parse``), and a stub that the planner
would store triggers a full re-ingest (``aggregator.pipeline``). Caches are only built from
well-formed bodies whose every entry normalized.

The cache is stored per source as zlib-compressed JSON (never pickle: it is read back from a
database that replicas share).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.model import Item
from aggregator.normalize import identity_item

DIGEST_BYTES = 16
CACHE_VERSION = 1
#: Bigger caches are not kept (a feed of thousands of entries gains little and costs a lot).
MAX_CACHED_ENTRIES = 2000

# Every alternative also matches when its closing delimiter never comes (up to the end, \Z):
# a lazy scan that fails would otherwise be retried from every later opener, quadratic in a
# hostile body ("<!--" twenty thousand times took seconds). A token that ran to the end
# without its delimiter means the body cannot be split (``_closed``).
_TOKEN = re.compile(
    rb"<!--.*?(?:-->|\Z)|<!\[CDATA\[.*?(?:\]\]>|\Z)|<\?.*?(?:\?>|\Z)"
    rb"|<(/?)(item|entry)(?=[\s/>])[^>]*(?:>|\Z)",
    re.DOTALL,
)
_ROOT = re.compile(
    rb"<!--.*?(?:-->|\Z)|<\?.*?(?:\?>|\Z)|<!DOCTYPE[^>\[]*(\[)?|<[A-Za-z_][^>]*(?:>|\Z)",
    re.DOTALL,
)
_DELIMITERS = ((b"<!--", b"-->"), (b"<![CDATA[", b"]]>"), (b"<?", b"?>"), (b"<", b">"))


def _closed(token: bytes) -> bool:
    """Whether a token of ``_TOKEN``/``_ROOT`` ended with its own delimiter (and did not just
    run to the end of the body)."""
    for opener, closer in _DELIMITERS:
        if token.startswith(opener):
            return len(token) >= len(opener) + len(closer) and token.endswith(closer)
    return False


@dataclass(frozen=True, slots=True)
class Spans:
    """The top-level entry elements of one body, in document order."""

    spans: tuple[tuple[int, int], ...]  # [start, end) byte offsets
    digests: tuple[bytes, ...]  # one per span, context included


def _context(body: bytes, url: str, content_type: str) -> bytes | None:
    """The prolog through the root start tag, plus URL and Content-Type; None if unreadable."""
    for match in _ROOT.finditer(body, 0, min(len(body), 65536)):
        text = match.group(0)
        if text.startswith(b"<!DOCTYPE"):
            if match.group(1):  # an internal subset can define entities used in entries
                return None
            continue
        if not _closed(text):
            return None
        if text.startswith((b"<!--", b"<?")):
            continue
        head = body[: match.end()]
        return b"\0".join((url.encode("utf-8", "surrogatepass"), content_type.encode(), head))
    return None


def split_entries(body: bytes, url: str, content_type: str = "") -> Spans | None:
    """The entry spans of an RSS/Atom ``body`` and their digests; None when not certain."""
    context = _context(body, url, content_type)
    if context is None:
        return None
    salt = hashlib.blake2b(context, digest_size=DIGEST_BYTES).digest()
    spans: list[tuple[int, int]] = []
    start = -1
    for match in _TOKEN.finditer(body):
        if not _closed(match.group(0)):
            return None  # unterminated: nothing after it can be split with certainty
        name = match.group(2)
        if name is None:
            continue  # a comment, CDATA section or processing instruction
        if match.group(1):  # a closing tag
            if start < 0:
                return None
            spans.append((start, match.end()))
            start = -1
        elif start >= 0:
            return None  # nested items: not a shape this split understands
        elif match.group(0).endswith(b"/>"):
            spans.append((match.start(), match.end()))
        else:
            start = match.start()
    if start >= 0 or not spans:
        return None
    digests = tuple(
        hashlib.blake2b(body[a:b], digest_size=DIGEST_BYTES, key=salt).digest() for a, b in spans
    )
    return Spans(tuple(spans), digests)


def without(body: bytes, spans: Sequence[tuple[int, int]], drop: Sequence[int]) -> bytes:
    """``body`` with the spans at positions ``drop`` (ascending) cut out."""
    parts: list[bytes] = []
    at = 0
    for position in drop:
        a, b = spans[position]
        parts.append(body[at:a])
        at = b
    parts.append(body[at:])
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """What a stored span became: the identity fields of its item, and its date."""

    guid: str | None
    url: str | None
    title: str
    content_hash: str
    date: datetime | None  # published, else updated (for the posting rate)

    def stub(self) -> Item:
        """The identity-only item (as ``normalize.entry_identity`` makes it)."""
        return identity_item(self.guid, self.url, self.title, self.content_hash)


@dataclass(frozen=True, slots=True)
class EntryCache:
    """A source's spans of its last parsed body: digest -> entry, and the feed's site link
    (relative entry links resolve against it: if it changed, the cache is not used)."""

    link: str | None
    entries: Mapping[bytes, CachedEntry]


def build(
    link: str | None,
    digests: Sequence[bytes],
    items: Sequence[Item],
    dates: Sequence[datetime | None],
) -> bytes | None:
    """Encode the cache of one body: ``items[i]`` (not adjusted for fragments) came from the
    span ``digests[i]``; None when there is nothing worth keeping."""
    if not digests or len(digests) > MAX_CACHED_ENTRIES:
        return None
    rows = [
        [
            digest.hex(),
            item.guid,
            item.url,
            item.title,
            item.content_hash,
            date.timestamp() if date is not None else None,
        ]
        for digest, item, date in zip(digests, items, dates, strict=True)
    ]
    payload = {"v": CACHE_VERSION, "link": link, "entries": rows}
    return zlib.compress(json.dumps(payload, ensure_ascii=False).encode(), 1)


def load(data: bytes | None) -> EntryCache | None:
    """Decode a stored cache; None for none, an old version or anything malformed."""
    if not data:
        return None
    try:
        payload = json.loads(zlib.decompress(data))
        if payload.get("v") != CACHE_VERSION:
            return None
        entries = {}
        for digest, guid, url, title, content_hash, stamp in payload["entries"]:
            date = datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
            entries[bytes.fromhex(digest)] = CachedEntry(guid, url, title, content_hash, date)
        link = payload.get("link")
    except (ValueError, TypeError, KeyError, zlib.error):
        return None
    return EntryCache(link if isinstance(link, str) else None, entries)
