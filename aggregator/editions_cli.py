"""``aggregator editions ...``: what an edition holds now, and why.

A typer sub-app; ``cli.py`` mounts it with ``app.add_typer(editions_app, name="editions")``.

- ``list``: every configured edition with its ordering, cap, limits and rule counts.
- ``preview EDITION``: the stories the edition would export now, in order: rank, score, lead
  publisher, title, number of reports (``--cut`` adds the admitted stories that age, the
  per-publisher cap or the limit cut; ``--json`` for machines).
- ``explain EDITION ITEM_URL``: for the story of the item at ITEM_URL, which rule let each of
  its reports in or kept it out (field and matched text), the score and its components, and
  whether age, the cap or the limit cut it.

Both read the same stories the daemon renders editions from (``candidate_stories`` mirrors
``Pipeline.render_editions``) and run the same ``curate.decide``, so what they show is what
gets served. ``--now`` evaluates as of another time (ISO 8601), e.g. to reproduce a render.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aggregator.app import open_repository
from aggregator.cliutil import ConfigOpt, fail, find_edition, settings_for
from aggregator.clock import SystemClock
from aggregator.curate import Curator, StoryDecision, decide
from aggregator.errors import AggregatorError, ConfigError
from aggregator.model import StoredItem, StoryRecord
from aggregator.publish import story_window
from aggregator.rules import format_duration, published_of
from aggregator.settings import EditionConfig, Settings
from aggregator.store.lookup import ItemLocation, find_items, url_variants
from aggregator.store.repo import Repository

editions_app = typer.Typer(
    help="Inspect editions: what is in them now, and why.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

NowOpt = Annotated[
    str | None, typer.Option("--now", help="Evaluate as of this time (ISO 8601, default: now).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


# ---------------------------------------------------------------------------- helpers


def parse_now(value: str | None) -> datetime:
    """``--now`` as an aware UTC datetime (naive times are UTC); default: the system clock."""
    if value is None:
        return SystemClock().now()
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"--now: expected an ISO 8601 time like 2026-11-28T12:00:00Z, got {value!r}"
        ) from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def candidate_stories(repo: Repository, settings: Settings, now: datetime) -> list[StoryRecord]:
    """The stories editions are rendered from at ``now`` (mirrors ``render_editions``)."""
    days, count = story_window(settings.editions)
    return repo.recent_stories(now - timedelta(days=days), count)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ranking(ed: EditionConfig) -> str:
    cap = f"max {ed.max_per_source} per source" if ed.max_per_source else "no per-source cap"
    return (
        f"sort {ed.sort}, limit {ed.limit}, {cap}, half-life {format_duration(ed.half_life)}, "
        f"max age {ed.max_age_days:g}d"
    )


# ---------------------------------------------------------------------------- list


@editions_app.command("list")
def list_editions(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every configured edition: ordering, cap, limits, rule counts and feed URL."""
    try:
        settings = settings_for(ctx, config)
    except AggregatorError as exc:
        raise fail(exc) from exc
    base = settings.server.base_url.rstrip("/")
    rows = [
        {
            "name": ed.name,
            "title": ed.title,
            "sort": ed.sort,
            "limit": ed.limit,
            "max_per_source": ed.max_per_source,
            "half_life_seconds": ed.half_life,
            "max_age_days": ed.max_age_days,
            "include": len(ed.include),
            "exclude": len(ed.exclude),
            "boost": len(ed.boost),
            "feed": f"{base}/feeds/{ed.name}.rss",
        }
        for ed in settings.editions
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table()
    for col in ("name", "title", "sort", "limit", "cap", "half-life", "rules", "feed"):
        table.add_column(col, overflow="fold")
    for ed, row in zip(settings.editions, rows, strict=True):
        table.add_row(
            ed.name,
            escape(ed.title),
            ed.sort,
            str(ed.limit),
            str(ed.max_per_source or "-"),
            format_duration(ed.half_life),
            f"{len(ed.include)} in / {len(ed.exclude)} out / {len(ed.boost)} boost",
            str(row["feed"]),
        )
    out.print(table)


# ---------------------------------------------------------------------------- preview


def _row(d: StoryDecision) -> dict[str, object]:
    assert d.entry is not None and d.lead is not None and d.parts is not None
    return {
        "rank": d.rank,
        "status": d.status,
        "score": round(d.parts.score, 6),
        "published": d.entry.published.isoformat(),
        "source": d.lead.source_key,
        "publisher": d.lead.source_name,
        "title": d.entry.title,
        "url": d.entry.url,
        "id": d.story.public_id,
        "reports": len(d.story.items),
        "publishers": d.parts.publishers,
        "boosts": [label for label, _ in d.parts.boosts],
    }


@editions_app.command("preview")
def preview(
    ctx: typer.Context,
    edition: Annotated[str, typer.Argument(help="Edition name from the config.")],
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show at most N stories.")
    ] = None,
    cut: Annotated[
        bool, typer.Option("--cut", help="Also list admitted stories cut by age, cap or limit.")
    ] = False,
    as_json: JsonOpt = False,
    now_opt: NowOpt = None,
    config: ConfigOpt = None,
) -> None:
    """What the edition would export now: rank, score, lead source, title, reports."""
    try:
        settings = settings_for(ctx, config)
        ed = find_edition(settings, edition)
        now = parse_now(now_opt)
        engine, repo = open_repository(settings)
        try:
            stories = candidate_stories(repo, settings, now)
        finally:
            engine.dispose()
        decisions = decide(ed, stories, now=now)
    except AggregatorError as exc:
        raise fail(exc) from exc
    shown = [d for d in decisions if d.status == "in"]
    total = len(shown)
    shown = shown[:limit] if limit else shown
    cut_rows = [d for d in decisions if d.status in ("too_old", "capped", "over_limit")]
    if as_json:
        doc: dict[str, object] = {
            "edition": ed.name,
            "now": now.isoformat(),
            "sort": ed.sort,
            "limit": ed.limit,
            "max_per_source": ed.max_per_source,
            "considered": len(stories),
            "total": total,
            "entries": [_row(d) for d in shown],
        }
        if cut:
            doc["cut"] = [_row(d) for d in cut_rows]
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    table = Table(
        title=escape(f"{ed.name}: {total} stories of {len(stories)} considered ({_ranking(ed)})")
    )
    for col in ("rank", "score", "published", "source", "reports", "title"):
        table.add_column(col, overflow="fold", justify="right" if col != "title" else "left")
    for d in shown if not cut else [*shown, *cut_rows]:
        assert d.entry is not None and d.lead is not None and d.parts is not None
        table.add_row(
            str(d.rank) if d.rank else d.status,
            f"{d.parts.score:.3f}",
            _when(d.entry.published),
            escape(d.lead.source_key),
            f"{len(d.story.items)} ({d.parts.publishers} pub.)",
            escape(d.entry.title),
        )
    out.print(table)


