"""HTTP server: hands out ready-made edition snapshots, a small HTML view, health and metrics.

Serving never waits for polling: every feed response is a snapshot (bytes + ETag) the pipeline
already wrote to the database, read through the small :class:`SnapshotSource` protocol. Feed
responses are cache-friendly (strong ETag, Last-Modified, ``Cache-Control``, conditional GET,
HEAD) and gzip-compressed by Starlette's ``GZipMiddleware``.

ETag and gzip: a strong ETag promises byte-identical bodies, and the gzip body is not the identity
body, so the gzip representation is served with the *weak* form of the snapshot's ETag (what
nginx does). ``If-None-Match`` uses weak comparison (RFC 9110 13.1.2), so a client echoing either
form gets its 304.

Only :func:`create_app` builds anything (no app, registry or template environment at import
time). The small pure helpers (:func:`etag_matches`, :func:`time_ago`, :func:`cards_from_json_feed`
...) are public so they can be tested without a server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware

from aggregator.api import AdminBackend, create_admin_router
from aggregator.clock import Clock, SystemClock
from aggregator.errors import StorageError
from aggregator.metrics import Metrics, build_metrics
from aggregator.model import Snapshot
from aggregator.recap import Recap
from aggregator.render.card import AI_LABEL, EXTRACTED_LABEL, SECTIONS, TLDR_HEADING, humanize_gap
from aggregator.settings import EditionConfig, Settings

log = logging.getLogger(__name__)

FEED_ROUTE = "/feeds/{edition}.{fmt}"
#: Content-Type served for each export format.
FEED_CONTENT_TYPES: dict[str, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
FEED_LABELS: dict[str, str] = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
#: Bodies smaller than this are sent uncompressed (a gzip header costs ~20 bytes).
GZIP_MINIMUM_SIZE = 1000
#: zlib level 6: on a 600 KB RSS feed 12 ms and 81 KB, against 31 ms and 79 KB at Starlette's 9.
GZIP_LEVEL = 6
#: Seconds a client should wait before retrying an edition that has no snapshot yet.
RETRY_AFTER_SECONDS = 30
SUMMARY_CHARS = 280
TEMPLATES_DIR = Path(__file__).with_name("templates")
UNMATCHED_ROUTE = "<unmatched>"
RECAP_WEEK = re.compile(r"\d{4}-W\d{2}")


class SnapshotSource(Protocol):
    """What the web server needs from storage (the real repository satisfies it)."""

    def get_snapshot(self, edition: str, fmt: str) -> Snapshot | None:
        """The latest snapshot of ``edition`` in ``fmt``, or None when none was rendered yet."""
        ...

    def ping(self) -> None:
        """Return when the database answers; raise :class:`StorageError` when it does not."""
        ...


class RecapSource(Protocol):
    """Where the recap pages come from (``aggregator.store.recaps.RecapStore``)."""

    def get(self, edition: str, week: str) -> Recap | None:
        """The stored recap of ``edition`` for ``week``, or None."""
        ...


# --------------------------------------------------------------------------- HTTP helpers (pure)


def quote_etag(raw: str) -> str:
    """The snapshot's ETag as a header value: quoted, weak prefix kept if the snapshot had one."""
    raw = raw.strip()
    if raw.startswith('W/"') or (raw.startswith('"') and raw.endswith('"') and len(raw) >= 2):
        return raw
    return '"' + raw.replace('"', "") + '"'


def weak_etag(etag: str) -> str:
    """The weak form of a quoted ETag (``W/"x"``); already weak tags are returned unchanged."""
    return etag if etag.startswith("W/") else "W/" + etag


def _opaque(etag: str) -> str:
    """The opaque part of an entity tag, without ``W/`` and quotes (for weak comparison)."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


_ENTITY_TAG = re.compile(r'(?:W/)?"[^"]*"')


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (weak comparison, lists, ``*``).

    Entity tags may contain commas, so the list is scanned for quoted tags rather than split;
    unquoted values from sloppy clients are accepted as a fallback.
    """
    value = if_none_match.strip()
    if value == "*":
        return True
    candidates = _ENTITY_TAG.findall(value) or [part for part in value.split(",") if part.strip()]
    wanted = _opaque(etag)
    return any(_opaque(candidate) == wanted for candidate in candidates)


