"""Command-line interface (typer). Command names are a contract: other tooling drives them.

``run``, ``poll``, ``export``, ``sources list|add|remove|import-opml|export-opml``,
``db upgrade``, ``check-config``, ``stories explain``, ``editions list|preview|explain``,
``recap``.
Every command takes ``--config PATH`` (default ``AGGREGATOR_CONFIG`` or
``config/aggregator.toml``). Errors print one line naming what was
wrong and exit non-zero; they never dump a traceback for bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aggregator import __version__
from aggregator.app import open_pipeline, open_repository, settle_heap
from aggregator.cliutil import ConfigOpt, fail, settings_for
from aggregator.clock import SystemClock
from aggregator.config import default_key, free_key, load_settings
from aggregator.editions_cli import editions_app
from aggregator.enrich_cli import enrich
from aggregator.errors import AggregatorError, ConfigError
from aggregator.pipeline import SourceReport, TickReport
from aggregator.publish import render_all, story_window
from aggregator.recap_cli import recap
from aggregator.render import FORMATS
from aggregator.render.opml import parse_opml, render_opml
from aggregator.settings import Settings, SourceConfig
from aggregator.store.db import make_engine, upgrade
from aggregator.store.recaps import RecapStore
from aggregator.store.repo import Repository
from aggregator.stories_cli import stories_app

app = typer.Typer(
    help="Self-hosted feed aggregator: poll publishers, merge stories, serve editions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sources_app = typer.Typer(help="Manage sources (publisher feeds).", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(stories_app, name="stories")
app.add_typer(editions_app, name="editions")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="File (default stdout).")]
_state: dict[str, str | None] = {"config": None}


def _settings(config: str | None) -> Settings:
    return settings_for(None, config or _state["config"])


@contextmanager
def _repository(settings: Settings, *, sync: bool = False) -> Iterator[Repository]:
    """A migrated repository for one command (config sources synced first if ``sync``)."""
    engine, repo = open_repository(settings)
    try:
        if sync:
            repo.sync_sources(settings.sources, SystemClock().now())
        yield repo
    finally:
        engine.dispose()


def _write(body: bytes, output: Path | None) -> None:
    """Bytes to ``output``, or to stdout when no file is given."""
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        output.write_bytes(body)
        err.print(f"wrote {len(body)} bytes to {output}")


@app.callback()
def _main(
    config: ConfigOpt = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(f"aggregator {__version__}")
        raise typer.Exit(0)
    _state["config"] = config


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate the config file and print what it defines."""
    try:
        s = load_settings(config or _state["config"])
    except ConfigError as exc:
        raise fail(exc) from exc
    out.print(
        f"{s.config_path}: ok: {len(s.sources)} sources, editions "
        f"{', '.join(e.name for e in s.editions)}; database {s.database_url.split(':', 1)[0]}"
    )


@app.command()
def run(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config).")] = None,
) -> None:
    """Run the daemon: scheduler and HTTP server in one process (migrates on start)."""
    # imported here so one-shot commands do not pay for loading the web stack
    from aggregator.daemon import serve

    try:
        settings = _settings(config)
        asyncio.run(serve(settings, host=host, port=port))
    except AggregatorError as exc:
        raise fail(exc) from exc


@app.command()
def poll(
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object (with timings).")
    ] = False,
) -> None:
    """Poll every enabled source once now, store what is new, re-render editions, exit."""
    try:
        settings = _settings(config)
        report = asyncio.run(_poll(settings))
    except AggregatorError as exc:
        raise fail(exc) from exc
    if as_json:
        summary = {
            "sources": len(report.sources),
            "ok": report.ok,
            "failed": report.failed,
            "new": report.new,
            "updated": report.updated,
            "snapshots": report.rendered,
            "cycle_seconds": round(report.seconds, 4),  # the poll itself, render included
            "render_seconds": round(report.render_seconds, 4),
        }
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    table = Table(title="poll summary")
    for col in ("sources", "ok", "failed", "items new", "items updated", "snapshots"):
        table.add_column(col, justify="right")
    table.add_row(
        str(len(report.sources)),
        str(report.ok),
        str(report.failed),
        str(report.new),
        str(report.updated),
        str(report.rendered),
    )
    out.print(table)
    failures = [s for s in report.sources if s.status not in ("ok", "not_modified")]
    if failures:
        ftable = Table(title="failed sources")
        ftable.add_column("source")
        ftable.add_column("status")
        ftable.add_column("error", overflow="fold")
        for f in sorted(failures, key=lambda r: r.key):
            ftable.add_row(f.key, f.status, f.error or "")
        out.print(ftable)


