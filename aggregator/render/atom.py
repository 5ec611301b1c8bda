"""Render an edition as an Atom 1.0 feed (RFC 4287).

Every entry names its publisher twice: as the entry author when the article has none, and as an
``atom:source`` element, so a reader can show where a story came from. The feed has its own
author, which keeps RFC 4287's author rule true for every entry. Pure and deterministic.
"""

from __future__ import annotations

import uuid

from lxml import etree

from aggregator.model import EditionEntry, EditionFeed
from aggregator.render.card import entry_html
from aggregator.render.common import (
    GENERATOR,
    GENERATOR_VERSION,
    add_cdata_element,
    add_element,
    is_http_url,
    language_tag,
    rfc3339,
    serialize_xml,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_A = f"{{{ATOM_NS}}}"  # Clark-notation prefix for Atom element names


def feed_id(feed: EditionFeed) -> str:
    """A stable absolute IRI for the feed: its self URL, or a name-based UUID URN without one."""
    self_url = feed.feed_url("atom")
    if is_http_url(self_url):
        return self_url
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{feed.base_url}#{feed.name}").urn


def _author(parent: etree._Element, name: str, uri: str | None = None) -> None:
    """Append an ``<author>`` with a name and, when it is an http(s) URL, a uri."""
    author = add_element(parent, _A + "author")
    add_element(author, _A + "name", name)
    if uri and is_http_url(uri):
        add_element(author, _A + "uri", uri)


def _source(parent: etree._Element, entry: EditionEntry) -> None:
    """Append the ``atom:source`` naming the publisher feed the lead report came from."""
    source = add_element(parent, _A + "source")
    add_element(source, _A + "id", entry.publisher_feed_url)
    add_element(source, _A + "title", entry.publisher, type="text")
    add_element(source, _A + "updated", rfc3339(entry.updated))
    if entry.publisher_url and is_http_url(entry.publisher_url):
        add_element(
            source, _A + "link", rel="alternate", type="text/html", href=entry.publisher_url
        )
    add_element(source, _A + "link", rel="self", href=entry.publisher_feed_url)


def _entry(root: etree._Element, entry: EditionEntry) -> None:
    """Append one ``<entry>`` for ``entry``."""
    language = language_tag(entry.language)
    element = add_element(root, _A + "entry", **({XML_LANG: language} if language else {}))
    add_element(element, _A + "id", entry.id)
    add_element(element, _A + "title", entry.title, type="text")
    add_element(element, _A + "updated", rfc3339(entry.updated))
    add_element(element, _A + "published", rfc3339(entry.published))
    if entry.url and is_http_url(entry.url):
        add_element(element, _A + "link", rel="alternate", type="text/html", href=entry.url)
    _author(element, entry.author or entry.publisher, None if entry.author else entry.publisher_url)
    for category in entry.categories:
        add_element(element, _A + "category", term=category)
    if entry.summary_html:
        add_element(element, _A + "summary", entry.summary_html, type="html")
    add_cdata_element(element, _A + "content", entry_html(entry), type="html")
    _source(element, entry)


def render_atom(feed: EditionFeed) -> bytes:
    """Serialize ``feed`` as an Atom 1.0 document (UTF-8)."""
    root = etree.Element(_A + "feed", nsmap={None: ATOM_NS})
    language = language_tag(feed.language)
    if language:
        root.set(XML_LANG, language)
    add_element(root, _A + "id", feed_id(feed))
    add_element(root, _A + "title", feed.title, type="text")
    if feed.description:
        add_element(root, _A + "subtitle", feed.description, type="text")
    add_element(root, _A + "updated", rfc3339(feed.updated))
    add_element(
        root, _A + "link", rel="self", type="application/atom+xml", href=feed.feed_url("atom")
    )
    add_element(root, _A + "link", rel="alternate", type="text/html", href=feed.html_url)
    _author(root, feed.title, feed.base_url)
    add_element(root, _A + "generator", GENERATOR, version=GENERATOR_VERSION)
    for entry in feed.entries:
        _entry(root, entry)
    return serialize_xml(root)
