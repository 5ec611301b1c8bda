"""URL helpers: canonical form for cross-source identity, host extraction, safe resolution.

``canonical_url`` is what the de-duplication layers compare: two links to the same article
from different feeds (one with ``utm_source=rss``, one with a ``#comments`` fragment, one with
``HTTP://Example.COM:80``) must map to the same string. It only removes query parameters that
are well-known click trackers; anything else may select content and is kept (sorted).
All functions are pure and never raise on bad input.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

__all__ = ["canonical_url", "host_of", "resolve_url", "same_site", "site_of"]

_HTTP_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Exact (lower-cased) names of query parameters that only track clicks. Deliberately short:
# ``from``, ``source``, ``ref`` and ``share`` are left alone because some sites route on them.
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "twclid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ref_src",
        "ref_url",
        "spm",
        "vero_id",
        "_openstat",
    }
)
_TRACKING_PREFIXES = ("utm_",)

# Characters left as they are in a path; everything else (spaces, non-ASCII) is %-encoded so
# "/新闻" and "/%E6%96%B0%E9%97%BB" compare equal.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")

# Second-level labels under which registrations happen one level deeper (example.co.uk,
# people.com.cn). An approximation of the public suffix list that is right for news sites.
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go"})


def _is_tracking(key: str) -> bool:
    name = unquote(key).strip().lower()
    return name in _TRACKING_PARAMS or name.startswith(_TRACKING_PREFIXES)


def _idna_host(host: str) -> str | None:
    """Lower-case ``host`` and convert Unicode labels to their ``xn--`` form."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _upper_escapes(text: str) -> str:
    return _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), text)


def _clean_query(query: str) -> str:
    """Drop tracking parameters and sort the rest by name (stable for repeated names)."""
    if not query:
        return ""
    kept = []
    for part in query.split("&"):
        if not part:
            continue
        key = part.split("=", 1)[0]
        if _is_tracking(key):
            continue
        kept.append((key, part))
    kept.sort(key=lambda kv: kv[0])
    return "&".join(part for _, part in kept)


# A URL that is already canonical but for a missing "/" path: lower-case http(s) scheme and
# ASCII host (dot-separated labels, no port, no user info), a path of unreserved characters
# only, no query or fragment. Most article links look like this.
_PLAIN_URL = re.compile(
    r"(https?://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(/[A-Za-z0-9._~/-]*)?\Z"
)


def canonical_url(url: str | None) -> str | None:
    """Return the normalized form of an absolute http(s) URL, or None if it is not one.

    Lower-cases scheme and host (IDNA for Unicode hosts), drops user info and default ports,
    removes the fragment (unless it is a client-side route such as ``#!/post/1`` or ``#/x``),
    removes well-known tracking parameters, sorts the remaining query parameters and turns an
    empty path into ``/``.

    A URL that is canonical already (``_PLAIN_URL``: every step above leaves it as it is) is
    answered directly: each entry link is a new string, so the memo of the general path
    (``_canonical_url``) never hits for them, and that path costs four times as much.
    """
    if url:
        plain = _PLAIN_URL.match(url)
        if plain is not None:
            return url if plain.group(2) else url + "/"
    return _canonical_url(url)


@lru_cache(maxsize=4096)
def _canonical_url(url: str | None) -> str | None:
    """``canonical_url`` in general (see there)."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _HTTP_SCHEMES:
            return None
        host = _idna_host(parts.hostname or "")
        port = parts.port
    except ValueError:
        return None
    if host is None:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _upper_escapes(quote(parts.path, safe=_PATH_SAFE)) or "/"
    query = _clean_query(parts.query)
    fragment = parts.fragment if parts.fragment.startswith(("!", "/")) else ""
    return urlunsplit((scheme, netloc, path, query, fragment))


def host_of(url: str | None) -> str:
    """Return the lower-case host of ``url`` (IDNA form), or ``""`` when there is none."""
    if not url:
        return ""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return _idna_host(host) or ""


def site_of(host: str) -> str:
    """Approximate the registrable domain of ``host``: ``news.bbc.co.uk`` -> ``bbc.co.uk``."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) <= 2:
        return ".".join(labels)
    take = 3 if len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-take:])


def same_site(a: str | None, b: str | None) -> bool:
    """True when two URLs belong to the same publisher (same approximate registrable domain)."""
    host_a, host_b = host_of(a), host_of(b)
    return bool(host_a) and bool(host_b) and site_of(host_a) == site_of(host_b)


def resolve_url(url: str | None, *bases: str | None) -> str | None:
    """Resolve ``url`` against the first absolute http(s) base; return an http(s) URL or None.

    Absolute http(s) URLs are returned as they are (stripped). Relative ones are joined with the
    first base that is itself absolute http(s). Other schemes (``javascript:``, ``data:``,
    ``mailto:``) give None: an item link must be something a reader can open.
    """
    if not url:
        return None
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
        if scheme in _HTTP_SCHEMES:
            return url
        if scheme:
            return None
        for base in bases:
            if base and urlsplit(base).scheme.lower() in _HTTP_SCHEMES:
                joined = urljoin(base.strip(), url)
                return joined if urlsplit(joined).scheme.lower() in _HTTP_SCHEMES else None
    except ValueError:
        return None
    return None
