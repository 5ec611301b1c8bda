"""Item identity within one source: the key ladder (pure).

GUID when the feed's GUIDs are unique; GUID + canonical link when GUIDs repeat; canonical link;
finally a hash of title and content. Keys are hashed to a fixed length so arbitrary publisher
GUIDs (some are whole URLs with tracking junk, some are kilobytes) index cheaply.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from aggregator.model import Item


def _digest(kind: str, value: str) -> str:
    return kind + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def item_keys(items: Sequence[Item]) -> list[str]:
    """One key per item, in order, following the ladder for this batch.

    A key that would still repeat inside the batch (same GUID and same link listed twice, say)
    falls back to the content hash, so two different entries never collapse into one by accident.
    """
    guid_counts = Counter(it.guid for it in items if it.guid)
    keys: list[str] = []
    for it in items:
        if it.guid and guid_counts[it.guid] == 1:
            key = _digest("g", it.guid)
        elif it.guid and it.canonical_url:
            key = _digest("gl", f"{it.guid}\n{it.canonical_url}")
        elif it.canonical_url:
            key = _digest("l", it.canonical_url)
        else:
            key = _digest("h", it.content_hash)
        keys.append(key)
    counts = Counter(keys)
    return [
        _digest("h", f"{it.content_hash}\n{key}") if counts[key] > 1 else key
        for it, key in zip(items, keys, strict=True)
    ]
