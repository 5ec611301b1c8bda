"""Tests for the SSRF guard: address classification, allow-lists, URL checks, name resolution.

Names other than ``localhost`` never reach the system resolver here: the tests hand
``check_source_url`` a small dictionary resolver instead (the machine has no DNS anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

import pytest

from aggregator.errors import ConfigError, SourceURLRejected
from aggregator.ssrf import (
    Resolver,
    address_category,
    address_problem,
    check_source_url,
    parse_networks,
    resolve_host,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


def table(entries: dict[str, Sequence[str]]) -> Resolver:
    """A resolver answering from ``entries``; unknown names fail like getaddrinfo does."""

    def resolve(host: str) -> Sequence[str]:
        if host not in entries:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return entries[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "special-purpose (not publicly routable)"),
        ("198.18.0.1", "special-purpose (not publicly routable)"),
        ("192.0.2.10", "special-purpose (not publicly routable)"),
        ("2001:db8::1", "special-purpose (not publicly routable)"),
        ("0.1.2.3", "special-purpose (not publicly routable)"),
        (PUBLIC_V4, None),
        ("8.8.8.8", None),
        ("172.32.0.1", None),  # just outside 172.16.0.0/12
        (PUBLIC_V6, None),
    ],
)
def test_address_category(address: str, category: str | None) -> None:
    assert address_category(ip_address(address)) == category


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:a00:1::1", "10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
    ],
)
def test_ipv6_forms_of_internal_ipv4_are_refused(address: str, inner: str) -> None:
    problem = address_problem(ip_address(address))
    assert problem is not None
    assert f"IPv6 form of {inner}" in problem


def test_ipv6_forms_of_public_ipv4_follow_the_ipv4_address() -> None:
    # what DNS64 hands an IPv6-only container for an IPv4-only publisher
    assert address_problem(ip_address(f"64:ff9b::{PUBLIC_V4}")) is None
    assert address_problem(ip_address(f"::ffff:{PUBLIC_V4}")) is None


def test_allow_list_permits_exactly_its_networks() -> None:
    allowed = parse_networks(["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"])
    assert address_problem(ip_address("127.0.0.1"), allowed) is None
    assert address_problem(ip_address("10.1.200.3"), allowed) is None
    assert address_problem(ip_address("fd00::5"), allowed) is None
    assert address_problem(ip_address("::ffff:127.0.0.1"), allowed) is None  # its IPv4 form
    assert address_problem(ip_address("10.2.0.1"), allowed) == "a private address"
    assert address_problem(ip_address("::1"), allowed) == "a loopback address"  # v6 not listed
    assert address_problem(ip_address("169.254.169.254"), allowed) == "a link-local address"


def test_parse_networks_tolerates_host_bits_and_names_the_setting_on_garbage() -> None:
    assert [str(n) for n in parse_networks([" 127.0.0.1/8 ", "::1/128"])] == [
        "127.0.0.0/8",
        "::1/128",
    ]
    with pytest.raises(ConfigError, match=r"allow_networks: 'localhost' is not a network"):
        parse_networks(["localhost"])
    with pytest.raises(ConfigError, match="allow_networks"):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/feed", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("example.org/feed", "only http and https"),
        ("http:///feed", "has no host"),
        ("http://example.org:99999/", "malformed"),
        ("http://[::1/", "malformed"),
        ("http://example.org/a b", "spaces or control characters"),
        ("http://example.org/\x00", "spaces or control characters"),
        (" http://example.org/", "spaces or control characters"),
        ("http://example.org/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    resolve = table({"example.org": [PUBLIC_V4]})
    with pytest.raises(SourceURLRejected, match=message):
        check_source_url(url, (), resolve)


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://127.0.0.1/feed", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.1:8080/feed", "127.0.0.1 is a loopback address"),
        ("https://[::1]/feed", "::1 is a loopback address"),
        ("http://10.0.0.5/", "10.0.0.5 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://[::ffff:7f00:1]/", "IPv6 form of 127.0.0.1, a loopback address"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://example.org\\@127.0.0.1/", "127.0.0.1 is a loopback"),  # urlsplit and httpx agree
        ("http://user:pw@10.0.0.1/", "10.0.0.1 is a private"),
    ],
)
def test_literal_internal_addresses_are_refused_with_a_clear_message(url: str, what: str) -> None:
    with pytest.raises(SourceURLRejected) as caught:
        check_source_url(url, (), table({}))
    message = str(caught.value)
    assert what in message
    assert "SSRF" in message
    assert "[admin] allow_networks" in message


def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    resolve = table(
        {
            "news.example": [PUBLIC_V4, PUBLIC_V6],
            "sneaky.example": [PUBLIC_V4, "10.0.0.7"],  # one bad answer is enough
            "metadata.example": ["169.254.169.254"],
            "nothing.example": [],
        }
    )
    assert check_source_url("https://news.example/rss", (), resolve) == "https://news.example/rss"
    with pytest.raises(SourceURLRejected, match=r"'sneaky.example' resolves to 10.0.0.7, a priv"):
        check_source_url("https://sneaky.example/rss", (), resolve)
    with pytest.raises(SourceURLRejected, match="link-local"):
        check_source_url("http://metadata.example/", (), resolve)
    with pytest.raises(SourceURLRejected, match="does not resolve to any IP address"):
        check_source_url("http://nothing.example/", (), resolve)
    with pytest.raises(SourceURLRejected, match=r"'unknown\.example' does not resolve"):
        check_source_url("http://unknown.example/", (), resolve)


def test_allowed_networks_let_internal_sources_through() -> None:
    allowed = parse_networks(["127.0.0.0/8", "10.0.0.0/8"])
    resolve = table({"intranet.example": ["10.3.0.9"]})
    assert check_source_url("http://127.0.0.1:8080/f", allowed, resolve) == (
        "http://127.0.0.1:8080/f"
    )
    assert check_source_url("http://intranet.example/f", allowed, resolve)
    with pytest.raises(SourceURLRejected, match=r"192\.168\.0\.1 is a private"):
        check_source_url("http://192.168.0.1/", allowed, resolve)


def test_system_resolver_on_localhost_and_numeric_tricks() -> None:
    # only names that resolve without DNS traffic: localhost and numeric IPv4 spellings
    addresses = resolve_host("localhost")
    assert addresses
    assert all(ip_address(a).is_loopback for a in addresses)
    for url in ("http://localhost:8080/feed", "http://2130706433/", "http://0x7f.1/"):
        with pytest.raises(SourceURLRejected, match="loopback"):
            check_source_url(url)
    assert check_source_url("http://localhost/feed", parse_networks(["127.0.0.0/8", "::1/128"]))


def test_system_resolver_refuses_invalid_names_without_a_lookup() -> None:
    # an over-long label fails IDNA encoding before any query is sent
    with pytest.raises(SourceURLRejected, match="does not resolve"):
        resolve_host("a" * 64 + ".example")