# ---------------------------------------------------------------------------- explain


def _matches_url(item: StoredItem, wanted: set[str]) -> bool:
    return bool({u for u in (item.url, item.canonical_url) if u} & wanted)


def _placement(d: StoryDecision, ed: EditionConfig, decisions: list[StoryDecision]) -> str:
    """Why the story is where it is, in one or two sentences."""
    n_in = sum(1 for x in decisions if x.status == "in")
    if d.status == "in":
        return f"IN the edition at rank {d.rank} of {n_in} ({ed.sort} order)"
    if d.status == "not_matched":
        return "NOT in the edition: no report of this story passes the edition's rules"
    if d.status == "too_old" and d.entry is not None:
        return (
            f"CUT by age: its lead was published {_when(d.entry.published)}, more than "
            f"max_age_days = {ed.max_age_days:g} before now"
        )
    if d.status == "capped" and d.lead is not None:
        titles = {x.story.public_id: x.entry.title for x in decisions if x.entry is not None}
        ahead = "; ".join(f'"{titles.get(i, i)}"' for i in d.capped_by)
        return (
            f"CUT by the per-source cap: {d.lead.source_key} already leads "
            f"{len(d.capped_by)} stories ranked above it (max_per_source = "
            f"{ed.max_per_source}): {ahead}"
        )
    return (
        f"CUT by the limit: the edition holds {ed.limit} stories and this one comes later "
        f"(position {d.position} in {ed.sort} order, before the cap)"
    )


