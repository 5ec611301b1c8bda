"""Connect-time SSRF guard (``aggregator.netguard``): the policy, the aiohttp resolver, and the
fetcher against a real server on 127.0.0.1 whose redirects point at hosts it does not trust.

``localhost`` resolves to 127.0.0.1 from /etc/hosts, so a redirect to it goes through a real
name lookup (and the guarded resolver) without leaving the machine.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from aggregator.app import open_pipeline
from aggregator.config import load_settings
from aggregator.fetch import Fetcher, classify_exception
from aggregator.model import Fetched, FetchFailed
from aggregator.netguard import DestinationPolicy, DestinationRefused, GuardedResolver
from aggregator.ssrf import ALLOW_SETTING
from tests.servers import FeedServer, redirect, running_server
from tests.test_fetch import SETTINGS  # the fetcher tests' short timeouts and caps

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>t</title><item><guid>1</guid><title>x</title></item>
</channel></rss>"""

feed_server = pytest.fixture(running_server, name="feed_server", scope="module")


@pytest.fixture
def server(feed_server: FeedServer) -> Iterator[FeedServer]:
    yield feed_server
    feed_server.clear_log()


@pytest.fixture(params=["aiohttp", "httpx"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _localhost_resolves() -> bool:
    try:
        return any(i[4][0] == "127.0.0.1" for i in socket.getaddrinfo("localhost", None))
    except OSError:
        return False


needs_localhost = pytest.mark.skipif(
    not _localhost_resolves(), reason="'localhost' does not resolve to 127.0.0.1 here"
)


# --------------------------------------------------------------------------- the policy


def test_policy_trusts_config_hosts_and_refuses_internal_addresses_of_others() -> None:
    policy = DestinationPolicy.for_urls(["http://Intranet.Example/feed", "http://10.1.2.3/rss"])
    assert policy.trusts("intranet.example") and policy.trusts("10.1.2.3")
    assert policy.problem("intranet.example", "10.0.0.7") is None  # the operator chose it
    assert policy.problem("news.example", "93.184.216.34") is None  # public
    problem = policy.problem("news.example", "169.254.169.254")
    assert problem is not None
    assert "news.example resolves to 169.254.169.254" in problem and "link-local" in problem
    assert ALLOW_SETTING in problem
    mapped = policy.problem("evil.example", "::ffff:127.0.0.1")
    assert mapped is not None and "loopback" in mapped
    assert policy.literal_problem("news.example") is None  # names go to the resolver
    literal = policy.literal_problem("127.0.0.1")
    assert literal is not None and "127.0.0.1 is a loopback address" in literal


def test_allowed_networks_permit_internal_addresses() -> None:
    policy = DestinationPolicy.for_urls([], ["10.1.0.0/16"])
    assert policy.problem("wiki.corp", "10.1.4.5") is None
    assert policy.problem("wiki.corp", "10.2.4.5") is not None


def test_keep_refuses_only_when_no_address_is_usable() -> None:
    policy = DestinationPolicy()
    assert policy.keep("dual.example", ["127.0.0.1", "93.184.216.34"]) == [1]
    with pytest.raises(DestinationRefused, match=r"dual\.example resolves to 127\.0\.0\.1"):
        policy.keep("dual.example", ["127.0.0.1", "10.0.0.1"])


class _Fixed(AbstractResolver):
    """A resolver answering every name with the given addresses (no lookup)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_guarded_resolver_drops_refused_addresses() -> None:
    policy = DestinationPolicy.for_urls(["http://intranet.example/"])
    rebinding = GuardedResolver(policy, _Fixed(["93.184.216.34", "127.0.0.1"]))
    kept = await rebinding.resolve("news.example", 80)
    assert [r["host"] for r in kept] == ["93.184.216.34"]
    internal = GuardedResolver(policy, _Fixed(["127.0.0.1"]))
    with pytest.raises(DestinationRefused, match=r"news\.example resolves to 127\.0\.0\.1"):
        await internal.resolve("news.example", 80)
    assert [r["host"] for r in await internal.resolve("intranet.example", 80)] == ["127.0.0.1"]
    await internal.close()


def test_a_refusal_is_classified_as_forbidden_address_whatever_wraps_it() -> None:
    refused = DestinationRefused("refused to connect: x resolves to 127.0.0.1")
    try:
        try:
            raise refused
        except OSError as exc:
            raise ConnectionError("cannot connect") from exc
    except ConnectionError as wrapped:
        assert classify_exception(wrapped) == ("forbidden_address", str(refused))


# --------------------------------------------------------------------------- the fetcher


async def _fetch(backend: str, policy: DestinationPolicy | None, *urls: str) -> list[object]:
    """Fetch ``urls`` in turn with one fetcher guarded by ``policy``."""
    async with Fetcher(SETTINGS, backend=backend, policy=policy) as fetcher:  # type: ignore[arg-type]
        return [await fetcher.fetch(url) for url in urls]


def _redirect_via(server: FeedServer, name: str, host: str, code: int = 302) -> str:
    """Serve the feed at ``/guard/NAME-final`` and, at ``/guard/NAME-start``, a redirect to it
    spelled with ``host``; returns the start URL (on 127.0.0.1)."""
    server.serve(f"/guard/{name}-final", RSS)
    final = server.url(f"/guard/{name}-final", host=host)
    server.handle(f"/guard/{name}-start", redirect(final, code))
    return server.url(f"/guard/{name}-start")


@needs_localhost
async def test_redirect_to_an_untrusted_name_of_an_internal_address_is_refused(
    server: FeedServer, backend: str
) -> None:
    start = _redirect_via(server, "name", "localhost")
    policy = DestinationPolicy.for_urls([server.url("/")])  # trusts 127.0.0.1 only
    result, trusted = await _fetch(backend, policy, start, server.url("/guard/name-final"))
    assert isinstance(result, FetchFailed), result
    assert result.error_class == "forbidden_address"
    assert "localhost resolves to 127.0.0.1" in result.message and ALLOW_SETTING in result.message
    assert server.statuses("/guard/name-final") == [200]  # only the trusted fetch got there
    assert isinstance(trusted, Fetched)


async def test_redirect_to_an_untrusted_literal_address_is_refused_before_connecting(
    server: FeedServer, backend: str
) -> None:
    start = _redirect_via(server, "literal", "127.0.0.2", 301)
    policy = DestinationPolicy.for_urls([server.url("/")])
    (result,) = await _fetch(backend, policy, start)
    assert isinstance(result, FetchFailed), result
    assert result.error_class == "forbidden_address"
    assert "127.0.0.2 is a loopback address" in result.message
    assert server.statuses("/guard/literal-final") == []


@needs_localhost
async def test_allowed_networks_and_no_policy_let_the_redirect_through(
    server: FeedServer, backend: str
) -> None:
    start = _redirect_via(server, "ok", "localhost")
    allowed = DestinationPolicy.for_urls([server.url("/")], ["127.0.0.0/8"])
    for policy in (allowed, None):
        (result,) = await _fetch(backend, policy, start)
        assert isinstance(result, Fetched), result


@needs_localhost
async def test_the_daemons_pipeline_refuses_a_redirect_off_its_configured_hosts(
    server: FeedServer, tmp_path: Path
) -> None:
    """open_pipeline builds the policy from the config: its sources' hosts are trusted, a
    redirect elsewhere inside the network fails that source only, with a clear error."""
    server.serve("/guard/p-good", RSS)
    bad = _redirect_via(server, "p", "localhost")
    lines = [
        f'database_url = "sqlite:///{tmp_path / "db.sqlite"}"',
        "[fetch]",
        "per_host_delay = 0.0",
    ]
    for key, url in (("good", server.url("/guard/p-good")), ("bad", bad)):
        lines += ["[[sources]]", f'key = "{key}"', f'url = "{url}"']
    lines += ["[[editions]]", 'name = "all"', 'title = "All"']
    config = tmp_path / "agg.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(str(config), env={})
    async with open_pipeline(settings, workers=0) as pipeline:
        report = await pipeline.poll_all()
    by_key = {r.key: r for r in report.sources}
    assert by_key["good"].status == "ok" and by_key["good"].new == 1
    assert by_key["bad"].status == "error", by_key["bad"]
    assert (
        by_key["bad"].error is not None and "localhost resolves to 127.0.0.1" in by_key["bad"].error
    )
    assert server.statuses("/guard/p-final") == []
