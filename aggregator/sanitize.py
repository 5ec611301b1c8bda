"""HTML sanitizing and HTML-to-text, both built on nh3 (the Rust ``ammonia`` sanitizer).

We parse feeds with feedparser's own sanitizer switched off (it is more than half of
feedparser's time) and clean the HTML here instead, once per entry, with an allow-list:
no script/style (content removed), no iframe/object/embed/form, no ``on*`` handlers, no
``style`` attributes, only http/https/mailto URLs (no ``javascript:``, no ``data:``, not even
for images: a tracking-pixel-sized loss for a whole class of attacks), relative URLs resolved
against the entry's base URL (or dropped when there is none, because a re-exported feed would
resolve them against *our* host), and ``rel="noopener noreferrer"`` on every link.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import nh3

__all__ = ["ALLOWED_TAGS", "html_to_text", "sanitize_html", "sanitized_text", "strip_markup"]

ALLOWED_TAGS: frozenset[str] = (frozenset(nh3.ALLOWED_TAGS) - {"map", "area"}) | {
    "address",
    "big",
    "section",
    "tfoot",
}

_ATTRIBUTES: dict[str, set[str]] = {
    tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()
}
_ATTRIBUTES.pop("area", None)
_ATTRIBUTES["*"] = {"title", "lang", "dir"}
_ATTRIBUTES.setdefault("img", set()).update({"alt", "title", "width", "height", "src"})
_ATTRIBUTES.setdefault("a", set()).update({"href", "hreflang", "title"})
_ATTRIBUTES.setdefault("li", set()).add("value")
_ATTRIBUTES.setdefault("time", set()).add("datetime")
_ATTRIBUTES.setdefault("abbr", set()).add("title")

_URL_SCHEMES = {"http", "https", "mailto"}

# Elements whose content is removed along with the tag (not just unwrapped).
_DROP_CONTENT = {
    "script",
    "style",
    "iframe",
    "object",
    "embed",
    "noscript",
    "template",
    "svg",
    "math",
    "frame",
    "frameset",
    "applet",
    "form",
    "select",
    "textarea",
    "button",
}
_DROP_CONTENT -= set(ALLOWED_TAGS)

# Block-level tags: html_to_text puts a space where they start or end so words do not merge.
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|div|br|li|ul|ol|dd|dt|dl|tr|td|th|table|h[1-6]|blockquote|pre|hr|section|"
    r"article|header|footer|figure|figcaption|aside|nav|address)\b)",
    re.IGNORECASE,
)
# Attributes whose value is a URL (or, for srcset, URLs), as ``_relative_refs`` finds them:
# the name, optional whitespace, ``=``, optional whitespace and an optional quote.
_URL_NAMES = ("href", "src", "srcset", "cite", "poster", "background")
_LONGEST_NAME = max(map(len, _URL_NAMES))
_HTML_SPACE = "\t\n\f\r "
# The one character whose lower case is longer than itself ("İ" -> "i̇"): indices would shift.
_LONGER_LOWER = "\u0130"
# A value that starts with a scheme (``http:``, ``mailto:``): ammonia never needs a base for it.
_SCHEME = re.compile(r"[\t\n\f\r ]*[a-z][a-z0-9+.-]*:")
# Only these characters can start a value resolved against the origin alone ("/x", "//host/x").
_PATH_ABSOLUTE = re.compile(r"[\t\n\f\r ]*[/\\]")
_TAG_LIKE = re.compile(r"<[a-zA-Z!/?]")
# A tag in ``sanitize_html`` output: attribute values are double-quoted and may hold ">".
_SANITIZED_TAG = re.compile(r'<[^>"]*(?:"[^"]*"[^>"]*)*>')

_TEXT_CLEANER = nh3.Cleaner(tags=set(), attributes={}, clean_content_tags=_DROP_CONTENT)


def _absolute_http(url: str | None) -> str | None:
    """Return ``url`` when it is an absolute http(s) URL that ammonia will accept as a base."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


@lru_cache(maxsize=64)  # ~23 KB each; entries of one body share theirs (see sanitize_html)
def _cleaner(base_url: str | None) -> nh3.Cleaner:
    """A cleaner that resolves relative URLs against ``base_url`` (denies them without one)."""
    relative: Literal["deny"] | tuple[Literal["rewrite_with_base"], str] = "deny"
    if base_url is not None:
        relative = ("rewrite_with_base", base_url)
    try:
        return nh3.Cleaner(
            tags=set(ALLOWED_TAGS),
            clean_content_tags=_DROP_CONTENT,
            attributes=_ATTRIBUTES,
            url_schemes=_URL_SCHEMES,
            url_relative=relative,
            link_rel="noopener noreferrer",
            strip_comments=True,
        )
    except ValueError:  # ammonia refused the base URL
        return _cleaner(None)


NO_BASE, ORIGIN, FULL_BASE = 0, 1, 2  # what _relative_refs says a fragment needs of its base


