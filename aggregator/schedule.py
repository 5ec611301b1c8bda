"""PURE: when to poll a source next, from its outcome, posting rate and the publisher's hints.

No IO, no clock, no global randomness: ``now`` and ``rng`` are parameters, so every decision is
reproducible in tests.

The rules, in order:

1. ``gone`` (HTTP 410): the caller disables the source; we still return ``now + max_interval``
   so a re-enabled source is not hammered.
2. ``error``: exponential backoff ``error_backoff_base * 2**(n-1)`` for the n-th consecutive
   failure, jittered, capped at ``max_interval`` (a dead source is retried at
   ``max_interval`` forever, never given up); a ``Retry-After`` is a floor.
3. ``ok`` / ``not_modified``: a fixed interval from the config wins; otherwise half the
   feed's mean gap between entries (``default_interval`` when unknown), clamped to
   ``[min_interval, max_interval]``. Caching hints (RSS ``ttl``, ``Cache-Control: max-age``,
   ``Expires``) raise the adaptive interval, never lower it; ``Retry-After`` raises any
   interval, fixed ones included. Every hint is capped at ``max_interval``.
4. Jitter of ``+-jitter`` spreads sources apart; when a hint is the binding floor the jitter is
   only upward, so the publisher's wish is never undercut.
5. RSS ``skipHours`` / ``skipDays`` (UTC) move the time to the next allowed hour, but never past
   ``now + max_interval``.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from aggregator.model import ParsedFeed

if TYPE_CHECKING:  # annotations only: parse workers import this module and need no pydantic
    from aggregator.settings import ScheduleSettings

Outcome = Literal["ok", "not_modified", "error", "gone"]

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: Entry dates further than this in the future are publisher clock errors, not posting history.
FUTURE_TOLERANCE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Hints:
    """What a publisher told us about polling it (all optional, seconds unless named)."""

    ttl_minutes: int | None = None
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[str] = frozenset()
    max_age_seconds: float | None = None  # Cache-Control max-age minus Age
    expires_at: datetime | None = None
    retry_after_seconds: float | None = None


def parse_http_date(value: str) -> datetime | None:
    """Parse an HTTP-date (RFC 9110, any of its three forms) as aware UTC; None if invalid."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or HTTP-date) into seconds from ``now`` (>= 0)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    when = parse_http_date(text)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _max_age(cache_control: str) -> float | None:
    """Return ``max-age`` from a Cache-Control value, or None (``no-cache``/``no-store``: 0)."""
    result: float | None = None
    for part in cache_control.split(","):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return 0.0
        if name == "max-age":
            arg = arg.strip().strip('"')
            if arg.isdigit():
                result = float(int(arg))
    return result


def hints_from(headers: Mapping[str, str], feed: ParsedFeed | None, now: datetime) -> Hints:
    """Collect the polling hints from response headers (lower-case names) and the feed."""
    max_age: float | None = None
    cache_control = headers.get("cache-control")
    if cache_control:
        max_age = _max_age(cache_control)
        age = headers.get("age", "").strip()
        if max_age is not None and age.isdigit():
            max_age = max(0.0, max_age - int(age))
    expires_at = None
    expires = headers.get("expires")
    if expires and max_age is None:  # max-age takes precedence over Expires (RFC 9111)
        expires_at = parse_http_date(expires)
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    return Hints(
        ttl_minutes=feed.ttl_minutes if feed is not None else None,
        skip_hours=feed.skip_hours if feed is not None else frozenset(),
        skip_days=feed.skip_days if feed is not None else frozenset(),
        max_age_seconds=max_age,
        expires_at=expires_at,
        retry_after_seconds=retry_after,
    )


def mean_gap_seconds(dates: Sequence[datetime | None], *, now: datetime) -> float | None:
    """Estimate the mean seconds between entries from the feed's own entry dates.

    ``None`` dates and duplicates are ignored, dates more than an hour ahead of ``now`` are
    ignored and slightly-future ones count as ``now``. The estimate is ``(now - oldest) / n``
    over the ``n`` distinct dates: it includes the silence since the newest entry, so a feed
    that stopped posting slows down instead of being polled at its old rate. Fewer than two
    distinct dates give None (unknown).
    """
    limit = now + FUTURE_TOLERANCE
    distinct = {min(d, now) for d in dates if d is not None and d <= limit}
    if len(distinct) < 2:
        return None
    oldest = min(distinct)
    return max(0.0, (now - oldest).total_seconds()) / len(distinct)


def backoff_seconds(error_count: int, settings: ScheduleSettings) -> float:
    """Return ``base * 2**(n-1)`` for the n-th consecutive error, capped at max_interval."""
    exponent = min(max(error_count, 1) - 1, 60)
    return min(settings.error_backoff_base * (2.0**exponent), settings.max_interval)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))


def _skip_forward(when: datetime, hints: Hints, limit: datetime) -> datetime:
    """Move ``when`` to the next UTC hour not excluded by skipHours/skipDays, up to ``limit``."""
    if not hints.skip_hours and not hints.skip_days:
        return when

    def allowed(t: datetime) -> bool:
        return t.hour not in hints.skip_hours and DAY_NAMES[t.weekday()] not in hints.skip_days

    if allowed(when):
        return when
    candidate = when.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 8):
        candidate += timedelta(hours=1)
        if candidate >= limit:
            return limit
        if allowed(candidate):
            return candidate
    return limit


def next_check(
    now: datetime,
    *,
    outcome: Outcome,
    settings: ScheduleSettings,
    fixed_interval: float | None,
    mean_gap: float | None,
    error_count: int,
    hints: Hints,
    rng: random.Random,
) -> datetime:
    """Return when the source should be polled next (aware UTC, after ``now``).

    ``error_count`` is the number of consecutive failures including this one (used only when
    ``outcome == "error"``); ``fixed_interval`` is the source's configured interval, if any;
    ``mean_gap`` comes from :func:`mean_gap_seconds`.
    """
    max_interval = settings.max_interval
    limit = now + timedelta(seconds=max_interval)
    if outcome == "gone":
        return limit

    retry_after = hints.retry_after_seconds
    floor = 0.0 if retry_after is None else _clamp(retry_after, 0.0, max_interval)

    if outcome == "error":
        interval = backoff_seconds(error_count, settings)
        low = 0.0
    elif fixed_interval is not None and fixed_interval > 0:
        interval = fixed_interval
        low = 0.0
    else:
        gap = mean_gap / 2 if mean_gap is not None and mean_gap > 0 else settings.default_interval
        low = settings.min_interval
        interval = _clamp(gap, low, max_interval)
        cache_floors = [
            hints.ttl_minutes * 60.0 if hints.ttl_minutes and hints.ttl_minutes > 0 else 0.0,
            hints.max_age_seconds or 0.0,
            (hints.expires_at - now).total_seconds() if hints.expires_at is not None else 0.0,
        ]
        floor = max(floor, _clamp(max(cache_floors), 0.0, max_interval))

    spread = rng.uniform(-settings.jitter, settings.jitter)
    # When the publisher's wish is the binding floor, jitter only upward.
    interval = floor * (1.0 + abs(spread)) if floor > interval else interval * (1.0 + spread)
    interval = _clamp(max(interval, floor, low), 1.0, max_interval)
    when = now + timedelta(seconds=interval)
    if outcome != "error":
        when = _skip_forward(when, hints, limit)
    return when
