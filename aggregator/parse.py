"""Parse stage (pure): response bytes + headers -> ``ParsedFeed``.

RSS 0.9x/1.0/2.0 and Atom go through feedparser, given the *bytes* (wrapped in a stream: a
bare ``bytes`` argument that happens to name a local file would be opened as that file) and
the HTTP response headers, so the Content-Type charset wins over the XML declaration as it
should. feedparser's own sanitizer and relative-URI resolver are switched off: together they
cost about 60% of its time on the real corpus, and normalize does both with nh3 in one pass.
xml:base is the one thing the resolver knew that we do not: where an entry's HTML was under an
``xml:base`` different from the document URL, its relative ``href``/``src`` are resolved here
with a cheap regex (nh3 still sanitizes the result later). JSON Feed 1.0/1.1 is parsed with
``json``.

Text fields of ``ParsedEntry`` (``title``, ``summary``, ``content``) are always HTML: parts the
feed declared as plain text are escaped here, so normalize never has to guess.

XML safety: feedparser removes every ``<!ENTITY>`` declaration it does not consider safe and
expat neither loads external entities nor the external DTD, but the "safe" internal entities
survive and its fallback (non-XML) parser expands them without any limit (a 109 KB document
became a 300 MB title and 890 MB of memory), and an entity value containing ``<a>`` makes
its prolog regex hand the whole DTD to expat. ``_check_entities`` tokenizes the internal
subset itself and rejects oversized, nested or markup-bearing entity values first.
"""

from __future__ import annotations

import copy
import html
import inspect
import io
import json
import re
import textwrap
import time
import types
from collections.abc import Callable, Container, Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import feedparser.api
import feedparser.mixin
import feedparser.namespaces._base
import feedparser.urls
import feedparser.util

from aggregator.charset import repair_encoding
from aggregator.entrycache import split_entries, without
from aggregator.errors import ParseError
from aggregator.model import ParsedEntry, ParsedFeed
from aggregator.sanitize import html_to_text, strip_markup

__all__ = ["parse_date", "parse_feed"]

JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/(\d+(?:\.\d+)?)/?$")

# -------------------------------------------------------------------- feedparser speed-ups

_URL_CACHE = 4096
#: The SAX driver feedparser's strict parser is given (``aggregator.saxdriver``).
SAX_DRIVER = "aggregator.saxdriver"


