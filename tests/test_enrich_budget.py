"""The daily LLM budget on real SQLite and PostgreSQL: reserve, settle, refuse, reset at 00:00
UTC, and shared by replicas (separate engines on one database, racing threads)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aggregator.clock import FixedClock
from aggregator.enrich.budget import DailyBudget, Reservation, cost_of, next_utc_day, utc_day
from aggregator.enrich.errors import LLMError, TokenUsage
from aggregator.settings import EnrichSettings
from aggregator.store import Repository, make_engine
from aggregator.store.enrichments import EnrichmentStore

T0 = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
DAY = "2026-11-28"


def test_day_and_reset_time_are_utc() -> None:
    beijing = datetime(2026, 11, 29, 6, 30, tzinfo=timezone(timedelta(hours=8)))
    assert utc_day(beijing) == "2026-11-28"
    assert next_utc_day(beijing) == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    es = EnrichSettings(price_per_million_input=2.0, price_per_million_output=8.0)
    assert cost_of(1_000_000, 500_000, es) == pytest.approx(6.0)


def test_reservations_stop_at_the_budget_and_settling_gives_back(repo: Repository) -> None:
    store = EnrichmentStore(repo.engine)
    kw = {"token_budget": 1000, "cost_budget": None}
    assert store.reserve(DAY, 400, 0.0, T0, **kw)
    assert store.reserve(DAY, 400, 0.0, T0, **kw)
    assert not store.reserve(DAY, 400, 0.0, T0, **kw)
    used = store.usage(DAY)
    assert (used.tokens, used.calls, used.refused) == (800, 2, 1)
    store.settle(DAY, T0, tokens=-300, cost=0.0, prompt_tokens=80, completion_tokens=20)
    assert store.reserve(DAY, 400, 0.0, T0, **kw)  # 500 + 400 fits now
    used = store.usage(DAY)
    assert (used.tokens, used.prompt_tokens, used.completion_tokens) == (900, 80, 20)
    assert store.usage("2026-11-29").tokens == 0


def test_cost_budget_refuses_even_when_tokens_fit(repo: Repository) -> None:
    store = EnrichmentStore(repo.engine)
    kw = {"token_budget": 10**9, "cost_budget": 1.0}
    assert store.reserve(DAY, 10, 0.6, T0, **kw)
    assert not store.reserve(DAY, 10, 0.6, T0, **kw)
    assert store.usage(DAY).cost == pytest.approx(0.6)


async def test_daily_budget_refuses_then_resets_next_utc_day(repo: Repository) -> None:
    clock = FixedClock(T0)
    es = EnrichSettings(daily_token_budget=1000)
    budget = DailyBudget(EnrichmentStore(repo.engine), es, clock)
    first = await budget.reserve(300, 200)
    assert first == Reservation(DAY, 500, 0.0)
    await budget.settle(first, TokenUsage(250, 150))  # the server reported 400
    second = await budget.reserve(300, 200)  # 400 + 500 <= 1000
    await budget.settle(second, None)  # nothing reached the model: refunded
    third = await budget.reserve(300, 200)
    await budget.settle(third, TokenUsage(300, 200, reported=False))  # kept (a timeout)
    assert EnrichmentStore(repo.engine).usage(DAY).tokens == 900
    with pytest.raises(LLMError) as caught:
        await budget.reserve(300, 200)
    assert caught.value.kind == "over_budget"
    assert "900 of 1000 tokens" in str(caught.value) and DAY in str(caught.value)
    clock.advance(3600)  # 00:00 UTC: a new day, a new budget
    fresh = await budget.reserve(300, 200)
    assert fresh.day == "2026-11-29"


def test_replicas_share_one_budget(db_url: str, repo: Repository) -> None:
    """Two processes' engines on one database; eight threads race for 100 tokens each."""
    engines = [make_engine(db_url) for _ in range(2)]
    stores = [EnrichmentStore(e) for e in engines]
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def take(i: int) -> None:
        barrier.wait()
        ok = stores[i % 2].reserve(DAY, 100, 0.0, T0, token_budget=500, cost_budget=None)
        with lock:
            granted.append(ok)

    try:
        threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(granted) == [False] * 3 + [True] * 5
        assert stores[0].usage(DAY).tokens == stores[1].usage(DAY).tokens == 500
        assert stores[1].usage(DAY).refused == 3
    finally:
        for e in engines:
            e.dispose()


async def test_daily_budgets_of_two_replicas_see_each_others_use(
    db_url: str, repo: Repository
) -> None:
    engines = [make_engine(db_url) for _ in range(2)]
    clock = FixedClock(T0)
    es = EnrichSettings(daily_token_budget=1000)
    a, b = (DailyBudget(EnrichmentStore(e), es, clock) for e in engines)
    try:
        res = await a.reserve(100, 500)
        await a.settle(res, TokenUsage(500, 300))  # 800 used by replica a
        with pytest.raises(LLMError):
            await b.reserve(100, 200)  # replica b sees it: 800 + 300 > 1000
        assert (await b.reserve(100, 50)).tokens == 150  # 150 still fits
    finally:
        for e in engines:
            e.dispose()
