"""MinHash signatures and LSH band keys: the cheap candidate lookup for story matching.

Why: comparing a new item with every stored item is O(n). A MinHash signature estimates the
Jaccard similarity of two shingle sets; cutting it into ``bands`` of ``rows`` and hashing each
band gives keys that two similar texts share with high probability and two dissimilar texts
rarely share. The store keeps them in an indexed table ``(story_id, band_key)``: candidates
for a new item are the stories sharing at least one key, then :func:`stories.decide` judges.

Everything here is pure and *stable*: the per-permutation coefficients are derived from a
fixed label with BLAKE2b, not from a random generator, so keys computed today match keys
stored last year. Changing ``SCHEME``, the shingler, ``num_perm``, ``bands`` or ``rows``
changes every key: stored keys must then be recomputed (keep ``SCHEME`` next to them).

Pure Python, no numpy: each shingle is hashed once with SHAKE-128 (a standard, stable
extendable-output hash) into ``num_perm`` independent 32-bit values (memoized in a bounded
cache); slot i of the signature is the minimum of value i over all shingles (strided ``min``
over one flat ``array``, in C). That is classic MinHash
with independent hash functions instead of simulated permutations, and is about twice as fast
in CPython as ``(a*h + b) mod p`` arithmetic.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from collections.abc import Iterable
from functools import lru_cache

SCHEME = "minhash-shake128-v1"  # bump when anything that changes band keys changes
EMPTY = 1 << 32  # every slot of the signature of an empty set (no 32-bit hash reaches it)
DEFAULT_NUM_PERM = 64
DEFAULT_BANDS = 21
DEFAULT_ROWS = 3
DIGEST_CACHE = 16_384  # memoized per-shingle digests (~0.3 KB each: ~5 MB at most)


def stable_hash64(text: str) -> int:
    """An unsigned 64-bit hash of ``text`` that never changes between runs or machines."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@lru_cache(maxsize=DIGEST_CACHE)
def _digest(shingle: str, size: int) -> bytes:
    """The SHAKE-128 output of one shingle (bounded memo: shingles follow Zipf's law, so the
    common ones, which are most of every text, are hashed once)."""
    return hashlib.shake_128(shingle.encode("utf-8")).digest(size)


def signature(shingles: Iterable[str], num_perm: int = DEFAULT_NUM_PERM) -> tuple[int, ...]:
    """The MinHash signature of a shingle set: ``num_perm`` ints in [0, 2**32).

    The fraction of equal positions in two signatures estimates the Jaccard similarity of the
    two sets. An empty set gives ``(EMPTY,) * num_perm``. Slot i is the minimum of the i-th
    little-endian 32-bit word of every shingle's digest (one flat ``array`` and a strided
    ``min`` per slot, both in C).
    """
    unique = set(shingles)
    if not unique:
        return (EMPTY,) * num_perm
    size = 4 * num_perm
    words = array("I", b"".join([_digest(s, size) for s in unique]))
    if words.itemsize != 4:  # pragma: no cover - every mainstream platform has 32-bit "I"
        words = array("I", struct.unpack(f"<{len(unique) * num_perm}I", words.tobytes()))
    elif sys.byteorder == "big":  # pragma: no cover - keys must match across machines
        words.byteswap()
    return tuple([min(words[i::num_perm]) for i in range(num_perm)])


def estimate_jaccard(left: tuple[int, ...], right: tuple[int, ...]) -> float:
    """Estimated Jaccard similarity from two signatures of the same length."""
    if len(left) != len(right) or not left:
        raise ValueError("signatures must be non-empty and of equal length")
    return sum(1 for x, y in zip(left, right, strict=True) if x == y) / len(left)


def _to_signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit int as signed (fits a BIGINT column)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def band_keys(
    sig: tuple[int, ...], bands: int = DEFAULT_BANDS, rows: int = DEFAULT_ROWS
) -> list[int]:
    """LSH keys: one signed 64-bit int per band (the band index is hashed in, so band 0 and
    band 1 never collide by accident). An empty-set signature has no keys (it would match
    every other empty text).

    With the defaults (21 bands x 3 rows, 64 permutations) two texts become candidates with
    probability 1 - (1 - J**3)**21: ~0.44 at J = 0.3, ~0.75 at J = 0.4, ~0.94 at J = 0.5,
    ~0.02 at J = 0.1.
    """
    if bands * rows > len(sig):
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} slots, got {len(sig)}")
    if all(v == EMPTY for v in sig):
        return []
    keys = []
    for band in range(bands):
        chunk = sig[band * rows : (band + 1) * rows]
        payload = band.to_bytes(2, "big") + b"".join(v.to_bytes(5, "big") for v in chunk)
        digest = hashlib.blake2b(payload, digest_size=8).digest()
        keys.append(_to_signed64(int.from_bytes(digest, "big")))
    return keys
