"""Storage of related-update keys (table ``related_keys``) for ``aggregator.related.TEXT_KEYS``.

``load_keys`` seeds the in-memory cache with the stored keys of the texts a render is about to
index; ``save_keys`` stores the ones it had to compute and prunes rows older than
``KEEP_DAYS`` (older stories have left every edition's window; if one has not, its keys are
simply computed again). Both run on the caller's connection: the render's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from aggregator.errors import StorageError
from aggregator.model import StoryRecord
from aggregator.related import TextKeyCache, key_inputs
from aggregator.store.db import read_connection, write_transaction
from aggregator.store.schema import related_keys

log = logging.getLogger("aggregator.store.relatedkeys")

KEEP_DAYS = 30
_CHUNK = 500


def load_keys(conn: Connection, digests: Sequence[bytes]) -> list[tuple[bytes, str]]:
    """Stored ``(digest, encoded keys)`` among ``digests``."""
    query = select(related_keys.c.digest, related_keys.c.data).where(
        related_keys.c.digest.in_(bindparam("b_digests", expanding=True))
    )
    rows: list[tuple[bytes, str]] = []
    for start in range(0, len(digests), _CHUNK):
        chunk = list(digests[start : start + _CHUNK])
        rows.extend((bytes(d), str(t)) for d, t in conn.execute(query, {"b_digests": chunk}))
    return rows


def save_keys(conn: Connection, rows: Sequence[tuple[bytes, str]], now: datetime) -> None:
    """Store ``(digest, encoded keys)`` (refreshing their age) and prune old rows."""
    if rows:
        ins: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(
            related_keys
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[related_keys.c.digest],
            set_={"data": ins.excluded.data, "created_at": ins.excluded.created_at},
        )
        conn.execute(stmt, [{"digest": d, "data": t, "created_at": now} for d, t in rows])
    conn.execute(
        delete(related_keys).where(related_keys.c.created_at < now - timedelta(days=KEEP_DAYS))
    )


def preload(engine: Engine, cache: TextKeyCache, stories: Sequence[StoryRecord]) -> int:
    """Seed ``cache`` with the stored keys of ``stories`` it does not hold; returns how many.

    A storage failure is logged and costs only the tokenizing it would have saved.
    """
    wanted = cache.missing(cache.digest(*key_inputs(s)) for s in stories if s.items)
    if not wanted:
        return 0
    try:
        with read_connection(engine, "read related keys") as conn:
            rows = load_keys(conn, wanted)
    except StorageError as exc:
        log.warning("related keys not loaded: %s", exc)
        return 0
    cache.seed(rows)
    return len(rows)


def persist(engine: Engine, cache: TextKeyCache, now: datetime) -> int:
    """Store the keys ``cache`` computed since the last call; returns how many.

    A storage failure is logged; those keys are computed again by the next fresh process.
    """
    rows = cache.take_fresh()
    if not rows:
        return 0
    try:
        with write_transaction(engine, "save related keys") as conn:
            save_keys(conn, rows, now)
    except StorageError as exc:
        log.warning("related keys not saved: %s", exc)
        return 0
    return len(rows)
