"""``aggregator stories ...``: inspect cross-publisher story matching.

A typer sub-app; ``cli.py`` mounts it with ``app.add_typer(stories_app, name="stories")``.
``explain URL`` prints, for every stored item at that URL, the story it is in, the reports it
shares a URL with, the reports it was matched with by text (with scores), and every other
candidate story sharing LSH band keys with it: score, threshold and the reasons for the verdict.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aggregator.cliutil import ConfigOpt, fail, settings_for
from aggregator.errors import AggregatorError
from aggregator.store.db import make_engine, storage_errors
from aggregator.store.matching import explain_item, render_explanation

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
        engine = make_engine(settings.database_url)
        try:
            with storage_errors(engine, "explain story match"), engine.connect() as conn:
                found = explain_item(conn, url)
        finally:
            engine.dispose()
    except AggregatorError as exc:
        raise fail(exc) from exc
    if not found:
        typer.echo(f"no stored item has the URL {url}", err=True)
        raise typer.Exit(1)
    typer.echo("\n\n".join(render_explanation(e) for e in found))
