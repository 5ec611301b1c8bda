"""Fuzz the web app (admin API included) against its own OpenAPI schema with schemathesis.

The app runs under a real uvicorn server on 127.0.0.1, with a real SQLite repository and a real
pipeline, built on the server's own event loop as the daemon does. Two seams keep every byte on
this machine whatever URLs the fuzzer invents: the SSRF check resolves every host name to one
public address without asking DNS, and the fetcher's transport is an ``httpx.MockTransport``
publisher that answers every URL with a small feed. Examples are bounded (``MAX_EXAMPLES`` per
operation) so the file runs in 15-20 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from aggregator.api import DaemonAdmin, create_admin_router
from aggregator.clock import SystemClock
from aggregator.fetch import Fetcher
from aggregator.pipeline import Pipeline
from aggregator.settings import AdminSettings, EditionConfig, FetchSettings, Settings
from aggregator.store.db import make_engine, upgrade
from aggregator.store.repo import Repository
from aggregator.web import create_app

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = "93.184.215.14"
FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Fuzz</title>'
    b"<item><title>Hello</title><link>http://news.example/1</link><guid>1</guid></item>"
    b"</channel></rss>"
)
MAX_EXAMPLES = 15
SEED_KEY = "ithome-com"  # the example key of the schema's {key} parameters
#: Status codes the conformance test got, per operation (checked at the end of the module).
SEEN: dict[str, set[int]] = {}


def every_name_is_public(host: str) -> Sequence[str]:
    """The fuzz run's resolver: no DNS traffic, every name is a public address."""
    return [PUBLIC]


def publisher(request: httpx.Request) -> httpx.Response:
    """The fuzz run's only publisher: a small RSS feed at every URL."""
    return httpx.Response(200, content=FEED, headers={"content-type": "application/rss+xml"})


class LiveApp:
    """The app under uvicorn on a thread with its own event loop (pipeline built on it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()/stop() in the test thread
            self.error = exc

    async def _serve(self) -> None:
        settings = self.settings
        engine = make_engine(settings.database_url)
        upgrade(engine)
        repo = Repository(engine)
        clock = SystemClock()
        transport = httpx.MockTransport(publisher)
        async with Fetcher(settings.fetch, transport=transport) as fetcher:
            pipeline = Pipeline(settings, repo, fetcher, clock=clock, owner="fuzz")
            admin = DaemonAdmin(repo, pipeline, clock)
            # create_app mounts the same router; built here to hand it the DNS-free resolver
            app = create_app(replace(settings, admin=AdminSettings()), repo, clock=clock)
            app.include_router(create_admin_router(settings, admin, resolve=every_name_is_public))
            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
            )
            self.server = uvicorn.Server(config)
            try:
                await self.server.serve()
            finally:
                pipeline.close()
                engine.dispose()

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.server is None or not self.server.started:
            assert self.error is None, f"server failed: {self.error!r}"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        assert self.error is None, f"server failed: {self.error!r}"


def fuzz_settings(database_url: str) -> Settings:
    return Settings(
        config_path="tests/test_api_fuzz.py",
        database_url=database_url,
        fetch=FetchSettings(per_host_delay=0.0, total_timeout=5.0),
        admin=AdminSettings(token=TOKEN),
        editions=(EditionConfig(name="all", title="All"),),
    )


def app_schema() -> dict[str, Any]:
    """The OpenAPI document of the app as configured for the fuzz run, built without a server.

    Collection needs the schema before any fixture runs (schemathesis' fixture-based lazy loader
    does not work with pytest 9), and building the schema touches neither backend nor database.
    ``test_live_schema_is_the_fuzzed_schema`` checks that the live server serves the same one.
    """
    settings = fuzz_settings("sqlite://")
    unused = cast(Any, object())  # the schema depends on neither the store nor the backend
    return create_app(settings, unused, admin=unused).openapi()


SCHEMA = app_schema()
schema = schemathesis.openapi.from_dict(SCHEMA)
admin_api = schema.include(path_regex="^/api/")
public_routes = schema.exclude(path_regex="^/api/")
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def seed_source(base_url: str) -> None:
    """Add the source that the schema's example key names (a no-op when it exists)."""
    seed = {"url": f"http://{PUBLIC}/rss/", "key": SEED_KEY}
    response = httpx.post(f"{base_url}/api/sources", json=seed, headers=AUTH)
    assert response.status_code in (201, 409), response.text


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    app = LiveApp(fuzz_settings(f"sqlite:///{db}"))
    url = app.start()
    try:
        seed_source(url)
        yield url
    finally:
        app.stop()


def test_live_schema_is_the_fuzzed_schema(live_url: str) -> None:
    document = httpx.get(f"{live_url}/openapi.json").json()
    assert document == SCHEMA
    assert "/api/sources" in document["paths"]


@admin_api.parametrize()
@FUZZ
def test_admin_api_conforms_to_its_schema(case: schemathesis.Case, live_url: str) -> None:
    """Every schemathesis check but one: no 5xx, documented status codes, bodies and headers.

    Left out: ``positive_data_acceptance`` (schema-valid input must get a 2xx). A source URL can
    match the schema and still be refused on purpose: an internal address, a bad port.
    """
    response = case.call_and_validate(
        base_url=live_url, headers=AUTH, excluded_checks=[positive_data_acceptance]
    )
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    SEEN.setdefault(operation, set()).add(response.status_code)
    if operation == "DELETE /api/sources/{key}" and response.status_code == 204:
        seed_source(live_url)  # bring the example key back for the cases that follow


@admin_api.parametrize()
@FUZZ
def test_admin_api_without_token_is_always_401(case: schemathesis.Case, live_url: str) -> None:
    """Whatever the fuzzer sends (its own ``Authorization`` header too), no token, no entry."""
    response = case.call(base_url=live_url)
    if case.method.upper() != case.operation.method.upper():  # a method the path does not have
        assert response.status_code in (401, 405), response.text
        return
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"][0].startswith("Bearer")


@public_routes.parametrize()
@FUZZ
def test_public_routes_never_fail_with_5xx_errors(case: schemathesis.Case, live_url: str) -> None:
    """The public routes (feeds, pages, probes) do not document their 404/503s: no 500 only."""
    case.call_and_validate(base_url=live_url, checks=[not_a_server_error])


def test_fuzzing_reached_past_validation() -> None:
    """The run above must have exercised the real work, not only bounced off 4xx answers."""
    if not SEEN:
        pytest.skip("the conformance test did not run (deselected)")
    assert 201 in SEEN["POST /api/sources"]
    assert 200 in SEEN["GET /api/sources"]
    assert 200 in SEEN["GET /api/stats"]
    assert 422 in SEEN["POST /api/sources"]
    assert 200 in SEEN["POST /api/sources/{key}/poll"]
    assert 200 in SEEN["POST /api/sources/{key}/pause"]
    assert 204 in SEEN["DELETE /api/sources/{key}"]
