"""What every CLI module shares: the ``--config`` option, settings lookup, the error exit.

Each sub-command module (``editions_cli``, ``recap_cli``, ``enrich_cli``, ``stories_cli``) takes
``--config`` itself and also honours the top-level ``aggregator --config PATH ...``, so both
spellings work everywhere; errors print one line and exit 2 (bad config or input) or 1.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from aggregator.config import load_settings
from aggregator.errors import AggregatorError, ConfigError
from aggregator.logsetup import setup_logging
from aggregator.settings import EditionConfig, Settings

err = Console(stderr=True)

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $AGGREGATOR_CONFIG or config/aggregator.toml).",
        show_default=False,
    ),
]


def settings_for(ctx: typer.Context | None, config: str | None) -> Settings:
    """Settings from this command's ``--config``, else the top-level one, else the default;
    logging is set up from them."""
    if config is None and ctx is not None:
        root = ctx.find_root().params.get("config")
        config = root if isinstance(root, str) else None
    settings = load_settings(config)
    setup_logging(settings.log_format, settings.log_level)
    return settings


def find_edition(settings: Settings, name: str) -> EditionConfig:
    """The configured edition called ``name``; a ``ConfigError`` listing the others if none."""
    for ed in settings.editions:
        if ed.name == name:
            return ed
    names = ", ".join(e.name for e in settings.editions)
    raise ConfigError(f"{settings.config_path}: no edition named {name!r} (have {names})")


def fail(exc: AggregatorError) -> typer.Exit:
    """Print ``exc`` as one line on stderr; the exit to raise (2 for config/input errors)."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)
