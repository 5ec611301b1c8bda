"""A semantic backend over an OpenAI-compatible embeddings endpoint (Ollama, llama.cpp, vLLM).

::

    [stories]
    semantic = "aggregator.dedupe.embeddings:make"
    [stories.semantic_options]
    base_url = "http://127.0.0.1:11434/v1"   # Ollama; any POST {base_url}/embeddings
    model = "bge-m3"                          # multilingual: Chinese and English pairs too
    threshold = 0.85                          # cosine from which two reports are one story

Each report is embedded as its title plus the head of its summary; vectors are normalized,
stored as 32-bit floats (4 KB for 1,024 dimensions) and kept in a bounded LRU cache by text
(``cache_size``, 2,048 texts: 8 MB at 1,024 dimensions), so a candidate story's reports are
embedded once, not once per new item that meets them; the matcher hands over a batch's texts
first (:meth:`EmbeddingJudge.prepare`), so they go in one request of up to ``batch_size`` (64)
texts. The similarity is the cosine of the two vectors. :mod:`aggregator.dedupe.semantic` says
when it is asked: only about pairs the word rules rejected without a veto.

It is called on the database thread, inside the write transaction, so it is built to fail fast
and stay out of the way: a short timeout (``timeout``, 2 s), no retries, and after
``max_failures`` failures in a row it stops asking for ``cooldown`` seconds (every pair is then
"cannot tell", decided by the word rules alone), so a model server that is down costs one
timeout per ``cooldown``, not one per pair. The endpoint is the operator's own (usually on
loopback or the local network), trusted like the enrichment LLM's. The API key, when needed,
comes from the environment variable named by ``api_key_env``, never from the config file.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from aggregator.dedupe.stories import MatchText

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "AGGREGATOR_STORIES_EMBEDDINGS_API_KEY"


class EmbeddingError(Exception):
    """The endpoint failed or answered something that is not the embeddings asked for."""


class EmbeddingJudge:
    """Cosine similarity of two reports' embeddings (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        threshold: float = 0.85,
        timeout: float = 2.0,
        api_key: str | None = None,
        summary_chars: int = 200,
        cache_size: int = 2048,
        max_failures: int = 3,
        cooldown: float = 300.0,
        batch_size: int = 64,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not model:
            raise ValueError("model must name the embedding model")
        self.name = f"embeddings {model}"
        self.threshold = threshold
        self.summary_chars = summary_chars
        self.cache_size = cache_size
        self.max_failures = max_failures
        self.cooldown = cooldown
        self.batch_size = max(1, batch_size)
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers)
        self._cache: OrderedDict[str, array[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._failures = 0
        self._paused_until = 0.0  # time.monotonic() before which nothing is asked

    def text(self, report: MatchText) -> str:
        """What is embedded for one report: its title and the head of its summary (the head
        alone when it starts with the title, as excerpt feeds' summaries often do)."""
        title = report.title.strip()
        head = report.summary[: self.summary_chars].strip()
        if not head:
            return title
        return head if head.startswith(title) else f"{title}\n{head}"

    def similarity(self, a: MatchText, b: MatchText) -> float | None:
        """Cosine of the two reports' embeddings; ``None`` while paused after failures.

        Raises :class:`EmbeddingError` when the endpoint fails (the caller logs it and treats
        the pair as "cannot tell"); enough failures in a row pause the judge.
        """
        with self._lock:
            if time.monotonic() < self._paused_until:
                return None
            left, right = self._vectors([self.text(a), self.text(b)])
        if len(left) != len(right):
            raise EmbeddingError(f"{self._url}: vectors of sizes {len(left)} and {len(right)}")
        return math.fsum(map(operator.mul, left, right))

    def prepare(self, reports: Sequence[MatchText]) -> None:
        """Embed the texts a batch may ask about, in requests of up to ``batch_size`` texts
        (the matcher calls it once per batch), so that the pairs find them cached.

        At most half the cache is filled this way, so a batch cannot evict its own texts.
        Raises :class:`EmbeddingError` like :meth:`similarity`; does nothing while paused.
        """
        texts = list(dict.fromkeys(self.text(r) for r in reports))[: max(1, self.cache_size // 2)]
        with self._lock:
            if time.monotonic() < self._paused_until:
                return
            missing = [t for t in texts if t not in self._cache]
            for start in range(0, len(missing), self.batch_size):
                self._vectors(missing[start : start + self.batch_size])

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def _vectors(self, texts: Sequence[str]) -> list[array[float]]:
        """Unit vectors of ``texts``, from the cache or one request for the missing ones."""
        found: dict[str, array[float]] = {}
        for text in texts:
            if text in self._cache:
                self._cache.move_to_end(text)
                found[text] = self._cache[text]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            try:
                fresh = self._embed(missing)
            except EmbeddingError:
                self._failures += 1
                if self._failures >= self.max_failures:
                    self._paused_until = time.monotonic() + self.cooldown
                    log.warning(
                        "%s: %d failures in a row, not asked for %.0f s",
                        self.name,
                        self._failures,
                        self.cooldown,
                    )
                    self._failures = 0
                raise
            self._failures = 0
            for text, vector in zip(missing, fresh, strict=True):
                found[text] = self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return [found[text] for text in texts]

    def _embed(self, texts: list[str]) -> list[array[float]]:
        """One POST to the endpoint; the answer checked and normalized."""
        try:
            response = self._client.post(self._url, json={"model": self._model, "input": texts})
            response.raise_for_status()
            payload: Any = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EmbeddingError(f"{self._url}: {type(exc).__name__}: {exc}") from exc
        try:
            data = sorted(payload["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self._url}: not an embeddings answer ({exc!r})") from exc
        if len(vectors) != len(texts) or len({len(v) for v in vectors}) != 1 or not vectors[0]:
            raise EmbeddingError(
                f"{self._url}: {len(vectors)} vectors of sizes {sorted({len(v) for v in vectors})}"
                f" for {len(texts)} texts"
            )
        out = []
        for vector in vectors:
            norm = math.sqrt(sum(x * x for x in vector))
            if not norm or not math.isfinite(norm):
                raise EmbeddingError(f"{self._url}: a zero or non-finite vector")
            out.append(array("f", (x / norm for x in vector)))
        return out


def make(
    base_url: str, model: str, api_key_env: str = DEFAULT_KEY_ENV, **options: Any
) -> EmbeddingJudge:
    """The factory ``[stories] semantic`` names: the key comes from the environment variable
    ``api_key_env``; every other option (``threshold``, ``timeout``, ``summary_chars``,
    ``cache_size``, ``max_failures``, ``cooldown``, ``batch_size``) goes to
    :class:`EmbeddingJudge` as it is, so an unknown one fails start-up with its name."""
    return EmbeddingJudge(base_url, model, api_key=os.environ.get(api_key_env) or None, **options)
