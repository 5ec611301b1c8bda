"""OPML 2.0 subscription lists: export the configured sources, import someone else's.

``render_opml`` groups sources into one folder per first tag. ``parse_opml`` flattens folders
into a category per feed. Parsing is deliberately strict about safety: documents with a DOCTYPE
are refused outright, so no entity can be declared, expanded or fetched (billion laughs, XXE).
Both functions are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.parsers import expat

from lxml import etree

from aggregator.errors import ParseError
from aggregator.model import SourceState
from aggregator.render.common import add_element, language_tag, serialize_xml


@dataclass(frozen=True, slots=True)
class OpmlOutline:
    """One feed subscription read from an OPML document."""

    url: str
    title: str
    site_url: str | None = None
    category: str | None = None  # folder path ("Tech/AI"), else the outline's category attribute


# --------------------------------------------------------------------------- render


def _feed_outline(parent: etree._Element, source: SourceState) -> None:
    """Append the ``<outline type="rss">`` for one source."""
    attrs = {"type": "rss", "text": source.name, "title": source.name, "xmlUrl": source.url}
    if source.site_url:
        attrs["htmlUrl"] = source.site_url
    language = language_tag(source.language)
    if language:
        attrs["language"] = language
    if source.tags:
        attrs["category"] = ",".join(f"/{tag}" for tag in source.tags)
    add_element(parent, "outline", **attrs)


def render_opml(sources: Sequence[SourceState], title: str) -> bytes:
    """Serialize ``sources`` as OPML 2.0, one folder per first tag, untagged ones at top level.

    Folders appear in order of their first source; sources keep their given order inside them.
    """
    root = etree.Element("opml", {"version": "2.0"})
    head = add_element(root, "head")
    add_element(head, "title", title)
    body = add_element(root, "body")
    folders: dict[str, etree._Element] = {}
    for source in sources:
        parent = body
        if source.tags:
            folder = source.tags[0]
            if folder not in folders:
                folders[folder] = add_element(body, "outline", text=folder, title=folder)
            parent = folders[folder]
        _feed_outline(parent, source)
    return serialize_xml(root, pretty=True)  # people read and edit OPML files


# --------------------------------------------------------------------------- parse


class _Refused(Exception):
    """Raised from inside expat callbacks to stop on a construct we refuse."""


class _OutlineCollector:
    """Expat callbacks that turn the ``<outline>`` tree into flat ``OpmlOutline`` values."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.saw_body = False
        self.outlines: list[OpmlOutline] = []
        self._seen: set[str] = set()
        self._stack: list[str | None] = []  # per open element: folder name, or None

    def start(self, name: str, attributes: dict[str, str]) -> None:
        if self.root is None:
            self.root = name
            if name.lower() != "opml":
                raise _Refused(f"root element is <{name}>, not <opml>")
        if name.lower() == "body":
            self.saw_body = True
        if name.lower() != "outline":
            self._stack.append(None)
            return
        attrs = {key.lower(): value.strip() for key, value in attributes.items()}
        label = attrs.get("title") or attrs.get("text") or ""
        url = attrs.get("xmlurl")
        if not url:
            self._stack.append(label or None)  # a folder (an unnamed one adds no path level)
            return
        self._stack.append(None)
        if url in self._seen:
            return
        self._seen.add(url)
        folders = [folder for folder in self._stack[:-1] if folder]
        category = "/".join(folders) if folders else _first_category(attrs.get("category"))
        self.outlines.append(
            OpmlOutline(
                url=url,
                title=label or url,
                site_url=attrs.get("htmlurl") or None,
                category=category,
            )
        )

    def end(self, name: str) -> None:
        self._stack.pop()


def _first_category(value: str | None) -> str | None:
    """The first entry of an OPML ``category`` attribute (``/Tech/AI,/News`` -> ``Tech/AI``)."""
    if not value:
        return None
    first = value.split(",", 1)[0].strip().strip("/")
    return first or None


def _refuse_doctype(*_args: object) -> None:
    raise _Refused("OPML with a DOCTYPE is refused (entity expansion risk)")


def _refuse_entity(*_args: object) -> None:
    raise _Refused("OPML with entity declarations is refused")


def parse_opml(body: bytes) -> list[OpmlOutline]:
    """Read the feed outlines of an OPML document, folders flattened into categories.

    Outlines are returned in document order, each feed URL once (the first occurrence wins).
    Raises ``ParseError`` naming the problem when the body is empty, not well-formed XML, not
    OPML, has no ``<body>``, or carries a DOCTYPE.
    """
    if not body.strip():
        raise ParseError("OPML document is empty")
    collector = _OutlineCollector()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    try:
        parser.Parse(body, True)
    except _Refused as exc:
        raise ParseError(str(exc)) from exc
    except expat.ExpatError as exc:
        raise ParseError(f"OPML is not well-formed XML: {exc}") from exc
    if not collector.saw_body:
        raise ParseError("OPML document has no <body> element")
    return collector.outlines
