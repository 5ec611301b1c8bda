"""The matcher's view of one stored or new item: features and LSH band keys, computed once.

Pure (no database, no SQLAlchemy import), so a parse worker process can compute it for a
poll's new items while the database thread does other work: features and keys are most of
the CPU that story matching costs per item (see ``bench/stories_scale.py``). The store's
matcher (:mod:`aggregator.store.matching`) takes what was prepared and computes the rest.

Changing the shingler (:mod:`aggregator.dedupe.text`, ``shingles`` only), MinHash
(:mod:`aggregator.dedupe.minhash`) or the band layout below changes every band key: stored
keys must then be recomputed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.dedupe.minhash import band_keys, signature
from aggregator.dedupe.stories import MatchText, match_text
from aggregator.sanitize import html_to_text

BODY_PERM, BODY_BANDS, BODY_ROWS = 64, 21, 3
TITLE_PERM, TITLE_BANDS, TITLE_ROWS = 20, 10, 2
MIN_TITLE_SHINGLES = 3
TEXT_CACHE = 2_048  # memoized MatchTexts (~10-14 KB each: ~25 MB at most)
SUMMARY_CHARS = 200  # summary head that match_text reads (the lead)
SUMMARY_HTML_HEAD = 4_000  # summary HTML converted to find that head (whole when too short)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One item as the matcher needs it: its features and its band keys."""

    text: MatchText
    keys: tuple[int, ...]


#: Prepared items by ``(title, summary_html)``: how the matcher finds them for stored rows
#: (content-addressed, so nothing has to line up with the plan's order or item keys).
PreparedMap = dict[tuple[str, str], Prepared]


def summary_text(summary_html: str) -> str:
    """The plain-text head of a summary that :func:`match_text` can use (it reads the first
    ``SUMMARY_CHARS``): long summaries are converted from their first ``SUMMARY_HTML_HEAD``
    characters (cut after a ``>``, so no tag is split) when that already gives enough text."""
    if len(summary_html) > SUMMARY_HTML_HEAD:
        cut = summary_html.rfind(">", 0, SUMMARY_HTML_HEAD)
        if cut > 0:
            text = html_to_text(summary_html[: cut + 1])
            if len(text) > 2 * SUMMARY_CHARS:
                return text[: 2 * SUMMARY_CHARS]
    return html_to_text(summary_html)[: 2 * SUMMARY_CHARS]


_TextKey = tuple[str, str, str | None, datetime | None]


class _TextCache:
    """A bounded LRU of MatchTexts that can also be *given* entries: texts prepared in a parse
    worker are remembered here when the matcher uses them, so the same reports judged later as
    candidates' representatives are not computed again on the database thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[_TextKey, MatchText] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _TextKey) -> MatchText | None:
        with self._lock:
            text = self._entries.get(key)
            if text is not None:
                self._entries.move_to_end(key)
            return text

    def put(self, key: _TextKey, text: MatchText) -> None:
        with self._lock:
            self._entries[key] = text
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


TEXTS = _TextCache(TEXT_CACHE)


def item_match_text(
    title: str, summary_html: str, language: str | None, published_at: datetime | None
) -> MatchText:
    """The matcher's view of an item: title + plain text of its summary head.

    Memoized in a small bounded cache (``TEXTS``; pure: a batch's representatives are judged
    again and again: features cost ~0.5 ms a text, a hit ~1 us). ``MatchText.summary`` holds
    only the head (``2 * SUMMARY_CHARS``), so an entry stays around 10 KB.
    """
    key = (title, summary_html, language, published_at)
    text = TEXTS.get(key)
    if text is None:
        text = _match_text(*key)
        TEXTS.put(key, text)
    return text


def _match_text(
    title: str, summary_html: str, language: str | None, published_at: datetime | None
) -> MatchText:
    """:func:`item_match_text` without the cache."""
    return match_text(
        title,
        summary_text(summary_html),
        language=language,
        published_at=published_at,
        summary_chars=SUMMARY_CHARS,
    )


def item_band_keys(text: MatchText) -> list[int]:
    """LSH band keys of one report: body keys, plus title keys when the title is long enough.

    Title shingles are hashed with a ``t|`` prefix, so title keys are independent of body keys.
    """
    keys = band_keys(
        signature(text.body_features.shingles, BODY_PERM), bands=BODY_BANDS, rows=BODY_ROWS
    )
    title = text.title_features.shingles
    if len(title) >= MIN_TITLE_SHINGLES:
        sig = signature((f"t|{s}" for s in title), TITLE_PERM)
        keys += band_keys(sig, bands=TITLE_BANDS, rows=TITLE_ROWS)
    return list(dict.fromkeys(keys))


def prepare(
    title: str, summary_html: str, language: str | None, published_at: datetime | None
) -> Prepared:
    """Features and band keys of one item (not cached: in a parse worker nothing would read the
    cache; the matcher remembers what it uses, see :func:`adopt`)."""
    text = _match_text(title, summary_html, language, published_at)
    return Prepared(text, tuple(item_band_keys(text)))


def prepare_many(
    rows: Sequence[tuple[str, str, str | None, datetime | None]],
) -> PreparedMap:
    """:func:`prepare` for ``(title, summary_html, language, published_at)`` rows, keyed by
    ``(title, summary_html)``: the job a parse worker runs for a poll's new and edited items."""
    return {(row[0], row[1]): prepare(*row) for row in rows}


def adopt(
    prepared: Prepared, title: str, summary_html: str, language: str | None, published_at: datetime
) -> MatchText:
    """The prepared text of a stored row, with the row's language and publication time (the
    store fills a missing ``published_at`` in, and ``decide`` compares it), remembered in
    ``TEXTS`` as if computed here."""
    text = prepared.text
    if text.language != language or text.published_at != published_at:
        text = dataclasses.replace(text, language=language, published_at=published_at)
    TEXTS.put((title, summary_html, language, published_at), text)
    return text
