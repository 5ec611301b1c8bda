"""Render an edition as RSS 2.0 (with the Atom ``self`` link and Dublin Core creators).

Pure: an ``EditionFeed`` in, UTF-8 bytes out, identical bytes for identical input.
"""

from __future__ import annotations

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
    rfc822,
    serialize_xml,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
DC_NS = "http://purl.org/dc/elements/1.1/"
RSS_DOCS = "https://www.rssboard.org/rss-specification"


def _item(channel: etree._Element, entry: EditionEntry) -> None:
    """Append one ``<item>`` for ``entry``."""
    item = add_element(channel, "item")
    add_element(item, "title", entry.title)
    if is_http_url(entry.url):
        add_element(item, "link", entry.url)
    add_cdata_element(item, "description", entry_html(entry))
    # isPermaLink="true" only when the guid is itself the article's http(s) address.
    permalink = entry.id == entry.url and is_http_url(entry.id)
    add_element(item, "guid", entry.id, isPermaLink="true" if permalink else "false")
    add_element(item, "pubDate", rfc822(entry.published))
    if entry.author:
        add_element(item, f"{{{DC_NS}}}creator", entry.author)
    for category in entry.categories:
        add_element(item, "category", category)
    add_element(item, "source", entry.publisher, url=entry.publisher_feed_url)


def render_rss(feed: EditionFeed) -> bytes:
    """Serialize ``feed`` as an RSS 2.0 document (UTF-8)."""
    rss = etree.Element("rss", {"version": "2.0"}, nsmap={"atom": ATOM_NS, "dc": DC_NS})
    channel = add_element(rss, "channel")
    add_element(channel, "title", feed.title)
    add_element(channel, "link", feed.html_url)
    add_element(channel, "description", feed.description or feed.title)
    language = language_tag(feed.language)
    if language:
        add_element(channel, "language", language)
    add_element(channel, "lastBuildDate", rfc822(feed.updated))
    add_element(channel, "generator", f"{GENERATOR} {GENERATOR_VERSION}")
    add_element(channel, "docs", RSS_DOCS)
    add_element(
        channel,
        f"{{{ATOM_NS}}}link",
        rel="self",
        type="application/rss+xml",
        href=feed.feed_url("rss"),
    )
    for entry in feed.entries:
        _item(channel, entry)
    return serialize_xml(rss)
