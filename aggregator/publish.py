"""Curate and render every edition into snapshots (pure): the bytes the web server hands out."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime

from aggregator.curate import build_edition
from aggregator.model import EditionFeed, Snapshot, StoryRecord
from aggregator.render.atom import render_atom
from aggregator.render.jsonfeed import render_jsonfeed
from aggregator.render.rss import render_rss
from aggregator.settings import EditionConfig

FORMATS: dict[str, tuple[Callable[[EditionFeed], bytes], str]] = {
    "rss": (render_rss, "application/rss+xml; charset=utf-8"),
    "atom": (render_atom, "application/atom+xml; charset=utf-8"),
    "json": (render_jsonfeed, "application/feed+json; charset=utf-8"),
}


def etag_of(body: bytes) -> str:
    """A strong ETag from the bytes: equal bodies, equal tags (across replicas too)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def render_edition(feed: EditionFeed, now: datetime) -> list[Snapshot]:
    """The three formats of one curated edition."""
    out = []
    for fmt, (render, content_type) in FORMATS.items():
        body = render(feed)
        out.append(Snapshot(feed.name, fmt, body, etag_of(body), content_type, now))
    return out


def render_all(
    editions: Sequence[EditionConfig],
    stories: Sequence[StoryRecord],
    *,
    base_url: str,
    now: datetime,
) -> list[Snapshot]:
    """Snapshots of every edition from the same set of recent stories."""
    snaps: list[Snapshot] = []
    for cfg in editions:
        feed = build_edition(cfg, stories, base_url=base_url, now=now)
        snaps.extend(render_edition(feed, now))
    return snaps
