"""Validators for exported feeds, reusable by any test: ``assert_valid_{atom,jsonfeed,rss}``.

Each checks the published grammar (Atom: RELAX NG from RFC 4287; JSON Feed: the 1.1 JSON Schema)
plus the rules those grammars cannot express, and the aggregator's own promises (story ids,
``_aggregator`` sources, ``<source>`` elements). A failure raises ``AssertionError`` naming the
item and the broken rule. The schema files live in ``tests/data/validators`` (see PROVENANCE.md).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from lxml import etree

VALIDATORS = Path(__file__).resolve().parent / "data" / "validators"
ATOM = "{http://www.w3.org/2005/Atom}"
ATOM_NS = "http://www.w3.org/2005/Atom"
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
_IRI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


@cache
def _atom_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(VALIDATORS / "atom" / "atom.rng")))


@cache
def _jsonfeed_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((VALIDATORS / "jsonfeed" / "schema-v1.1.json").read_text("utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _parse_xml(body: bytes, kind: str) -> etree._Element:
    """Parse strictly (no entities resolved, no network); AssertionError when ill-formed."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)
    try:
        return etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise AssertionError(f"{kind}: not well-formed XML: {exc}") from exc


def _is_absolute_iri(value: str | None) -> bool:
    if not value or not _IRI_SCHEME.fullmatch(value):
        return False
    parts = urlsplit(value)
    return parts.scheme not in ("http", "https") or bool(parts.netloc)


def _is_http_url(value: str | None) -> bool:
    if not value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_rfc3339(value: object, where: str) -> None:
    ok = isinstance(value, str) and "T" in value
    if ok:
        try:
            ok = datetime.fromisoformat(str(value)).tzinfo is not None
        except ValueError:
            ok = False
    assert ok, f"{where}: {value!r} is not an RFC 3339 date-time with a time zone"


# --------------------------------------------------------------------------- Atom