def _explain_found(
    ed: EditionConfig,
    d: StoryDecision,
    decisions: list[StoryDecision],
    wanted: set[str],
    now: datetime,
) -> tuple[list[str], dict[str, object]]:
    curator = Curator.from_config(ed)
    views = curator.views(d.story, now)
    reports = sorted(
        zip(d.story.items, views, strict=True),
        key=lambda p: (not _matches_url(p[0], wanted), published_of(p[0]), p[0].id),
    )
    lines = [
        f"edition {ed.name} ({ed.title}): {_ranking(ed)}",
        f"story {d.story.public_id}: {len(d.story.items)} report(s) from "
        f"{len({i.source_key for i in d.story.items})} publisher(s)",
        "",
        _placement(d, ed, decisions),
        "",
        "rules (a story is in when any of its reports is let in):",
    ]
    report_docs: list[dict[str, object]] = []
    for n, (item, view) in enumerate(reports):
        verdict = curator.rules.explain(view)
        here = " <- ITEM_URL" if _matches_url(item, wanted) else ""
        lines.append(
            f"  report {item.source_key} ({item.source_name}), {_when(published_of(item))}: "
            f'"{item.title}"{here}'
        )
        lines.append(f"    {verdict.reason}")
        if n == 0 or _matches_url(item, wanted):
            for v in (*verdict.include, *verdict.exclude, *verdict.boost):
                lines.extend(v.lines("      "))
        report_docs.append(
            {
                "source": item.source_key,
                "publisher": item.source_name,
                "url": item.url,
                "title": item.title,
                "published": published_of(item).isoformat(),
                "matches_url": bool(here),
                **verdict.to_dict(),
            }
        )
    lead = d.lead or reports[0][0]
    lines.append("")
    lines.append(
        f"lead report: {lead.source_key} ({lead.source_name}, weight {lead.source_weight:g};"
        f" lead rule {ed.lead!r})"
    )
    doc: dict[str, object] = {
        "edition": ed.name,
        "found": True,
        "story": d.story.public_id,
        "status": d.status,
        "rank": d.rank,
        "position": d.position,
        "capped_by": list(d.capped_by),
        "placement": _placement(d, ed, decisions),
        "lead": lead.source_key,
        "reports": report_docs,
        "score": d.parts.to_dict() if d.parts is not None else None,
    }
    if d.parts is not None:
        lines.append(f"score: {d.parts.formula()}")
        for label, boost in d.parts.boosts:
            lines.append(f"  boost {boost:+g} from rule {label}")
    else:
        lines.append("score: none (the story is not admitted, so it is not ranked)")
    return lines, doc


def _explain_missing(
    ed: EditionConfig, found: list[ItemLocation], settings: Settings, now: datetime
) -> tuple[list[str], dict[str, object]]:
    days, count = story_window(settings.editions)
    since = now - timedelta(days=days)
    lines = [f"edition {ed.name} ({ed.title}): {_ranking(ed)}", ""]
    reasons: list[str] = []
    for loc in found:
        if loc.merged_into is not None:
            why = f"its story {loc.story_public_id} was merged into another story"
        elif loc.story_updated_at < since:
            why = (
                f"CUT by age: its story {loc.story_public_id} was last updated "
                f"{_when(loc.story_updated_at)}, before the {days:g}-day window editions "
                f"are built from"
            )
        else:
            why = (
                f"its story {loc.story_public_id} is not among the {count} most recent stories "
                "editions are built from"
            )
        reasons.append(why)
        lines.append(f'item {loc.source_key}: "{loc.title}" ({_when(loc.published_at)})')
        lines.append(f"  NOT in the edition: {why}")
    return lines, {"edition": ed.name, "found": True, "status": "outside_window", "why": reasons}


@editions_app.command("explain")
def explain(
    ctx: typer.Context,
    edition: Annotated[str, typer.Argument(help="Edition name from the config.")],
    item_url: Annotated[str, typer.Argument(help="The item's URL (link or canonical).")],
    as_json: JsonOpt = False,
    now_opt: NowOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Which rule let the item's story in or kept it out, its score, and what cut it."""
    wanted = set(url_variants(item_url))
    try:
        settings = settings_for(ctx, config)
        ed = find_edition(settings, edition)
        now = parse_now(now_opt)
        engine, repo = open_repository(settings)
        try:
            stories = candidate_stories(repo, settings, now)
            target = next(
                (s for s in stories if any(_matches_url(i, wanted) for i in s.items)), None
            )
            located = [] if target is not None else find_items(engine, item_url)
        finally:
            engine.dispose()
        decisions = decide(ed, stories, now=now)
    except AggregatorError as exc:
        raise fail(exc) from exc
    if target is not None:
        decision = next(d for d in decisions if d.story.id == target.id)
        lines, doc = _explain_found(ed, decision, decisions, wanted, now)
    elif located:
        lines, doc = _explain_missing(ed, located, settings, now)
    else:
        err.print(f"no stored item has the URL {escape(item_url)}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        typer.echo("\n".join(lines))