def _cached(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a pure function of strings) memoized; unhashable arguments bypass the cache."""
    memo = lru_cache(maxsize=_URL_CACHE)(fn)

    def call(*args: Any) -> Any:
        try:
            return memo(*args)
        except TypeError:
            return fn(*args)

    return call


# An absolute http(s) URL that ``urllib.parse`` splits and joins back to the same string: a
# lower-case scheme, an ASCII authority without brackets (no IPv6 literal, nothing for
# ``urlsplit`` to check or reject), a path without ``;`` (``urlparse`` would split off
# parameters), a query and a fragment that are either absent or non-empty (an empty one is
# dropped), and no ASCII control character or space anywhere (``urlsplit`` strips or removes
# some of them).
_PLAIN_ABSOLUTE = re.compile(
    r"(https?)://[A-Za-z0-9._~%!$&'()*+,=:@-]+(?:/[^\x00-\x20\x7f?#;]*)?"
    r"(?:\?[^\x00-\x20\x7f#]+)?(?:#[^\x00-\x20\x7f]+)?\Z"
)


# A relative reference that is one plain path segment ("12345", "post-7.html"): no scheme
# (no ":"), no "/", "?", "#", ";" or "%", not a dot segment (it cannot start with ".").
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_~!$&'()*+,=@-][A-Za-z0-9._~!$&'()*+,=@-]*\Z")


@lru_cache(maxsize=_URL_CACHE)  # every entry of a document resolves against the same base
def _base_directory(base: str) -> str | None:
    """What ``urljoin(base, segment)`` puts before a plain segment, for a plain ``base``: its
    scheme, authority and path up to the last "/" (query and fragment dropped). None (ask
    ``urljoin``) when a directory segment is empty or starts with "." (``urljoin`` drops
    empty segments and resolves dot segments)."""
    if not _PLAIN_ABSOLUTE.match(base):
        return None
    head = base.split("#", 1)[0].split("?", 1)[0]
    slash = head.find("/", head.index(":") + 3)
    if slash < 0:
        return head + "/"
    directories = head[slash:].split("/")[1:-1]
    if any(not d or d[0] == "." for d in directories):
        return None
    return head[: head.rfind("/") + 1]


def _absolute_first(join: Callable[..., Any]) -> Callable[..., Any]:
    """feedparser's ``_urljoin(base, uri)`` or ``make_safe_absolute_uri(base, uri)`` (``join``),
    answering the two common cases directly.

    Entry links and permalink GUIDs are plain absolute http(s) URLs, each one different (so
    the memo never hits them), and resolving each cost two ``urllib.parse`` round trips, about
    a tenth of ``ingest``. For them both functions return ``uri`` itself: ``urljoin`` returns
    a URL with its own scheme and authority as ``urlunparse(urlparse(uri))``, which is ``uri``
    for what ``_PLAIN_ABSOLUTE`` admits (or ``uri`` unchanged when the base's scheme differs),
    and the scheme check of ``make_safe_absolute_uri`` lets http and https through.

    GUIDs that are not URLs ("12345", "site-42") and carry no ``isPermaLink="false"`` count
    as permalinks, so feedparser resolves them against the base too (another twentieth of
    ``ingest``): a plain segment against a plain base is the base's directory plus the
    segment (``_base_directory``), which is what ``urljoin`` builds for it.
    """

    def call(base: Any, uri: Any = None) -> Any:
        if type(uri) is str:
            if _PLAIN_ABSOLUTE.match(uri):
                schemes = feedparser.urls.ACCEPTABLE_URI_SCHEMES
                if not schemes or uri[: uri.index(":")] in schemes:
                    return uri
            elif type(base) is str and _PLAIN_SEGMENT.match(uri):
                directory = _base_directory(base)
                if directory is not None:
                    return directory + uri
        return join(base, uri)

    return call


#: Keys ``FeedParserDict`` treats specially (computed or aliased): they keep the slow path.
_FPD_SPECIAL = frozenset({"category", "enclosures", "license", "updated", "updated_parsed"})
#: Values a ``deepcopy`` returns as they are.
_ATOMS = (str, int, float, bool, type(None))


def _fast_dict_methods(cls: type[dict[str, Any]]) -> dict[str, Callable[..., Any]]:
    """``__getitem__``, ``get``, ``__contains__`` and ``__setitem__`` for ``FeedParserDict`` that
    handle a plain key (neither special nor in ``keymap``) straight with the dict.

    feedparser's own versions run a chain of key comparisons and a keymap lookup on every
    access, and ``get`` of a missing key raises and catches a ``KeyError``: about 80 calls per
    entry, an eighth of a parse. For a plain key each of them is exactly the ``dict`` method
    (``realkey == key``, then ``dict.__getitem__``), so the fast path changes no answer; any
    other key goes to the original method.
    """
    slow_getitem, slow_get, slow_contains = cls.__getitem__, cls.get, cls.__contains__
    slow_setitem = cls.__setitem__
    keymap = frozenset(cls.keymap)  # type: ignore[attr-defined]
    slow = _FPD_SPECIAL | keymap
    dict_getitem, dict_get, dict_contains = dict.__getitem__, dict.get, dict.__contains__
    dict_setitem = dict.__setitem__

    def __getitem__(self: dict[str, Any], key: str) -> Any:
        return slow_getitem(self, key) if key in slow else dict_getitem(self, key)

    def get(self: dict[str, Any], key: str, default: Any = None) -> Any:
        return slow_get(self, key, default) if key in slow else dict_get(self, key, default)

    def __contains__(self: dict[str, Any], key: object) -> bool:
        return slow_contains(self, key) if key in slow else dict_contains(self, key)

    def __setitem__(self: dict[str, Any], key: str, value: Any) -> None:
        if key in keymap:
            slow_setitem(self, key, value)
        else:
            dict_setitem(self, key, value)

    fast: dict[str, Callable[..., Any]] = {
        "__getitem__": __getitem__,
        "get": get,
        "__contains__": __contains__,
        "__setitem__": __setitem__,
    }
    originals = (slow_getitem, slow_get, slow_contains, slow_setitem)
    for method, original in zip(fast.values(), originals, strict=True):
        method.__wrapped__ = original  # type: ignore[attr-defined]  # for tests: the reference
    return fast


class _CopyModule:
    """Stands in for the ``copy`` module inside ``feedparser.mixin``, which deep-copies the
    current content parameters (``type``, ``language``, ``base``, ``base64``: strings, None
    and a bool) for every title, summary and content element.

    For a ``FeedParserDict`` of such atoms, a deep copy is a new ``FeedParserDict`` with the same
    items set one by one (what ``copy.deepcopy`` does for a dict subclass, through its
    ``__setitem__``); built directly it costs a tenth. Anything else goes to ``copy.deepcopy``.
    """

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(x: Any, memo: dict[int, Any] | None = None) -> Any:
        cls = feedparser.util.FeedParserDict
        if (
            memo is None
            and type(x) is cls
            and not x.__dict__
            and all(type(v) in _ATOMS for v in dict.values(x))
        ):
            y = cls()
            for key, value in dict.items(x):
                y[key] = value
            return y
        return copy.deepcopy(x, memo)


#: The one line of ``_FeedParserMixin.pop`` that ``_guarded_pop`` changes, and what replaces it.
_TRANSLATE_LINE = "output = output.translate(_cp1252)"
_GUARDED_TRANSLATE = (
    "if not output.isascii() and _aggregator_c1.search(output): output = output.translate(_cp1252)"
)


def _guarded_pop(cls: type) -> Callable[..., Any] | None:
    """feedparser's ``pop`` (run at the end of every element) with its ``translate(_cp1252)``
    done only when the text holds a character the table changes, U+0080-U+009F; None when
    the method's source is not the one expected (another feedparser: it is then left alone).

    ``str.translate`` takes a fast path for ASCII text only; every other character is a
    lookup in the table: 65 us for a 1,260-character Chinese description, 43 us for English
    with curly quotes, about a tenth of a worker's parse on the farm. The check costs 7-9 us
    there (nothing for ASCII text, which ``isascii`` answers at once) and the result is the
    same: the table is the identity on every other character. Built from the method's own
    source with that one line changed, run in ``feedparser.mixin``'s namespace.
    """
    original = cls.pop  # type: ignore[attr-defined]
    try:
        source = textwrap.dedent(inspect.getsource(original))
    except (OSError, TypeError):
        return None
    if source.count(_TRANSLATE_LINE) != 1:
        return None
    scratch: dict[str, Any] = {}
    exec(
        compile(source.replace(_TRANSLATE_LINE, _GUARDED_TRANSLATE), "<aggregator pop>", "exec"),
        scratch,
    )
    code = scratch["pop"].__code__
    feedparser.mixin._aggregator_c1 = re.compile("[\x80-\x9f]")
    pop = types.FunctionType(code, vars(feedparser.mixin), "pop", original.__defaults__)
    pop.__qualname__, pop.__doc__ = original.__qualname__, original.__doc__
    pop.__wrapped__ = original  # type: ignore[attr-defined]  # for tests: the reference
    return pop


def _install_speedups() -> None:
    """Make the hot spots of feedparser cheaper without changing what it returns.

    * ``_urljoin`` and ``make_safe_absolute_uri`` are memoized where feedparser calls them: it
      joins the current ``xml:base`` with itself on every start tag and resolves every link and
      id with ``urllib.parse.urljoin``, about a fifth of its time on the farm's feeds, for a
      handful of distinct (base, URL) pairs per document. Both are pure (strings in, string
      out; the scheme allow-list is a constant), so a cache returns exactly what they would.
      Plain absolute http(s) links, each one different, skip both (``_absolute_first``).
    * Every text value goes through ``str.translate(_cp1252)`` (C1 controls to their cp1252
      characters). With a dict, each non-ASCII character of the text is a failed lookup that
      raises and clears a ``KeyError`` inside CPython: 47-58 us per 1,000 characters of text
      with any non-ASCII character in it (a curly quote is enough). The same mapping as a
      128 KB string indexed by code point (identity except U+0080-U+009F; beyond the BMP an
      ``IndexError`` leaves the character as the dict miss did) takes 23-45 us.
    * ``FeedParserDict`` lookups of plain keys go straight to ``dict`` (``_fast_dict_methods``)
      and deep copies of content parameters are built directly (``_CopyModule``): about a
      fifth of what remains of a parse, with the same results.
    * ``pop`` translates C1 controls only in text that has one (``_guarded_pop``).
    * The strict parser gets ``aggregator.saxdriver``: expat with buffered character data and
      cached element names (the same SAX events with fewer calls).

    Installed once per process, on the names feedparser's modules look up at call time, by
    the first parse (a process that never parses, like the daemon with parse workers, does
    not build the table).
    """
    if getattr(feedparser.mixin, "_aggregator_cached", False):
        return
    cp1252 = feedparser.mixin._cp1252
    feedparser.mixin._cp1252 = "".join(cp1252.get(i, chr(i)) for i in range(0x10000))
    join = _absolute_first(_cached(feedparser.urls._urljoin))
    safe = _absolute_first(_cached(feedparser.urls.make_safe_absolute_uri))
    feedparser.mixin._urljoin = join
    feedparser.mixin.make_safe_absolute_uri = safe
    feedparser.namespaces._base.make_safe_absolute_uri = safe
    for name, method in _fast_dict_methods(feedparser.util.FeedParserDict).items():
        setattr(feedparser.util.FeedParserDict, name, method)
    pop = _guarded_pop(feedparser.mixin._FeedParserMixin)
    if pop is not None:
        feedparser.mixin._FeedParserMixin.pop = pop
    feedparser.mixin.copy = _CopyModule
    feedparser.api.PREFERRED_XML_PARSERS = [SAX_DRIVER]
    feedparser.mixin._aggregator_cached = True


# -------------------------------------------------------------------- XML entity guard

_PROLOG_END = re.compile(rb"<[A-Za-z_]")
_DOCTYPE = re.compile(rb"<!DOCTYPE\b", re.I)
_SUBSET_TOKEN = re.compile(rb"[\"'\[>]")
_IN_SUBSET_TOKEN = re.compile(rb"[\"']|<!--|\]")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+(%\s*)?([^\s\"'>]+)\s*(\"[^\"]*\"|'[^']*'|[^>]*)", re.I)
_ENTITY_DECL_START = re.compile(rb"<!ENTITY", re.I)
_CHAR_REF = re.compile(rb"&#(?:\d+|x[0-9a-fA-F]+);")
MAX_ENTITY_VALUE = 64
MAX_ENTITIES = 128
DTD_SCAN_LIMIT = 1 << 20


def _skip_quoted(data: bytes, pos: int) -> int:
    """Index just after the quoted literal starting at ``pos`` (end of data if unterminated)."""
    close = data.find(data[pos : pos + 1], pos + 1)
    return len(data) if close < 0 else close + 1


def _internal_subset(data: bytes) -> bytes | None:
    """The DTD internal subset (between ``[`` and ``]``) of the document's DOCTYPE, if any.

    A small tokenizer rather than a regex, so quoted entity values containing ``>``, ``]`` or
    ``<a>`` cannot end the subset early (feedparser's own regex can be fooled that way and then
    hands the whole DTD to expat).
    """
    doctype = _DOCTYPE.search(data)
    if doctype is None:
        return None
    element = _PROLOG_END.search(data, 0, doctype.start())
    if element is not None:
        return None  # a DOCTYPE after the root element (e.g. inside CDATA) is not a DTD
    pos = doctype.end()
    while True:
        token = _SUBSET_TOKEN.search(data, pos)
        if token is None or token.group() == b">":
            return None
        if token.group() == b"[":
            break
        pos = _skip_quoted(data, token.start())
    start = pos = token.end()
    while True:
        token = _IN_SUBSET_TOKEN.search(data, pos)
        if token is None:
            return data[start:]
        if token.group() == b"]":
            return data[start : token.start()]
        if token.group() == b"<!--":
            close = data.find(b"-->", token.end())
            pos = len(data) if close < 0 else close + 3
        else:
            pos = _skip_quoted(data, token.start())


def _check_entities(body: bytes) -> None:
    """Refuse documents whose DTD declares entities that could expand without bound.

    Allowed: internal entities of at most ``MAX_ENTITY_VALUE`` bytes that reference no other
    entity (``<!ENTITY nbsp "&#160;">``), and external/parameter declarations (feedparser drops
    those and expat never fetches them). Everything else raises ``ParseError``.
    """
    head = body[:DTD_SCAN_LIMIT]
    if b"\x00" in head[:4] or head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        head = head.replace(b"\x00", b"")  # UTF-16/32: the ASCII markup is what matters
    if b"<!" not in head:
        return
    subset = _internal_subset(head)
    if not subset:
        return
    declared = _ENTITY_DECL_START.findall(subset)
    if len(declared) > MAX_ENTITIES:
        raise ParseError(f"DTD declares {len(declared)} entities; refusing (entity expansion)")
    for percent, name, value in _ENTITY_DECL.findall(subset):
        value = value.strip()
        if percent or value[:1] not in (b'"', b"'"):
            continue  # parameter or external entity: dropped by feedparser, never fetched
        inner = value[1:-1]
        if len(inner) > MAX_ENTITY_VALUE or b"&" in _CHAR_REF.sub(b"", inner) or b"<" in inner:
            name_text = name.decode("ascii", "replace")
            raise ParseError(
                f"DTD entity {name_text!r} is nested, contains markup or is longer than "
                f"{MAX_ENTITY_VALUE} bytes; refusing (XML entity expansion attack)"
            )


# -------------------------------------------------------------------- dates

_LOCAL_DATE = re.compile(
    r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?\s*$",
    re.I,
)
# Zone assumed for timestamps without one, by the feed's primary language subtag: publishers
# that omit the zone write local time, and for these languages "local" is one zone.
_NAIVE_ZONES = {
    "zh": timezone(timedelta(hours=8)),
    "ja": timezone(timedelta(hours=9)),
    "ko": timezone(timedelta(hours=9)),
}


def _naive_zone(language: str | None) -> timezone:
    if not language:
        return UTC
    return _NAIVE_ZONES.get(language.split("-")[0].split("_")[0].lower(), UTC)


def _local_date(match: re.Match[str], language: str | None) -> datetime | None:
    """Build the date matched by ``_LOCAL_DATE``: ``YYYY-MM-DD[ HH:MM[:SS[.fff]]][zone]`` and
    ``YYYY/M/D ...`` (common in Chinese feeds; feedparser misreads ``2020/1/10 14:33:00`` as
    1 November). Out-of-range fields give None rather than a rolled-over date."""
    year, month, day, hour, minute, second, _fraction, zone = match.groups()
    try:
        tz: timezone = _naive_zone(language)
        if zone:
            zone = zone.upper()
            if zone in ("Z", "UTC", "GMT"):
                tz = UTC
            else:
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                tz = timezone(sign * offset)
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _from_struct(value: Any) -> datetime | None:
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


# feedparser's own chain tries W3C-DTF first, which misreads Korean and Hungarian dates that
# start with a year; the strict locale parsers go first here.
_HANDLER_ORDER = (
    "_parse_date_rfc822",
    "_parse_date_hungarian",
    "_parse_date_greek",
    "_parse_date_nate",
    "_parse_date_onblog",
    "_parse_date_w3dtf",
    "_parse_date_asctime",
    "_parse_date_perforce",
)
_DATE_HANDLERS = tuple(
    getattr(feedparser.datetimes, name)
    for name in _HANDLER_ORDER
    if hasattr(feedparser.datetimes, name)
)
_COMMA_NO_SPACE = re.compile(r"^([A-Za-z]{2,9}),(?=\S)")


def _feedparser_date(raw: str) -> datetime | None:
    raw = _COMMA_NO_SPACE.sub(r"\1, ", raw)
    for handler in _DATE_HANDLERS:
        try:
            parsed = handler(raw)
        except (ValueError, IndexError, KeyError, OverflowError):
            continue
        if parsed:
            return _from_struct(parsed)
    return None


def parse_date(raw: str | None, language: str | None = None) -> datetime | None:
    """Parse a date string from a feed into aware UTC, whole seconds (None when unparseable).

    Tries the ``YYYY-MM-DD hh:mm:ss`` / ``YYYY/M/D`` forms (strict: out-of-range fields are
    rejected), ISO 8601 / RFC 3339, then feedparser's collection of date parsers (RFC 822
    with named zones, asctime, Korean, Greek, Hungarian, ...). Timestamps without a zone are
    read in the zone of the feed's language (UTC+8 for zh, UTC+9 for ja/ko, UTC otherwise).
    """
    if not raw or not raw.strip():
        return None
    raw = raw.strip()
    match = _LOCAL_DATE.match(raw)
    if match:
        return _local_date(match, language)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return _feedparser_date(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=_naive_zone(language))
    try:
        return value.astimezone(UTC).replace(microsecond=0)
    except (ValueError, OverflowError):
        return None


def _entry_date(entry: Mapping[str, Any], key: str, language: str | None) -> datetime | None:
    """An entry date; ``dict.get`` bypasses FeedParserDict's deprecated updated->published
    fallback (it would report the publication date as an update, with a warning)."""
    raw = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
    if isinstance(raw, str):
        match = _LOCAL_DATE.match(raw)
        if match:
            return _local_date(match, language)
    parsed_key = f"{key}_parsed"
    parsed = dict.get(entry, parsed_key) if isinstance(entry, dict) else entry.get(parsed_key)
    return _from_struct(parsed)


# -------------------------------------------------------------------- helpers


def _text(value: Any) -> str | None:
    """A non-empty stripped string, or None."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _text_to_html(text: str) -> str:
    """Escape plain text as HTML, keeping paragraphs and line breaks."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if len(paragraphs) <= 1:
        return html.escape(text.strip(), quote=False).replace("\n", "<br>")
    return "".join(
        f"<p>{html.escape(p, quote=False).replace(chr(10), '<br>')}</p>" for p in paragraphs
    )


_RELATIVE_ATTR = re.compile(
    r"""(\s(?:href|src|cite|poster)\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE
)
_HAS_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _rebase(markup: str, base: str) -> str:
    """Resolve relative href/src/cite/poster attribute values in ``markup`` against ``base``."""

    def fix(m: re.Match[str]) -> str:
        value = m.group(2) if m.group(2) is not None else m.group(3)
        if not value or _HAS_SCHEME.match(value.strip()):
            return m.group(0)
        try:
            joined = urljoin(base, value.strip())
        except ValueError:
            return m.group(0)
        return f'{m.group(1)}"{joined.replace(chr(34), "%22")}"'

    return _RELATIVE_ATTR.sub(fix, markup)


