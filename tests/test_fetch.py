"""Fetcher against a real HTTP server on 127.0.0.1 (tests/servers.py), on both backends."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from aggregator.fetch import Fetcher, classify_exception
from aggregator.model import Fetched, FetchFailed, NotModified
from aggregator.settings import FetchSettings
from tests.servers import (
    Exchange,
    FeedServer,
    chunks,
    delayed,
    endless_body,
    gzip_bomb,
    redirect,
    reset_mid_body,
    retry_after,
    running_server,
    slow_drip,
    status,
)

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>IT news</title>
<item><guid>1</guid><title>First</title></item>
</channel></rss>"""

SETTINGS = FetchSettings(
    user_agent="aggregator-test/1 (+https://example.invalid/bot)",
    connect_timeout=2.0,
    read_timeout=2.0,
    total_timeout=3.0,
    max_body_bytes=256 * 1024,
    max_redirects=5,
    concurrency=16,
    per_host_concurrency=4,
    per_host_delay=0.0,
)

feed_server = pytest.fixture(running_server, name="feed_server", scope="module")


@pytest.fixture(params=["aiohttp", "httpx"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(feed_server: FeedServer) -> Iterator[FeedServer]:
    yield feed_server
    assert feed_server.errors == []


def _path(request: pytest.FixtureRequest, suffix: str = "") -> str:
    """A path unique to this test (the server is shared by the module)."""
    return "/" + request.node.name.replace("[", "-").replace("]", "") + suffix


async def _fetch(backend: str, url: str, settings: FetchSettings = SETTINGS, **kw: str) -> object:
    async with Fetcher(settings, backend=backend) as fetcher:  # type: ignore[arg-type]
        return await fetcher.fetch(url, **kw)


def _failed(result: object, error_class: str) -> FetchFailed:
    assert isinstance(result, FetchFailed), result
    assert result.error_class == error_class, result
    assert result.message
    return result


# --------------------------------------------------------------------------- the happy path


async def test_200_then_304_with_validators(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.serve(path, RSS)
    async with Fetcher(SETTINGS, backend=backend) as fetcher:  # type: ignore[arg-type]
        first = await fetcher.fetch(server.url(path))
        assert isinstance(first, Fetched)
        assert first.body == RSS
        assert first.status_code == 200
        assert first.etag and first.last_modified
        assert first.permanent_url is None
        assert first.url == server.url(path)
        assert all(name == name.lower() for name in first.headers)
        assert first.headers["content-type"].startswith("application/rss+xml")

        second = await fetcher.fetch(
            server.url(path), etag=first.etag, last_modified=first.last_modified
        )
        assert isinstance(second, NotModified)
        assert second.headers["etag"] == first.etag

        only_date = await fetcher.fetch(server.url(path), last_modified=first.last_modified)
        assert isinstance(only_date, NotModified)

    logged = server.requests(path)
    assert [r.status for r in logged] == [200, 304, 304]
    assert "if-none-match" not in logged[0].headers
    assert logged[1].headers["if-none-match"] == first.etag
    assert logged[1].headers["if-modified-since"] == first.last_modified
    assert logged[0].headers["user-agent"] == SETTINGS.user_agent
    assert "gzip" in logged[0].headers["accept-encoding"]
    assert "rss+xml" in logged[0].headers["accept"]


async def test_feed_that_changes_between_polls(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.serve(path, RSS)
    async with Fetcher(SETTINGS, backend=backend) as fetcher:  # type: ignore[arg-type]
        first = await fetcher.fetch(server.url(path))
        assert isinstance(first, Fetched)
        newer = RSS.replace(b"</channel>", b"<item><guid>2</guid></item></channel>")
        server.set(path, newer)
        second = await fetcher.fetch(
            server.url(path), etag=first.etag, last_modified=first.last_modified
        )
        assert isinstance(second, Fetched)
        assert second.body == newer
        assert second.etag != first.etag
    assert server.statuses(path) == [200, 200]


async def test_gzip_is_requested_and_decoded(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    body = RSS * 200  # compressible
    server.serve(path, body)
    result = await _fetch(backend, server.url(path))
    assert isinstance(result, Fetched)
    assert result.body == body
    assert result.headers["content-encoding"] == "gzip"
    assert int(result.headers["content-length"]) < len(body) // 10


async def test_multi_member_gzip_and_both_deflate_flavours(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    two_members = gzip.compress(b"<rss>one ") + gzip.compress(b"two</rss>")
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw.compress(RSS) + raw.flush()
    cases = {
        "gzip": (two_members, b"<rss>one two</rss>"),
        "deflate": (zlib.compress(RSS), RSS),
        "rawdeflate": (raw_deflate, RSS),
    }
    for name, (encoded, expected) in cases.items():
        coding = "gzip" if name == "gzip" else "deflate"
        path = _path(request, name)
        server.serve(path, encoded, headers={"Content-Encoding": coding}, gzip=False)
        result = await _fetch(backend, server.url(path))
        assert isinstance(result, Fetched), (name, result)
        assert result.body == expected, name


async def test_corrupt_or_unknown_encoding_is_decode_error(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.serve(path, b"this is not gzip", headers={"Content-Encoding": "gzip"}, gzip=False)
    _failed(await _fetch(backend, server.url(path)), "decode")
    server.serve(path + "z", b"zzz", headers={"Content-Encoding": "compress"}, gzip=False)
    _failed(await _fetch(backend, server.url(path + "z")), "decode")


async def test_chunked_body_is_read_completely(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.handle(path, chunks([b"<rss>", b"<channel/>" * 50, b"</rss>"], delay=0.01))
    result = await _fetch(backend, server.url(path))
    assert isinstance(result, Fetched)
    assert result.body == b"<rss>" + b"<channel/>" * 50 + b"</rss>"


async def test_empty_body_fails(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.serve(path, b"")
    failed = _failed(await _fetch(backend, server.url(path)), "empty")
    assert failed.status_code == 200
    server.handle(path + "204", status(204))
    _failed(await _fetch(backend, server.url(path + "204")), "empty")


# --------------------------------------------------------------------------- size caps


async def test_declared_content_length_over_cap_is_refused_early(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.serve(path, b"x" * (SETTINGS.max_body_bytes + 1), gzip=False)
    failed = _failed(await _fetch(backend, server.url(path)), "too_large")
    assert "Content-Length" in failed.message


async def test_endless_body_stops_at_cap(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    for chunked in (True, False):
        path = _path(request, str(chunked))
        server.handle(path, endless_body(chunked=chunked))
        started = time.monotonic()
        failed = _failed(await _fetch(backend, server.url(path)), "too_large")
        assert "limit" in failed.message
        assert time.monotonic() - started < 2.0


async def test_gzip_bomb_stops_at_cap_with_bounded_memory(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.handle(path, gzip_bomb(64 * 1024 * 1024))  # 64 KiB on the wire, 64 MiB inflated
    settings = replace(SETTINGS, max_body_bytes=1024 * 1024)
    async with Fetcher(settings, backend=backend) as fetcher:  # type: ignore[arg-type]
        await fetcher.fetch(server.url("/warm-up-does-not-exist"))
        tracemalloc.start()
        try:
            result = await fetcher.fetch(server.url(path))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    _failed(result, "too_large")
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"


async def test_gzip_within_cap_is_accepted(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.handle(path, gzip_bomb(1024 * 1024, checksum=True))
    settings = replace(SETTINGS, max_body_bytes=1024 * 1024)
    result = await _fetch(backend, server.url(path), settings)
    assert isinstance(result, Fetched)
    assert result.body == b"\0" * 1024 * 1024


# --------------------------------------------------------------------------- redirects


async def test_permanent_redirect_chain_sets_permanent_url(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    a, b, final = _path(request, "a"), _path(request, "b"), _path(request, "final")
    server.handle(a, redirect(server.url(b), 301))
    server.handle(b, redirect(final, 308))  # relative Location
    server.serve(final, RSS)
    result = await _fetch(backend, server.url(a))
    assert isinstance(result, Fetched)
    assert result.body == RSS
    assert result.url == server.url(final)
    assert result.permanent_url == server.url(final)


async def test_temporary_hop_means_no_permanent_url(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    a, b, final = _path(request, "a"), _path(request, "b"), _path(request, "final")
    server.handle(a, redirect(b, 301))
    server.handle(b, redirect(final, 302))
    server.serve(final, RSS)
    result = await _fetch(backend, server.url(a), etag='"old"')
    assert isinstance(result, Fetched)
    assert result.url == server.url(final)
    assert result.permanent_url is None
    assert server.requests(final)[0].headers["if-none-match"] == '"old"'


async def test_redirect_to_other_host_spelling_is_followed(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    a, final = _path(request, "a"), _path(request, "final")
    server.handle(a, redirect(server.url(final, host="localhost"), 307))
    server.serve(final, RSS)
    result = await _fetch(backend, server.url(a))
    assert isinstance(result, Fetched)
    assert result.url == server.url(final, host="localhost")


async def test_redirect_loop_is_detected(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    a, b = _path(request, "a"), _path(request, "b")
    server.handle(a, redirect(b, 302))
    server.handle(b, redirect(a, 301))
    _failed(await _fetch(backend, server.url(a)), "redirect_loop")
    assert len(server.requests(a)) == 1
    assert len(server.requests(b)) == 1


async def test_too_many_redirects(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    hops = [_path(request, str(i)) for i in range(8)]
    for here, there in itertools.pairwise(hops):
        server.handle(here, redirect(there, 301))
    server.serve(hops[-1], RSS)
    _failed(await _fetch(backend, server.url(hops[0])), "too_many_redirects")
    # exactly max_redirects hops is still fine
    ok = await _fetch(backend, server.url(hops[-1 - SETTINGS.max_redirects]))
    assert isinstance(ok, Fetched)
    assert ok.permanent_url == server.url(hops[-1])


async def test_bad_redirects(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.handle(path + "nowhere", status(302))
    _failed(await _fetch(backend, server.url(path + "nowhere")), "protocol")
    server.handle(path + "ftp", redirect("ftp://127.0.0.1/feed", 301))
    _failed(await _fetch(backend, server.url(path + "ftp")), "unsupported_scheme")


# --------------------------------------------------------------------------- misbehaviour


async def test_slow_drip_stops_at_total_timeout_and_frees_the_slot(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path, good = _path(request), _path(request, "good")
    server.handle(path, slow_drip(total_bytes=100_000, interval=0.05))
    server.serve(good, RSS)
    settings = replace(SETTINGS, total_timeout=0.6, per_host_concurrency=1)
    async with Fetcher(settings, backend=backend) as fetcher:  # type: ignore[arg-type]
        started = time.monotonic()
        failed = _failed(await fetcher.fetch(server.url(path)), "timeout")
        took = time.monotonic() - started
        assert 0.55 <= took < 1.2, took
        assert "0.6" in failed.message
        assert isinstance(await fetcher.fetch(server.url(good)), Fetched)


async def test_read_timeout_on_a_silent_server(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.handle(path, delayed(1.0, status(200, body=b"late")))
    settings = replace(SETTINGS, read_timeout=0.3, total_timeout=5.0)
    started = time.monotonic()
    _failed(await _fetch(backend, server.url(path), settings), "timeout")
    assert time.monotonic() - started < 0.9


async def test_reset_mid_body(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.handle(path, reset_mid_body())
    _failed(await _fetch(backend, server.url(path)), "reset")


async def test_connection_refused(backend: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # the port is closed now: nothing listens there
    failed = _failed(await _fetch(backend, f"http://127.0.0.1:{port}/feed"), "connect")
    assert "refused" in failed.message.lower() or "connect" in failed.message.lower()


async def test_garbage_response_is_protocol_error(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)

    def garbage(ex: Exchange) -> None:
        ex.close_connection()
        ex.write(b"SPDY/9 banana\r\n\r\n")

    server.handle(path, garbage)
    result = await _fetch(backend, server.url(path))
    assert isinstance(result, FetchFailed)
    assert result.error_class in ("protocol", "reset")


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(404, "http_404"), (410, "http_410"), (500, "http_500"), (403, "http_403")],
)
async def test_http_errors(
    server: FeedServer,
    backend: str,
    request: pytest.FixtureRequest,
    code: int,
    error_class: str,
) -> None:
    path = _path(request)
    server.handle(path, status(code, body=b"nope"))
    failed = _failed(await _fetch(backend, server.url(path)), error_class)
    assert failed.status_code == code
    assert failed.retry_after_seconds is None
    assert str(code) in failed.message


async def test_429_retry_after_seconds_holds_that_host_only(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path, good = _path(request), _path(request, "good")
    server.handle(path, retry_after(429, "1"))
    server.serve(good, RSS)
    async with Fetcher(SETTINGS, backend=backend) as fetcher:  # type: ignore[arg-type]
        failed = _failed(await fetcher.fetch(server.url(path)), "http_429")
        assert failed.retry_after_seconds == 1.0
        assert failed.headers["retry-after"] == "1"
        assert fetcher.limiter.held_for("127.0.0.1") > 0.8
        started = time.monotonic()
        other, same = await asyncio.gather(
            fetcher.fetch(server.url(good, host="localhost")),
            fetcher.fetch(server.url(good)),
        )
        # the other host is fetched at once; the held one is deferred, not waited for
        assert isinstance(other, Fetched)
        deferred = _failed(same, "deferred")
        assert deferred.retry_after_seconds is not None and 0 < deferred.retry_after_seconds <= 1
        assert time.monotonic() - started < 0.5
        await asyncio.sleep(1.05)
        assert isinstance(await fetcher.fetch(server.url(good)), Fetched)
    hosts = [r.headers["host"].split(":")[0] for r in server.requests(good)]
    assert hosts.count("localhost") == 1 and hosts.count("127.0.0.1") == 1


async def test_503_retry_after_http_date(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    server.handle(path, retry_after(503, when))
    failed = _failed(await _fetch(backend, server.url(path)), "http_503")
    assert failed.retry_after_seconds is not None
    assert 100 <= failed.retry_after_seconds <= 121


async def test_invalid_urls_fail_without_network(backend: str) -> None:
    _failed(await _fetch(backend, "ftp://127.0.0.1/feed"), "unsupported_scheme")
    _failed(await _fetch(backend, "file:///etc/passwd"), "unsupported_scheme")
    _failed(await _fetch(backend, "http://"), "invalid_url")
    _failed(await _fetch(backend, "http://exa mple.com:99999999/"), "invalid_url")


# --------------------------------------------------------------------------- concurrency


async def test_global_concurrency_bound(backend: str) -> None:
    settings = replace(SETTINGS, concurrency=3, per_host_concurrency=10)
    with FeedServer() as server:
        for i in range(12):
            server.handle(f"/slow{i}", delayed(0.1, status(200, body=RSS)))
        async with Fetcher(settings, backend=backend) as fetcher:  # type: ignore[arg-type]
            results = await asyncio.gather(
                *(fetcher.fetch(server.url(f"/slow{i}")) for i in range(12))
            )
        assert all(isinstance(r, Fetched) for r in results)
        assert server.peak_concurrency == 3
        assert server.errors == []


async def test_per_host_politeness(backend: str) -> None:
    settings = replace(SETTINGS, concurrency=10, per_host_concurrency=1, per_host_delay=0.1)
    with FeedServer() as server:
        for i in range(4):
            server.handle(f"/p{i}", delayed(0.02, status(200, body=RSS)))
        async with Fetcher(settings, backend=backend) as fetcher:  # type: ignore[arg-type]
            results = await asyncio.gather(
                *(
                    fetcher.fetch(server.url(f"/p{i}", host=host))
                    for i in range(4)
                    for host in ("127.0.0.1", "localhost")
                )
            )
        assert all(isinstance(r, Fetched) for r in results)
        assert server.peak_concurrency_for("127.0.0.1") == 1
        assert server.peak_concurrency_for("localhost") == 1
        assert server.peak_concurrency == 2  # the two hosts do run side by side
        for host in ("127.0.0.1", "localhost"):
            starts = sorted(r.started for r in server.log if r.headers["host"].startswith(host))
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert len(starts) == 4
            assert min(gaps) >= 0.07, gaps  # 0.1 s apart on our side; arrival jitters


async def test_a_failing_source_does_not_affect_others(
    server: FeedServer, backend: str, request: pytest.FixtureRequest
) -> None:
    bad = {
        "drip": slow_drip(interval=0.05),
        "reset": reset_mid_body(),
        "gone": status(410),
        "bomb": gzip_bomb(8 * 1024 * 1024),
        "boom": status(500),
    }
    for name, handler in bad.items():
        server.handle(_path(request, name), handler)
    goods = [_path(request, f"good{i}") for i in range(6)]
    for path in goods:
        server.serve(path, RSS)
    settings = replace(SETTINGS, total_timeout=0.5)
    async with Fetcher(settings, backend=backend) as fetcher:  # type: ignore[arg-type]
        results = await asyncio.gather(
            *(fetcher.fetch(server.url(_path(request, name))) for name in bad),
            *(fetcher.fetch(server.url(path)) for path in goods),
            fetcher.fetch("http://127.0.0.1:1/refused"),
        )
    failures = results[: len(bad)] + results[-1:]
    assert [r.error_class for r in failures if isinstance(r, FetchFailed)] == [
        "timeout",
        "reset",
        "http_410",
        "too_large",
        "http_500",
        "connect",
    ]
    assert all(isinstance(r, Fetched) and r.body == RSS for r in results[len(bad) : -1])


# --------------------------------------------------------------------------- odds and ends


async def test_injected_transport_is_used() -> None:
    def answer(req: httpx.Request) -> httpx.Response:
        assert req.headers["user-agent"] == SETTINGS.user_agent
        return httpx.Response(200, content=RSS, headers={"ETag": '"m"'})

    async with Fetcher(SETTINGS, transport=httpx.MockTransport(answer)) as fetcher:
        result = await fetcher.fetch("https://publisher.example/feed")
    assert isinstance(result, Fetched)
    assert result.etag == '"m"'
    assert result.body == RSS


async def test_unopened_fetcher_is_a_programming_error() -> None:
    fetcher = Fetcher(SETTINGS)
    with pytest.raises(RuntimeError):
        await fetcher.fetch("http://127.0.0.1/feed")


def test_classify_exception_maps_causes() -> None:
    def chained(outer: Exception, cause: BaseException) -> Exception:
        outer.__cause__ = cause
        return outer

    dns = chained(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known"))
    assert classify_exception(dns)[0] == "dns"
    tls = chained(httpx.ConnectError("x"), ssl.SSLCertVerificationError("bad cert"))
    assert classify_exception(tls)[0] == "tls"
    assert classify_exception(httpx.ConnectTimeout("slow"))[0] == "timeout"
    assert classify_exception(httpx.ReadTimeout("slow"))[0] == "timeout"
    assert classify_exception(httpx.RemoteProtocolError("peer closed connection"))[0] == "reset"
    assert classify_exception(httpx.RemoteProtocolError("illegal header"))[0] == "protocol"
    assert classify_exception(ConnectionRefusedError())[0] == "connect"
    assert classify_exception(ValueError("bug"))[0] == "internal"


# --------------------------------------------------------------------------- the test server itself


async def test_server_serves_a_directory_and_refuses_traversal(
    server: FeedServer, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "feed.xml").write_bytes(RSS)
    (tmp_path / "secret.txt").write_bytes(b"no")
    server.serve_dir("/files", tmp_path / "sub")
    async with Fetcher(SETTINGS) as fetcher:
        ok = await fetcher.fetch(server.url("/files/feed.xml"))
        assert isinstance(ok, Fetched)
        assert ok.body == RSS
        assert ok.headers["content-type"] == "application/xml"
        again = await fetcher.fetch(server.url("/files/feed.xml"), etag=ok.etag)
        assert isinstance(again, NotModified)
        escaped = await fetcher.fetch(server.url("/files/%2E%2E/secret.txt"))
        _failed(escaped, "http_404")
        _failed(await fetcher.fetch(server.url("/files/missing.xml")), "http_404")


async def test_server_route_without_validators_never_answers_304(
    server: FeedServer, request: pytest.FixtureRequest
) -> None:
    path = _path(request)
    server.serve(path, RSS, validators=False, gzip=False, headers={"X-Test": "1"})
    async with Fetcher(SETTINGS) as fetcher:
        first = await fetcher.fetch(server.url(path), etag="*")
        assert isinstance(first, Fetched)
        assert first.etag is None and first.last_modified is None
        assert first.headers["x-test"] == "1"
        assert "content-encoding" not in first.headers
    logged = server.requests(path)
    assert [r.status for r in logged] == [200]
    # ``finished`` is set by the server thread after the last byte went out, which can be
    # just after the client already holds the response: wait for it rather than race it.
    deadline = time.monotonic() + 5.0
    while logged[0].finished is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert logged[0].finished is not None and logged[0].finished >= logged[0].started
