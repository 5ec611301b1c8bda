"""The admin API under ``/api/``: sources (list, add, remove, pause, resume, poll), editions, stats.

Mounted by :func:`aggregator.web.create_app` only when ``[admin] token`` is configured
(``AGGREGATOR_ADMIN_TOKEN``); otherwise every ``/api/`` path is a 404 and the routes are absent
from the OpenAPI schema. Every route needs ``Authorization: Bearer <token>``; the token is
checked before the request body is even parsed, so an anonymous caller learns nothing but 401.

The routes talk to an :class:`AdminBackend`; :class:`DaemonAdmin` is the real one (repository
plus pipeline). Database calls block, so every route that makes them is a plain ``def`` (FastAPI
runs those in its thread pool); only ``poll`` is ``async`` because it awaits the pipeline.

Source URLs are checked by :mod:`aggregator.ssrf` before they are stored: a URL that is, or
resolves to, a private, loopback, link-local or otherwise internal address is refused with 422
unless ``[admin] allow_networks`` permits its network. Input errors are 4xx with a message,
storage trouble is 503 with ``Retry-After``; nothing the caller sends should produce a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import unicodedata
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, HTTPException, Path, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from aggregator.clock import Clock
from aggregator.config import default_key, free_key
from aggregator.errors import AggregatorError, ConfigError, SourceURLRejected, StorageError
from aggregator.model import SourceState
from aggregator.pipeline import Pipeline, SourceReport
from aggregator.settings import EditionConfig, Settings, SourceConfig
from aggregator.ssrf import Resolver, check_source_url, parse_networks, resolve_host
from aggregator.store.repo import DuplicateSourceError, Repository

log = logging.getLogger("aggregator.api")

#: Source keys: the same rule as the config file's.
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$"
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+([/?#]\S*)?$"
_URL_RE = re.compile(URL_PATTERN)
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}$"
MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 7 * 24 * 3600
RETRY_AFTER_SECONDS = 30
BEARER_REALM = "aggregator-admin"
MIN_TOKEN_LENGTH = 16


# --------------------------------------------------------------------------- errors


class SourceNotFound(AggregatorError):
    """No source has this key."""


class SourceBusy(AggregatorError):
    """Another poller holds this source's lease right now."""


# --------------------------------------------------------------------------- backend


class AdminBackend(Protocol):
    """What the admin routes need; :class:`DaemonAdmin` is the real implementation.

    Every method but ``poll_source`` blocks (database calls); storage failures raise
    :class:`StorageError`.
    """

    def list_sources(self) -> list[SourceState]:
        """Every source, by key."""
        ...

    def get_source(self, key: str) -> SourceState | None:
        """One source, or None when there is no such key."""
        ...

    def add_source(self, cfg: SourceConfig) -> SourceState:
        """Store a new source, due now; raises ``DuplicateSourceError`` on a key or URL clash."""
        ...

    def remove_source(self, key: str) -> bool:
        """Delete a source with its items; False when there is no such key."""
        ...

    def set_enabled(self, key: str, enabled: bool) -> bool:
        """Pause (False) or resume (True) a source; False when there is no such key."""
        ...

    def stats(self) -> dict[str, int]:
        """Counts of sources (by status), items, stories and tombstones."""
        ...

    async def poll_source(self, key: str) -> SourceReport:
        """Poll one source now; raises :class:`SourceNotFound` or :class:`SourceBusy`."""
        ...


