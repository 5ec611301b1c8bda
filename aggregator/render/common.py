"""Helpers shared by the exporters: dates, language tags, XML-safe text and the entry footer.

Everything here is pure and deterministic, so the same edition always renders to the same bytes
(the web layer derives ETags from them).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

import nh3
from lxml import etree

from aggregator import __version__
from aggregator.model import EditionEntry

GENERATOR = "aggregator"
GENERATOR_VERSION = __version__

# Characters XML 1.0 cannot carry: C0 controls other than tab/LF/CR, lone surrogates, U+FFFE/F.
# lxml refuses them with ValueError; untrusted text may contain them, so they are dropped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_SPACES = re.compile(r"\s+")
_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """Format ``moment`` as RFC 3339 in UTC with a ``Z`` suffix (Atom and JSON Feed dates)."""
    text = as_utc(moment).replace(microsecond=0).isoformat()
    return text.removesuffix("+00:00") + "Z"


def rfc822(moment: datetime) -> str:
    """Format ``moment`` as an RFC 822 date in GMT (RSS 2.0 dates)."""
    return format_datetime(as_utc(moment), usegmt=True)


def language_tag(value: str | None) -> str | None:
    """Return ``value`` as a BCP 47-shaped tag (``zh_CN`` -> ``zh-CN``), or None if unusable."""
    if not value:
        return None
    tag = value.strip().replace("_", "-")
    return tag if _LANGUAGE_TAG.fullmatch(tag) else None


def xml_safe(value: str) -> str:
    """``value`` without the characters XML 1.0 forbids."""
    return _XML_ILLEGAL.sub("", value)


def _set_text(element: etree._Element, text: str, cdata: bool) -> None:
    """Set element text, cleaning it only when lxml refuses it (the rare, slow path)."""
    try:
        element.text = etree.CDATA(text) if cdata else text
    except ValueError:
        clean = xml_safe(text)
        element.text = etree.CDATA(clean) if cdata else clean


def _new_child(parent: etree._Element, tag: str, attrs: dict[str, str]) -> etree._Element:
    child = etree.SubElement(parent, tag)
    for key, value in attrs.items():
        try:
            child.set(key, value)
        except ValueError:
            child.set(key, xml_safe(value))
    return child


def add_element(
    parent: etree._Element, tag: str, text: str | None = None, /, **attrs: str
) -> etree._Element:
    """Append a child element with optional text and attributes, all made XML-safe."""
    child = _new_child(parent, tag, attrs)
    if text is not None:
        _set_text(child, text, cdata=False)
    return child


def add_cdata_element(parent: etree._Element, tag: str, text: str, /, **attrs: str) -> None:
    """Append a child whose text is a CDATA section (lxml splits any ``]]>`` safely).

    Used for the large HTML bodies: CDATA needs no entity escaping, which is otherwise most of
    the cost of serializing a feed.
    """
    _set_text(_new_child(parent, tag, attrs), text, cdata=True)


def is_http_url(value: str | None) -> bool:
    """True when ``value`` is an absolute http(s) URL with a host."""
    if not value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def serialize_xml(root: etree._Element, *, pretty: bool = False) -> bytes:
    """UTF-8 bytes of ``root`` behind a fixed XML declaration (indented when ``pretty``)."""
    return _DECLARATION + etree.tostring(root, encoding="utf-8", pretty_print=pretty)


def _link(href: str | None, label: str) -> str:
    """An escaped ``<a>`` for http(s) targets; any other scheme degrades to plain text."""
    text = html.escape(label, quote=True)
    if is_http_url(href):
        return f'<a href="{html.escape(href or "", quote=True)}">{text}</a>'
    return text


def entry_footer(entry: EditionEntry, note: str | None = None) -> str:
    """HTML naming the original source and, for multi-source stories, who else reported it.

    ``note`` (plain text, escaped here) follows the source link, e.g. "collected in 3m".
    """
    origin = entry.url or entry.publisher_url
    extra = f" · {html.escape(note, quote=True)}" if note else ""
    parts = [f"<p>Original source: {_link(origin, entry.publisher)}{extra}</p>"]
    others = entry.sources[1:]
    if others:
        items = "".join(
            f"<li>{_link(ref.url, f'{ref.publisher}: {ref.title}')}</li>" for ref in others
        )
        parts.append(f"<p>Also reported by:</p><ul>{items}</ul>")
    return "".join(parts)


def entry_html(entry: EditionEntry) -> str:
    """The exported body of an item: card, content, related updates, recap link and footer.

    Lives in :mod:`aggregator.render.card` (which builds on the helpers here); imported at call
    time because that module imports this one.
    """
    from aggregator.render.card import entry_html as item_html

    return item_html(entry)


def plain_summary(entry: EditionEntry, limit: int = 280) -> str:
    """A short plain-text summary (JSON Feed ``summary``): tags stripped, whitespace collapsed."""
    source = entry.summary_html or entry.content_html
    if not source:
        return ""
    # Bound the work on huge bodies: only the head can end up in the summary anyway.
    text = html.unescape(nh3.clean(source[: limit * 20], tags=set()))
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"
