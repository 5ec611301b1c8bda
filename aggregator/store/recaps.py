"""Storage of weekly recaps (table ``recaps``): save a built recap, read one or the newest.

SQL rows become ``aggregator.recap.Recap`` here and nowhere else; SQLAlchemy errors become
``StorageError``. Saving is an upsert on the recap's stable id, so rebuilding a week (the cron
job on another replica, or ``aggregator recap`` by hand) replaces its row; when the content is
unchanged the stored row, and its ``updated_at``, stay as they were, so the exported edition
keeps its bytes and ETag.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, select
from sqlalchemy.dialects import postgresql, sqlite

from aggregator.errors import StorageError
from aggregator.recap import Recap, RecapLine
from aggregator.store.db import storage_errors, write_options
from aggregator.store.schema import recaps


def _line_json(line: RecapLine) -> dict[str, Any]:
    return {
        "story_id": line.story_id,
        "title": line.title,
        "url": line.url,
        "publisher": line.publisher,
        "coverage": line.coverage,
        "score": line.score,
        "published": line.published.isoformat(),
        "tldr": line.tldr,
    }


def _line(data: dict[str, Any]) -> RecapLine:
    return RecapLine(
        story_id=str(data["story_id"]),
        title=str(data["title"]),
        url=data.get("url"),
        publisher=str(data["publisher"]),
        coverage=int(data["coverage"]),
        score=float(data["score"]),
        published=datetime.fromisoformat(data["published"]),
        tldr=str(data.get("tldr") or ""),
    )


def _recap(row: Row[Any]) -> Recap:
    m = row._mapping
    return Recap(
        id=m["id"],
        edition=m["edition"],
        week=m["week"],
        title=m["title"],
        content_html=m["content_html"],
        week_start=m["week_start"],
        published=m["published_at"],
        updated=m["updated_at"],
        lines=tuple(_line(d) for d in m["lines"] or ()),
        url=m["url"],
    )


def _same_content(stored: Recap, new: Recap) -> bool:
    return (
        stored.title == new.title
        and stored.content_html == new.content_html
        and stored.published == new.published
        and stored.url == new.url
        and stored.lines == new.lines
    )


class RecapStore:
    """Weekly recaps in the database the repository uses."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, recap: Recap, now: datetime) -> Recap:
        """Insert or replace ``recap`` (by id); returns what is stored afterwards.

        An identical rebuild changes nothing (the stored recap, with its ``updated``, is
        returned); a changed one replaces the row with ``updated`` = ``recap.updated``.
        """
        with storage_errors(self._engine, "save recap"), self._engine.connect() as conn:
            conn.execution_options(**write_options())
            with conn.begin():
                row = conn.execute(select(recaps).where(recaps.c.id == recap.id)).first()
                if row is not None and _same_content(stored := _recap(row), recap):
                    return stored
                values = {
                    "id": recap.id,
                    "edition": recap.edition,
                    "week": recap.week,
                    "title": recap.title,
                    "content_html": recap.content_html,
                    "lines": [_line_json(line) for line in recap.lines],
                    "url": recap.url,
                    "week_start": recap.week_start,
                    "published_at": recap.published,
                    "updated_at": recap.updated,
                    "created_at": now,
                }
                dialect = conn.dialect.name
                if dialect == "postgresql":
                    ins: Any = postgresql.insert(recaps)
                elif dialect == "sqlite":
                    ins = sqlite.insert(recaps)
                else:
                    raise StorageError(f"unsupported database dialect {dialect!r}")
                ins = ins.values(**values)
                changed = {k: ins.excluded[k] for k in values if k not in ("id", "created_at")}
                conn.execute(ins.on_conflict_do_update(index_elements=["id"], set_=changed))
        return recap

    def get(self, edition: str, week: str) -> Recap | None:
        """The stored recap of ``edition`` for ``week``, or None."""
        query = select(recaps).where(recaps.c.edition == edition, recaps.c.week == week)
        with storage_errors(self._engine, "read recap"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _recap(row) if row is not None else None

    def latest(self, editions: Sequence[str]) -> dict[str, Recap]:
        """The newest recap (by publication time) of each of ``editions`` that has one."""
        out: dict[str, Recap] = {}
        with storage_errors(self._engine, "read latest recaps"), self._engine.connect() as conn:
            for edition in dict.fromkeys(editions):
                query = (
                    select(recaps)
                    .where(recaps.c.edition == edition)
                    .order_by(recaps.c.published_at.desc(), recaps.c.week.desc())
                    .limit(1)
                )
                row = conn.execute(query).first()
                if row is not None:
                    out[edition] = _recap(row)
        return out

    def history(self, edition: str) -> list[Recap]:
        """Every stored recap of ``edition``, newest first."""
        query = (
            select(recaps)
            .where(recaps.c.edition == edition)
            .order_by(recaps.c.published_at.desc(), recaps.c.week.desc())
        )
        with storage_errors(self._engine, "list recaps"), self._engine.connect() as conn:
            return [_recap(row) for row in conn.execute(query)]