class DaemonAdmin:
    """The admin backend of the running daemon: its repository and its pipeline.

    A manual poll leases the source under its own owner name (the daemon's plus ``/admin-`` and
    a random suffix), so it never runs alongside the scheduler's poll of the same source or
    another manual poll of it: whoever holds the lease wins and the other gets
    :class:`SourceBusy`. The poll itself runs on a short-lived sibling of the daemon's pipeline
    that shares its fetcher (politeness limits included), parse pool and metrics.
    """

    def __init__(self, repo: Repository, pipeline: Pipeline, clock: Clock) -> None:
        self.repo = repo
        self.pipeline = pipeline
        self.clock = clock

    def list_sources(self) -> list[SourceState]:
        return self.repo.list_sources()

    def get_source(self, key: str) -> SourceState | None:
        return self.repo.get_source(key)

    def add_source(self, cfg: SourceConfig) -> SourceState:
        return self.repo.add_source(cfg, self.clock.now(), origin="api")

    def remove_source(self, key: str) -> bool:
        return self.repo.remove_source(key)

    def set_enabled(self, key: str, enabled: bool) -> bool:
        return self.repo.set_enabled(key, enabled)

    def stats(self) -> dict[str, int]:
        return self.repo.stats()

    async def poll_source(self, key: str) -> SourceReport:
        """Lease ``key`` now (whatever its due time), poll it, release the lease."""
        if await asyncio.to_thread(self.repo.get_source, key) is None:
            raise SourceNotFound(f"no source with key {key!r}")
        main = self.pipeline
        owner = f"{main.owner}/admin-{uuid.uuid4().hex[:8]}"
        lease = main.settings.schedule.lease_seconds
        claimed = await asyncio.to_thread(
            self.repo.claim_source, key, self.clock.now(), owner, lease
        )
        if claimed is None:
            if await asyncio.to_thread(self.repo.get_source, key) is None:
                raise SourceNotFound(f"no source with key {key!r}")
            raise SourceBusy(f"source {key!r} is being polled right now; try again shortly")
        poller = Pipeline(
            main.settings,
            self.repo,
            main.fetcher,
            clock=self.clock,
            owner=owner,
            rng=main.rng,
            parse_executor=main.parse_executor,
            metrics=main.metrics,
        )
        try:
            report = await poller.run([claimed])
        finally:
            await asyncio.to_thread(poller.close)
        return report.sources[0]


# --------------------------------------------------------------------------- wire models


def _clean_text(value: str | None) -> str | None:
    """Refuse control characters and text that is not valid Unicode (lone surrogates)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class SourceIn(BaseModel):
    """A source to add. Only ``url`` is required; the key defaults to one derived from it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    url: Annotated[str, StringConstraints(max_length=2048)] = Field(
        description="The feed's http(s) URL; internal addresses are refused (SSRF).",
        examples=["https://www.ithome.com/rss/"],
        # documented for clients and fuzzers; enforced by _url below with a clearer message
        json_schema_extra={"pattern": URL_PATTERN},
    )
    key: Annotated[str, StringConstraints(pattern=KEY_PATTERN)] | None = Field(
        None, description="Lower-case slug; derived from the URL's host when omitted."
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Display name; the key when omitted."
    )
    language: Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)] | None = Field(
        None, description="BCP 47 tag (e.g. zh-CN) used when the feed declares none."
    )
    interval_seconds: (
        Annotated[int, Field(ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS)] | None
    ) = Field(None, description="Fixed poll interval; adaptive when omitted.")
    weight: Annotated[float, Field(gt=0, le=100)] = 1.0
    tags: Annotated[
        list[Annotated[str, StringConstraints(pattern=TAG_PATTERN)]], Field(max_length=32)
    ] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _clean_text(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _clean_text(value)
        if any(ch.isspace() for ch in value):
            raise ValueError("must not contain spaces (percent-encode them as %20)")
        if not _URL_RE.match(value):
            raise ValueError("must be an absolute http(s) URL such as https://example.org/feed")
        return value


class SourceOut(BaseModel):
    """A source with its poll state."""

    key: str
    url: str
    name: str
    language: str | None
    weight: float
    tags: list[str]
    interval_seconds: int | None
    enabled: bool = Field(description="False while the source is paused.")
    site_url: str | None
    status: str = Field(description="new | ok | not_modified | error | gone")
    last_error: str | None
    error_count: int
    last_fetched_at: datetime | None
    last_success_at: datetime | None
    next_check_at: datetime | None = Field(description="When the scheduler polls it next.")

    @classmethod
    def of(cls, state: SourceState) -> SourceOut:
        """The wire form of a stored source."""
        return cls(
            key=state.key,
            url=state.url,
            name=state.name,
            language=state.language,
            weight=state.weight,
            tags=list(state.tags),
            interval_seconds=state.interval_seconds,
            enabled=state.enabled,
            site_url=state.site_url,
            status=state.status,
            last_error=state.last_error,
            error_count=state.error_count,
            last_fetched_at=state.last_fetched_at,
            last_success_at=state.last_success_at,
            next_check_at=state.next_check_at,
        )


class PollOut(BaseModel):
    """What one manual poll did."""

    key: str
    url: str
    status: str = Field(description="ok | not_modified | error | gone")
    new: int
    updated: int
    error: str | None
    elapsed_seconds: float


class FeedLinks(BaseModel):
    """An edition's feed URLs."""

    rss: str
    atom: str
    json_feed: str = Field(alias="json")

    model_config = ConfigDict(populate_by_name=True)


class EditionOut(BaseModel):
    """A configured edition and where to read it."""

    name: str
    title: str
    description: str
    html_url: str
    feeds: FeedLinks


class ErrorOut(BaseModel):
    """Every error body: a human-readable message."""

    detail: str


def edition_out(edition: EditionConfig, base_url: str) -> EditionOut:
    """The wire form of one configured edition."""
    base = base_url.rstrip("/")
    feed = f"{base}/feeds/{edition.name}"
    return EditionOut(
        name=edition.name,
        title=edition.title,
        description=edition.description,
        html_url=f"{base}/editions/{edition.name}",
        feeds=FeedLinks(rss=f"{feed}.rss", atom=f"{feed}.atom", json=f"{feed}.json"),
    )


# --------------------------------------------------------------------------- auth


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = token.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected)


