"""The seam for a semantic backend (embeddings, translation): a second opinion on story pairs.

Word overlap cannot pair reports that say the same thing in other words ("quake hits" /
"earthquake strikes") or in another language beyond shared names and numbers: on the labelled
corpora that is most of the recall left (``bench/results/stories_eval.md``). A backend that
knows meaning, an embedding model or a translator, plugs in here without touching the matcher.

Contract (:class:`SemanticJudge`): ``similarity(a, b)`` returns how alike two reports are in
[0, 1], or ``None`` when it cannot tell; ``threshold`` is the similarity from which it calls
them the same story; ``name`` is shown by ``aggregator stories explain``. :func:`decide
<aggregator.dedupe.stories.decide>` asks it only for pairs the word rules rejected without a
veto: reports published too far apart, conflicting numbers (two days' 早报, V3.1 vs R2) and an
English negation stay apart whatever the backend says. It judges the candidates the band index
finds (reports sharing some words, names or numbers); it does not find candidates itself.

It runs where matching runs: on the database thread, inside the apply's write transaction, a
few pairs per new item. So it must be quick: an in-process model, or a model server nearby
asked with a short timeout, vectors cached by text, and a pause after failures
(:mod:`aggregator.dedupe.embeddings` does that for OpenAI-compatible endpoints). An
exception from it is logged and counts as "cannot tell": a backend can never lose an item or
fail a poll.

A backend may also have ``prepare(reports)``: the matcher calls it once per batch with every
report text the batch may ask about (its new items and their candidates' representatives), so a
backend can embed them in one go instead of pair by pair. Its failure is logged and ignored.

Configured as ``[stories] semantic = "package.module:factory"`` with keyword arguments in
``[stories.semantic_options]``; the factory is called once per process and returns the judge.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aggregator.errors import ConfigError

if TYPE_CHECKING:
    from aggregator.dedupe.stories import MatchText, Thresholds
    from aggregator.settings import StoriesSettings

log = logging.getLogger(__name__)


@runtime_checkable
class SemanticJudge(Protocol):
    """A semantic backend: see the module docstring for the contract."""

    name: str
    threshold: float

    def similarity(self, a: MatchText, b: MatchText) -> float | None:
        """How alike ``a`` and ``b`` are in meaning, in [0, 1]; ``None``: cannot tell."""
        ...


def _split(spec: str) -> tuple[str, str]:
    """``"package.module:attribute"`` -> (module, attribute); ``ValueError`` for another shape."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:factory', got {spec!r}")
    return module_name, attribute


def resolve(spec: str) -> Callable[..., Any]:
    """The factory named by ``"package.module:attribute"``; ``ValueError`` says what is wrong."""
    module_name, attribute = _split(spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attribute!r}")
    return factory


def build(spec: str, options: Mapping[str, Any]) -> SemanticJudge:
    """Call the factory named by ``spec`` with ``options``; check that it made a judge."""
    judge = resolve(spec)(**options)
    if not isinstance(judge, SemanticJudge):
        raise ValueError(
            f"{spec!r} returned {type(judge).__name__}, which lacks name, threshold or similarity()"
        )
    if not 0.0 < float(judge.threshold) <= 1.0:
        raise ValueError(f"{spec!r}: threshold must be in (0, 1], got {judge.threshold!r}")
    return judge


def check_spec(spec: str) -> None:
    """Config-time check of ``spec``: its shape, and that its module can be found (without
    importing it: a model's import can be heavy, and most commands never match stories)."""
    import importlib.util

    module_name, _ = _split(spec)
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot find module {module_name!r}: {exc}") from exc
    if found is None:
        raise ValueError(f"cannot find module {module_name!r} (is it installed?)")


def thresholds_for(stories: StoriesSettings) -> Thresholds:
    """The decision parameters the daemon and ``stories explain`` use: the defaults, plus the
    configured backend built once (a :class:`ConfigError` naming ``stories.semantic`` says what
    failed: the spec, or the factory's own error such as a missing model file)."""
    from aggregator.dedupe.stories import DEFAULT_THRESHOLDS

    if stories.semantic is None:
        return DEFAULT_THRESHOLDS
    try:
        judge = build(stories.semantic, stories.semantic_options)
    except ValueError as exc:
        raise ConfigError(f"stories.semantic: {exc}") from exc
    except Exception as exc:  # the factory's own failure (missing model file, bad option)
        raise ConfigError(
            f"stories.semantic: {stories.semantic!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    log.info(
        "story matching asks semantic backend %s (threshold %.2f)", judge.name, judge.threshold
    )
    return replace(DEFAULT_THRESHOLDS, semantic=judge)


def ask(judge: SemanticJudge, a: MatchText, b: MatchText) -> tuple[float | None, str]:
    """The judge's similarity for one pair and a line for the decision's reasons.

    Never raises: a failing backend is logged and answers ``None`` ("cannot tell").
    """
    try:
        value = judge.similarity(a, b)
    except Exception as exc:  # a backend must never break matching
        log.warning("semantic backend %s failed on a pair: %s", judge.name, exc)
        return None, f"semantic ({judge.name}): failed ({type(exc).__name__}), not used"
    if value is None:
        return None, f"semantic ({judge.name}): cannot tell"
    value = min(1.0, max(0.0, float(value)))
    verdict = ">=" if value >= judge.threshold else "<"
    return value, f"semantic ({judge.name}): similarity {value:.2f} {verdict} {judge.threshold:.2f}"
