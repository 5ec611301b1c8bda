"""Exporters: an ``EditionFeed`` becomes RSS 2.0, Atom 1.0 or JSON Feed 1.1 bytes (all pure).

``render_feed`` dispatches on the format name used in URLs (``rss``, ``atom``, ``json``) and
``make_snapshot`` wraps the bytes with a content-derived ETag, so identical editions give
identical ETags. OPML import/export lives in ``aggregator.render.opml``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from aggregator.model import EditionFeed, Snapshot
from aggregator.render.atom import render_atom
from aggregator.render.jsonfeed import render_jsonfeed
from aggregator.render.rss import render_rss

RENDERERS: dict[str, Callable[[EditionFeed], bytes]] = {
    "rss": render_rss,
    "atom": render_atom,
    "json": render_jsonfeed,
}
CONTENT_TYPES: dict[str, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
FORMATS: tuple[str, ...] = tuple(RENDERERS)


def render_feed(feed: EditionFeed, fmt: str) -> bytes:
    """Render ``feed`` in ``fmt`` (rss, atom or json); ValueError for any other name."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown feed format {fmt!r}; expected one of {FORMATS}") from None
    return renderer(feed)


def etag_for(body: bytes) -> str:
    """A strong, quoted ETag derived from the body alone."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def make_snapshot(feed: EditionFeed, fmt: str, generated_at: datetime) -> Snapshot:
    """Render ``feed`` in ``fmt`` and wrap it as a ``Snapshot`` ready to serve."""
    body = render_feed(feed, fmt)
    return Snapshot(
        edition=feed.name,
        format=fmt,
        body=body,
        etag=etag_for(body),
        content_type=CONTENT_TYPES[fmt],
        generated_at=generated_at,
    )


__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "RENDERERS",
    "etag_for",
    "make_snapshot",
    "render_atom",
    "render_feed",
    "render_jsonfeed",
    "render_rss",
]
