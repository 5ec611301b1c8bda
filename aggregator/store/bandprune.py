"""Pruning the story-matching index: band rows of stories that no new report can join any more.

Text matching (``aggregator.store.matching``) looks a new report's band keys up in
``story_bands`` among stories whose newest report is within ``[stories] window_days``. Rows of
older stories are never read again, yet every new row still lands among them on random pages
of the clustered index: with a million stored reports the index was a few GB and each new
item's 31 rows cost a page each to write and, later, to checkpoint. Deleting the rows of
stories not updated for ``2 x window_days`` keeps the index the size of the recent window, so
the cost per new item stays flat however much is stored (``bench/results/stories_scale.md``).

A story's ``updated_at`` is at least its newest report's collection time, which is at least
the ``published_at`` its band rows carry (future dates are clamped at normalization), so a
story not updated since the cutoff has no row any window lookup could return. Each run looks
only at stories that crossed the cutoff during the last ``SLICE`` (the stories updated in
``[cutoff - SLICE, cutoff)``), found through the ``updated_at`` index: cheap enough to run
after every poll. Runs more than ``SLICE`` apart leave some rows behind; they are never matched
(the window filters them), only stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select

from aggregator.store.db import read_connection, write_transaction
from aggregator.store.schema import stories, story_bands

#: How far back each run looks for stories that crossed the cutoff.
SLICE = timedelta(days=2)
#: Stories whose band rows are deleted per write transaction (short lock holds on SQLite).
CHUNK = 500


def band_cutoff(now: datetime, window_days: float) -> datetime:
    """Stories not updated since this time lose their band rows (``2 x window_days`` ago)."""
    return now - timedelta(days=2 * window_days)


def prune_story_bands(engine: Engine, cutoff: datetime, since: datetime | None = None) -> int:
    """Delete the band rows of stories last updated in ``[since, cutoff)`` (all before
    ``cutoff`` when ``since`` is None); returns the number of rows deleted."""
    query = select(stories.c.id).where(stories.c.updated_at < cutoff).order_by(stories.c.id)
    if since is not None:
        query = query.where(stories.c.updated_at >= since)
    with read_connection(engine, "find stories to prune from the story index") as conn:
        ids = list(conn.execute(query).scalars())
    deleted = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        with write_transaction(engine, "prune the story index") as conn:
            result = conn.execute(delete(story_bands).where(story_bands.c.story_id.in_(chunk)))
            deleted += max(result.rowcount, 0)
    return deleted