def http_date(moment: datetime) -> str:
    """An RFC 9110 HTTP-date (``Sat, 28 Nov 2026 12:00:00 GMT``) for an aware datetime."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def not_modified_since(if_modified_since: str, last_modified: datetime) -> bool:
    """Whether the resource (changed at ``last_modified``) is unchanged since the header's date.

    HTTP dates have one-second resolution, so sub-second parts of ``last_modified`` are dropped.
    An unparsable header means "modified" (the client gets the full body).
    """
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return last_modified.replace(microsecond=0) <= since


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether Starlette's GZipMiddleware will compress for this ``Accept-Encoding`` value.

    Mirrors the middleware's own test so the ETag we promise matches the body it sends.
    """
    return "gzip" in accept_encoding


# --------------------------------------------------------------------------- view helpers (pure)


def time_ago(then: datetime, now: datetime) -> str:
    """A short English relative time ("5 minutes ago"); older than 30 days gives the date."""
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return "1 minute ago" if minutes == 1 else f"{minutes} minutes ago"
    hours = minutes // 60
    if hours < 24:
        return "1 hour ago" if hours == 1 else f"{hours} hours ago"
    days = hours // 24
    if days < 30:
        return "yesterday" if days == 1 else f"{days} days ago"
    return then.astimezone(UTC).strftime("%Y-%m-%d")


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, skipping script and style content."""

    _SKIP = frozenset({"script", "style", "template"})
    _BLOCKS = frozenset({"p", "br", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, whitespace collapsed (entities decoded)."""
    extractor = _TextExtractor()
    extractor.feed(fragment)
    extractor.close()
    return " ".join("".join(extractor.parts).split())