def _relative_refs(html_text: str) -> int:
    """What resolving the URL attributes of ``html_text`` needs from its base URL.

    ``NO_BASE``: no href/src/... value lacks a scheme. ``ORIGIN``: every such value starts with
    ``/`` or ``\\`` (path-absolute or scheme-relative), so only the base's scheme and authority
    matter. ``FULL_BASE``: anything else (``../x``, ``?q``, ``#f``, an entity-encoded start).
    Conservative: text that merely looks like an attribute only ever asks for more of the base.

    An attribute is found from its ``=`` (``str.find``, at C speed) and the name before it,
    case-insensitively: what a regex scan of the lower-cased text for ``name[ws]*=[ws]*quote?``
    finds (the tests keep that scan as the reference), at a fifth of the cost: the scan visited
    every character, and entries have few ``=``.
    """
    if _LONGER_LOWER in html_text:  # lower-casing would shift every index after it
        return FULL_BASE
    need = NO_BASE
    size = len(html_text)
    equals = html_text.find("=")
    while equals >= 0:
        name_end = equals
        while name_end and html_text[name_end - 1] in _HTML_SPACE:
            name_end -= 1
        if html_text[max(0, name_end - _LONGEST_NAME) : name_end].lower().endswith(_URL_NAMES):
            start = equals + 1
            while start < size and html_text[start] in _HTML_SPACE:
                start += 1
            quote = html_text[start : start + 1]
            if quote in ("'", '"'):
                start += 1
                end = html_text.find(quote, start)
                value = html_text[start : end if end >= 0 else size]
            else:
                value = html_text[start : start + 256]
            value = value.lower()
            if not _SCHEME.match(value):
                if not _PATH_ABSOLUTE.match(value):
                    return FULL_BASE
                need = ORIGIN
        equals = html_text.find("=", equals + 1)
    return need


@lru_cache(maxsize=4096)
def _origin(base_url: str) -> str | None:
    """``scheme://authority/`` of ``base_url``, when that is a prefix of it (else None)."""
    parts = urlsplit(base_url)
    prefix = f"{parts.scheme}://{parts.netloc}"
    if base_url[: len(prefix)].lower() != prefix.lower():
        return None
    return base_url[: len(prefix)] + "/"


def sanitize_html(html_text: str, base_url: str | None = None) -> str:
    """Return ``html_text`` reduced to the allow-list, with URLs made absolute against ``base_url``.

    Safe to embed in a page or an exported feed. Plain text comes back HTML-escaped.
    """
    if not html_text:
        return ""
    # Building a cleaner costs about as much as cleaning an entry, and bases differ per entry
    # (the entry's link). HTML without relative URLs shares one cleaner, and HTML whose relative
    # URLs are all path-absolute ("/img/a.png") shares one per site: resolving those against
    # "https://site/" gives what resolving them against "https://site/any/path?q" gives.
    need = _relative_refs(html_text) if base_url else NO_BASE
    base = _absolute_http(base_url) if need != NO_BASE else None
    if base is not None and need == ORIGIN:
        base = _origin(base) or base
    return _cleaner(base).clean(html_text).strip()


def html_to_text(html_text: str) -> str:
    """Return the visible text of an HTML fragment: tags removed, entities decoded, whitespace
    collapsed to single spaces. Script and style contents are dropped, block boundaries become
    spaces so ``<p>a</p><p>b</p>`` reads ``a b``.
    """
    if not html_text:
        return ""
    if "<" not in html_text and "&" not in html_text:
        return _collapse(html_text)
    spaced = _BLOCK_TAG.sub(" <", html_text)
    text = html.unescape(_TEXT_CLEANER.clean(spaced))
    return _collapse(text)


def sanitized_text(markup: str, limit: int) -> str:
    """``html_to_text(markup)[:limit]`` for ``markup`` that ``sanitize_html`` produced, faster.

    Sanitizer output is well-formed, has no comments, no script/style, escapes ``<`` and ``&``
    in text and double-quotes attribute values, so removing tags is a regular expression's
    job (a quarter cheaper than a second ammonia pass), and only a prefix of the markup that
    holds more than ``limit`` characters of text is read (cut before a tag, so no text node
    or entity is split; text of that prefix is a prefix of the whole text).
    """
    budget = max(4 * limit, 1024)
    while len(markup) > budget:
        cut = markup.rfind("<", 0, budget)
        if cut > 0:
            text = _strip_sanitized(markup[:cut])
            if len(text) > limit + 1:  # its last character might still grow: keep a margin
                return text[:limit]
        budget *= 4
    return _strip_sanitized(markup)[:limit]


def _strip_sanitized(markup: str) -> str:
    if "<" not in markup and "&" not in markup:
        return _collapse(markup)
    spaced = _BLOCK_TAG.sub(" <", markup)
    return _collapse(html.unescape(_SANITIZED_TAG.sub("", spaced)))


def _collapse(text: str) -> str:
    r"""Runs of whitespace as one space, none at the ends.

    What ``re.sub(r"\s+", " ", text).strip()`` returns (``str.split`` and the regex's ``\s``
    both use ``str.isspace``), at a third of the cost: on feed text the regex pass was about a
    tenth of ingesting an entry.
    """
    return " ".join(text.split())


def strip_markup(text: str) -> str:
    """Remove tag-shaped sequences from text that is already plain (a decoded title).

    Titles are text, but many feed readers render an RSS ``<title>`` as HTML, so a title like
    ``Click <img src=x onerror=alert(1)>`` must not be re-exported with the tag in it. Text
    without anything tag-shaped (``x < y``) is returned unchanged.
    """
    if not _TAG_LIKE.search(text):
        return text
    return html_to_text(text)
