"""A leaner expat SAX driver for feedparser's strict parser (same events, fewer calls).

feedparser asks ``xml.sax.make_parser`` for a driver by module name
(``feedparser.api.PREFERRED_XML_PARSERS``); this module is one, installed there by
``aggregator.parse``. It is the standard library's ``expatreader`` with two changes, both
inside what SAX allows a driver to do:

* character data is buffered (``pyexpat``'s ``buffer_text``): expat otherwise reports the text
  of an element in pieces, split at every entity reference, so an escaped HTML description
  (``&lt;p&gt;...``) arrives as dozens of ``characters`` calls, each passing through three
  Python frames in feedparser. A SAX handler must accept any split of contiguous text, and the
  buffer is flushed before every other event, so handlers see the same text in the same order;
* element names are split into (namespace, local name) pairs once per distinct name, and an
  element without attributes gets one shared empty attribute set, instead of building both
  anew for each of the seven or so elements of every entry.

On the farm's feeds this takes about a tenth off feedparser's time (``bench/README.md``);
``tests/test_parse_speedups.py`` checks that every fixture and corpus file parses to the same
result with the standard driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.expatreader import ExpatParser
from xml.sax.xmlreader import AttributesNSImpl

__all__ = ["create_parser"]

_NO_ATTRIBUTES = AttributesNSImpl({}, {})


def _pair(name: str) -> tuple[str | None, str]:
    """(namespace, local name) of an expat element name, as ``expatreader`` computes it."""
    parts = name.split()
    if len(parts) == 1:
        return None, name
    if len(parts) == 3:
        return parts[0], parts[1]
    return tuple(parts)  # type: ignore[return-value]  # as expatreader does


class LeanExpatParser(ExpatParser):
    """``ExpatParser`` with buffered text and cached name pairs (see the module docs)."""

    # set by ``ExpatParser`` (private there, so typeshed does not declare them)
    _parser: Any
    _cont_handler: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pairs: dict[str, tuple[str | None, str]] = {}

    def reset(self) -> None:
        super().reset()
        self._parser.buffer_text = True

    def start_element_ns(self, name: str, attrs: Mapping[str, str]) -> None:
        if attrs:
            super().start_element_ns(name, attrs)
            return
        pair = self._pairs.get(name)
        if pair is None:
            pair = self._pairs[name] = _pair(name)
        self._cont_handler.startElementNS(pair, None, _NO_ATTRIBUTES)

    def end_element_ns(self, name: str) -> None:
        pair = self._pairs.get(name)
        if pair is None:
            pair = self._pairs[name] = _pair(name)
        self._cont_handler.endElementNS(pair, None)


def create_parser(*args: Any, **kwargs: Any) -> LeanExpatParser:
    """The driver entry point ``xml.sax.make_parser`` calls."""
    return LeanExpatParser(*args, **kwargs)
