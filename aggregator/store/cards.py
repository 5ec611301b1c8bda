"""Cards as stored: ``Card`` <-> the JSON of ``enrichments.card``, and the batch read.

Kept apart from ``enrichments.py`` (which builds on ``repo``) so that ``repo.recent_stories``
can attach cards without an import cycle. A stored card that does not read back (written by a
newer version, or damaged) is skipped with a warning: a story without its card is still a story.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from aggregator.model import Card
from aggregator.store.schema import enrichments

log = logging.getLogger(__name__)
CARD_FORMAT = 1
_TEXT_FIELDS = ("tldr", "what_changed", "why_it_matters", "what_to_do_next", "who_should_care")
CHUNK = 500


def card_to_json(card: Card) -> dict[str, Any]:
    """The JSON object stored for ``card`` (datetimes as UTC ISO 8601)."""
    return {
        "format": CARD_FORMAT,
        "backend": card.backend,
        "model": card.model,
        "title": card.title,
        **{name: getattr(card, name) for name in _TEXT_FIELDS},
        "key_takeaways": list(card.key_takeaways),
        "tags": list(card.tags),
        "input_hash": card.input_hash,
        "generated_at": card.generated_at.astimezone(UTC).isoformat(),
    }


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: expected a list of strings")
    return tuple(value)


def _optional(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: expected a string or null")
    return value


def card_from_json(data: Any) -> Card:
    """Read a stored card back; ``ValueError`` naming the field when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("card: expected a JSON object")
    if data.get("format") != CARD_FORMAT:
        raise ValueError(f"format: unknown card format {data.get('format')!r}")
    texts: dict[str, str] = {}
    for name in (*_TEXT_FIELDS, "backend", "input_hash", "generated_at"):
        value = data.get(name, "" if name in _TEXT_FIELDS else None)
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string")
        texts[name] = value
    generated = datetime.fromisoformat(texts.pop("generated_at"))
    if generated.tzinfo is None:
        generated = generated.replace(tzinfo=UTC)
    return Card(
        backend=texts.pop("backend"),
        input_hash=texts.pop("input_hash"),
        generated_at=generated.astimezone(UTC),
        model=_optional(data.get("model"), "model"),
        title=_optional(data.get("title"), "title"),
        key_takeaways=_strings(data.get("key_takeaways", []), "key_takeaways"),
        tags=_strings(data.get("tags", []), "tags"),
        **texts,
    )


def cards_for(conn: Connection, story_ids: Iterable[int]) -> dict[int, Card]:
    """The stored card of each of ``story_ids`` that has one (one query per 500 ids)."""
    ids = list(dict.fromkeys(story_ids))
    out: dict[int, Card] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        query = select(enrichments.c.story_id, enrichments.c.card).where(
            enrichments.c.story_id.in_(chunk)
        )
        for story_id, data in conn.execute(query):
            try:
                out[story_id] = card_from_json(data)
            except ValueError as exc:
                log.warning("story %s: stored card skipped: %s", story_id, exc)
    return out
