"""schedule.py: pure next-check decisions with a fixed clock and a seeded rng."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.model import ParsedFeed
from aggregator.schedule import (
    Hints,
    backoff_seconds,
    hints_from,
    mean_gap_seconds,
    next_check,
    parse_http_date,
    parse_retry_after,
)
from aggregator.settings import ScheduleSettings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday
S = ScheduleSettings(
    default_interval=900.0,
    min_interval=120.0,
    max_interval=86400.0,
    jitter=0.1,
    error_backoff_base=300.0,
)
NO_HINTS = Hints()


def _seconds(
    outcome: str = "ok",
    *,
    settings: ScheduleSettings = S,
    fixed: float | None = None,
    gap: float | None = None,
    errors: int = 0,
    hints: Hints = NO_HINTS,
    seed: int = 1,
) -> float:
    when = next_check(
        NOW,
        outcome=outcome,  # type: ignore[arg-type]
        settings=settings,
        fixed_interval=fixed,
        mean_gap=gap,
        error_count=errors,
        hints=hints,
        rng=random.Random(seed),
    )
    assert when.tzinfo is not None
    return (when - NOW).total_seconds()


def _all_seeds(**kwargs: object) -> list[float]:
    return [_seconds(**kwargs, seed=seed) for seed in range(200)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- adaptive


def test_default_interval_when_posting_rate_unknown() -> None:
    values = _all_seeds()
    assert min(values) >= 900 * 0.9 - 1e-6
    assert max(values) <= 900 * 1.1 + 1e-6
    assert max(values) - min(values) > 100  # jitter really spreads sources


def test_half_the_mean_gap() -> None:
    values = _all_seeds(gap=4 * 3600.0)
    assert all(2 * 3600 * 0.9 - 1e-6 <= v <= 2 * 3600 * 1.1 + 1e-6 for v in values)


def test_fast_feed_is_clamped_to_min_interval() -> None:
    values = _all_seeds(gap=30.0)  # a firehose: an item every 30 s
    assert min(values) >= 120
    assert max(values) <= 120 * 1.1 + 1e-6


def test_slow_feed_is_clamped_to_max_interval() -> None:
    values = _all_seeds(gap=30 * 86400.0)
    assert max(values) <= 86400
    assert min(values) >= 86400 * 0.9 - 1e-6


def test_same_seed_same_answer() -> None:
    assert _seconds(gap=3600.0, seed=7) == _seconds(gap=3600.0, seed=7)


def test_not_modified_is_scheduled_like_ok() -> None:
    assert _seconds("not_modified", gap=7200.0) == _seconds("ok", gap=7200.0)


def test_fixed_interval_wins_over_adaptive_and_cache_hints() -> None:
    hints = Hints(ttl_minutes=120, max_age_seconds=5000)
    values = _all_seeds(fixed=60.0, gap=10 * 3600.0, hints=hints)
    assert all(54 - 1e-6 <= v <= 66 + 1e-6 for v in values)  # below min_interval: user's choice


def test_fixed_interval_is_capped_at_max_interval() -> None:
    assert _seconds(fixed=10 * 86400.0) == 86400


def test_zero_jitter_is_exact() -> None:
    settings = ScheduleSettings(jitter=0.0, min_interval=60, max_interval=3600)
    assert _seconds(settings=settings, gap=1000.0) == 500.0


# --------------------------------------------------------------------------- hints


@pytest.mark.parametrize(
    "hints",
    [
        Hints(ttl_minutes=180),
        Hints(max_age_seconds=3 * 3600.0),
        Hints(expires_at=NOW + timedelta(hours=3)),
        Hints(retry_after_seconds=3 * 3600.0),
    ],
    ids=["ttl", "max-age", "expires", "retry-after"],
)
def test_each_hint_is_a_floor_with_upward_jitter(hints: Hints) -> None:
    values = _all_seeds(gap=600.0, hints=hints)  # adaptive alone would say 5 minutes
    assert min(values) >= 3 * 3600 - 1e-6
    assert max(values) <= 3 * 3600 * 1.1 + 1e-6
    assert max(values) > 3 * 3600 + 60  # still jittered


@pytest.mark.parametrize(
    "hints",
    [
        Hints(ttl_minutes=100_000),
        Hints(max_age_seconds=10 * 86400.0),
        Hints(expires_at=NOW + timedelta(days=365)),
        Hints(retry_after_seconds=10 * 86400.0),
    ],
    ids=["ttl", "max-age", "expires", "retry-after"],
)
def test_hints_never_beyond_max_interval(hints: Hints) -> None:
    assert max(_all_seeds(gap=600.0, hints=hints)) <= 86400


def test_hints_never_shorten_the_interval() -> None:
    hints = Hints(ttl_minutes=1, max_age_seconds=0.0, expires_at=NOW - timedelta(hours=1))
    assert _all_seeds(gap=8 * 3600.0, hints=hints) == _all_seeds(gap=8 * 3600.0)


def test_retry_after_beats_a_fixed_interval() -> None:
    assert min(_all_seeds(fixed=60.0, hints=Hints(retry_after_seconds=1800.0))) >= 1800


def test_skip_hours_move_to_next_allowed_hour() -> None:
    settings = ScheduleSettings(jitter=0.0, min_interval=60, max_interval=86400)
    hints = Hints(skip_hours=frozenset({12, 13, 14}))
    when = NOW + timedelta(seconds=_seconds(settings=settings, gap=1200.0, hints=hints))
    assert when == datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def test_skip_days_move_to_next_allowed_day() -> None:
    settings = ScheduleSettings(jitter=0.0, min_interval=60, max_interval=3 * 86400)
    hints = Hints(skip_days=frozenset({"Saturday", "Sunday"}))
    when = NOW + timedelta(seconds=_seconds(settings=settings, gap=1200.0, hints=hints))
    assert when == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday


def test_skips_never_go_beyond_max_interval() -> None:
    settings = ScheduleSettings(jitter=0.0, min_interval=60, max_interval=7200)
    every_hour = Hints(skip_hours=frozenset(range(24)))
    assert _seconds(settings=settings, gap=1200.0, hints=every_hour) == 7200
    weekend = Hints(skip_days=frozenset({"Saturday", "Sunday"}))
    assert _seconds(settings=settings, gap=1200.0, hints=weekend) == 7200


def test_allowed_hour_is_left_alone() -> None:
    settings = ScheduleSettings(jitter=0.0, min_interval=60, max_interval=86400)
    hints = Hints(skip_hours=frozenset({3, 4}))
    assert _seconds(settings=settings, gap=1200.0, hints=hints) == 600


# --------------------------------------------------------------------------- errors


def test_backoff_is_exponential_and_capped() -> None:
    values = [backoff_seconds(n, S) for n in range(1, 12)]
    assert values[:4] == [300, 600, 1200, 2400]
    assert values == sorted(values)
    assert values[-1] == 86400
    assert backoff_seconds(0, S) == 300  # treated as the first error
    assert backoff_seconds(10_000, S) == 86400  # no overflow


def test_error_backoff_is_jittered_within_bounds() -> None:
    for n, base in [(1, 300), (2, 600), (3, 1200)]:
        values = _all_seeds(outcome="error", errors=n, gap=60.0)
        assert all(base * 0.9 - 1e-6 <= v <= base * 1.1 + 1e-6 for v in values)


def test_backoff_grows_monotonically_for_the_same_seed() -> None:
    values = [_seconds("error", errors=n, seed=3) for n in range(1, 20)]
    assert values == sorted(values)


def test_dead_source_is_retried_at_max_interval_forever() -> None:
    values = _all_seeds(outcome="error", errors=500)
    assert max(values) <= 86400
    assert min(values) >= 86400 * 0.9 - 1e-6


def test_error_honours_retry_after() -> None:
    hints = Hints(retry_after_seconds=7200.0)
    assert min(_all_seeds(outcome="error", errors=1, hints=hints)) >= 7200


def test_gone_returns_max_interval() -> None:
    assert _seconds("gone", gap=60.0) == 86400
    assert _seconds("gone", errors=3, hints=Hints(retry_after_seconds=5.0)) == 86400


# --------------------------------------------------------------------------- hints_from


def test_hints_from_headers_and_feed() -> None:
    feed = ParsedFeed(
        format="rss20",
        title="t",
        link=None,
        language=None,
        entries=(),
        ttl_minutes=60,
        skip_hours=frozenset({1, 2}),
        skip_days=frozenset({"Sunday"}),
    )
    headers = {"cache-control": "public, max-age=600", "age": "100", "retry-after": "120"}
    hints = hints_from(headers, feed, NOW)
    assert hints == Hints(
        ttl_minutes=60,
        skip_hours=frozenset({1, 2}),
        skip_days=frozenset({"Sunday"}),
        max_age_seconds=500.0,
        expires_at=None,
        retry_after_seconds=120.0,
    )


def test_hints_from_expires_and_http_date_retry_after() -> None:
    headers = {
        "expires": "Sat, 28 Nov 2026 13:00:00 GMT",
        "retry-after": "Sat, 28 Nov 2026 12:30:00 GMT",
    }
    hints = hints_from(headers, None, NOW)
    assert hints.expires_at == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    assert hints.retry_after_seconds == 1800.0
    assert hints.ttl_minutes is None and not hints.skip_hours


def test_max_age_takes_precedence_over_expires() -> None:
    headers = {"cache-control": "max-age=60", "expires": "Sat, 28 Nov 2026 18:00:00 GMT"}
    hints = hints_from(headers, None, NOW)
    assert hints.max_age_seconds == 60.0
    assert hints.expires_at is None


def test_bad_header_values_are_ignored() -> None:
    headers = {"cache-control": "max-age=soon", "expires": "0", "retry-after": "whenever"}
    assert hints_from(headers, None, NOW) == Hints()
    assert hints_from({"cache-control": "no-cache"}, None, NOW).max_age_seconds == 0.0


def test_parse_helpers() -> None:
    assert parse_retry_after("  30 ", NOW) == 30.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after("", NOW) is None
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("-5", NOW) is None
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == datetime(
        1994, 11, 6, 8, 49, 37, tzinfo=UTC
    )
    assert parse_http_date("garbage") is None


# --------------------------------------------------------------------------- mean_gap_seconds


def test_mean_gap_counts_the_silence_since_the_newest_entry() -> None:
    dates = [NOW - timedelta(hours=h) for h in (1, 2, 3, 4)]
    assert mean_gap_seconds(dates, now=NOW) == 3600.0


def test_mean_gap_ignores_none_duplicates_and_far_future() -> None:
    dates = [
        NOW - timedelta(hours=2),
        None,
        NOW - timedelta(hours=2),
        NOW - timedelta(hours=4),
        NOW + timedelta(days=300),
    ]
    assert mean_gap_seconds(dates, now=NOW) == 2 * 3600.0


def test_slightly_future_dates_count_as_now() -> None:
    dates = [NOW + timedelta(minutes=10), NOW - timedelta(hours=1)]
    assert mean_gap_seconds(dates, now=NOW) == 1800.0


def test_mean_gap_unknown_with_too_few_dates() -> None:
    assert mean_gap_seconds([], now=NOW) is None
    assert mean_gap_seconds([None, None], now=NOW) is None
    assert mean_gap_seconds([NOW - timedelta(hours=1)] * 5, now=NOW) is None


def test_a_stopped_feed_slows_down() -> None:
    busy = [NOW - timedelta(minutes=m) for m in range(0, 100, 10)]
    stale = [d - timedelta(days=30) for d in busy]
    fast, slow = mean_gap_seconds(busy, now=NOW), mean_gap_seconds(stale, now=NOW)
    assert fast is not None and slow is not None
    assert slow > 100 * fast
