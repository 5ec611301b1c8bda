"""A semantic backend for tests: synonyms share a concept, similarity is the cosine of concepts.

Deterministic and offline, it stands in for an embedding model behind the seam of
:mod:`aggregator.dedupe.semantic`; ``[stories] semantic = "tests.semantic_fake:make"`` loads it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from aggregator.dedupe.stories import MatchText

_WORD = re.compile(r"\w+")
_STOP = frozenset({"a", "an", "the", "of", "in", "on", "at", "to", "for", "into", "by", "and"})


@dataclass
class ConceptJudge:
    """Maps each word to its concept (``concepts``; a word without one is its own) and
    compares the two titles' concept counts by cosine. ``calls`` records the pairs asked."""

    concepts: dict[str, str]
    threshold: float = 0.8
    name: str = "concepts"
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _bag(self, title: str) -> Counter[str]:
        words = (w for w in _WORD.findall(title.casefold()) if w not in _STOP)
        return Counter(self.concepts.get(w, w) for w in words)

    def similarity(self, a: MatchText, b: MatchText) -> float | None:
        """Cosine of the two titles' concept counts; ``None`` for an empty title."""
        self.calls.append((a.title, b.title))
        left, right = self._bag(a.title), self._bag(b.title)
        if not left or not right:
            return None
        dot = sum(n * right[c] for c, n in left.items())
        norm = math.sqrt(sum(n * n for n in left.values()) * sum(n * n for n in right.values()))
        return dot / norm


def make(synonyms: list[list[str]] | None = None, threshold: float = 0.8) -> ConceptJudge:
    """The factory the config names: each list of ``synonyms`` is one concept."""
    concepts = {word: group[0] for group in synonyms or [] for word in group}
    return ConceptJudge(concepts, threshold)


def broken(**_: object) -> object:
    """A factory that returns something that is not a judge."""
    return object()


def failing(**_: object) -> object:
    """A factory that fails the way a missing model file would."""
    raise FileNotFoundError("model.bin")