def _unauthorized(authorization: str | None) -> JSONResponse:
    challenge = f'Bearer realm="{BEARER_REALM}"'
    if authorization:
        challenge += ', error="invalid_token"'
    return JSONResponse(
        {"detail": "a valid 'Authorization: Bearer <token>' header is required"},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


_Handler = Callable[[Request], Coroutine[Any, Any, Response]]
MAX_MESSAGE_CHARS = 2000


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one line (``body.url: Field required; ...``).

    The offending input is not echoed: it may be huge, or not even encodable (a lone surrogate
    makes FastAPI's own handler crash with a 500 while rendering it).
    """
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    message = "; ".join(parts) or "invalid request"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _guarded_route_class(token: str) -> type[APIRoute]:
    """An ``APIRoute`` that answers 401 before FastAPI parses the body or validates anything."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> _Handler:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                authorization = request.headers.get("authorization")
                if not token_matches(authorization, token):
                    return _unauthorized(authorization)
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    return JSONResponse({"detail": validation_message(exc)}, status_code=422)

            return guarded

    return GuardedRoute


# --------------------------------------------------------------------------- the router


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    """Duplicates become 409; any other storage failure 503 with ``Retry-After``."""
    try:
        yield
    except DuplicateSourceError as exc:
        raise HTTPException(409, str(exc)) from exc
    except StorageError as exc:
        log.warning("admin API: %s failed: %s", action, exc)
        raise HTTPException(
            503,
            "storage is unavailable; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc


def _not_found(key: str) -> HTTPException:
    return HTTPException(404, f"no source with key {key!r}")


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Unreadable request body",
        401: "Missing or wrong bearer token",
        404: "No such source",
        409: "Conflict (duplicate source, or the source is being polled)",
        422: "Invalid input",
        503: "Storage unavailable; retry later",
    }
    return {code: {"model": ErrorOut, "description": texts[code]} for code in (401, 503, *codes)}


KeyPath = Annotated[
    str,
    Path(
        pattern=KEY_PATTERN,
        description="The source's key (lower-case slug).",
        examples=["ithome-com"],
    ),
]


def create_admin_router(
    settings: Settings, backend: AdminBackend, *, resolve: Resolver = resolve_host
) -> APIRouter:
    """The ``/api`` routes over ``backend``, guarded by ``settings.admin.token``.

    ``resolve`` turns host names into addresses for the SSRF check (the system resolver by
    default). Raises ``ConfigError`` when no token is configured or the allow-list is invalid.
    """
    token = settings.admin.token
    if not token:
        raise ConfigError("[admin] token: the admin API needs a bearer token")
    if len(token) < MIN_TOKEN_LENGTH:
        log.warning("admin token is shorter than %d characters: easy to guess", MIN_TOKEN_LENGTH)
    allowed = parse_networks(settings.admin.allow_networks)
    editions = [edition_out(e, settings.server.base_url) for e in settings.editions]
    bearer = HTTPBearer(auto_error=False, description="The admin token (AGGREGATOR_ADMIN_TOKEN).")
    router = APIRouter(
        prefix="/api",
        tags=["admin"],
        route_class=_guarded_route_class(token),
        dependencies=[Security(bearer)],  # documents the scheme; the route class enforces it
    )

    def source_or_404(key: str) -> SourceOut:
        with _storage_errors("read source"):
            state = backend.get_source(key)
        if state is None:
            raise _not_found(key)
        return SourceOut.of(state)

    @router.get("/sources", responses=_responses())
    def list_sources() -> list[SourceOut]:
        """Every source with its status, last error and next check time."""
        with _storage_errors("list sources"):
            return [SourceOut.of(s) for s in backend.list_sources()]

    @router.post("/sources", status_code=201, responses=_responses(400, 409, 422))
    def add_source(body: SourceIn) -> SourceOut:
        """Add a source; it is polled at the next tick. Internal addresses are refused."""
        try:
            url = check_source_url(body.url, allowed, resolve)
        except SourceURLRejected as exc:
            raise HTTPException(422, str(exc)) from exc
        with _storage_errors("add source"):
            key = body.key or free_key(default_key(url), {s.key for s in backend.list_sources()})
            cfg = SourceConfig(
                key=key,
                url=url,
                name=body.name or key,
                language=body.language,
                interval_seconds=body.interval_seconds,
                weight=body.weight,
                tags=tuple(body.tags),
                enabled=body.enabled,
            )
            state = backend.add_source(cfg)
        log.info("admin API: added source %s (%s)", key, url)
        return SourceOut.of(state)

    @router.get("/sources/{key}", responses=_responses(404, 422))
    def get_source(key: KeyPath) -> SourceOut:
        """One source with its poll state."""
        return source_or_404(key)

    @router.delete(
        "/sources/{key}",
        status_code=204,
        response_class=Response,
        responses=_responses(404, 422),
    )
    def remove_source(key: KeyPath) -> Response:
        """Delete a source with its items (stories left empty go too)."""
        with _storage_errors("remove source"):
            removed = backend.remove_source(key)
        if not removed:
            raise _not_found(key)
        log.info("admin API: removed source %s", key)
        return Response(status_code=204)

    def set_enabled(key: str, enabled: bool) -> SourceOut:
        with _storage_errors("pause/resume source"):
            found = backend.set_enabled(key, enabled)
        if not found:
            raise _not_found(key)
        log.info("admin API: %s source %s", "resumed" if enabled else "paused", key)
        return source_or_404(key)

    @router.post("/sources/{key}/pause", responses=_responses(404, 422))
    def pause_source(key: KeyPath) -> SourceOut:
        """Stop polling a source (its items stay)."""
        return set_enabled(key, False)

    @router.post("/sources/{key}/resume", responses=_responses(404, 422))
    def resume_source(key: KeyPath) -> SourceOut:
        """Poll a paused source again."""
        return set_enabled(key, True)

    @router.post("/sources/{key}/poll", responses=_responses(404, 409, 422))
    async def poll_source(key: KeyPath) -> PollOut:
        """Poll one source now and report what happened (waits for the fetch)."""
        try:
            with _storage_errors("poll source"):
                report = await backend.poll_source(key)
        except SourceNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except SourceBusy as exc:
            raise HTTPException(
                409, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
            ) from exc
        return PollOut(
            key=report.key,
            url=report.url,
            status=report.status,
            new=report.new,
            updated=report.updated,
            error=report.error,
            elapsed_seconds=round(report.elapsed, 3),
        )

    @router.get("/editions", responses=_responses())
    def list_editions() -> list[EditionOut]:
        """The configured editions with their page and feed URLs."""
        return editions

    @router.get("/stats", responses=_responses())
    def stats() -> dict[str, int]:
        """Counts: sources (all, enabled, by status), items, stories, tombstones."""
        with _storage_errors("read stats"):
            return backend.stats()

    _answer_other_methods(router)
    return router


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _answer_other_methods(router: APIRouter) -> None:
    """Add a 405 route per path whose ``Allow`` header lists every method the path supports.

    Starlette answers a method mismatch from the first route whose path matches, so
    ``OPTIONS /api/sources`` would say ``Allow: GET`` although POST works too (RFC 9110 15.5.6
    wants them all).
    """
    supported: dict[str, set[str]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute):
            supported.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in supported.items():
        allow = ", ".join(sorted(methods))

        def not_allowed(allow: str = allow) -> JSONResponse:
            return JSONResponse(
                {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow}
            )

        router.add_api_route(
            path.removeprefix(router.prefix),
            not_allowed,
            methods=[m for m in HTTP_METHODS if m not in methods],
            include_in_schema=False,
        )
