"""The daily LLM budget: tokens (and optionally cost) per UTC day, shared through the database.

Every attempt reserves its worst case first (estimated prompt + ``llm_max_output_tokens``) with
one conditional ``UPDATE`` of the day's ``llm_usage`` row, so replicas together never reserve
past the budget; afterwards the reservation is settled to what the server reported (or to an
estimate when it reported nothing, or refunded when nothing reached the model). A new UTC day
is a new row: the budget resets at 00:00 UTC.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from aggregator.clock import Clock
from aggregator.enrich.errors import LLMError, TokenUsage
from aggregator.settings import EnrichSettings
from aggregator.store.enrichments import EnrichmentStore


def utc_day(now: datetime) -> str:
    """The budget day of ``now``: its UTC date as ``YYYY-MM-DD``."""
    return now.astimezone(UTC).date().isoformat()


def next_utc_day(now: datetime) -> datetime:
    """00:00 UTC after ``now``: when the budget resets."""
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)


def cost_of(prompt_tokens: int, completion_tokens: int, settings: EnrichSettings) -> float:
    """The price of a call's tokens at the configured per-million prices."""
    return (
        prompt_tokens * settings.price_per_million_input
        + completion_tokens * settings.price_per_million_output
    ) / 1_000_000


@dataclass(frozen=True, slots=True)
class Reservation:
    """Budget held for one attempt (settled against the same day even past midnight)."""

    day: str
    tokens: int
    cost: float


class DailyBudget:
    """The ``BudgetGate`` of ``llm.LLMClient``, backed by ``llm_usage`` rows."""

    def __init__(self, store: EnrichmentStore, settings: EnrichSettings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    async def reserve(self, prompt_tokens: int, max_output_tokens: int) -> Reservation:
        """Hold an attempt's worst case; ``LLMError("over_budget")`` when it does not fit."""
        now = self.clock.now()
        s = self.settings
        res = Reservation(
            day=utc_day(now),
            tokens=prompt_tokens + max_output_tokens,
            cost=cost_of(prompt_tokens, max_output_tokens, s),
        )
        granted = await asyncio.to_thread(
            self.store.reserve,
            res.day,
            res.tokens,
            res.cost,
            now,
            token_budget=s.daily_token_budget,
            cost_budget=s.daily_cost_budget,
        )
        if not granted:
            used = await asyncio.to_thread(self.store.usage, res.day)
            what = f"{used.tokens} of {s.daily_token_budget} tokens"
            if s.daily_cost_budget is not None:
                what += f", cost {used.cost:.4f} of {s.daily_cost_budget:g}"
            raise LLMError(
                "over_budget",
                f"daily budget reached on {res.day} UTC ({what} used; a call may take "
                f"{res.tokens}); calls resume at 00:00 UTC",
            )
        return res

    async def settle(self, reservation: object, usage: TokenUsage | None) -> None:
        """Replace the reservation by ``usage`` (``None`` refunds it)."""
        if not isinstance(reservation, Reservation):
            raise TypeError(f"not a budget reservation: {reservation!r}")
        tokens = usage.total if usage is not None else 0
        cost = cost_of(usage.prompt, usage.completion, self.settings) if usage else 0.0
        await asyncio.to_thread(
            self.store.settle,
            reservation.day,
            self.clock.now(),
            tokens=tokens - reservation.tokens,
            cost=cost - reservation.cost,
            prompt_tokens=usage.prompt if usage else 0,
            completion_tokens=usage.completion if usage else 0,
        )
