"""Curate and render every edition into snapshots (pure): the bytes the web server hands out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aggregator.curate import build_edition
from aggregator.model import Snapshot, StoryRecord
from aggregator.render import FORMATS, make_snapshot
from aggregator.settings import EditionConfig


def render_all(
    editions: Sequence[EditionConfig],
    stories: Sequence[StoryRecord],
    *,
    base_url: str,
    now: datetime,
) -> list[Snapshot]:
    """Snapshots of every edition, in every format, from the same set of recent stories."""
    snaps: list[Snapshot] = []
    for cfg in editions:
        feed = build_edition(cfg, stories, base_url=base_url, now=now)
        snaps.extend(make_snapshot(feed, fmt, now) for fmt in FORMATS)
    return snaps
