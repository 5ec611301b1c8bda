"""Tests for the admin API: auth, sources (add, list, pause, resume, remove, poll), editions, stats.

Everything is real: the app from ``create_app`` with a ``DaemonAdmin`` over a migrated database
(SQLite, and PostgreSQL when ``AGGREGATOR_TEST_POSTGRES_URL`` is set) and a pipeline from
``open_pipeline``; polls fetch from a threaded publisher server on 127.0.0.1. Requests go
through ``httpx.ASGITransport`` so the app runs on the test's event loop, the loop the
pipeline's HTTP client belongs to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from aggregator.api import DaemonAdmin, create_admin_router, token_matches
from aggregator.app import open_pipeline
from aggregator.clock import FixedClock
from aggregator.config import free_key
from aggregator.errors import ConfigError
from aggregator.pipeline import Pipeline
from aggregator.settings import (
    AdminSettings,
    EditionConfig,
    FetchSettings,
    ServerSettings,
    Settings,
)
from aggregator.store.db import make_engine
from aggregator.store.repo import Repository
from aggregator.web import create_app
from tests.servers import FeedServer, running_server, status

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TOKEN = "s3cret-admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOOPBACK = ("127.0.0.0/8",)

feed_server = pytest.fixture(running_server, name="feed_server")


def rss(*titles: str) -> bytes:
    """A small RSS 2.0 feed with one item per title."""
    items = "".join(
        f"<item><title>{t}</title><link>http://news.example/{i}</link>"
        f"<guid>news-{i}</guid><pubDate>Sat, 28 Nov 2026 11:0{i}:00 GMT</pubDate></item>"
        for i, t in enumerate(titles)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Test news</title><link>http://news.example/</link>{items}</channel></rss>"
    ).encode()


def make_settings(
    db_url: str, *, token: str | None = TOKEN, allow: tuple[str, ...] = ()
) -> Settings:
    return Settings(
        config_path="tests/test_api.py",
        database_url=db_url,
        server=ServerSettings(base_url="https://news.example.org/"),
        fetch=FetchSettings(per_host_delay=0.0, total_timeout=10.0),
        admin=AdminSettings(token=token, allow_networks=allow),
        editions=(
            EditionConfig(name="all", title="Everything", description="All the news"),
            EditionConfig(name="tech", title="Tech"),
        ),
    )


@dataclass
class Admin:
    """A running admin app and what it runs on."""

    http: httpx.AsyncClient
    pipeline: Pipeline
    repo: Repository
    clock: FixedClock


@asynccontextmanager
async def admin_app(settings: Settings, *, mount: bool = True) -> AsyncIterator[Admin]:
    clock = FixedClock(NOW)
    async with open_pipeline(settings, clock=clock, workers=0) as pipeline:
        backend = DaemonAdmin(pipeline.repo, pipeline, clock) if mount else None
        app = create_app(settings, pipeline.repo, clock=clock, admin=backend)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as http:
            yield Admin(http, pipeline, pipeline.repo, clock)


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Admin]:
    """The admin API with the default (empty) allow-list."""
    async with admin_app(make_settings(db_url)) as admin:
        yield admin


@pytest.fixture
async def local_api(db_url: str) -> AsyncIterator[Admin]:
    """The admin API with 127.0.0.0/8 allowed, so it can poll the local publisher server."""
    async with admin_app(make_settings(db_url, allow=LOOPBACK)) as admin:
        yield admin


# --------------------------------------------------------------------------- on / off


async def test_without_a_token_every_api_route_is_404_and_absent_from_the_schema(
    db_url: str,
) -> None:
    async with admin_app(make_settings(db_url, token=None)) as admin:
        for method, path in [
            ("GET", "/api/sources"),
            ("POST", "/api/sources"),
            ("GET", "/api/sources/x"),
            ("DELETE", "/api/sources/x"),
            ("POST", "/api/sources/x/poll"),
            ("GET", "/api/stats"),
            ("GET", "/api/editions"),
        ]:
            response = await admin.http.request(method, path, headers=AUTH)
            assert response.status_code == 404, (method, path)
        schema = (await admin.http.get("/openapi.json")).json()
        assert schema["paths"]  # the public routes are documented
        assert not [p for p in schema["paths"] if p.startswith("/api")]
        assert "securitySchemes" not in schema.get("components", {})


async def test_a_token_without_a_backend_keeps_the_api_off(db_url: str) -> None:
    async with admin_app(make_settings(db_url), mount=False) as admin:
        assert (await admin.http.get("/api/sources", headers=AUTH)).status_code == 404


async def test_schema_documents_the_admin_routes_and_bearer_auth(api: Admin) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    paths = {p: sorted(ops) for p, ops in schema["paths"].items() if p.startswith("/api")}
    assert paths == {
        "/api/editions": ["get"],
        "/api/sources": ["get", "post"],
        "/api/sources/{key}": ["delete", "get"],
        "/api/sources/{key}/pause": ["post"],
        "/api/sources/{key}/poll": ["post"],
        "/api/sources/{key}/resume": ["post"],
        "/api/stats": ["get"],
    }
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    add = schema["paths"]["/api/sources"]["post"]
    assert {"201", "401", "409", "422", "503"} <= set(add["responses"])
    assert add["security"] == [{"HTTPBearer": []}]


# --------------------------------------------------------------------------- auth


async def test_missing_or_wrong_token_is_401_with_a_challenge(api: Admin) -> None:
    missing = await api.http.get("/api/sources")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="aggregator-admin"'
    assert "Bearer" in missing.json()["detail"]
    for header in (
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer",
        "Bearer s3cret-admin-token-for-tésts",  # non-ASCII: must not crash compare_digest
    ):
        raw = {b"authorization": header.encode("utf-8")}
        response = await api.http.get("/api/stats", headers=raw)
        assert response.status_code == 401, header
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert (await api.http.get("/api/stats", headers=AUTH)).status_code == 200
    lower = {"authorization": f"bearer  {TOKEN} "}  # scheme is case-insensitive
    assert (await api.http.get("/api/stats", headers=lower)).status_code == 200


async def test_auth_is_checked_before_the_body_is_parsed(api: Admin) -> None:
    response = await api.http.post(
        "/api/sources", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
    assert (await api.http.get("/api/sources", headers=AUTH)).json() == []


def test_token_matches() -> None:
    assert token_matches("Bearer abc", "abc")
    assert token_matches("BEARER abc", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("", "abc")
    assert not token_matches("Bearer ab", "abc")
    assert not token_matches("Bearerabc", "abc")
    assert not token_matches("Bearer ☃", "abc")


def test_router_refuses_to_exist_without_a_token_or_with_a_bad_allow_list(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'a.db'}", token=None)
    with pytest.raises(ConfigError, match="token"):
        create_admin_router(settings, None)  # type: ignore[arg-type]
    bad = make_settings(f"sqlite:///{tmp_path / 'a.db'}", allow=("not-a-cidr",))
    with pytest.raises(ConfigError, match=r"\[admin\] allow_networks: 'not-a-cidr'"):
        create_admin_router(bad, None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sources


async def test_add_list_get_pause_resume_remove(local_api: Admin, feed_server: FeedServer) -> None:
    http = local_api.http
    url = feed_server.url("/a.xml")
    created = await http.post(
        "/api/sources",
        headers=AUTH,
        json={
            "url": url,
            "key": "alpha",
            "name": "Alpha News",
            "language": "zh-CN",
            "interval_seconds": 600,
            "weight": 2.5,
            "tags": ["tech", "cn"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"] == "alpha"
    assert body["url"] == url
    assert body["name"] == "Alpha News"
    assert body["language"] == "zh-CN"
    assert body["interval_seconds"] == 600
    assert body["weight"] == 2.5
    assert body["tags"] == ["tech", "cn"]
    assert body["enabled"] is True
    assert body["status"] == "new"
    assert body["last_error"] is None
    assert datetime.fromisoformat(body["next_check_at"]) == NOW  # due at once

    listed = (await http.get("/api/sources", headers=AUTH)).json()
    assert [s["key"] for s in listed] == ["alpha"]
    assert (await http.get("/api/sources/alpha", headers=AUTH)).json() == body

    paused = await http.post("/api/sources/alpha/pause", headers=AUTH)
    assert paused.status_code == 200
    assert paused.json()["enabled"] is False
    assert local_api.repo.claim_due_sources(NOW, 10, "someone", 60) == []  # not polled
    resumed = await http.post("/api/sources/alpha/resume", headers=AUTH)
    assert resumed.json()["enabled"] is True

    removed = await http.delete("/api/sources/alpha", headers=AUTH)
    assert removed.status_code == 204
    assert removed.content == b""
    assert (await http.get("/api/sources/alpha", headers=AUTH)).status_code == 404
    assert (await http.delete("/api/sources/alpha", headers=AUTH)).status_code == 404
    assert (await http.post("/api/sources/alpha/pause", headers=AUTH)).status_code == 404
    assert (await http.post("/api/sources/alpha/resume", headers=AUTH)).status_code == 404
    assert local_api.repo.list_sources() == []


async def test_key_and_name_default_from_the_url(local_api: Admin, feed_server: FeedServer) -> None:
    first = await local_api.http.post(
        "/api/sources", headers=AUTH, json={"url": feed_server.url("/a.xml")}
    )
    second = await local_api.http.post(
        "/api/sources", headers=AUTH, json={"url": feed_server.url("/b.xml")}
    )
    assert first.status_code == second.status_code == 201
    assert (first.json()["key"], first.json()["name"]) == ("127-0-0-1", "127-0-0-1")
    assert second.json()["key"] == "127-0-0-1-2"
    assert free_key("ithome-com", {"ithome-com", "ithome-com-2"}) == "ithome-com-3"


async def test_duplicates_are_409(local_api: Admin, feed_server: FeedServer) -> None:
    url = feed_server.url("/a.xml")
    ok = await local_api.http.post("/api/sources", headers=AUTH, json={"url": url, "key": "a"})
    assert ok.status_code == 201
    same_key = await local_api.http.post(
        "/api/sources", headers=AUTH, json={"url": feed_server.url("/other.xml"), "key": "a"}
    )
    assert same_key.status_code == 409
    assert "key 'a'" in same_key.json()["detail"]
    same_url = await local_api.http.post(
        "/api/sources", headers=AUTH, json={"url": url, "key": "b"}
    )
    assert same_url.status_code == 409
    assert "already exists" in same_url.json()["detail"]


async def test_loopback_sources_are_refused_by_default(api: Admin, feed_server: FeedServer) -> None:
    for url in (feed_server.url("/a.xml"), feed_server.url("/a.xml", host="localhost")):
        response = await api.http.post("/api/sources", headers=AUTH, json={"url": url})
        assert response.status_code == 422, url
        detail = response.json()["detail"]
        assert "refused" in detail
        assert "loopback" in detail
        assert "[admin] allow_networks" in detail
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/"):
        response = await api.http.post("/api/sources", headers=AUTH, json={"url": url})
        assert response.status_code == 422
        assert "SSRF" in response.json()["detail"]
    assert api.repo.list_sources() == []
    assert feed_server.log == []  # nothing was fetched


INVALID_BODIES: list[tuple[object, str]] = [
    ({}, "body.url: Field required"),
    ({"url": ""}, "body.url"),
    ({"url": 42}, "body.url"),
    ({"url": "ftp://example.org/"}, "body.url: Value error, must be an absolute http(s) URL"),
    ({"url": "example.org/feed"}, "must be an absolute http(s) URL"),
    ({"url": "http://example.org/a b"}, "body.url: Value error, must not contain spaces"),
    ({"url": "http://example.org:99999/"}, "malformed: Port out of range"),
    ({"url": "http://127.0.0.1:8080/"}, "127.0.0.1 is a loopback address"),
    ({"url": "http://93.184.215.14/", "key": "Bad Key"}, "body.key"),
    ({"url": "http://93.184.215.14/", "key": "x" * 65}, "body.key"),
    ({"url": "http://93.184.215.14/", "name": ""}, "body.name"),
    ({"url": "http://93.184.215.14/", "name": "a\x00b"}, "control characters"),
    ({"url": "http://93.184.215.14/", "name": "   "}, "blank"),
    ({"url": "http://93.184.215.14/", "language": "english please"}, "body.language"),
    ({"url": "http://93.184.215.14/", "interval_seconds": 5}, "body.interval_seconds"),
    ({"url": "http://93.184.215.14/", "interval_seconds": 10**30}, "interval_seconds"),
    ({"url": "http://93.184.215.14/", "interval_seconds": "soon"}, "interval_seconds"),
    ({"url": "http://93.184.215.14/", "weight": 0}, "body.weight"),
    ({"url": "http://93.184.215.14/", "weight": 101}, "body.weight"),
    ({"url": "http://93.184.215.14/", "tags": ["ok", "not ok"]}, "body.tags.1"),
    ({"url": "http://93.184.215.14/", "tags": ["t"] * 33}, "body.tags"),
    ({"url": "http://93.184.215.14/", "tags": "tech"}, "body.tags"),
    ({"url": "http://93.184.215.14/", "enabled": "maybe"}, "body.enabled"),
    ({"url": "http://93.184.215.14/", "colour": "red"}, "body.colour: Extra inputs"),
    ([1, 2], "body"),
]


async def test_invalid_input_is_422_with_a_message(api: Admin) -> None:
    for body, field in INVALID_BODIES:
        response = await api.http.post("/api/sources", headers=AUTH, json=body)
        assert response.status_code == 422, (body, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str)
        assert field in detail, (body, detail)
    assert api.repo.list_sources() == []


MALFORMED_BODIES = [
    b"{not json",
    b'{"url": "http://93.184.215.14/\\ud800"}',  # lone surrogate: FastAPI's own handler 500s
    b'{"url": "http://93.184.215.14/", "name": "\\udfff"}',
    b'{"url": "http://93.184.215.14/", "weight": NaN}',
    b'{"url": "http://93.184.215.14/", "weight": Infinity}',
    b"",
    b"\xff\xfe\x00garbage",
]


async def test_malformed_bodies_are_4xx_never_500(api: Admin) -> None:
    for raw in MALFORMED_BODIES:
        response = await api.http.post(
            "/api/sources", headers={**AUTH, "content-type": "application/json"}, content=raw
        )
        assert response.status_code == 422, (raw, response.text)
        assert isinstance(response.json()["detail"], str)
    assert api.repo.list_sources() == []


async def test_malformed_keys_in_paths_are_422(api: Admin) -> None:
    for key in ["UPPER", "has space", "-dash-first", "x" * 65, "ü", "%00"]:
        for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/poll")]:
            response = await api.http.request(method, f"/api/sources/{key}{suffix}", headers=AUTH)
            assert response.status_code == 422, (method, key, response.text)
            assert "path.key" in response.json()["detail"]


# --------------------------------------------------------------------------- poll


async def test_poll_fetches_now_and_updates_status(
    local_api: Admin, feed_server: FeedServer
) -> None:
    feed_server.serve("/news.xml", rss("First", "Second", "Third"))
    http = local_api.http
    added = await http.post(
        "/api/sources", headers=AUTH, json={"url": feed_server.url("/news.xml"), "key": "news"}
    )
    assert added.status_code == 201

    polled = await http.post("/api/sources/news/poll", headers=AUTH)
    assert polled.status_code == 200, polled.text
    report = polled.json()
    assert report["key"] == "news"
    assert report["status"] == "ok"
    assert (report["new"], report["updated"], report["error"]) == (3, 0, None)
    assert report["elapsed_seconds"] >= 0
    assert feed_server.statuses("/news.xml") == [200]

    source = (await http.get("/api/sources/news", headers=AUTH)).json()
    assert source["status"] == "ok"
    assert source["last_error"] is None
    assert datetime.fromisoformat(source["last_fetched_at"]) == NOW
    assert datetime.fromisoformat(source["next_check_at"]) > NOW
    stats = (await http.get("/api/stats", headers=AUTH)).json()
    assert stats["items"] == 3
    assert stats["sources"] == 1
    assert stats["sources_status_ok"] == 1
    assert local_api.repo.get_snapshot("all", "rss") is not None  # editions re-rendered

    again = (await http.post("/api/sources/news/poll", headers=AUTH)).json()
    assert again["status"] == "not_modified"  # conditional GET with the stored validators
    assert feed_server.statuses("/news.xml") == [200, 304]


async def test_poll_records_a_failing_source(local_api: Admin, feed_server: FeedServer) -> None:
    feed_server.handle("/gone.xml", status(404))
    await local_api.http.post(
        "/api/sources", headers=AUTH, json={"url": feed_server.url("/gone.xml"), "key": "gone"}
    )
    report = (await local_api.http.post("/api/sources/gone/poll", headers=AUTH)).json()
    assert report["status"] == "error"
    assert "404" in report["error"]
    source = (await local_api.http.get("/api/sources/gone", headers=AUTH)).json()
    assert source["status"] == "error"
    assert "404" in source["last_error"]
    assert source["error_count"] == 1


async def test_poll_of_a_paused_source_keeps_it_paused(
    local_api: Admin, feed_server: FeedServer
) -> None:
    feed_server.serve("/news.xml", rss("Only"))
    await local_api.http.post(
        "/api/sources",
        headers=AUTH,
        json={"url": feed_server.url("/news.xml"), "key": "news", "enabled": False},
    )
    report = (await local_api.http.post("/api/sources/news/poll", headers=AUTH)).json()
    assert (report["status"], report["new"]) == ("ok", 1)
    assert (await local_api.http.get("/api/sources/news", headers=AUTH)).json()["enabled"] is False


async def test_poll_unknown_is_404_and_leased_is_409(
    local_api: Admin, feed_server: FeedServer
) -> None:
    missing = await local_api.http.post("/api/sources/nope/poll", headers=AUTH)
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]

    feed_server.serve("/news.xml", rss("One"))
    await local_api.http.post(
        "/api/sources", headers=AUTH, json={"url": feed_server.url("/news.xml"), "key": "news"}
    )
    # the scheduler (another owner) holds the lease: a manual poll must not run alongside it
    assert local_api.repo.claim_source("news", NOW, local_api.pipeline.owner, 300) is not None
    busy = await local_api.http.post("/api/sources/news/poll", headers=AUTH)
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "30"
    assert "being polled" in busy.json()["detail"]
    assert feed_server.log == []
    local_api.clock.advance(301)  # the lease expired
    assert (await local_api.http.post("/api/sources/news/poll", headers=AUTH)).status_code == 200


# --------------------------------------------------------------------------- editions, stats


async def test_editions_come_from_the_settings(api: Admin) -> None:
    editions = (await api.http.get("/api/editions", headers=AUTH)).json()
    assert editions == [
        {
            "name": "all",
            "title": "Everything",
            "description": "All the news",
            "html_url": "https://news.example.org/editions/all",
            "feeds": {
                "rss": "https://news.example.org/feeds/all.rss",
                "atom": "https://news.example.org/feeds/all.atom",
                "json": "https://news.example.org/feeds/all.json",
            },
        },
        {
            "name": "tech",
            "title": "Tech",
            "description": "",
            "html_url": "https://news.example.org/editions/tech",
            "feeds": {
                "rss": "https://news.example.org/feeds/tech.rss",
                "atom": "https://news.example.org/feeds/tech.atom",
                "json": "https://news.example.org/feeds/tech.json",
            },
        },
    ]


async def test_stats_on_an_empty_database(api: Admin) -> None:
    stats = (await api.http.get("/api/stats", headers=AUTH)).json()
    assert stats == {
        "sources": 0,
        "sources_enabled": 0,
        "items": 0,
        "stories": 0,
        "tombstones": 0,
    }


# --------------------------------------------------------------------------- storage trouble


@pytest.fixture
def broken_app(tmp_path: Path) -> Iterator[httpx.AsyncClient]:
    """The admin API over a database that was never migrated: every query fails."""
    settings = make_settings(f"sqlite:///{tmp_path / 'empty.db'}")
    engine = make_engine(settings.database_url)
    repo = Repository(engine)
    backend = DaemonAdmin(repo, None, FixedClock(NOW))  # type: ignore[arg-type]  # no polls here
    app = create_app(settings, repo, admin=backend)
    try:
        yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a.test")
    finally:
        engine.dispose()


async def test_storage_failures_are_503_with_retry_after(broken_app: httpx.AsyncClient) -> None:
    async with broken_app as http:
        for method, path, body in [
            ("GET", "/api/sources", None),
            ("GET", "/api/sources/x", None),
            ("POST", "/api/sources", {"url": "http://93.184.215.14/", "key": "x"}),
            ("DELETE", "/api/sources/x", None),
            ("POST", "/api/sources/x/pause", None),
            ("POST", "/api/sources/x/poll", None),
            ("GET", "/api/stats", None),
        ]:
            response = await http.request(method, path, headers=AUTH, json=body)
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["retry-after"] == "30"
            assert response.json() == {"detail": "storage is unavailable; try again shortly"}
