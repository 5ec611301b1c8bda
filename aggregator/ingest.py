"""Bytes in, normalized items out: parse + normalize for one response body (pure).

Runs in a worker process when parsing dominates (feedparser is CPU-bound), so it takes and
returns only picklable values, and it never raises: a body that is not a feed, or a parser bug
tripped by hostile input, becomes ``Ingested.error`` and is recorded against that source only.

A changed feed usually repeats most of its entries unchanged. The caller may pass ``known``:
digests (``stored_digest``) of the (item key, content hash) pairs it has stored for the source.
Entries whose cheap identity (``normalize.entry_identity``: key and content hash, no HTML work)
is among them are returned as *stubs* (listed in ``Ingested.stubs``) instead of being
sanitized and normalized in full, which is most of the cost of an entry after feedparser. A stub
has the identity fields of the full item, so the planner treats it exactly as the full item (it
finds it stored and unchanged); the pipeline re-ingests without ``known`` in the rare case a
plan would still write one (a digest that was stale or collided), so stubs are never stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from aggregator.dedupe.identity import item_keys
from aggregator.entrycache import CachedEntry, EntryCache
from aggregator.entrycache import build as build_cache
from aggregator.entrycache import load as load_cache
from aggregator.errors import ParseError
from aggregator.model import Item, ParsedEntry, ParsedFeed
from aggregator.normalize import entry_identity, normalize_entry
from aggregator.parse import parse_feed
from aggregator.schedule import mean_gap_seconds

DIGEST_BYTES = 16


@dataclass(frozen=True, slots=True)
class Ingested:
    """The result of reading one body: feed metadata (entries dropped), items, posting rate."""

    feed: ParsedFeed | None
    items: tuple[Item, ...]
    mean_gap: float | None
    error: str | None = None
    skipped: int = 0  # entries that could not be normalized
    stubs: frozenset[int] = frozenset()  # indexes of ``items`` that are identity-only stubs
    cache: bytes | None = None  # the source's new entry cache (``aggregator.entrycache``)


def stored_digest(item_key: str, content_hash: str) -> bytes:
    """A short digest of one stored (item key, content hash) pair, for ``ingest(known=...)``."""
    value = f"{item_key}\x1f{content_hash}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(value, digest_size=DIGEST_BYTES).digest()


def pack_digests(digests: Sequence[bytes]) -> bytes:
    """Digests as one bytes value (cheap to send to a worker process)."""
    return b"".join(digests)


def _unpack(known: bytes | None) -> frozenset[bytes]:
    if not known:
        return frozenset()
    return frozenset(known[i : i + DIGEST_BYTES] for i in range(0, len(known), DIGEST_BYTES))


def _parse(
    body: bytes, headers: Mapping[str, str], url: str, cache: EntryCache | None
) -> ParsedFeed:
    """``parse_feed``, skipping the spans ``cache`` knows when it still applies."""
    if cache is None:
        return parse_feed(body, headers, url)
    feed = parse_feed(body, headers, url, cache.entries)
    if feed.dropped and feed.link != cache.link:
        return parse_feed(body, headers, url)  # relative links would resolve differently now
    return feed


def ingest(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    default_language: str | None,
    now: datetime,
    known: bytes | None = None,
    cache: bytes | None = None,
) -> Ingested:
    """Parse ``body`` and normalize every entry; failures are values, not exceptions.

    ``known`` (``pack_digests`` of ``stored_digest`` values) lets entries stored unchanged come
    back as stubs; ``cache`` (the source's ``Ingested.cache`` from its last body) lets their
    raw spans skip even feedparser. Without either, every entry is normalized in full.
    """
    entry_cache = load_cache(cache)
    try:
        feed = _parse(body, headers, url, entry_cache)
    except ParseError as exc:
        return Ingested(None, (), None, error=str(exc))
    except Exception as exc:  # a parser bug on hostile input must not kill the tick
        return Ingested(None, (), None, error=f"unexpected parser failure: {exc!r}"[:500])
    slots = _slots(feed, entry_cache)
    stubs = _known_stubs(slots, feed, url, _unpack(known))
    items: list[Item] = []
    dates: list[datetime | None] = []
    stub_index: set[int] = set()
    skipped = 0
    all_dates = [_slot_date(slot) for slot in slots]
    for position, slot in enumerate(slots):
        stub = stubs.get(position)
        if stub is not None:
            stub_index.add(len(items))
            items.append(stub)
            dates.append(all_dates[position])
            continue
        assert isinstance(slot, ParsedEntry)  # every cut-out slot has a stub
        try:
            items.append(
                normalize_entry(
                    slot, feed, feed_url=url, default_language=default_language, now=now
                )
            )
            dates.append(all_dates[position])
        except Exception:  # one bad entry must not lose the others
            skipped += 1
    gap = mean_gap_seconds(all_dates, now=now)
    new_cache = None
    if feed.entry_digests and not skipped:
        new_cache = build_cache(feed.link, feed.entry_digests, items, dates)
    items = keep_distinguishing_fragments(items)
    return Ingested(
        dataclasses.replace(feed, entries=(), entry_digests=(), dropped=()),
        tuple(items),
        gap,
        skipped=skipped,
        stubs=frozenset(stub_index),
        cache=new_cache,
    )


def _slot_date(slot: ParsedEntry | CachedEntry) -> datetime | None:
    """The date an entry counts with in the posting rate."""
    if isinstance(slot, CachedEntry):
        return slot.date
    return slot.published or slot.updated


def _slots(feed: ParsedFeed, cache: EntryCache | None) -> list[ParsedEntry | CachedEntry]:
    """Every entry of the body in document order: parsed, or (cut out) as the cache knows it."""
    if not feed.dropped or cache is None:
        return list(feed.entries)
    dropped = set(feed.dropped)
    parsed = iter(feed.entries)
    return [
        cache.entries[digest] if position in dropped else next(parsed)
        for position, digest in enumerate(feed.entry_digests)
    ]


def _known_stubs(
    slots: Sequence[ParsedEntry | CachedEntry], feed: ParsedFeed, url: str, known: frozenset[bytes]
) -> dict[int, Item]:
    """Identity stubs of the entries cut out before parsing, and of the parsed entries whose
    (key, content hash) digest is in ``known``.

    Keys depend on the whole batch (repeated GUIDs, fragments), so every entry's identity is
    computed; if a parsed entry has none (no title of its own) or fails, only the cut-out
    entries are stubbed and the parsed ones are normalized in full, exactly as without
    ``known``.
    """
    cut = {p: s.stub() for p, s in enumerate(slots) if isinstance(s, CachedEntry)}
    if not known or len(cut) == len(slots):
        return cut
    identities: list[Item] = []
    for position, slot in enumerate(slots):
        if isinstance(slot, CachedEntry):
            identities.append(cut[position])
            continue
        try:
            identity = entry_identity(slot, feed, feed_url=url)
        except Exception:
            return cut
        if identity is None:
            return cut
        identities.append(identity)
    adjusted = keep_distinguishing_fragments(identities)
    keys = item_keys(adjusted)
    return {
        position: identities[position]
        for position, (key, item) in enumerate(zip(keys, adjusted, strict=True))
        if position in cut or stored_digest(key, item.content_hash) in known
    }


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