def _detail_html(detail: Mapping[str, Any] | None, url: str) -> str | None:
    """The value of a feedparser text construct as HTML (plain text escaped, xml:base applied).

    Relative URLs are resolved here only when the construct's base differs from the URL the
    body was fetched from (an ``xml:base`` or a ``Content-Location``); otherwise normalize
    resolves them against the entry's own link, which is the better base for RSS HTML.
    """
    if not detail:
        return None
    value = detail.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    if detail.get("type") == "text/plain":
        return _text_to_html(value)
    base = detail.get("base")
    if (
        isinstance(base, str)
        and base
        and base != url
        and urlsplit(base).scheme in ("http", "https")
        and ("href" in value or "src" in value or "cite" in value or "poster" in value)
    ):
        value = _rebase(value, base)
    return value


def _plain(detail: Mapping[str, Any] | None) -> str | None:
    """The value of a feedparser text construct as plain text."""
    if not detail:
        return None
    value = detail.get("value")
    if not isinstance(value, str):
        return None
    if detail.get("type") != "text/plain":
        value = html_to_text(value)
    return _text(strip_markup(value))


def _norm_language(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    tag = text.split(",")[0].split(";")[0].strip().replace("_", "-").lower()
    return tag if re.fullmatch(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*", tag) else None


def _categories(values: Any) -> tuple[str, ...]:
    out: list[str] = []
    if isinstance(values, list):
        for value in values:
            if isinstance(value, Mapping):
                term = _text(value.get("term")) or _text(value.get("label"))
            else:
                term = _text(value)
            if term:
                out.append(term)
    return tuple(out)


# -------------------------------------------------------------------- RSS skip hints

_SKIP_HOURS = re.compile(rb"<skipHours\b[^>]*>(.{0,4000}?)</skipHours\s*>", re.I | re.S)
_SKIP_DAYS = re.compile(rb"<skipDays\b[^>]*>(.{0,4000}?)</skipDays\s*>", re.I | re.S)
_HOUR = re.compile(rb"<hour\b[^>]*>\s*(\d{1,2})\s*</hour\s*>", re.I)
_DAY = re.compile(rb"<day\b[^>]*>\s*([A-Za-z]{3,12})\s*</day\s*>", re.I)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _skip_hints(body: bytes) -> tuple[frozenset[int], frozenset[str]]:
    """RSS ``<skipHours>`` / ``<skipDays>`` (feedparser keeps only the last value of each)."""
    hours: set[int] = set()
    days: set[str] = set()
    if b"kipHours" in body or b"kiphours" in body:
        block = _SKIP_HOURS.search(body)
        if block:
            hours = {int(h) for h in _HOUR.findall(block.group(1)) if 0 <= int(h) <= 24}
            hours = {0 if h == 24 else h for h in hours}
    if b"kipDays" in body or b"kipdays" in body:
        block = _SKIP_DAYS.search(body)
        if block:
            names = {d.decode("ascii").capitalize() for d in _DAY.findall(block.group(1))}
            days = names & set(_DAYS)
    return frozenset(hours), frozenset(days)


def _ttl(value: Any) -> int | None:
    text = _text(value)
    if text is None or not text.isdigit():
        return None
    minutes = int(text)
    return minutes if 0 < minutes <= 60 * 24 * 30 else None


# -------------------------------------------------------------------- feedparser path


def _xml_entry(entry: Mapping[str, Any], url: str, feed_language: str | None) -> ParsedEntry:
    """Adapt one feedparser entry dict (the only place its shape is known) to ``ParsedEntry``."""
    contents = [c for c in entry.get("content") or () if isinstance(c, Mapping)]
    content = None
    content_values = set()
    if contents:
        fullest = max(contents, key=lambda c: len(c.get("value") or ""))
        content = _detail_html(fullest, url)
        content_values = {c.get("value") for c in contents}
    summary_detail = entry.get("summary_detail")
    summary = None
    if summary_detail and summary_detail.get("value") not in content_values:
        summary = _detail_html(summary_detail, url)  # feedparser copies content to summary
    title_detail = entry.get("title_detail")
    title = _detail_html(title_detail, url)
    language = None
    for detail in (title_detail, summary_detail, contents[0] if contents else None):
        if detail and detail.get("language"):
            language = _norm_language(detail.get("language"))
            break
    author_detail = entry.get("author_detail") or {}
    date_language = language or feed_language
    published = _entry_date(entry, "published", date_language) or _entry_date(
        entry, "created", date_language
    )
    return ParsedEntry(
        guid=_text(entry.get("id")),
        link=_text(entry.get("link")),
        title=title,
        summary=summary,
        content=content,
        author=_text(author_detail.get("name")) or _text(entry.get("author")),
        categories=_categories(entry.get("tags")),
        published=published,
        updated=_entry_date(entry, "updated", date_language),
        language=language,
    )


def _describe_failure(result: Mapping[str, Any], body: bytes) -> str:
    head = body[:2048].lower()
    if b"<html" in head or b"<!doctype html" in head:
        return "the body is an HTML page, not a feed"
    exc = result.get("bozo_exception")
    if exc is not None:
        return f"the body is not a feed ({type(exc).__name__}: {exc})"
    return "the body is not a feed (no RSS, Atom or RDF root element and no entries)"


def _ill_formed(result: Mapping[str, Any]) -> bool:
    """Whether feedparser found the document ill-formed (a non-XML Content-Type alone is not)."""
    return bool(result.get("bozo")) and not isinstance(
        result.get("bozo_exception"), feedparser.NonXMLContentType
    )


def _feedparse(body: bytes, fp_headers: dict[str, str]) -> Any:
    try:
        return feedparser.parse(
            io.BytesIO(body),
            response_headers=fp_headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except (Exception, RecursionError) as exc:  # feedparser is the boundary: map everything
        raise ParseError(f"feedparser failed: {type(exc).__name__}: {exc}") from exc


_SPACE_BEFORE_DECLARATION = re.compile(rb"(\xef\xbb\xbf)?[ \t\r\n]+(?=<\?xml[ \t\r\n])")


def trim_before_declaration(body: bytes) -> bytes:
    """``body`` without whitespace before its XML declaration (a UTF-8 BOM is kept).

    XML allows nothing before ``<?xml``, yet some publishers (a stray newline from a WordPress
    plugin or theme is the classic case) send a blank line first. feedparser then falls back to
    its loose parser and flags the feed ill-formed, which also keeps it out of the entry cache
    (a full parse on every change). Readers accept such feeds; so do we, strictly parsed.
    """
    if body[:1].isspace() or (body.startswith(b"\xef\xbb\xbf") and body[3:4].isspace()):
        match = _SPACE_BEFORE_DECLARATION.match(body)
        if match is not None:
            return (match.group(1) or b"") + body[match.end() :]
    return body


def _parse_xml(
    body: bytes, headers: dict[str, str], url: str, skip: Container[bytes] | None = None
) -> ParsedFeed:
    _install_speedups()
    body, headers = repair_encoding(trim_before_declaration(body), headers)
    _check_entities(body)
    location = headers.get("content-location")
    doc_base = urljoin(url, location) if location else url
    fp_headers = dict(headers)
    fp_headers["content-location"] = doc_base
    spans = split_entries(body, url, headers.get("content-type", ""))
    drop = [i for i, d in enumerate(spans.digests) if d in skip] if spans and skip else []
    result = None
    if spans is not None and drop:
        result = _feedparse(without(body, spans.spans, drop), fp_headers)
        kept = len(spans.spans) - len(drop)
        if _ill_formed(result) or len(result.get("entries") or ()) != kept:
            result, drop = None, []  # the cut did not parse as expected: parse it all
    if result is None:
        result = _feedparse(body, fp_headers)
    version = result.get("version") or ""
    entries = result.get("entries") or []
    if not version and not entries:
        raise ParseError(_describe_failure(result, body))
    feed = result.get("feed") or {}
    language = _norm_language(feed.get("language")) or _norm_language(
        headers.get("content-language")
    )
    warning = None
    bozo = result.get("bozo_exception")
    if _ill_formed(result):
        warning = f"{type(bozo).__name__}: {bozo}" if bozo is not None else "ill-formed feed"
    skip_hours, skip_days = (
        _skip_hints(body) if version.startswith("rss") else (frozenset(), frozenset())
    )
    link = _text(feed.get("link"))
    # the spans are only worth remembering when they are exactly the parsed entries
    countable = (
        spans is not None and warning is None and len(entries) + len(drop) == len(spans.spans)
    )
    return ParsedFeed(
        format=version or "unknown",
        title=_plain(feed.get("title_detail")),
        link=urljoin(doc_base, link) if link else None,
        language=language,
        entries=tuple(_xml_entry(e, url, language) for e in entries),
        ttl_minutes=_ttl(feed.get("ttl")),
        skip_hours=skip_hours,
        skip_days=skip_days,
        warning=warning,
        entry_digests=spans.digests if spans is not None and countable else (),
        dropped=tuple(drop) if countable else (),
    )


# -------------------------------------------------------------------- JSON Feed path


def _json_authors(obj: Mapping[str, Any]) -> str | None:
    authors = obj.get("authors")
    if isinstance(authors, list):
        names = [_text(a.get("name")) for a in authors if isinstance(a, Mapping)]
        joined = ", ".join(n for n in names if n)
        if joined:
            return joined
    author = obj.get("author")
    if isinstance(author, Mapping):
        return _text(author.get("name"))
    return None


def _json_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return _text(value)


def _json_entry(item: Mapping[str, Any], feed_language: str | None) -> ParsedEntry:
    language = _norm_language(item.get("language"))
    date_language = language or feed_language
    content_html = _text(item.get("content_html"))
    content_text = _text(item.get("content_text"))
    summary = _text(item.get("summary"))
    title = _text(item.get("title"))
    tags = item.get("tags")
    return ParsedEntry(
        guid=_json_id(item.get("id")),
        link=_text(item.get("url")),
        title=html.escape(title, quote=False) if title else None,
        summary=_text_to_html(summary) if summary else None,
        content=content_html or (_text_to_html(content_text) if content_text else None),
        author=_json_authors(item),
        categories=_categories(tags) if isinstance(tags, list) else (),
        published=parse_date(_text(item.get("date_published")), date_language),
        updated=parse_date(_text(item.get("date_modified")), date_language),
        language=language,
        external_url=_text(item.get("external_url")),
    )


def _parse_json(body: bytes, url: str) -> ParsedFeed:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ParseError("the JSON document is not a JSON Feed (no top-level items array)")
    version = doc.get("version")
    warning = None
    known = JSON_FEED_VERSION.match(version.strip()) if isinstance(version, str) else None
    if known:
        number = known.group(1)
        fmt = "json" + number.replace(".", "") + ("0" if "." not in number else "")
    else:
        fmt = "json"
        warning = f"JSON Feed without a known version: {version!r}"
    language = _norm_language(doc.get("language"))
    items = doc["items"]
    entries = tuple(_json_entry(i, language) for i in items if isinstance(i, Mapping))
    if len(entries) != len(items):
        warning = f"skipped {len(items) - len(entries)} items that are not JSON objects"
    home = _text(doc.get("home_page_url"))
    return ParsedFeed(
        format=fmt,
        title=_text(strip_markup(doc["title"])) if isinstance(doc.get("title"), str) else None,
        link=urljoin(url, home) if home else None,
        language=language,
        entries=entries,
        warning=warning,
    )


# -------------------------------------------------------------------- entry point


def _is_json(body: bytes, content_type: str) -> bool:
    start = body[:256].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"{"):
        return True
    return "json" in content_type.lower() and not start.startswith(b"<")


def parse_feed(
    body: bytes, headers: Mapping[str, str], url: str, skip: Container[bytes] | None = None
) -> ParsedFeed:
    """Parse a fetched body into a ``ParsedFeed``.

    ``skip``: digests of entry spans (``aggregator.entrycache``) not to parse; an RSS/Atom
    body's spans with those digests are cut out first and listed in ``ParsedFeed.dropped``.

    ``headers`` are the HTTP response headers (any case); ``url`` is the final URL the body came
    from, used as the base for relative links. Raises ``ParseError`` when the body is not a
    feed: empty, an HTML page, garbage, invalid JSON, a JSON document that is not a JSON Feed,
    or an XML document with dangerous entity declarations. A feed that is ill-formed but still
    yields entries is returned with ``warning`` set.
    """
    if not body or not body.strip():
        raise ParseError("empty body")
    lowered = {k.lower(): v for k, v in headers.items()}
    if _is_json(body, lowered.get("content-type", "")):
        return _parse_json(body, url)
    return _parse_xml(body, lowered, url, skip)