def assert_valid_atom(body: bytes) -> None:
    """Atom 1.0: the RFC 4287 RELAX NG grammar plus its Schematron-only and IRI rules."""
    root = _parse_xml(body, "atom")
    schema = _atom_schema()
    if not schema.validate(root):
        errors = "; ".join(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise AssertionError(f"atom: RELAX NG (RFC 4287) validation failed: {errors}")
    assert root.tag == f"{ATOM}feed", f"atom: root is {root.tag}, expected atom:feed"
    feed_id = root.findtext(f"{ATOM}id")
    assert _is_absolute_iri(feed_id), f"atom feed: id {feed_id!r} is not an absolute IRI"
    assert root.find(f"{ATOM}updated") is not None, "atom feed: updated missing"
    feed_has_author = root.find(f"{ATOM}author") is not None
    seen: set[tuple[str | None, str | None]] = set()
    for index, entry in enumerate(root.iterfind(f"{ATOM}entry")):
        entry_id = entry.findtext(f"{ATOM}id")
        where = f"atom entry #{index} ({entry_id})"
        assert _is_absolute_iri(entry_id), f"{where}: id is not an absolute IRI"
        updated = entry.findtext(f"{ATOM}updated")
        assert updated, f"{where}: updated missing"
        assert (entry_id, updated) not in seen, f"{where}: same id and updated as another entry"
        seen.add((entry_id, updated))
        has_author = (
            entry.find(f"{ATOM}author") is not None
            or entry.find(f"{ATOM}source/{ATOM}author") is not None
        )
        assert has_author or feed_has_author, f"{where}: no author and the feed has none"
        alternate = any(
            link.get("rel", "alternate") == "alternate" for link in entry.iterfind(f"{ATOM}link")
        )
        has_content = entry.find(f"{ATOM}content") is not None
        assert alternate or has_content, f"{where}: neither a link rel=alternate nor content"
        for source in entry.iterfind(f"{ATOM}source"):
            source_id = source.findtext(f"{ATOM}id")
            if source_id is not None:
                assert _is_absolute_iri(source_id), f"{where}: source id is not an absolute IRI"


# --------------------------------------------------------------------------- JSON Feed


def _check_aggregator(ext: Any, where: str) -> None:
    assert isinstance(ext, dict), f"{where}: _aggregator missing or not an object"
    story_id = ext.get("story_id")
    assert isinstance(story_id, str) and story_id, f"{where}: _aggregator.story_id missing"
    _check_rfc3339(ext.get("collected_at"), f"{where}: _aggregator.collected_at")
    sources = ext.get("sources")
    assert isinstance(sources, list) and sources, f"{where}: _aggregator.sources not a list"
    for number, ref in enumerate(sources):
        spot = f"{where}: _aggregator.sources[{number}]"
        assert isinstance(ref, dict), f"{spot} is not an object"
        missing = {"publisher", "url", "title", "published"} - ref.keys()
        assert not missing, f"{spot} lacks {sorted(missing)}"
        assert isinstance(ref["publisher"], str), f"{spot}.publisher is not a string"
        assert isinstance(ref["title"], str), f"{spot}.title is not a string"
        assert ref["url"] is None or isinstance(ref["url"], str), f"{spot}.url is not a string"
        if ref["published"] is not None:
            _check_rfc3339(ref["published"], f"{spot}.published")


def assert_valid_jsonfeed(body: bytes) -> None:
    """JSON Feed 1.1: the JSON Schema, URL and date formats, and the ``_aggregator`` extension."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssertionError(f"jsonfeed: not UTF-8 JSON: {exc}") from exc
    errors = sorted(_jsonfeed_validator().iter_errors(document), key=lambda e: list(e.path))
    if errors:
        detail = "; ".join(f"/{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
        raise AssertionError(f"jsonfeed: schema validation failed: {detail}")
    assert document["version"] == JSONFEED_VERSION, f"jsonfeed: version is {document['version']}"
    for key in ("home_page_url", "feed_url"):
        assert _is_http_url(document.get(key)), f"jsonfeed: {key} is not an absolute http(s) URL"
    seen: set[str] = set()
    for index, item in enumerate(document["items"]):
        where = f"jsonfeed item #{index} ({item.get('id')})"
        assert item["id"] not in seen, f"{where}: duplicate id"
        seen.add(item["id"])
        if "url" in item:
            assert _is_http_url(item["url"]), f"{where}: url is not an absolute http(s) URL"
        for key in ("date_published", "date_modified"):
            if key in item:
                _check_rfc3339(item[key], f"{where}: {key}")
        _check_aggregator(item.get("_aggregator"), where)


# --------------------------------------------------------------------------- RSS


def assert_valid_rss(body: bytes) -> None:
    """RSS 2.0: channel essentials, atom:link self, dates, guid permalinks, source elements."""
    root = _parse_xml(body, "rss")
    assert root.tag == "rss" and root.get("version") == "2.0", "rss: root is not <rss version=2.0>"
    channel = root.find("channel")
    assert channel is not None, "rss: no <channel>"
    for key in ("title", "link", "description"):
        assert channel.findtext(key), f"rss channel: <{key}> missing or empty"
    selves = [link for link in channel.iterfind(f"{ATOM}link") if link.get("rel") == "self"]
    assert selves, "rss channel: no <atom:link rel=self>"
    assert _is_http_url(selves[0].get("href")), "rss channel: atom:link self href not a URL"
    for key in ("lastBuildDate", "pubDate"):
        value = channel.findtext(key)
        if value is not None:
            _check_rfc822(value, f"rss channel: <{key}>")
    for index, item in enumerate(channel.iterfind("item")):
        guid = item.find("guid")
        where = f"rss item #{index} ({guid.text if guid is not None else item.findtext('title')})"
        assert item.findtext("title") or item.findtext("description"), (
            f"{where}: neither title nor description"
        )
        pub_date = item.findtext("pubDate")
        assert pub_date is not None, f"{where}: pubDate missing"
        _check_rfc822(pub_date, f"{where}: pubDate")
        if guid is not None:
            permalink = guid.get("isPermaLink", "true") == "true"
            assert guid.get("isPermaLink", "true") in ("true", "false"), (
                f"{where}: isPermaLink must be true or false"
            )
            if not _is_http_url(guid.text):
                assert not permalink, f"{where}: guid is not an http(s) URL but isPermaLink true"
        link = item.findtext("link")
        if link is not None:
            assert _is_http_url(link), f"{where}: link is not an absolute http(s) URL"
        source = item.find("source")
        assert source is not None, f"{where}: <source> missing"
        assert _is_http_url(source.get("url")), f"{where}: <source> lacks an http(s) url"


def _check_rfc822(value: str, where: str) -> None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{where}: {value!r} is not an RFC 822 date") from exc
    assert parsed.tzinfo is not None, f"{where}: {value!r} has no time zone"
