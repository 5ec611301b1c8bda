"""``aggregator enrich [--limit N]``: one enrichment pass now, then exit.

Makes the cards that are due (extractive always, LLM when ``[enrich] llm_enabled``), re-renders
the editions when cards changed and prints what it did. The daemon runs the same pass every
``[enrich] interval_seconds``; this is for a first fill, a cron setup without the daemon, or
checking an LLM endpoint. ``cli.py`` registers it with ``app.command("enrich")(enrich)``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aggregator.app import open_pipeline
from aggregator.cliutil import ConfigOpt, fail, settings_for
from aggregator.enrich import EnrichReport, open_enricher
from aggregator.errors import AggregatorError, ConfigError
from aggregator.settings import Settings

out = Console()
err = Console(stderr=True)


async def run_pass(settings: Settings, limit: int | None) -> EnrichReport:
    """One pass with the daemon's wiring (migrations, config sources synced, re-render)."""
    async with (
        open_pipeline(settings, workers=0) as pipeline,
        open_enricher(
            settings,
            pipeline.repo.engine,
            clock=pipeline.clock,
            rerender=lambda: pipeline.run_in_db(pipeline.render_editions),
        ) as enricher,
    ):
        return await enricher.run_once(limit)


def enrich(
    ctx: typer.Context,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Stories to look at (default: batch_size)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Give stories their cards now: extractive, and LLM-written when enabled."""
    try:
        settings = settings_for(ctx, config)
        if not settings.enrich.enabled:
            raise ConfigError(
                f"{settings.config_path}: enrich.enabled: enrichment is switched off "
                "(set it to true to make cards)"
            )
        report = asyncio.run(run_pass(settings, limit))
    except AggregatorError as exc:
        raise fail(exc) from exc
    table = Table(title="enrichment pass")
    for col in ("stories", "cards", "LLM cards", "LLM failed", "over budget", "renders"):
        table.add_column(col, justify="right")
    table.add_row(
        str(report.looked_at),
        str(report.cards),
        str(report.llm_cards),
        str(report.llm_failed),
        str(report.over_budget),
        str(report.renders),
    )
    out.print(table)
    for line in report.errors[:20]:
        err.print(line, highlight=False, markup=False, soft_wrap=True)
