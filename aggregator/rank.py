"""Story ranking (pure): the score, the two sort orders and the per-publisher cap.

The score of a story in an edition, at time ``now``::

    score     = max(0, weight × coverage + boost) × freshness
    weight    = the lead report's source weight (``[[sources]] weight``, default 1.0)
    coverage  = 1 + ln(publishers)      publishers = distinct sources reporting the story
                                        (1 -> 1.00, 2 -> 1.69, 3 -> 2.10, 5 -> 2.61, 10 -> 3.30)
    boost     = sum of ``boost`` of the edition's rules matching at least one report
    freshness = 0.5 ** (age / half_life)  age = now - the story's first publication (>= 0),
                                          half_life = the edition's ``half_life`` (default 24h)

Coverage grows with diminishing returns, so a story carried by many publishers rises without a
wire story syndicated to twenty sites burying everything. Because freshness is exponential, the
ratio of two stories' scores does not change as time passes: a score-sorted edition is only
re-ordered by new reports or new stories, not by the clock (its snapshot bytes stay stable).

Orders: ``time`` = newest lead publication first (the default, as before ranking existed);
``score`` = highest score first, then newest. In both, the per-publisher cap
(``max_per_source``) skips a story once the edition already holds that many stories led by the
same source, and then ``limit`` cuts the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from aggregator.rules import format_duration

DEFAULT_HALF_LIFE = 24 * 3600.0

Status = Literal["in", "capped", "over_limit"]


def coverage(publishers: int) -> float:
    """``1 + ln(publishers)``: one publisher counts 1, each further one a little less."""
    return 1.0 + math.log(max(1, publishers))


def freshness(age_seconds: float, half_life_seconds: float) -> float:
    """``0.5 ** (age / half_life)``; a future publication date counts as age 0."""
    return 0.5 ** (max(0.0, age_seconds) / half_life_seconds)


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """Every input and factor of one story's score, so explanations can show the sum."""

    weight: float
    publishers: int
    coverage: float
    boost: float
    boosts: tuple[tuple[str, float], ...]  # (rule label, boost) that contributed
    age_seconds: float
    half_life_seconds: float
    freshness: float
    score: float

    def formula(self) -> str:
        """``(weight 1.2 × coverage 1.69 [2 publishers] + boost 0.5) × freshness 0.84 = 2.1``."""
        boost = f" + boost {self.boost:g}" if self.boost else ""
        return (
            f"(weight {self.weight:g} × coverage {self.coverage:.3f} "
            f"[{self.publishers} publisher{'s' * (self.publishers != 1)}]{boost}) "
            f"× freshness {self.freshness:.3f} [age {format_duration(self.age_seconds)}, "
            f"half-life {format_duration(self.half_life_seconds)}] = {self.score:.4f}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "weight": self.weight,
            "publishers": self.publishers,
            "coverage": self.coverage,
            "boost": self.boost,
            "boosts": [{"rule": label, "boost": b} for label, b in self.boosts],
            "age_seconds": self.age_seconds,
            "half_life_seconds": self.half_life_seconds,
            "freshness": self.freshness,
        }


def score_value(
    weight: float, publishers: int, boost: float, age_seconds: float, half_life_seconds: float
) -> float:
    """The score alone (the hot path: every admitted story of every render)."""
    fresh = 0.5 ** (max(0.0, age_seconds) / half_life_seconds)
    return max(0.0, weight * (1.0 + math.log(max(1, publishers))) + boost) * fresh


def score_story(
    *,
    weight: float,
    publishers: int,
    boosts: Sequence[tuple[str, float]],
    first_published: datetime,
    now: datetime,
    half_life_seconds: float = DEFAULT_HALF_LIFE,
) -> ScoreParts:
    """The score of one story (module docstring) with all its parts."""
    age = max(0.0, (now - first_published).total_seconds())
    cov = coverage(publishers)
    boost = sum(b for _, b in boosts)
    fresh = freshness(age, half_life_seconds)
    return ScoreParts(
        weight=weight,
        publishers=publishers,
        coverage=cov,
        boost=boost,
        boosts=tuple(boosts),
        age_seconds=age,
        half_life_seconds=half_life_seconds,
        freshness=fresh,
        score=score_value(weight, publishers, boost, age, half_life_seconds),
    )


class Candidate(NamedTuple):
    """What ordering and capping need to know about one admitted story."""

    key: int  # the caller's handle (e.g. an index)
    id: str  # stable tie-breaker (the story's public id)
    source: str  # the lead report's source key: the cap counts by it
    published: datetime  # the lead's publication time
    score: float


class Placement(NamedTuple):
    """Where a candidate ended up."""

    key: int
    status: Status
    position: int  # 1-based position in sort order, before cap and limit
    rank: int | None = None  # 1-based rank in the edition when ``status == "in"``
    capped_by: tuple[str, ...] = ()  # ids of the same source's stories ahead (``capped``)


def sort_candidates(candidates: Sequence[Candidate], sort: str) -> list[Candidate]:
    """``time``: newest first; ``score``: best first, then newest. Ties by id, descending."""
    if sort == "score":
        return sorted(candidates, key=lambda c: (c.score, c.published, c.id), reverse=True)
    if sort == "time":
        return sorted(candidates, key=lambda c: (c.published, c.id), reverse=True)
    raise ValueError(f"unknown sort {sort!r}; use time or score")


def place(
    candidates: Sequence[Candidate],
    *,
    sort: str,
    limit: int,
    max_per_source: int | None = None,
) -> list[Placement]:
    """Sort, apply the per-source cap, then the limit; one placement per candidate, in order."""
    taken: dict[str, list[str]] = {}
    out: list[Placement] = []
    rank = 0
    for position, cand in enumerate(sort_candidates(candidates, sort), start=1):
        ahead = taken.setdefault(cand.source, [])
        if max_per_source is not None and len(ahead) >= max_per_source:
            out.append(Placement(cand.key, "capped", position, capped_by=tuple(ahead)))
        elif rank >= limit:
            out.append(Placement(cand.key, "over_limit", position))
        else:
            rank += 1
            ahead.append(cand.id)
            out.append(Placement(cand.key, "in", position, rank=rank))
    return out
