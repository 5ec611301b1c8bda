"""Running the weekly recap: the daemon's cron job and ``aggregator recap EDITION --week W``.

``recap_trigger`` is the APScheduler ``CronTrigger`` of ``[recap]`` (day, hour, minute, time
zone). ``build_and_store`` builds one or more editions' recaps for a week from the stored
stories, saves them (``RecapStore``, upsert by stable id) and re-renders the editions so the
new recap is exported at once. ``weekly_recaps`` is what the job runs: last week's recap of
every edition. ``recap`` is the CLI command (``cli.py`` registers it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from aggregator.app import open_repository
from aggregator.cliutil import ConfigOpt, fail, find_edition, settings_for
from aggregator.clock import SystemClock
from aggregator.errors import AggregatorError, ConfigError
from aggregator.pipeline import render_stored
from aggregator.recap import (
    Recap,
    build_recap,
    format_week,
    parse_week,
    previous_week,
    week_bounds,
)
from aggregator.settings import RecapSettings, Settings
from aggregator.store.recaps import RecapStore
from aggregator.store.repo import Repository

if TYPE_CHECKING:  # APScheduler is imported by the daemon that schedules the job, not by every CLI
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("aggregator.recap")
#: Stories read to build one week's recap (newest first from the week's start: generous, since
#: a recap runs once a week and a firehose edition sees a few thousand stories a week).
STORY_LIMIT = 20_000


def recap_trigger(settings: RecapSettings) -> CronTrigger:
    """The cron trigger of the weekly recap job, in the configured time zone."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(
        day_of_week=settings.day_of_week,
        hour=settings.hour,
        minute=settings.minute,
        timezone=ZoneInfo(settings.timezone),
    )


@dataclass(frozen=True, slots=True)
class RecapRun:
    """What one build did: the stored recaps, editions with nothing that week, snapshots."""

    week: str
    stored: tuple[Recap, ...]
    empty: tuple[str, ...]
    rendered: int


def build_and_store(
    settings: Settings,
    repo: Repository,
    now: datetime,
    *,
    week: str,
    editions: Sequence[str] | None = None,
) -> RecapRun:
    """Build, store and export the recaps of ``editions`` (default: all) for ``week``.

    An edition with no story that week gets no recap (nothing is stored for it). The editions
    are re-rendered when any recap was stored, so the feeds carry it immediately.
    """
    tz = ZoneInfo(settings.recap.timezone)
    start, _ = week_bounds(week, tz)
    names = set(editions) if editions is not None else None
    chosen = [e for e in settings.editions if names is None or e.name in names]
    stories = repo.recent_stories(start - timedelta(days=1), STORY_LIMIT)
    store = RecapStore(repo.engine)
    stored: list[Recap] = []
    empty: list[str] = []
    for config in chosen:
        recap = build_recap(
            config,
            stories,
            week=week,
            tz=tz,
            top_n=settings.recap.top_n,
            base_url=settings.server.base_url,
            now=now,
        )
        if recap is None:
            empty.append(config.name)
        else:
            stored.append(store.save(recap, now))
    rendered = len(render_stored(settings, repo, now)) if stored else 0
    return RecapRun(week, tuple(stored), tuple(empty), rendered)


def weekly_recaps(settings: Settings, repo: Repository, now: datetime) -> RecapRun:
    """The cron job's work: last complete week's recap of every edition."""
    week = previous_week(now, ZoneInfo(settings.recap.timezone))
    run = build_and_store(settings, repo, now, week=week)
    log.info(
        "weekly recap built",
        extra={
            "week": run.week,
            "recaps": len(run.stored),
            "empty": list(run.empty),
            "rendered": run.rendered,
        },
    )
    return run


def recap(
    ctx: typer.Context,
    edition: Annotated[str, typer.Argument(help="Edition name from the config.")],
    week: Annotated[
        str | None,
        typer.Option("--week", "-w", help="ISO week, e.g. 2026-W48 (default: last week)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Build (or rebuild) an edition's weekly recap, store it and re-render the edition."""
    try:
        settings = settings_for(ctx, config)
        find_edition(settings, edition)
        now = SystemClock().now()
        tz = ZoneInfo(settings.recap.timezone)
        try:
            chosen = previous_week(now, tz) if week is None else format_week(*parse_week(week))
        except ValueError as exc:
            raise ConfigError(f"--{exc}") from exc
        engine, repo = open_repository(settings)
        try:
            run = build_and_store(settings, repo, now, week=chosen, editions=[edition])
        finally:
            engine.dispose()
    except AggregatorError as exc:
        raise fail(exc) from exc
    if not run.stored:
        typer.echo(f"{edition}: no stories in {chosen}; no recap stored")
        return
    made = run.stored[0]
    typer.echo(
        f"{made.id}: {len(made.lines)} stories, published {made.published.isoformat()}; "
        f"{run.rendered} snapshots re-rendered\n{made.url}"
    )
    for number, line in enumerate(made.lines, 1):
        typer.echo(f"{number:2d}. {line.title} ({line.publisher}, score {line.score:.3f})")
