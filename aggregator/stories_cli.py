"""``aggregator stories ...``: inspect cross-publisher story matching.

A typer sub-app; ``cli.py`` mounts it with ``app.add_typer(stories_app, name="stories")``.
``explain URL`` prints, for every stored item at that URL, the story it is in, the reports it
shares a URL with, the reports it was matched with by text (with scores), and every other
candidate story sharing LSH band keys with it: score, threshold and the reasons for the verdict.
``reindex`` rebuilds the matching index of recent stories from their stored reports
(``aggregator.store.reindex``), e.g. after widening ``[stories] window_days``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from aggregator.cliutil import ConfigOpt, fail, settings_for
from aggregator.clock import SystemClock
from aggregator.dedupe.semantic import thresholds_for
from aggregator.errors import AggregatorError
from aggregator.store.db import make_engine, storage_errors
from aggregator.store.matching import explain_item, render_explanation
from aggregator.store.reindex import reindex_stories

stories_app = typer.Typer(help="Inspect story matching.", no_args_is_help=True)


@stories_app.command("explain")
def explain(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The item's URL (link, canonical or external).")],
    config: ConfigOpt = None,
) -> None:
    """Print why the item at URL joined (or did not join) a story."""
    try:
        settings = settings_for(ctx, config)
        thresholds = thresholds_for(settings.stories)
        window = timedelta(days=settings.stories.window_days)
        engine = make_engine(settings.database_url)
        try:
            with storage_errors(engine, "explain story match"), engine.connect() as conn:
                found = explain_item(conn, url, window=window, thresholds=thresholds)
        finally:
            engine.dispose()
    except AggregatorError as exc:
        raise fail(exc) from exc
    if not found:
        typer.echo(f"no stored item has the URL {url}", err=True)
        raise typer.Exit(1)
    typer.echo("\n\n".join(render_explanation(e) for e in found))


@stories_app.command("reindex")
def reindex(
    ctx: typer.Context,
    days: Annotated[
        float | None,
        typer.Option(
            help="Re-index stories updated in the last DAYS days "
            "(default: twice [stories] window_days, what pruning keeps).",
            min=0.0,
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Rebuild the story-matching index from stored reports (after widening window_days)."""
    try:
        settings = settings_for(ctx, config)
        span = days if days is not None else 2 * settings.stories.window_days
        engine = make_engine(settings.database_url)
        try:
            with storage_errors(engine, "re-index stories"):
                count, rows = reindex_stories(engine, SystemClock().now() - timedelta(days=span))
        finally:
            engine.dispose()
    except AggregatorError as exc:
        raise fail(exc) from exc
    typer.echo(f"re-indexed {count} stories updated in the last {span:g} days ({rows} band rows)")
