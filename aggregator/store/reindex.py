"""Rebuilding the story-matching index from stored reports (``aggregator stories reindex``).

Band rows (``story_bands``) are written when a report is matched and deleted when its story
leaves every window (``aggregator.store.bandprune``). Widening ``[stories] window_days``
afterwards does not bring pruned rows back, so reports of those stories could not be
text-matched again. :func:`reindex_stories` recomputes the rows of every (not merged) story
updated since a moment, from its reports' titles and summaries, exactly as matching computes
them when the reports are new, and upserts them (a row keeps its newest ``published_at``).
Running it twice, or over rows that were never pruned, changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from aggregator.store.db import read_connection, write_transaction
from aggregator.store.matching import keep_newest, prepared_of, write_bands
from aggregator.store.schema import items, stories

#: Stories re-indexed per write transaction (short lock holds on SQLite).
CHUNK = 200


def reindex_stories(engine: Engine, since: datetime) -> tuple[int, int]:
    """Rebuild the band rows of the stories updated since ``since``; returns (stories,
    rows written). Merged stories are skipped: their reports belong to the survivor."""
    query = (
        select(stories.c.id)
        .where(stories.c.updated_at >= since, stories.c.merged_into.is_(None))
        .order_by(stories.c.id)
    )
    with read_connection(engine, "find stories to re-index") as conn:
        ids = list(conn.execute(query).scalars())
    written = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        reports = select(
            items.c.story_id, items.c.title, items.c.summary_html, items.c.language,
            items.c.published_at,
        ).where(items.c.story_id.in_(chunk))  # fmt: skip
        with write_transaction(engine, "re-index stories") as conn:
            bands: dict[tuple[int, int], datetime] = {}
            for row in conn.execute(reports):
                for key in prepared_of(row, None).keys:
                    keep_newest(bands, key, row.story_id, row.published_at)
            if bands:
                write_bands(conn, bands)
            written += len(bands)
    return len(ids), written
