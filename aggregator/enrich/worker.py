"""The enrichment job: gives stories their cards, off the hot path.

Polling never waits for it: a story is exported as soon as it is stored, with whatever card it
has (none at first). Each pass (``Enricher.run_once``, every ``[enrich] interval_seconds`` in
the daemon, or ``aggregator enrich``):

1. picks up to ``batch_size`` candidate stories, newest first: no card yet, touched since last
   looked at, or an LLM card due (``store.enrichments.EnrichmentStore.candidates``);
2. plans (pure, :func:`plan_cards`): a story whose card input changed gets a fresh extractive
   card at once (an LLM card of the previous input stays shown while its refresh is pending);
3. writes the cards and re-renders the editions, so new stories carry their extractive card;
4. when the LLM backend is on, calls it for the due stories (claimed first, so one replica
   calls per story; concurrency-limited, budgeted): a good reply replaces the card and the
   editions are re-rendered again. A failed, slow or over-budget call changes nothing the
   reader sees; it is recorded (``llm_attempts``, ``llm_last_error``) and retried later:
   after ``retry_base_seconds`` doubling per attempt (or the server's Retry-After, if longer),
   at 00:00 UTC when the daily budget ran out, and not again after ``max_attempts`` until the
   story's input changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Engine

from aggregator.clock import Clock
from aggregator.enrich.budget import DailyBudget, next_utc_day
from aggregator.enrich.errors import LLMError
from aggregator.enrich.extractive import extractive_card
from aggregator.enrich.inputs import CardInput, card_input
from aggregator.enrich.llm import BudgetGate, LLMClient, LLMResult
from aggregator.enrich.prompt import build_messages, is_foreign
from aggregator.model import Card
from aggregator.settings import EnrichSettings, Settings
from aggregator.store.enrichments import (
    LLM_DUE_STATES,
    Candidate,
    CardWrite,
    EnrichmentState,
    EnrichmentStore,
)

log = logging.getLogger("aggregator.enrich")
LEASE_SLACK_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 24 * 3600.0


@dataclass
class EnrichReport:
    """What one pass did."""

    looked_at: int = 0
    cards: int = 0  # extractive cards (re)made
    llm_cards: int = 0
    llm_failed: int = 0
    over_budget: int = 0  # calls not made (or refused) because the day's budget ran out
    renders: int = 0  # edition re-renders triggered
    errors: list[str] = field(default_factory=list)  # LLM errors of this pass, one per story


@dataclass(frozen=True, slots=True)
class Planned:
    """One candidate after planning: its input, the write to make, whether the LLM is due."""

    inp: CardInput
    state: EnrichmentState
    write: CardWrite | None
    new_card: bool  # the write replaces the card (editions must be re-rendered)
    tags: tuple[str, ...]
    llm_due: bool


def llm_is_due(state: EnrichmentState, now: datetime) -> bool:
    """True when an LLM card of ``state`` should be asked for now."""
    if state.llm_status not in LLM_DUE_STATES:
        return False
    return state.llm_next_attempt_at is None or state.llm_next_attempt_at <= now


def plan_cards(
    candidates: Sequence[Candidate], now: datetime, settings: EnrichSettings, *, llm: bool
) -> list[Planned]:
    """Decide each candidate's write (pure: the extractive card is made here)."""
    out: list[Planned] = []
    for cand in candidates:
        story, old = cand.story, cand.state
        if not story.items:
            continue
        inp = card_input(story)
        digest = inp.hash
        expect = None if old is None else (old.input_hash, old.story_updated_at)
        if old is None or old.card is None or old.input_hash != digest:
            fresh = extractive_card(inp, now=now, language=settings.language)
            keep = llm and old is not None and old.card is not None and old.card.ai_generated
            state = EnrichmentState(
                story_id=story.id,
                input_hash=digest,
                story_updated_at=story.updated_at,
                card=old.card if keep and old is not None else fresh,
                llm_status="pending" if llm else "off",
            )
            write: CardWrite | None = CardWrite(state, expect)
            out.append(Planned(inp, state, write, not keep, fresh.tags, llm))
            continue
        state = old
        write = None
        if old.story_updated_at != story.updated_at:
            state = replace(old, story_updated_at=story.updated_at)
            write = CardWrite(state, expect)
        tags = old.card.tags
        out.append(Planned(inp, state, write, False, tags, llm and llm_is_due(state, now)))
    return out


