"""Choose a feed's text encoding before feedparser does, where feedparser would guess wrong.

feedparser trusts the HTTP charset and the XML declaration, and when the bytes do not fit either
its last resort is windows-1252 or iso-8859-2: a GBK feed served as UTF-8 (or with no charset at
all) comes out as mojibake in every title, and three stray invalid bytes in an otherwise UTF-8
feed ruin the whole document. This module intervenes only for bytes that are not valid UTF-8
and whose declared charset is UTF-8 or absent:

1. strict GB18030 (a superset of GBK and GB2312) when it decodes the whole body and the text
   holds Chinese characters;
2. UTF-8 with replacement characters when only a few bytes are invalid (damage stays local);
3. otherwise feedparser decides as before (Latin-1 and friends).

The result is re-encoded as UTF-8 and both the HTTP charset and the XML declaration say so.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

_DECL = re.compile(rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_DECL_ENCODING = re.compile(rb"(encoding\s*=\s*[\"'])([A-Za-z0-9._:-]+)([\"'])")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_CJK = re.compile(r"[\u4e00-\u9fff]")
#: More invalid bytes than this share of the text is not "a few stray bytes" any more.
MAX_REPLACED_SHARE = 0.01


def _canonical(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def declared_encoding(body: bytes, headers: Mapping[str, str]) -> str | None:
    """The charset the HTTP header or else the XML declaration names (normalized), if any."""
    match = _CHARSET.search(headers.get("content-type", ""))
    if match:
        return _canonical(match.group(1))
    decl = _DECL.match(body[:512])
    return _canonical(decl.group(2).decode("ascii")) if decl else None


def _as_utf8(text: str, body: bytes, headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    data = text.encode("utf-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = _DECL_ENCODING.sub(rb"\g<1>utf-8\g<3>", data[:512], count=1) + data[512:]
    out = dict(headers)
    ctype = out.get("content-type", "application/xml").split(";", 1)[0].strip()
    out["content-type"] = f"{ctype}; charset=utf-8"
    return data, out


def repair_encoding(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    """Return (body, headers) to hand to feedparser; unchanged unless a repair applies."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:64]:
        return body, dict(headers)  # UTF-16/32: feedparser reads those itself
    try:
        body.decode("utf-8")
        return body, dict(headers)
    except UnicodeDecodeError:
        pass
    declared = declared_encoding(body, headers)
    if declared not in (None, "utf-8", "utf-8-sig"):
        return body, dict(headers)  # the publisher named another charset: feedparser's call
    try:
        text = body.decode("gb18030")
        if _CJK.search(text):
            return _as_utf8(text, body, headers)
    except UnicodeDecodeError:
        pass
    text = body.decode("utf-8", errors="replace")
    if text.count("\ufffd") <= max(3, len(text) * MAX_REPLACED_SHARE):
        return _as_utf8(text, body, headers)
    return body, dict(headers)
