"""Per-host politeness for the fetcher: bounded concurrency, a gap between starts, holds.

One publisher host must never see more than ``N`` of our requests at once, nor two request
starts closer than ``delay`` seconds, and a ``Retry-After`` from it pauses that host only (other
hosts keep going). Everything is in-process asyncio state; there is no IO here except sleeping.

``overrides`` maps a host name to its own ``(concurrency, delay)``; a key also covers its
subdomains (``"ithome.com"`` applies to ``"www.ithome.com"``), the most specific key winning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

#: A Retry-After longer than this does not hold the host in memory (the schedule still honours
#: it for the source that got it): a hostile or broken header must not freeze a host for days.
MAX_HOLD_SECONDS = 3600.0


@dataclass(slots=True)
class _HostState:
    """What the limiter remembers about one host."""

    semaphore: asyncio.Semaphore
    delay: float
    start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0  # earliest clock value for the next request start
    hold_until: float = 0.0  # Retry-After: no start before this clock value
    active: int = 0


class HostHeld(Exception):
    """The host asked us to wait (Retry-After) longer than the caller is willing to."""

    def __init__(self, host: str, seconds: float) -> None:
        super().__init__(f"{host} asked us to wait (Retry-After): {seconds:.0f} s left")
        self.host = host
        self.seconds = seconds


class HostLimiter:
    """Enforces per-host concurrency, a minimum gap between request starts, and holds."""

    def __init__(
        self,
        per_host_concurrency: int,
        per_host_delay: float,
        overrides: Mapping[str, tuple[int, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_host_concurrency < 1:
            raise ValueError("per_host_concurrency must be at least 1")
        if per_host_delay < 0:
            raise ValueError("per_host_delay must not be negative")
        self._default = (per_host_concurrency, per_host_delay)
        self._overrides = {k.lower().rstrip("."): v for k, v in (overrides or {}).items()}
        self._clock = clock
        self._hosts: dict[str, _HostState] = {}

    def limits_for(self, host: str) -> tuple[int, float]:
        """Return ``(concurrency, delay)`` for ``host``: the most specific override or default."""
        name = host.lower().rstrip(".")
        while True:
            if name in self._overrides:
                return self._overrides[name]
            dot = name.find(".")
            if dot < 0:
                return self._default
            name = name[dot + 1 :]

    def _state(self, host: str) -> _HostState:
        key = host.lower()
        state = self._hosts.get(key)
        if state is None:
            concurrency, delay = self.limits_for(key)
            state = _HostState(semaphore=asyncio.Semaphore(concurrency), delay=delay)
            self._hosts[key] = state
        return state

    def hold(self, host: str, seconds: float) -> None:
        """Start no new request to ``host`` for ``seconds`` (a Retry-After), capped at an hour."""
        if seconds <= 0:
            return
        state = self._state(host)
        until = self._clock() + min(seconds, MAX_HOLD_SECONDS)
        state.hold_until = max(state.hold_until, until)

    def held_for(self, host: str) -> float:
        """Seconds until ``host`` may be contacted again because of a hold (0 when free)."""
        state = self._hosts.get(host.lower())
        if state is None:
            return 0.0
        return max(0.0, state.hold_until - self._clock())

    def active(self, host: str) -> int:
        """How many slots of ``host`` are taken right now."""
        state = self._hosts.get(host.lower())
        return 0 if state is None else state.active

    @asynccontextmanager
    async def slot(
        self,
        host: str,
        gate: asyncio.Semaphore | None = None,
        *,
        max_hold: float | None = None,
    ) -> AsyncIterator[None]:
        """Wait for a free slot of ``host`` and its start time, then run the body.

        ``gate`` (the fetcher's global semaphore) is acquired after the host's gap has passed
        and before the start is recorded, so the gap is measured between real request starts
        and tasks waiting for a polite moment do not occupy global capacity. A hold (Retry-After)
        longer than ``max_hold`` seconds that starts while waiting raises ``HostHeld`` instead
        of sleeping through it.
        """
        state = self._state(host)
        async with state.semaphore:
            gate_taken = False
            try:
                async with state.start_lock:
                    while True:
                        held = state.hold_until - self._clock()
                        if max_hold is not None and held > max_hold:
                            raise HostHeld(host, held)
                        wait = max(state.next_start, state.hold_until) - self._clock()
                        if wait > 0:
                            await asyncio.sleep(wait)
                            continue
                        if gate is None or gate_taken:
                            break
                        await gate.acquire()
                        gate_taken = True
                        if state.hold_until > self._clock():  # held while we waited
                            gate.release()
                            gate_taken = False
                    state.next_start = self._clock() + state.delay
                state.active += 1
                try:
                    yield
                finally:
                    state.active -= 1
            finally:
                if gate_taken and gate is not None:
                    gate.release()