def truncate(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters plus an ellipsis, at a space when one is near.

    Chinese text has no spaces, so when none is in the last fifth the cut is exact.
    """
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= limit * 4 // 5:
        cut = cut[:space]
    return cut.rstrip(" ,.;:，。；：、") + "…"


def safe_url(url: object) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None (no ``javascript:`` in an href)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url.strip()
    return None


def _parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp from a JSON Feed field as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class SourceLink:
    """Another publisher's report of the same story."""

    publisher: str
    url: str | None
    title: str


@dataclass(frozen=True, slots=True)
class RelatedLink:
    """An earlier story listed under "Related updates"."""

    title: str
    url: str | None


@dataclass(frozen=True, slots=True)
class StoryCardView:
    """A story's enrichment as the page shows it: provenance, TL;DR, sections, takeaways."""

    ai_generated: bool
    provenance: str  # "AI-generated analysis (model)" or "Summary (extracted)"
    tldr_heading: str
    tldr: str
    title: str  # a translated title, when it differs from the story's
    sections: tuple[tuple[str, str], ...]  # (heading, text)
    takeaways: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Card:
    """One story as the HTML edition page shows it (all text is plain; the template escapes)."""

    title: str
    url: str | None
    publisher: str
    published: datetime | None
    ago: str
    summary: str
    also: tuple[SourceLink, ...]
    collected: str = ""  # "collected in 3m"
    story_card: StoryCardView | None = None
    related: tuple[RelatedLink, ...] = ()
    recap_url: str | None = None
    is_recap: bool = False


def _story_card(data: object, title: str) -> StoryCardView | None:
    """``_aggregator.card`` as a view, or None when absent or without a TL;DR."""
    if not isinstance(data, dict):
        return None
    tldr = _text(data.get("tldr"))
    if not tldr:
        return None
    ai = data.get("ai_generated") is True
    model = _text(data.get("model"))
    takeaways = data.get("key_takeaways")
    translated = _text(data.get("title"))
    return StoryCardView(
        ai_generated=ai,
        provenance=(f"{AI_LABEL} ({model})" if model else AI_LABEL) if ai else EXTRACTED_LABEL,
        tldr_heading=TLDR_HEADING if ai else EXTRACTED_LABEL,
        tldr=tldr,
        title=translated if translated != title else "",
        sections=tuple(
            (heading, text) for name, heading in SECTIONS if (text := _text(data.get(name)))
        ),
        takeaways=tuple(
            t for t in (_text(v) for v in (takeaways if isinstance(takeaways, list) else [])) if t
        ),
    )


def _related_links(data: object) -> tuple[RelatedLink, ...]:
    """``_aggregator.related`` as links (non-http URLs dropped, untitled entries skipped)."""
    out: list[RelatedLink] = []
    for ref in data if isinstance(data, list) else []:
        if isinstance(ref, dict) and _text(ref.get("title")):
            out.append(RelatedLink(_text(ref.get("title")), safe_url(ref.get("url"))))
    return tuple(out)


def _collected(value: object) -> str:
    """``collected in 3m`` from ``_aggregator.collected_after_seconds`` ("" when unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    gap = humanize_gap(value)
    return f"collected in {gap}" if gap else ""


def _card(item: dict[str, Any], now: datetime) -> Card:
    """One JSON Feed item (with the ``_aggregator`` extension) as a card."""
    ext = item.get("_aggregator")
    ext = ext if isinstance(ext, dict) else {}
    url = safe_url(item.get("url"))
    publisher = _text(ext.get("publisher"))
    published = _parse_time(item.get("date_published")) or _parse_time(ext.get("collected_at"))
    summary = _text(item.get("summary"))
    if not summary:
        summary = html_to_text(_text(item.get("content_html"))) or _text(item.get("content_text"))
    also: list[SourceLink] = []
    sources = ext.get("sources")
    for source in sources if isinstance(sources, list) else []:
        if not isinstance(source, dict):
            continue
        link = SourceLink(
            publisher=_text(source.get("publisher")),
            url=safe_url(source.get("url")),
            title=_text(source.get("title")),
        )
        if link.publisher == publisher and link.url == url:
            continue  # the lead report itself
        also.append(link)
    title = _text(item.get("title")) or "(untitled)"
    return Card(
        title=title,
        url=url,
        publisher=publisher,
        published=published,
        ago=time_ago(published, now) if published else "",
        summary=truncate(" ".join(summary.split())),
        also=tuple(also),
        collected=_collected(ext.get("collected_after_seconds")),
        story_card=_story_card(ext.get("card"), title),
        related=_related_links(ext.get("related")),
        recap_url=safe_url(ext.get("recap_url")),
        is_recap=ext.get("kind") == "recap",
    )


def cards_from_json_feed(body: bytes, now: datetime) -> list[Card]:
    """The items of a JSON Feed snapshot as cards, in feed order.

    Raises ``ValueError`` when ``body`` is not a JSON object; malformed items are skipped.
    """
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("JSON Feed snapshot is not an object")
    items = document.get("items")
    return (
        [_card(item, now) for item in items if isinstance(item, dict)]
        if isinstance(items, list)
        else []
    )


@dataclass(frozen=True, slots=True)
class FeedLink:
    """One autodiscoverable feed of an edition."""

    fmt: str
    label: str
    media_type: str
    href: str


@dataclass(frozen=True, slots=True)
class EditionView:
    """An edition as the index and edition pages present it."""

    name: str
    title: str
    description: str
    page_href: str
    feeds: tuple[FeedLink, ...]


def edition_view(edition: EditionConfig, base_url: str) -> EditionView:
    """Links of one edition: its relative HTML page and its absolute feed URLs."""
    base = base_url.rstrip("/")
    feeds = tuple(
        FeedLink(
            fmt=fmt,
            label=FEED_LABELS[fmt],
            media_type=content_type.split(";", 1)[0],
            href=f"{base}/feeds/{edition.name}.{fmt}",
        )
        for fmt, content_type in FEED_CONTENT_TYPES.items()
    )
    return EditionView(
        name=edition.name,
        title=edition.title,
        description=edition.description,
        page_href=f"/editions/{edition.name}",
        feeds=feeds,
    )


# --------------------------------------------------------------------------- ASGI middleware

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class _RequestMetrics:
    """Counts every HTTP response by route template (bounded cardinality) and status code."""

    def __init__(self, app: _ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception escaping the app becomes a 500 one layer further out

        async def counting_send(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", None)
            label = route if isinstance(route, str) else UNMATCHED_ROUTE
            self.metrics.http_requests.labels(route=label, status=str(status)).inc()


class _UniqueVary:
    """Collapses repeated ``Vary`` tokens.

    Feed responses always say ``Vary: Accept-Encoding`` (304s and small bodies too), and
    GZipMiddleware appends the same token again to bodies it considered compressing.
    """

    def __init__(self, app: _ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        async def dedupe_send(message: _Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=message.setdefault("headers", []))
                values = headers.getlist("vary")
                if len(values) > 1 or (values and "," in values[0]):
                    tokens: dict[str, str] = {}
                    for value in values:
                        for token in value.split(","):
                            if token.strip():
                                tokens.setdefault(token.strip().lower(), token.strip())
                    headers["vary"] = ", ".join(tokens.values())
            await send(message)

        await self.app(scope, receive, dedupe_send)


# --------------------------------------------------------------------------- the app


def create_app(
    settings: Settings,
    store: SnapshotSource,
    *,
    readiness: Callable[[], dict[str, bool]] | None = None,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
    admin: AdminBackend | None = None,
    recaps: RecapSource | None = None,
) -> FastAPI:
    """Build the web app over ``store``.

    ``readiness`` returns extra named checks for ``/readyz`` (e.g. ``{"scheduler": True}``);
    ``metrics`` is shared with the pipeline (a fresh registry when None, on ``app.state.metrics``);
    ``clock`` drives the "time ago" texts of the HTML view. ``admin`` backs the admin API under
    ``/api/``, mounted only when ``settings.admin.token`` is set (else every ``/api/`` path is a
    404 and absent from the OpenAPI schema at ``/openapi.json``). ``recaps`` serves the weekly
    recap pages at ``/editions/{edition}/recaps/{week}`` (404 without it).
    """
    metrics = metrics if metrics is not None else build_metrics()
    clock = clock if clock is not None else SystemClock()
    editions = {edition.name: edition for edition in settings.editions}
    base_url = settings.server.base_url.rstrip("/")
    views = [edition_view(edition, base_url) for edition in settings.editions]
    cache_control = f"public, max-age={settings.server.cache_max_age}"
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(("html",), default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        body = templates.get_template(name).render(**context)
        return HTMLResponse(body, status_code=status_code)

    app = FastAPI(
        title="aggregator",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.metrics = metrics
    app.state.settings = settings
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE, compresslevel=GZIP_LEVEL)
    app.add_middleware(_UniqueVary)
    app.add_middleware(_RequestMetrics, metrics=metrics)

    def unavailable(message: str) -> PlainTextResponse:
        return PlainTextResponse(
            message, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )

    # Sync handlers on purpose: the store is blocking (SQLAlchemy), so FastAPI runs them in its
    # thread pool and the event loop keeps serving.
    # Two routes rather than one GET+HEAD route: one route with two methods gives both the same
    # OpenAPI operation id (FastAPI warns); HEAD is left out of the schema.
    @app.head(FEED_ROUTE, include_in_schema=False)
    @app.get(FEED_ROUTE)
    def feed(edition: str, fmt: str, request: Request) -> Response:
        """One edition in one format, straight from its snapshot."""
        if edition not in editions or fmt not in FEED_CONTENT_TYPES:
            return PlainTextResponse("No such feed.\n", status_code=404)
        try:
            snapshot = store.get_snapshot(edition, fmt)
        except StorageError as exc:
            log.warning("snapshot read failed for %s.%s: %s", edition, fmt, exc)
            return unavailable("Storage is unavailable; try again shortly.\n")
        if snapshot is None:
            return unavailable("This feed has not been generated yet; try again shortly.\n")

        etag = quote_etag(snapshot.etag)
        if len(snapshot.body) >= GZIP_MINIMUM_SIZE and accepts_gzip(
            request.headers.get("accept-encoding", "")
        ):
            etag = weak_etag(etag)  # the gzip body is another representation
        headers = {
            "ETag": etag,
            "Last-Modified": http_date(snapshot.generated_at),
            "Cache-Control": cache_control,
            "Vary": "Accept-Encoding",
        }
        if_none_match = request.headers.get("if-none-match")
        if_modified_since = request.headers.get("if-modified-since")
        if if_none_match is not None:
            fresh = etag_matches(if_none_match, etag)
        elif if_modified_since is not None:
            fresh = not_modified_since(if_modified_since, snapshot.generated_at)
        else:
            fresh = False
        if fresh:
            return Response(status_code=304, headers=headers)
        # HEAD gets the same response; the server drops the body but keeps its length.
        return Response(snapshot.body, media_type=FEED_CONTENT_TYPES[fmt], headers=headers)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the process answers (no database access)."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: the database answers and every readiness check passes."""
        checks: dict[str, bool] = {}
        try:
            store.ping()
            checks["database"] = True
        except StorageError as exc:
            log.warning("readiness: database ping failed: %s", exc)
            checks["database"] = False
        if readiness is not None:
            try:
                checks.update(readiness())
            except Exception:  # a probe must answer 503, not 500, whatever the check hit
                log.exception("readiness: a readiness check raised")
                checks["readiness"] = False
        failing = sorted(name for name, ok in checks.items() if not ok)
        return JSONResponse(
            {"status": "unavailable" if failing else "ok", "checks": checks, "failing": failing},
            status_code=503 if failing else 200,
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of this app's registry."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        """Every edition with its page and feed links, plus feed autodiscovery tags."""
        return render("index.html", editions=views, alternates=views, page_title="Editions")

    @app.get("/editions/{edition}", response_class=HTMLResponse)
    def edition_page(edition: str) -> HTMLResponse:
        """The latest stories of one edition as cards, from its JSON Feed snapshot."""
        config = editions.get(edition)
        if config is None:
            return render(
                "edition.html",
                404,
                page_title="Not found",
                view=None,
                cards=[],
                message="No such edition.",
                alternates=[],
            )
        view = edition_view(config, base_url)
        try:
            snapshot = store.get_snapshot(edition, "json")
        except StorageError as exc:
            log.warning("snapshot read failed for %s.json: %s", edition, exc)
            snapshot = None
        if snapshot is None:
            response = render(
                "edition.html",
                503,
                page_title=config.title,
                view=view,
                cards=[],
                message="This edition has not been generated yet.",
                alternates=[view],
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        now = clock.now()
        try:
            cards = cards_from_json_feed(snapshot.body, now)
        except ValueError as exc:
            log.error("unreadable JSON Feed snapshot for %s: %s", edition, exc)
            return render(
                "edition.html",
                500,
                page_title=config.title,
                view=view,
                cards=[],
                message="This edition's snapshot is unreadable.",
                alternates=[view],
            )
        response = render(
            "edition.html",
            page_title=config.title,
            view=view,
            cards=cards,
            message=None,
            alternates=[view],
            updated=time_ago(snapshot.generated_at, now),
        )
        response.headers["Cache-Control"] = cache_control
        return response

    @app.get("/editions/{edition}/recaps/{week}", response_class=HTMLResponse)
    def recap_page(edition: str, week: str) -> HTMLResponse:
        """One stored weekly recap of an edition (linked from every story card)."""
        config = editions.get(edition)
        found: Recap | None = None
        if config is not None and recaps is not None and RECAP_WEEK.fullmatch(week):
            try:
                found = recaps.get(edition, week)
            except StorageError as exc:
                log.warning("recap read failed for %s %s: %s", edition, week, exc)
                return render(
                    "recap.html",
                    503,
                    page_title="Unavailable",
                    view=None,
                    recap=None,
                    message="Storage is unavailable; try again shortly.",
                    alternates=[],
                )
        if config is None or found is None:
            return render(
                "recap.html",
                404,
                page_title="Not found",
                view=None,
                recap=None,
                message="No such recap.",
                alternates=[],
            )
        view = edition_view(config, base_url)
        response = render(
            "recap.html",
            page_title=found.title,
            view=view,
            recap=found,
            links=[(line, safe_url(line.url)) for line in found.lines],
            message=None,
            alternates=[view],
        )
        response.headers["Cache-Control"] = cache_control
        return response

    if settings.admin.token:
        if admin is None:
            log.warning("admin token configured but no admin backend given: /api/ stays off")
        else:
            app.include_router(create_admin_router(settings, admin))

    return app
