"""Canonical URLs: the cross-source identity key must ignore noise and keep meaning."""

from __future__ import annotations

import random

import pytest

from aggregator.urls import (
    _canonical_url,
    canonical_url,
    host_of,
    resolve_url,
    same_site,
    site_of,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM:80/a/b?x=1#frag", "http://example.com/a/b?x=1"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://example.com", "http://example.com/"),
        (
            "https://news.example.com/a?utm_source=rss&utm_medium=feed&id=7&UTM_Campaign=x",
            "https://news.example.com/a?id=7",
        ),
        (
            "https://e.com/p?fbclid=1&gclid=2&dclid=3&msclkid=4&mc_cid=5&mc_eid=6&spm=a.b"
            "&_hsenc=7&_hsmi=8&igshid=9&yclid=10&ref_src=twsrc&keep=yes",
            "https://e.com/p?keep=yes",
        ),
        ("https://e.com/p?b=2&a=1&c=3", "https://e.com/p?a=1&b=2&c=3"),
        ("https://e.com/p?b=2&a=9&a=1", "https://e.com/p?a=9&a=1&b=2"),  # stable for repeats
        ("https://e.com/p?from=rss&ref=home", "https://e.com/p?from=rss&ref=home"),  # kept
        ("https://e.com/p?&&a=1&", "https://e.com/p?a=1"),
        ("https://user:pw@e.com/p", "https://e.com/p"),
        ("https://例子.中国/新闻/1", "https://xn--fsqu00a.xn--fiqs8s/%E6%96%B0%E9%97%BB/1"),
        ("https://e.com/%e6%96%b0", "https://e.com/%E6%96%B0"),
        ("https://e.com/app#!/post/1", "https://e.com/app#!/post/1"),  # client route kept
        ("https://e.com/app#/post/2", "https://e.com/app#/post/2"),
        ("  https://e.com/x  ", "https://e.com/x"),
        ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
    ],
)
def test_canonical_url_normalizes(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "javascript:alert(1)",
        "mailto:a@b.c",
        "ftp://example.com/x",
        "data:text/html,hi",
        "/relative/path",
        "http://",
        "http://example.com:99999/",
        "http://[::1/",
    ],
)
def test_canonical_url_rejects_non_http(raw: str | None) -> None:
    assert canonical_url(raw) is None


def test_canonical_url_is_idempotent() -> None:
    once = canonical_url("HTTPS://Www.Example.com/a b?z=1&utm_term=x&a=2#top")
    assert once == "https://www.example.com/a%20b?a=2&z=1"
    assert canonical_url(once) == once


def test_the_plain_url_shortcut_gives_what_the_general_path_gives() -> None:
    """``canonical_url`` answers already-canonical URLs without the general path: on URLs
    built from pieces near the shortcut's edges (case, ports, user info, dots and dashes at
    label ends, escapes, spaces, non-ASCII, queries, fragments, whitespace), both agree."""
    rng = random.Random(5)
    schemes = ["http", "https", "HTTP", "Https", "ftp", "http:", ""]
    hosts = ["pub1.example", "a.b", "x-y.example", "x-.com", "-x.com", "x..com", "x.com.",
             "EXAMPLE.com", "例子.中国", "1.2.3.4", "[::1]", "user@h.com", "h.com:80",
             "h.com:8080", "h.com:443", ""]  # fmt: skip
    paths = ["", "/", "/posts/3", "//x", "/a b", "/新闻", "/%41", "/%e6", "/a;b", "/a:b",
             "/~u/x.html", "/a-b_c.d", "/./x", "/a/../b"]  # fmt: skip
    tails = ["", "?", "?b=1", "?utm_source=x", "#top", "#!/r", "\n", " ", "\t#x"]
    urls = [
        f"{rng.choice(schemes)}://{rng.choice(hosts)}{rng.choice(paths)}{rng.choice(tails)}"
        for _ in range(6000)
    ]
    shortcut = 0
    for url in urls:
        expected = _canonical_url.__wrapped__(url)
        assert canonical_url(url) == expected, url
        shortcut += expected == url or expected == url + "/"
    assert shortcut > 150  # the shortcut's cases were among them


def test_host_of() -> None:
    assert host_of("https://News.Example.COM:8080/x") == "news.example.com"
    assert host_of("https://例子.中国/") == "xn--fsqu00a.xn--fiqs8s"
    assert host_of("not a url") == ""
    assert host_of(None) == ""
    assert host_of("http://[::1") == ""


def test_site_and_same_site() -> None:
    assert site_of("news.bbc.co.uk") == "bbc.co.uk"
    assert site_of("sports.people.com.cn") == "people.com.cn"
    assert site_of("www.daringfireball.net") == "daringfireball.net"
    assert same_site("https://sports.people.com.cn/a", "http://www.people.com.cn/")
    assert not same_site("https://daringfireball.net/", "https://www.recode.net/x")
    assert not same_site(None, "https://a.com/")


def test_resolve_url() -> None:
    assert resolve_url("/a", "https://e.com/x/y") == "https://e.com/a"
    assert resolve_url("b", None, "https://e.com/x/") == "https://e.com/x/b"
    assert resolve_url("//cdn.e.com/i.png", "https://e.com/") == "https://cdn.e.com/i.png"
    assert resolve_url("https://abs.com/", "https://e.com/") == "https://abs.com/"
    assert resolve_url("javascript:alert(1)", "https://e.com/") is None
    assert resolve_url("rel", None, "not-absolute") is None
    assert resolve_url(None, "https://e.com/") is None
