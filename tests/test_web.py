"""Tests for the web server: feed serving, caching headers, HTML view, health and metrics.

The store is a small in-memory fake satisfying ``SnapshotSource``; most tests use FastAPI's
TestClient, one runs the app under a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient  # its httpx deprecation warning: see pyproject

from aggregator.clock import FixedClock
from aggregator.errors import StorageError
from aggregator.metrics import build_metrics
from aggregator.model import Snapshot
from aggregator.settings import EditionConfig, ServerSettings, Settings
from aggregator.web import (
    FEED_CONTENT_TYPES,
    cards_from_json_feed,
    create_app,
    etag_matches,
    html_to_text,
    not_modified_since,
    quote_etag,
    time_ago,
    truncate,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GENERATED = datetime(2026, 11, 28, 11, 58, 30, 250000, tzinfo=UTC)
IDENTITY = {"Accept-Encoding": "identity"}


class FakeStore:
    """An in-memory SnapshotSource: a dict of snapshots and a switch to make the DB 'down'."""

    def __init__(self) -> None:
        self.snapshots: dict[tuple[str, str], Snapshot] = {}
        self.down = False

    def put(self, snapshot: Snapshot) -> None:
        self.snapshots[(snapshot.edition, snapshot.format)] = snapshot

    def get_snapshot(self, edition: str, fmt: str) -> Snapshot | None:
        if self.down:
            raise StorageError("database is unreachable")
        return self.snapshots.get((edition, fmt))

    def ping(self) -> None:
        if self.down:
            raise StorageError("database is unreachable")


def _rss_body() -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>https://example.com/{n}</link>"
        f"<guid>urn:story:{n}</guid></item>"
        for n in range(40)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Tech</title>'
        f"{items}</channel></rss>"
    ).encode()


def _json_body() -> bytes:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Tech",
        "items": [
            {
                "id": "story-1",
                "url": "https://www.ithome.com/0/800/001.htm",
                "title": "<script>alert('x')</script> 华为发布新手机",
                "content_html": "<p>华为今天发布了<b>新手机</b>。</p><script>evil()</script>",
                "date_published": "2026-11-28T11:55:00Z",
                "_aggregator": {
                    "publisher": "IT之家",
                    "collected_at": "2026-11-28T11:56:00Z",
                    "sources": [
                        {
                            "publisher": "IT之家",
                            "url": "https://www.ithome.com/0/800/001.htm",
                            "title": "华为发布新手机",
                            "published": "2026-11-28T11:55:00Z",
                        },
                        {
                            "publisher": "The Verge",
                            "url": "https://www.theverge.com/huawei-phone",
                            "title": "Huawei launches a new phone",
                            "published": "2026-11-28T11:40:00Z",
                        },
                        {
                            "publisher": "Sneaky",
                            "url": "javascript:alert(1)",
                            "title": "bad link",
                            "published": None,
                        },
                    ],
                },
            },
            {
                "id": "story-2",
                "url": "https://example.org/solo",
                "title": "A single-source story",
                "summary": "Plain summary " * 40,
                "date_published": "2026-11-26T09:00:00Z",
                "_aggregator": {"publisher": "Example", "sources": []},
            },
        ],
    }
    return json.dumps(feed, ensure_ascii=False).encode()


def _snapshot(edition: str, fmt: str, body: bytes, etag: str) -> Snapshot:
    return Snapshot(
        edition=edition,
        format=fmt,
        body=body,
        etag=etag,
        content_type=FEED_CONTENT_TYPES[fmt],
        generated_at=GENERATED,
    )


@pytest.fixture
def settings() -> Settings:
    return Settings(
        config_path="test.toml",
        server=ServerSettings(base_url="http://feeds.test/", cache_max_age=120),
        editions=(
            EditionConfig(name="tech", title="Tech & Gadgets", description="Phones, chips"),
            EditionConfig(name="world", title="World", description="Everything else"),
        ),
    )


@pytest.fixture
def store() -> FakeStore:
    fake = FakeStore()
    fake.put(_snapshot("tech", "rss", _rss_body(), '"rss-v1"'))
    fake.put(_snapshot("tech", "atom", b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "atom-v1"))
    fake.put(_snapshot("tech", "json", _json_body(), '"json-v1"'))
    return fake


@pytest.fixture
def client(settings: Settings, store: FakeStore) -> Iterator[TestClient]:
    app = create_app(settings, store, clock=FixedClock(NOW))
    with TestClient(app) as test_client:
        yield test_client


# --------------------------------------------------------------------------- feeds


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_feed_served_with_type_and_cache_headers(client: TestClient, fmt: str) -> None:
    response = client.get(f"/feeds/tech.{fmt}", headers=IDENTITY)
    assert response.status_code == 200
    assert response.headers["content-type"] == FEED_CONTENT_TYPES[fmt]
    assert response.headers["cache-control"] == "public, max-age=120"
    assert response.headers["last-modified"] == "Sat, 28 Nov 2026 11:58:30 GMT"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == f'"{fmt}-v1"'  # unquoted snapshot etag gets quoted
    assert "content-encoding" not in response.headers


def test_body_is_the_snapshot_bytes(client: TestClient, store: FakeStore) -> None:
    response = client.get("/feeds/tech.rss", headers=IDENTITY)
    assert response.content == store.snapshots[("tech", "rss")].body


@pytest.mark.parametrize(
    "header",
    ['"rss-v1"', 'W/"rss-v1"', '"other", "rss-v1"', '"a,b", W/"rss-v1"', "*"],
)
def test_if_none_match_gives_304(client: TestClient, header: str) -> None:
    response = client.get("/feeds/tech.rss", headers={**IDENTITY, "If-None-Match": header})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"rss-v1"'
    assert response.headers["cache-control"] == "public, max-age=120"


def test_if_none_match_mismatch_gives_200(client: TestClient) -> None:
    response = client.get("/feeds/tech.rss", headers={**IDENTITY, "If-None-Match": '"rss-v0"'})
    assert response.status_code == 200
    assert response.content.startswith(b"<?xml")


def test_if_modified_since(client: TestClient) -> None:
    at = "Sat, 28 Nov 2026 11:58:30 GMT"
    same = client.get("/feeds/tech.rss", headers={**IDENTITY, "If-Modified-Since": at})
    assert same.status_code == 304
    before = "Sat, 28 Nov 2026 11:58:29 GMT"
    older = client.get("/feeds/tech.rss", headers={**IDENTITY, "If-Modified-Since": before})
    assert older.status_code == 200
    garbage = client.get("/feeds/tech.rss", headers={**IDENTITY, "If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200


def test_if_none_match_takes_precedence_over_if_modified_since(client: TestClient) -> None:
    response = client.get(
        "/feeds/tech.rss",
        headers={
            **IDENTITY,
            "If-None-Match": '"stale"',
            "If-Modified-Since": "Sat, 28 Nov 2026 12:30:00 GMT",
        },
    )
    assert response.status_code == 200


def test_gzip_with_weak_etag_and_single_vary(client: TestClient, store: FakeStore) -> None:
    response = client.get("/feeds/tech.rss", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == 'W/"rss-v1"'
    assert response.content == store.snapshots[("tech", "rss")].body  # httpx decoded it
    assert int(response.headers["content-length"]) < len(response.content)
    again = client.get(
        "/feeds/tech.rss", headers={"Accept-Encoding": "gzip", "If-None-Match": 'W/"rss-v1"'}
    )
    assert again.status_code == 304
    assert again.headers["etag"] == 'W/"rss-v1"'


def test_small_feed_is_not_compressed(client: TestClient) -> None:
    response = client.get("/feeds/tech.atom", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.headers["etag"] == '"atom-v1"'


def test_head_has_headers_but_no_body(client: TestClient, store: FakeStore) -> None:
    response = client.head("/feeds/tech.rss", headers=IDENTITY)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"] == '"rss-v1"'
    assert response.headers["content-length"] == str(len(store.snapshots[("tech", "rss")].body))
    assert client.head("/feeds/tech.rss", headers={"If-None-Match": "*"}).status_code == 304


@pytest.mark.parametrize("path", ["/feeds/nope.rss", "/feeds/tech.xml", "/feeds/tech"])
def test_unknown_feed_is_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404


def test_configured_edition_without_snapshot_is_503(client: TestClient) -> None:
    response = client.get("/feeds/world.atom")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert "not been generated" in response.text


def test_storage_failure_on_feed_is_503(client: TestClient, store: FakeStore) -> None:
    store.down = True
    response = client.get("/feeds/tech.rss")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"


# --------------------------------------------------------------------------- health, metrics


def test_healthz_does_not_touch_the_store(client: TestClient, store: FakeStore) -> None:
    store.down = True
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_fails_when_ping_raises(client: TestClient, store: FakeStore) -> None:
    store.down = True
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]


def test_readyz_names_failing_checks(settings: Settings, store: FakeStore) -> None:
    app = create_app(settings, store, readiness=lambda: {"scheduler": False, "migrations": True})
    with TestClient(app) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["scheduler"]
    assert body["checks"] == {"database": True, "scheduler": False, "migrations": True}


def test_readyz_survives_a_raising_check(settings: Settings, store: FakeStore) -> None:
    def broken() -> dict[str, bool]:
        raise StorageError("migrations table unreadable")

    app = create_app(settings, store, readiness=broken)
    with TestClient(app) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["readiness"]


def test_metrics_count_requests_by_route_template(settings: Settings, store: FakeStore) -> None:
    metrics = build_metrics()
    app = create_app(settings, store, metrics=metrics)
    assert app.state.metrics is metrics
    with TestClient(app) as test_client:
        test_client.get("/feeds/tech.rss")
        test_client.get("/feeds/tech.json")
        test_client.get("/feeds/tech.rss", headers={"If-None-Match": "*"})
        test_client.get("/feeds/nope.rss")
        test_client.get("/no/such/path")
        text = test_client.get("/metrics").text
    sample = metrics.registry.get_sample_value
    name = "aggregator_http_requests_total"
    assert sample(name, {"route": "/feeds/{edition}.{fmt}", "status": "200"}) == 2
    assert 'route="/feeds/{edition}.{fmt}",status="304"} 1.0' in text
    assert 'route="/feeds/{edition}.{fmt}",status="404"} 1.0' in text
    assert 'route="<unmatched>",status="404"} 1.0' in text
    assert "/no/such/path" not in text and "tech.rss" not in text
    assert "aggregator_fetch_seconds_bucket" in text
    assert "aggregator_fetches_total" in text or "# TYPE aggregator_fetches counter" in text


def test_two_apps_have_independent_registries(settings: Settings, store: FakeStore) -> None:
    first = create_app(settings, store)
    second = create_app(settings, store)
    with TestClient(first) as test_client:
        test_client.get("/healthz")
    assert first.state.metrics.registry is not second.state.metrics.registry
    labels = {"route": "/healthz", "status": "200"}
    name = "aggregator_http_requests_total"
    assert first.state.metrics.registry.get_sample_value(name, labels) == 1
    assert second.state.metrics.registry.get_sample_value(name, labels) is None


# --------------------------------------------------------------------------- HTML


def test_index_lists_editions_with_autodiscovery(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    head = response.text.split("</head>", 1)[0]
    alternates = re.findall(r'<link rel="alternate"[^>]*>', head)
    assert len(alternates) == 6
    assert (
        '<link rel="alternate" type="application/rss+xml" title="Tech &amp; Gadgets (RSS)" '
        'href="http://feeds.test/feeds/tech.rss">'
    ) in head
    assert 'type="application/feed+json"' in head
    assert 'href="http://feeds.test/feeds/world.json"' in head
    assert 'href="/editions/tech"' in response.text
    assert "Phones, chips" in response.text


def test_edition_page_shows_cards(client: TestClient) -> None:
    response = client.get("/editions/tech")
    assert response.status_code == 200
    html = response.text
    assert html.count('<article class="card">') == 2
    assert 'href="https://www.ithome.com/0/800/001.htm"' in html
    assert "IT之家" in html
    assert "5 minutes ago" in html and "2 days ago" in html
    assert "华为今天发布了新手机。" in html and "evil()" not in html
    assert "Also reported by" in html
    assert 'href="https://www.theverge.com/huawei-phone"' in html
    assert html.count("Also reported by") == 1  # the single-source story has none
    head = html.split("</head>", 1)[0]
    assert len(re.findall(r'<link rel="alternate"', head)) == 3


def test_edition_page_escapes_hostile_content(client: TestClient) -> None:
    html = client.get("/editions/tech").text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "javascript:" not in html
    assert "Sneaky" in html  # listed, but without a link


def test_edition_page_errors(client: TestClient) -> None:
    assert client.get("/editions/nope").status_code == 404
    missing = client.get("/editions/world")
    assert missing.status_code == 503
    assert missing.headers["retry-after"] == "30"
    assert "not been generated" in missing.text


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=-30), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=23), "23 hours ago"),
        (timedelta(days=1, hours=3), "yesterday"),
        (timedelta(days=29), "29 days ago"),
        (timedelta(days=40), "2026-10-19"),
    ],
)
def test_time_ago(delta: timedelta, expected: str) -> None:
    assert time_ago(NOW - delta, NOW) == expected


def test_etag_helpers() -> None:
    assert quote_etag("abc") == '"abc"'
    assert quote_etag('"abc"') == '"abc"'
    assert quote_etag('W/"abc"') == 'W/"abc"'
    assert etag_matches('W/"abc"', '"abc"')
    assert etag_matches("abc", '"abc"')  # sloppy unquoted client
    assert not etag_matches('"abcd", "ab"', '"abc"')
    assert not_modified_since("Sat, 28 Nov 2026 11:58:30 GMT", GENERATED)
    assert not not_modified_since("not a date", GENERATED)


def test_text_helpers() -> None:
    assert html_to_text("<p>a&amp;b</p><p>c</p><style>x{}</style>") == "a&b c"
    assert truncate("short", 10) == "short"
    assert truncate("word " * 10, 22) == "word word word word…"
    assert truncate("中" * 30, 10) == "中" * 10 + "…"


def test_cards_reject_non_object_json() -> None:
    with pytest.raises(ValueError):
        cards_from_json_feed(b"[1, 2]", NOW)
    assert cards_from_json_feed(b'{"items": [1, {"title": "t"}]}', NOW)[0].title == "t"


# --------------------------------------------------------------------------- real server


@pytest.fixture
def live_url(settings: Settings, store: FakeStore) -> Iterator[str]:
    app = create_app(settings, store, clock=FixedClock(NOW))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_real_server_gzip_head_and_304(live_url: str, store: FakeStore) -> None:
    body = store.snapshots[("tech", "rss")].body
    with httpx.Client(base_url=live_url, timeout=5) as http:
        with http.stream("GET", "/feeds/tech.rss", headers={"Accept-Encoding": "gzip"}) as raw:
            compressed = b"".join(raw.iter_raw())
            assert raw.headers["content-encoding"] == "gzip"
            etag = raw.headers["etag"]
        assert gzip.decompress(compressed) == body
        assert etag == 'W/"rss-v1"'

        head = http.head("/feeds/tech.rss", headers=IDENTITY)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(body))

        cached = http.get("/feeds/tech.rss", headers={"If-None-Match": etag})
        assert cached.status_code == 304
        assert cached.content == b""

        assert http.get("/feeds/world.rss").status_code == 503
        assert http.get("/healthz").json() == {"status": "ok"}
