"""Enrichment storage: story cards with their LLM retry state, and the shared daily LLM budget.

The SQL of ``aggregator.enrich`` lives here (SQL rows become ``Card`` / ``EnrichmentState``
here and nowhere else; driver errors become ``StorageError``). Several replicas may run the
enrichment job at once, so every write is guarded:

* a pass's card writes are optimistic: an update only applies while the row still holds what
  the pass read (``input_hash`` and ``story_updated_at``), an insert only when there is no row;
* an LLM call is claimed first by moving ``llm_next_attempt_at`` forward (a lease), with one
  conditional ``UPDATE``: exactly one replica gets to call for a story;
* the budget is reserved with one conditional ``UPDATE`` of the day's ``llm_usage`` row, so
  replicas together never reserve past it.

Merged stories (``stories.merged_into``) are never candidates; their rows are deleted by
:meth:`EnrichmentStore.purge_merged` (their reports, now in the survivor, get its card).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    exists,
    false,
    or_,
    select,
    update,
)

from aggregator.model import Card, StoryRecord
from aggregator.store.cards import card_from_json, card_to_json
from aggregator.store.db import read_connection, write_transaction
from aggregator.store.repo import _insert, story_items
from aggregator.store.schema import enrichments, items, llm_usage, stories

#: LLM states: ``off`` (made while the LLM backend was off), ``pending`` (to do), ``ok``,
#: ``error`` (failed, retried at ``llm_next_attempt_at``), ``failed`` (gave up until the input
#: changes).
LLM_DUE_STATES = ("off", "pending", "error")
E = enrichments


@dataclass(frozen=True, slots=True)
class EnrichmentState:
    """A story's stored enrichment."""

    story_id: int
    input_hash: str  # hash of the story's card input when last looked at
    story_updated_at: datetime  # the story's updated_at when last looked at
    card: Card | None  # None when the stored card could not be read back
    llm_status: str
    llm_attempts: int = 0
    llm_last_error: str | None = None
    llm_next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A story the enrichment pass should look at, with what is stored for it."""

    story: StoryRecord
    state: EnrichmentState | None


@dataclass(frozen=True, slots=True)
class CardWrite:
    """A pass's write for one story: ``expect`` is the (input hash, story updated_at) the row
    held when read (None: there was no row); the write is dropped if the row moved on."""

    state: EnrichmentState
    expect: tuple[str, datetime] | None


@dataclass(frozen=True, slots=True)
class Usage:
    """One UTC day of LLM use (``tokens`` includes reservations not settled yet)."""

    day: str
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    refused: int = 0


def _state(m: Any) -> EnrichmentState:
    try:
        card: Card | None = card_from_json(m["card"])
    except ValueError:
        card = None
    return EnrichmentState(
        story_id=m["story_id"],
        input_hash=m["input_hash"],
        story_updated_at=m["story_updated_at"],
        card=card,
        llm_status=m["llm_status"],
        llm_attempts=m["llm_attempts"],
        llm_last_error=m["llm_last_error"],
        llm_next_attempt_at=m["llm_next_attempt_at"],
    )


def _row(state: EnrichmentState, now: datetime) -> dict[str, Any]:
    card = state.card
    if card is None:
        raise ValueError(f"story {state.story_id}: a write needs a card")
    return {
        "story_id": state.story_id,
        "input_hash": state.input_hash,
        "story_updated_at": state.story_updated_at,
        "backend": card.backend,
        "card": card_to_json(card),
        "llm_status": state.llm_status,
        "llm_attempts": state.llm_attempts,
        "llm_last_error": state.llm_last_error,
        "llm_next_attempt_at": state.llm_next_attempt_at,
        "updated_at": now,
    }


_STATE_COLUMNS = (
    E.c.story_id,
    E.c.input_hash,
    E.c.story_updated_at,
    E.c.card,
    E.c.llm_status,
    E.c.llm_attempts,
    E.c.llm_last_error,
    E.c.llm_next_attempt_at,
)


class EnrichmentStore:
    """Reads and writes of the enrichment job (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        with write_transaction(self._engine, what) as conn:
            yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with read_connection(self._engine, what) as conn:
            yield conn

    # ------------------------------------------------------------------ cards

    def candidates(
        self, now: datetime, limit: int, *, since: datetime | None = None, llm: bool = False
    ) -> list[Candidate]:
        """Stories to look at, newest first (by ``stories.updated_at``), at most ``limit``.

        A story is a candidate when it is not merged, has reports, was updated since ``since``
        and has no enrichment, or was touched since it was last looked at, or (``llm``) its
        LLM card is due (not made yet, or a retry whose time has come).
        """
        if limit <= 0:
            return []
        st = stories
        llm_due = (
            and_(
                E.c.llm_status.in_(LLM_DUE_STATES),
                or_(E.c.llm_next_attempt_at.is_(None), E.c.llm_next_attempt_at <= now),
            )
            if llm
            else false()
        )
        query = (
            select(st.c.id, st.c.public_id, st.c.created_at, st.c.updated_at, *_STATE_COLUMNS)
            .select_from(st.outerjoin(E, E.c.story_id == st.c.id))
            .where(st.c.merged_into.is_(None))
            .where(exists().where(items.c.story_id == st.c.id))
            .where(or_(E.c.story_id.is_(None), E.c.story_updated_at != st.c.updated_at, llm_due))
            .order_by(st.c.updated_at.desc(), st.c.id.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(st.c.updated_at >= since)
        with self._read("read enrichment candidates") as conn:
            rows = list(conn.execute(query))
            by_story = story_items(conn, [r.id for r in rows])
        out: list[Candidate] = []
        for r in rows:
            story = StoryRecord(
                id=r.id,
                public_id=r.public_id,
                created_at=r.created_at,
                updated_at=r.updated_at,
                items=tuple(by_story[r.id]),
            )
            state = None if r.story_id is None else _state(r._mapping)
            out.append(Candidate(story, state))
        return out

    def get(self, story_id: int) -> EnrichmentState | None:
        """The stored enrichment of one story, or None."""
        with self._read("read enrichment") as conn:
            row = conn.execute(select(*_STATE_COLUMNS).where(E.c.story_id == story_id)).first()
        return None if row is None else _state(row._mapping)

    def save(self, writes: Sequence[CardWrite], now: datetime) -> int:
        """Apply a pass's writes in one transaction; returns how many applied.

        Inserts skip stories that have a row meanwhile (or were deleted); updates apply only
        while the row holds the expected input hash and story ``updated_at``.
        """
        inserts = [_row(w.state, now) for w in writes if w.expect is None]
        updates = [
            {**{f"v_{k}": v for k, v in _row(w.state, now).items() if k != "story_id"},
             "b_id": w.state.story_id, "b_hash": w.expect[0], "b_seen": w.expect[1]}
            for w in writes
            if w.expect is not None
        ]  # fmt: skip
        applied = 0
        with self._write("save cards") as conn:
            for row in inserts:  # one by one: a story deleted meanwhile must not fail the rest
                alive = select(stories.c.id).where(stories.c.id == row["story_id"])
                if conn.execute(alive).first():
                    ins = (
                        _insert(conn, E)
                        .values(**row)
                        .on_conflict_do_nothing(index_elements=["story_id"])
                    )
                    applied += conn.execute(ins).rowcount or 0
            if updates:
                stmt = (
                    update(E)
                    .where(
                        E.c.story_id == bindparam("b_id"),
                        E.c.input_hash == bindparam("b_hash"),
                        E.c.story_updated_at == bindparam("b_seen", type_=E.c.updated_at.type),
                    )
                    .values({c: bindparam(f"v_{c.name}", type_=c.type) for c in _set_columns()})
                )
                result = conn.execute(stmt, updates)
                applied += max(result.rowcount or 0, 0)
        return applied

    def claim_llm(self, story_id: int, input_hash: str, now: datetime, until: datetime) -> bool:
        """Take the LLM call of one story until ``until`` (True when this caller got it).

        The call is due (state and time) and the row still holds ``input_hash``; the claim moves
        ``llm_next_attempt_at`` to ``until``, so another replica skips it and, if this process
        dies, the story is due again then.
        """
        stmt = (
            update(E)
            .where(
                E.c.story_id == story_id,
                E.c.input_hash == input_hash,
                E.c.llm_status.in_(LLM_DUE_STATES),
                or_(E.c.llm_next_attempt_at.is_(None), E.c.llm_next_attempt_at <= now),
            )
            .values(llm_status="pending", llm_next_attempt_at=until, updated_at=now)
        )
        with self._write("claim LLM call") as conn:
            return (conn.execute(stmt).rowcount or 0) == 1

    def finish_llm(
        self,
        story_id: int,
        input_hash: str,
        now: datetime,
        *,
        status: str,
        card: Card | None = None,
        attempts: int,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record the outcome of a claimed LLM call (and its card, when there is one).

        Applies only while the row still holds ``input_hash``: a story that changed during the
        call keeps the newer state (and will be called for again).
        """
        values: dict[str, Any] = {
            "llm_status": status,
            "llm_attempts": attempts,
            "llm_last_error": error,
            "llm_next_attempt_at": next_attempt_at,
            "updated_at": now,
        }
        if card is not None:
            values.update(backend=card.backend, card=card_to_json(card))
        stmt = update(E).where(E.c.story_id == story_id, E.c.input_hash == input_hash)
        with self._write("record LLM outcome") as conn:
            return (conn.execute(stmt.values(values)).rowcount or 0) == 1

    def purge_merged(self) -> int:
        """Delete the enrichments of stories merged into another; returns how many."""
        merged = select(stories.c.id).where(stories.c.merged_into.is_not(None))
        with self._write("purge merged enrichments") as conn:
            return int(conn.execute(delete(E).where(E.c.story_id.in_(merged))).rowcount or 0)

    # ------------------------------------------------------------------ budget

    def reserve(
        self,
        day: str,
        tokens: int,
        cost: float,
        now: datetime,
        *,
        token_budget: int,
        cost_budget: float | None,
    ) -> bool:
        """Reserve ``tokens`` (and ``cost``) of ``day``'s budget; False when they do not fit.

        One conditional ``UPDATE``: concurrent callers (any replica) cannot both take the last
        share. A refusal is counted (``refused``).
        """
        u = llm_usage
        fits = [u.c.day == day, u.c.tokens + tokens <= token_budget]
        if cost_budget is not None:
            fits.append(u.c.cost + cost <= cost_budget)
        with self._write("reserve LLM budget") as conn:
            conn.execute(
                _insert(conn, u)
                .values(day=day, tokens=0, prompt_tokens=0, completion_tokens=0, cost=0.0,
                        calls=0, refused=0, updated_at=now)
                .on_conflict_do_nothing(index_elements=["day"])
            )  # fmt: skip
            granted = conn.execute(
                update(u)
                .where(*fits)
                .values(
                    tokens=u.c.tokens + tokens,
                    cost=u.c.cost + cost,
                    calls=u.c.calls + 1,
                    updated_at=now,
                )
            ).rowcount
            if granted == 1:
                return True
            conn.execute(
                update(u).where(u.c.day == day).values(refused=u.c.refused + 1, updated_at=now)
            )
            return False

    def settle(
        self,
        day: str,
        now: datetime,
        *,
        tokens: int,
        cost: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Correct ``day``'s reservation by ``tokens``/``cost`` (negative gives some back) and
        count the tokens the server reported."""
        u = llm_usage
        stmt = (
            update(u)
            .where(u.c.day == day)
            .values(
                tokens=u.c.tokens + tokens,
                cost=u.c.cost + cost,
                prompt_tokens=u.c.prompt_tokens + prompt_tokens,
                completion_tokens=u.c.completion_tokens + completion_tokens,
                updated_at=now,
            )
        )
        with self._write("settle LLM budget") as conn:
            conn.execute(stmt)

    def usage(self, day: str) -> Usage:
        """What ``day`` has used so far (zeros when nothing)."""
        with self._read("read LLM usage") as conn:
            row = conn.execute(select(llm_usage).where(llm_usage.c.day == day)).first()
        if row is None:
            return Usage(day)
        return Usage(
            day=day,
            tokens=int(row.tokens),
            prompt_tokens=int(row.prompt_tokens),
            completion_tokens=int(row.completion_tokens),
            cost=float(row.cost),
            calls=int(row.calls),
            refused=int(row.refused),
        )


def _set_columns() -> list[Any]:
    """Columns a card update sets (all but the key)."""
    return [c for c in E.columns if c.name != "story_id"]