def backoff_seconds(attempts: int, settings: EnrichSettings) -> float:
    """Delay before the next LLM attempt after ``attempts`` failed ones (doubling, capped)."""
    return float(min(settings.retry_base_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def llm_card(
    inp: CardInput, result: LLMResult, *, now: datetime, language: str, tags: tuple[str, ...]
) -> Card:
    """The card an LLM reply makes (a translated title only for foreign-language stories)."""
    reply = result.reply
    return Card(
        backend="llm",
        tldr=reply.tldr,
        generated_at=now,
        input_hash=inp.hash,
        model=result.model,
        title=reply.title or None if is_foreign(inp, language) else None,
        what_changed=reply.what_changed,
        why_it_matters=reply.why_it_matters,
        what_to_do_next=reply.what_to_do_next,
        who_should_care=reply.who_should_care,
        key_takeaways=tuple(reply.key_takeaways),
        tags=tags,
    )


class Enricher:
    """Runs enrichment passes (see the module docstring)."""

    def __init__(
        self,
        settings: EnrichSettings,
        store: EnrichmentStore,
        *,
        clock: Clock,
        llm: LLMClient | None = None,
        budget: BudgetGate | None = None,
        horizon_days: float | None = None,
        rerender: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.llm = llm
        self.budget = budget
        self.horizon_days = horizon_days
        self.rerender = rerender

    async def run_once(self, limit: int | None = None) -> EnrichReport:
        """One pass over at most ``limit`` (default ``batch_size``) stories."""
        report = EnrichReport()
        now = self.clock.now()
        since = None if self.horizon_days is None else now - timedelta(days=self.horizon_days)
        llm_on = self.llm is not None
        await asyncio.to_thread(self.store.purge_merged)
        candidates = await asyncio.to_thread(
            self.store.candidates,
            now,
            self.settings.batch_size if limit is None else limit,
            since=since,
            llm=llm_on,
        )
        planned = await asyncio.to_thread(plan_cards, candidates, now, self.settings, llm=llm_on)
        report.looked_at = len(planned)
        writes = [p.write for p in planned if p.write is not None]
        if writes:
            await asyncio.to_thread(self.store.save, writes, now)
        report.cards = sum(1 for p in planned if p.new_card)
        if report.cards:
            await self._rerender(report)
        due = [p for p in planned if p.llm_due]
        if due and self.llm is not None:
            outcomes = await asyncio.gather(*(self._llm_one(p, report) for p in due))
            if any(outcomes):
                await self._rerender(report)
        if report.looked_at:
            log.info(
                "enrichment pass",
                extra={
                    "looked_at": report.looked_at,
                    "cards": report.cards,
                    "llm_cards": report.llm_cards,
                    "llm_failed": report.llm_failed,
                    "over_budget": report.over_budget,
                },
            )
        return report

    async def _rerender(self, report: EnrichReport) -> None:
        if self.rerender is None:
            return
        try:
            await self.rerender()
            report.renders += 1
        except Exception:  # a failed render is the next pass's (or tick's) to redo
            log.exception("re-rendering editions after enrichment failed")

    async def _llm_one(self, p: Planned, report: EnrichReport) -> bool:
        """Claim, call and record one story's LLM card; True when a card was saved."""
        assert self.llm is not None
        s = self.settings
        sid, digest = p.state.story_id, p.state.input_hash
        lease = s.timeout * (s.max_retries + 1) + LEASE_SLACK_SECONDS
        now = self.clock.now()
        try:
            if not await asyncio.to_thread(
                self.store.claim_llm, sid, digest, now, now + timedelta(seconds=lease)
            ):
                return False  # another replica has it, or the story moved on
            attempts = p.state.llm_attempts + 1
            messages = build_messages(p.inp, language=s.language, max_chars=s.max_input_chars)
            try:
                result = await self.llm.complete(messages, self.budget)
            except LLMError as exc:
                await self._failed(p, exc, attempts, report)
                return False
            now = self.clock.now()
            card = llm_card(p.inp, result, now=now, language=s.language, tags=p.tags)
            saved = await asyncio.to_thread(
                self.store.finish_llm, sid, digest, now, status="ok", card=card, attempts=attempts
            )
            report.llm_cards += int(saved)
            return saved
        except Exception as exc:  # storage or a bug: the claim expires, the story is retried
            log.exception("enriching story %s failed unexpectedly", sid)
            report.errors.append(f"story {sid}: internal: {exc!r}"[:300])
            return False

    async def _failed(self, p: Planned, exc: LLMError, attempts: int, report: EnrichReport) -> None:
        """Record a call that made no card, and when to try again."""
        s = self.settings
        now = self.clock.now()
        sid, digest = p.state.story_id, p.state.input_hash
        report.errors.append(f"story {sid}: {exc}"[:300])
        if exc.kind == "over_budget":
            report.over_budget += 1
            await asyncio.to_thread(
                self.store.finish_llm, sid, digest, now, status="pending",
                attempts=p.state.llm_attempts, error=str(exc), next_attempt_at=next_utc_day(now),
            )  # fmt: skip
            return
        report.llm_failed += 1
        delay = max(backoff_seconds(attempts, s), exc.retry_after or 0.0)
        gave_up = attempts >= s.max_attempts
        log.warning(
            "LLM card of story %s failed (attempt %d%s): %s",
            sid,
            attempts,
            ", giving up until its text changes" if gave_up else "",
            exc,
        )
        await asyncio.to_thread(
            self.store.finish_llm, sid, digest, now,
            status="failed" if gave_up else "error", attempts=attempts, error=str(exc)[:1000],
            next_attempt_at=None if gave_up else now + timedelta(seconds=delay),
        )  # fmt: skip


def horizon_days(settings: Settings) -> float:
    """How far back stories are worth a card: the longest edition window."""
    return max((e.max_age_days for e in settings.editions), default=7.0)


@asynccontextmanager
async def open_enricher(
    settings: Settings,
    engine: Engine,
    *,
    clock: Clock,
    rerender: Callable[[], Awaitable[object]] | None = None,
    llm: LLMClient | None = None,
) -> AsyncIterator[Enricher]:
    """An ``Enricher`` wired from settings (an LLM client when ``llm_enabled``); closes it."""
    store = EnrichmentStore(engine)
    es = settings.enrich
    own = llm is None and es.llm_enabled
    client = LLMClient(es) if own else llm
    try:
        yield Enricher(
            es,
            store,
            clock=clock,
            llm=client,
            budget=DailyBudget(store, es, clock) if client is not None else None,
            horizon_days=horizon_days(settings),
            rerender=rerender,
        )
    finally:
        if own and client is not None:
            await client.aclose()