async def _poll(settings: Settings) -> TickReport:
    async with open_pipeline(settings) as pipeline:
        total = sum(1 for s in pipeline.repo.list_sources() if s.enabled)
        settle_heap()
        if not sys.stderr.isatty():
            return await pipeline.poll_all()
        with Progress(
            TextColumn("polling"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=total)

            def done(rep: SourceReport) -> None:
                progress.update(task, advance=1, description=rep.key)

            return await pipeline.poll_all(on_done=done)


@app.command()
def export(
    edition: Annotated[str, typer.Argument(help="Edition name from the config.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="rss, atom or json.")] = "rss",
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Render one edition from the database now and write it out."""
    try:
        settings = _settings(config)
        if fmt not in FORMATS:
            raise ConfigError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
        eds = [e for e in settings.editions if e.name == edition]
        if not eds:
            names = ", ".join(e.name for e in settings.editions)
            raise ConfigError(
                f"{settings.config_path}: no edition named {edition!r} (have {names})"
            )
        with _repository(settings) as repo:
            now = SystemClock().now()
            days, count = story_window(settings.editions)  # as the daemon renders it
            stories = repo.recent_stories(now - timedelta(days=days), count)
            recaps = RecapStore(repo.engine).latest([edition])
        snaps = render_all(eds, stories, base_url=settings.server.base_url, now=now, recaps=recaps)
        body = next(s.body for s in snaps if s.format == fmt)
    except AggregatorError as exc:
        raise fail(exc) from exc
    _write(body, output)


app.command("recap")(recap)  # aggregator.recap_cli: build, store and export a weekly recap
app.command("enrich")(enrich)  # aggregator.enrich_cli: one enrichment pass now


# ---------------------------------------------------------------------------- sources


@sources_app.command("list")
def sources_list(config: ConfigOpt = None) -> None:
    """Every source with its status, last error and next check."""
    try:
        settings = _settings(config)
        with _repository(settings, sync=True) as repo:
            rows = repo.list_sources()
    except AggregatorError as exc:
        raise fail(exc) from exc
    table = Table()
    for col in ("key", "name", "status", "errors", "last error", "last fetched", "next check"):
        table.add_column(col, overflow="fold")
    for s in rows:
        table.add_row(
            s.key,
            s.name,
            s.status if s.enabled else f"{s.status} (disabled)",
            str(s.error_count),
            s.last_error or "",
            s.last_fetched_at.strftime("%Y-%m-%d %H:%M:%S") if s.last_fetched_at else "-",
            s.next_check_at.strftime("%Y-%m-%d %H:%M:%S") if s.next_check_at else "-",
        )
    out.print(table)


@sources_app.command("add")
def sources_add(
    url: Annotated[str, typer.Argument(help="Feed URL (http or https).")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    key: Annotated[str | None, typer.Option(help="Stable id (default from the URL).")] = None,
    language: Annotated[str | None, typer.Option(help="Language tag, e.g. zh-cn.")] = None,
    weight: Annotated[float, typer.Option(help="Ranking weight.")] = 1.0,
    tag: Annotated[list[str] | None, typer.Option(help="Tag (repeatable).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a source to the database (config sources are managed in the config file)."""
    try:
        settings = _settings(config)
        cfg = _source_config(
            url, name=name, key=key, language=language, weight=weight, tags=tuple(tag or ())
        )
        with _repository(settings) as repo:
            state = repo.add_source(cfg, SystemClock().now())
    except AggregatorError as exc:
        raise fail(exc) from exc
    out.print(f"added {state.key}: {state.url}")


def _source_config(
    url: str,
    *,
    name: str | None,
    key: str | None,
    language: str | None,
    weight: float,
    tags: tuple[str, ...],
) -> SourceConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"url: must be an http(s) URL, got {url!r}")
    if weight <= 0:
        raise ConfigError(f"--weight: must be positive, got {weight}")
    k = key or default_key(url)
    return SourceConfig(key=k, url=url, name=name or k, language=language, weight=weight, tags=tags)


@sources_app.command("remove")
def sources_remove(
    key: Annotated[str, typer.Argument(help="Source key (see `sources list`).")],
    config: ConfigOpt = None,
) -> None:
    """Remove a source and its items."""
    try:
        settings = _settings(config)
        with _repository(settings) as repo:
            removed = repo.remove_source(key)
    except AggregatorError as exc:
        raise fail(exc) from exc
    if not removed:
        err.print(f"[bold red]error:[/] no source with key {key!r}")
        raise typer.Exit(1)
    out.print(f"removed {key}")


@sources_app.command("import-opml")
def sources_import_opml(
    file: Annotated[Path, typer.Argument(help="OPML file.", exists=True, dir_okay=False)],
    config: ConfigOpt = None,
) -> None:
    """Add every feed of an OPML file (existing URLs are skipped)."""
    try:
        settings = _settings(config)
        outlines = parse_opml(file.read_bytes())
        added = skipped = 0
        with _repository(settings) as repo:
            known_urls = {s.url for s in repo.list_sources()}
            known_keys = {s.key for s in repo.list_sources()}
            now = SystemClock().now()
            for o in outlines:
                if o.url in known_urls:
                    skipped += 1
                    continue
                key = free_key(default_key(o.url), known_keys)
                cfg = _source_config(
                    o.url,
                    name=o.title,
                    key=key,
                    language=None,
                    weight=1.0,
                    tags=(o.category,) if o.category else (),
                )
                repo.add_source(cfg, now)
                known_urls.add(o.url)
                known_keys.add(key)
                added += 1
    except AggregatorError as exc:
        raise fail(exc) from exc
    out.print(f"imported {added} sources ({skipped} already present)")


@sources_app.command("export-opml")
def sources_export_opml(
    output: OutputOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write every source as OPML."""
    try:
        settings = _settings(config)
        with _repository(settings, sync=True) as repo:
            body = render_opml(repo.list_sources(), "aggregator sources")
    except AggregatorError as exc:
        raise fail(exc) from exc
    _write(body, output)


# ---------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply database migrations up to the latest schema."""
    try:
        settings = _settings(config)
        engine = make_engine(settings.database_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
    except AggregatorError as exc:
        raise fail(exc) from exc
    out.print("database is at the latest schema")


def main() -> None:
    """Console-script entry point."""
    app()
