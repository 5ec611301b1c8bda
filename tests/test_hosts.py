"""HostLimiter: per-host concurrency, gaps between starts, holds, overrides (real asyncio time)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from aggregator.hosts import MAX_HOLD_SECONDS, HostHeld, HostLimiter


async def _run(
    limiter: HostLimiter,
    host: str,
    log: list[tuple[str, float, float]],
    hold: float = 0.02,
    gate: asyncio.Semaphore | None = None,
) -> None:
    async with limiter.slot(host, gate):
        start = time.monotonic()
        await asyncio.sleep(hold)
        log.append((host, start, time.monotonic()))


def _peak(log: list[tuple[str, float, float]], host: str | None = None) -> int:
    events = []
    for h, start, end in log:
        if host is None or h == host:
            events += [(start, 1), (end, -1)]
    peak = current = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


async def test_per_host_concurrency_is_bounded() -> None:
    limiter = HostLimiter(2, 0.0)
    log: list[tuple[str, float, float]] = []
    await asyncio.gather(*(_run(limiter, "a.example", log, hold=0.03) for _ in range(6)))
    assert len(log) == 6
    assert _peak(log) == 2


async def test_minimum_gap_between_starts() -> None:
    limiter = HostLimiter(4, 0.05)
    log: list[tuple[str, float, float]] = []
    await asyncio.gather(*(_run(limiter, "a.example", log, hold=0.0) for _ in range(4)))
    starts = sorted(s for _, s, _ in log)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.045  # timer granularity slack
    assert starts[-1] - starts[0] < 0.3


async def test_hosts_are_independent() -> None:
    limiter = HostLimiter(1, 0.2)
    log: list[tuple[str, float, float]] = []
    t0 = time.monotonic()
    await asyncio.gather(*(_run(limiter, f"h{i}.example", log, hold=0.0) for i in range(5)))
    assert max(s for _, s, _ in log) - t0 < 0.15  # five hosts start at once, not 0.2 s apart


async def test_hold_pauses_only_that_host() -> None:
    limiter = HostLimiter(2, 0.0)
    limiter.hold("slow.example", 0.3)
    assert 0.2 < limiter.held_for("slow.example") <= 0.3
    assert limiter.held_for("fast.example") == 0.0
    log: list[tuple[str, float, float]] = []
    t0 = time.monotonic()
    await asyncio.gather(
        _run(limiter, "slow.example", log, 0), _run(limiter, "fast.example", log, 0)
    )
    starts = {h: s - t0 for h, s, _ in log}
    assert starts["fast.example"] < 0.15
    assert starts["slow.example"] >= 0.25


async def test_hold_is_capped_and_ignores_nonsense() -> None:
    now = [100.0]
    limiter = HostLimiter(1, 0.0, clock=lambda: now[0])
    limiter.hold("a.example", -5)
    limiter.hold("a.example", 0)
    assert limiter.held_for("a.example") == 0.0
    limiter.hold("a.example", 10 * 86400)
    assert limiter.held_for("a.example") == MAX_HOLD_SECONDS
    limiter.hold("a.example", 1)  # a shorter hold never shortens a longer one
    assert limiter.held_for("a.example") == MAX_HOLD_SECONDS


def test_overrides_apply_to_subdomains_most_specific_first() -> None:
    limiter = HostLimiter(2, 1.0, {"ithome.com": (1, 5.0), "img.ithome.com": (4, 0.0)})
    assert limiter.limits_for("www.ithome.com") == (1, 5.0)
    assert limiter.limits_for("ITHOME.com.") == (1, 5.0)
    assert limiter.limits_for("img.ithome.com") == (4, 0.0)
    assert limiter.limits_for("notithome.com") == (2, 1.0)
    assert limiter.limits_for("127.0.0.1") == (2, 1.0)


async def test_override_concurrency_is_enforced() -> None:
    limiter = HostLimiter(3, 0.0, {"one.example": (1, 0.0)})
    log: list[tuple[str, float, float]] = []
    await asyncio.gather(
        *(_run(limiter, "one.example", log, 0.02) for _ in range(3)),
        *(_run(limiter, "three.example", log, 0.02) for _ in range(3)),
    )
    assert _peak(log, "one.example") == 1
    assert _peak(log, "three.example") == 3


async def test_gate_bounds_total_and_is_released() -> None:
    limiter = HostLimiter(5, 0.0)
    gate = asyncio.Semaphore(2)
    log: list[tuple[str, float, float]] = []
    await asyncio.gather(*(_run(limiter, f"h{i % 3}", log, 0.02, gate) for i in range(9)))
    assert len(log) == 9
    assert _peak(log) == 2
    assert gate._value == 2  # every slot gave its gate permit back


async def test_cancelled_waiter_releases_everything() -> None:
    limiter = HostLimiter(1, 0.0)
    gate = asyncio.Semaphore(1)
    log: list[tuple[str, float, float]] = []
    blocker = asyncio.create_task(_run(limiter, "a", log, 0.1, gate))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(_run(limiter, "a", log, 0.0, gate))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await blocker
    assert limiter.active("a") == 0
    await asyncio.wait_for(_run(limiter, "a", log, 0.0, gate), 0.5)  # nothing leaked
    assert len(log) == 2


def test_rejects_invalid_limits() -> None:
    with pytest.raises(ValueError):
        HostLimiter(0, 1.0)
    with pytest.raises(ValueError):
        HostLimiter(1, -1.0)


async def test_a_long_hold_that_starts_while_queued_raises_instead_of_sleeping() -> None:
    limiter = HostLimiter(1, 0.0)

    async def queued() -> None:
        async with limiter.slot("h", max_hold=1.0):
            pass

    async with limiter.slot("h"):
        task = asyncio.create_task(queued())
        await asyncio.sleep(0.01)
        limiter.hold("h", 60)
    with pytest.raises(HostHeld, match="asked us to wait"):
        await asyncio.wait_for(task, 1.0)
