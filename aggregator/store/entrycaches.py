"""Storage of the per-source entry caches (table ``entry_caches``, ``aggregator.entrycache``).

Read before a changed body is parsed, written in the same transaction as the items that body
produced, so a cache never names spans whose items were not stored (and if it ever does, the
pipeline's stub check re-parses the body in full). The values are opaque bytes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from aggregator.store.schema import entry_caches


def read_entry_cache(conn: Connection, source_id: int) -> bytes | None:
    """The stored cache of ``source_id``, or None."""
    data = conn.execute(
        select(entry_caches.c.data).where(entry_caches.c.source_id == source_id)
    ).scalar()
    return bytes(data) if data is not None else None


def write_entry_caches(conn: Connection, rows: Sequence[tuple[int, bytes]]) -> None:
    """Insert or replace the caches of ``(source_id, data)`` (one statement for all rows)."""
    if not rows:
        return
    conn.execute(_upsert(conn.dialect.name), [{"source_id": i, "data": d} for i, d in rows])


@cache
def _upsert(dialect: str) -> Any:
    """The upsert statement, built once per dialect (building one costs more than running it)."""
    ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert(entry_caches)
    return ins.on_conflict_do_update(
        index_elements=[entry_caches.c.source_id], set_={"data": ins.excluded.data}
    )
