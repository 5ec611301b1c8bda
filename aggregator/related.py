"""Related updates (pure): for each story, up to N *earlier* stories sharing entities or tags.

A story's keys come from its reports' titles and its lead's summary, plus its card's tags:

* ``e:`` entities from the alias table (腾讯 / Tencent / 微信 -> ``tencent``): Chinese and
  English names meet on one key (``aggregator.dedupe.aliases`` via ``dedupe.text.tokens``);
* ``c:`` model and version codes (``gpt4o``, ``m4``, ``v3.1``) and ``v:`` a name followed by a
  dotted number (``ios 18.2``); quarters and half-years (``q3``, ``h1``) are too common to say
  anything;
* ``w:`` titles of works in 《》;
* ``n:`` other capitalised Latin names (``Anthropic``, ``Kubernetes``), lower-cased. Headlines are
  often Title Case, so a capitalised word that also appears in lower case anywhere in the batch
  is taken to be an ordinary word (``Investment``, ``Eye``), not a name;
* ``t:`` the card's tags, when the story has a card.

Two stories are related by the summed weight of the keys they share (entity 3, code/version/work
2, tag 1.5, name 1); at least ``MIN_SCORE`` (one entity or code, or two names) is required. A
key carried by more than 1% of the batch (中国 in a Chinese firehose) counts a third: alone it
relates nothing. Candidates are found through an inverted index (key -> stories in time order),
looking only at the ``POSTINGS_PER_KEY`` most recent earlier stories per key, so the cost is
bounded per story (never all pairs); each text's keys are cached between renders (4,499 real
headlines: 0.3 s cold, 0.06 s warm).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.curate import choose_lead, published_of
from aggregator.dedupe.aliases import default_aliases
from aggregator.dedupe.text import STOPWORDS, normalize, tokens
from aggregator.model import RelatedRef, StoryRecord
from aggregator.sanitize import html_to_text

DEFAULT_LIMIT = 3
MIN_SCORE = 2.0
POSTINGS_PER_KEY = 100
#: A key carried by more than COMMON_SHARE of the stories (and at least COMMON_MIN_STORIES) is
#: common (中国, the US, OpenAI in an AI edition): it counts a third, so it relates two
#: stories only together with another shared key.
COMMON_SHARE = 0.01
COMMON_MIN_STORIES = 10
COMMON_FACTOR = 1 / 3
SUMMARY_CHARS = 280  # of the lead's summary: its head names what the story is about
WEIGHTS = {"e": 3.0, "c": 2.0, "v": 2.0, "w": 2.0, "t": 1.5, "n": 1.0}

_NAME = re.compile(r"(?<![\w'’])([A-Z][A-Za-z0-9]*(?:[-'’.&][A-Za-z0-9]+)*)")
_LOWER_WORD = re.compile(r"(?<![\w'’])([a-z][a-z0-9]*(?:[-'’][a-z0-9]+)*)")
_WORK = re.compile(r"《([^《》]{1,40})》")
_COMMON_CODE = re.compile(r"[qh][1-4]|\d+(?:st|nd|rd|th)")


@dataclass(frozen=True, slots=True)
class _Story:
    """One story as the index sees it: when, what it exports as, and its keys."""

    public_id: str
    time: datetime
    title: str
    url: str | None
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class _TextKeys:
    """What one story text yields before the batch is known."""

    keys: frozenset[str]  # entity, code, version and work keys
    names: frozenset[str]  # capitalised Latin words (names unless seen in lower case)
    lower: frozenset[str]  # words written in lower case


TextKeys = _TextKeys
#: What a story's text keys are computed from (``key_inputs``): its titles, its lead's summary.
KeyInputs = tuple[tuple[str, ...], str]
#: Computes the keys of several inputs, in order (``summary_keys_many``).
KeysFn = Callable[[list[KeyInputs]], Iterable[TextKeys]]


def _text_keys(text: str) -> _TextKeys:
    """Keys of one story text."""
    keys: set[str] = set()
    previous = ""
    for tok in tokens(normalize(text)):
        if tok.kind == "ent":
            keys.add("e:" + tok.value)
        elif tok.kind == "code" and not _COMMON_CODE.fullmatch(tok.value):
            keys.add("c:" + tok.value)
        elif tok.kind == "num" and tok.group == "num" and "." in tok.value and previous:
            keys.add(f"v:{previous} {tok.value}")
        previous = tok.value if tok.kind in ("ent", "word") else ""
    keys.update("w:" + w for w in (normalize(t) for t in _WORK.findall(text)) if w)
    aliases = default_aliases()
    names: set[str] = set()
    for match in _NAME.finditer(text):
        word = match.group(1).casefold().removesuffix("'s").removesuffix("’s")
        if len(word) >= 2 and word not in STOPWORDS and not aliases.entity_of(normalize(word)):
            names.add(word)
    return _TextKeys(frozenset(keys), frozenset(names), frozenset(_LOWER_WORD.findall(text)))


def _found(story: StoryRecord) -> _TextKeys:
    """The keys of a story's text: titles of every report, then the head of the lead's summary.

    Cached on the raw inputs (``TEXT_KEYS``), so a render that sees mostly the same stories as
    the last one neither strips their HTML nor tokenizes them again.
    """
    return TEXT_KEYS.get(*key_inputs(story))


def key_inputs(story: StoryRecord) -> tuple[tuple[str, ...], str]:
    """What a story's keys are computed from: its distinct titles and its lead's summary head."""
    titles = tuple(dict.fromkeys(it.title for it in story.items))
    return titles, choose_lead(story.items).summary_html[: SUMMARY_CHARS * 4]


def _summary_keys(titles: tuple[str, ...], summary_html: str) -> _TextKeys:
    summary = html_to_text(summary_html)[:SUMMARY_CHARS]
    return _text_keys("\n".join(titles) + "\n" + summary)


def summary_keys_many(inputs: Sequence[KeyInputs]) -> list[TextKeys]:
    """The keys of several story texts' inputs (``key_inputs``), in order."""
    return [_summary_keys(titles, summary_html) for titles, summary_html in inputs]


class TextKeyCache:
    """Keys of story texts by a digest of their inputs: bounded, least recently used out.

    Tokenizing the window's stories is most of a render's cost, and a one-shot process
    (``aggregator poll`` from cron) starts with an empty memory: ``seed`` loads what storage
    kept (``aggregator.store.relatedkeys``) and ``take_fresh`` hands back what was computed
    since, to be stored. Values travel as JSON text (``encode`` / ``decode``).
    """

    def __init__(self, capacity: int = 32_768) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, _TextKeys] = OrderedDict()
        self._fresh: dict[bytes, _TextKeys] = {}

    @staticmethod
    def digest(titles: tuple[str, ...], summary_html: str) -> bytes:
        """The cache key of one story text's inputs."""
        h = hashlib.blake2b(digest_size=16)
        for title in titles:
            h.update(title.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        h.update(b"\x1e")
        h.update(summary_html.encode("utf-8", "surrogatepass"))
        return h.digest()

    def get(self, titles: tuple[str, ...], summary_html: str) -> _TextKeys:
        """The keys of these inputs, computed once."""
        digest = self.digest(titles, summary_html)
        found = self._entries.get(digest)
        if found is None:
            found = _summary_keys(titles, summary_html)
            self._put(digest, found)
            self._fresh[digest] = found
        else:
            self._entries.move_to_end(digest)
        return found

    def _put(self, digest: bytes, found: _TextKeys) -> None:
        self._entries[digest] = found
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def compute_missing(
        self,
        inputs: Iterable[KeyInputs],
        compute: KeysFn,
    ) -> int:
        """Compute the keys of those ``inputs`` not in memory with ``compute`` in one call, as
        ``get`` would have one by one; returns how many. ``compute`` maps a list of inputs to
        their keys in order (``summary_keys_many``, or the same spread over worker
        processes: a render after a busy poll tokenizes thousands of new stories)."""
        todo: dict[bytes, KeyInputs] = {}
        for titles, summary_html in inputs:
            digest = self.digest(titles, summary_html)
            if digest not in self._entries:
                todo.setdefault(digest, (titles, summary_html))
        if not todo:
            return 0
        for digest, found in zip(todo, compute(list(todo.values())), strict=True):
            self._put(digest, found)
            self._fresh[digest] = found
        return len(todo)

    def missing(self, digests: Iterable[bytes]) -> list[bytes]:
        """The digests not in memory (to be looked up in storage)."""
        return [d for d in dict.fromkeys(digests) if d not in self._entries]

    def seed(self, rows: Iterable[tuple[bytes, str]]) -> None:
        """Add stored ``(digest, encoded keys)``; undecodable rows are ignored (recomputed)."""
        for digest, text in rows:
            found = decode(text)
            if found is not None:
                self._put(digest, found)

    def take_fresh(self) -> list[tuple[bytes, str]]:
        """``(digest, encoded keys)`` computed since the last call."""
        fresh, self._fresh = self._fresh, {}
        return [(d, encode(found)) for d, found in fresh.items()]

    def clear(self) -> None:
        """Forget everything (tests)."""
        self._entries.clear()
        self._fresh.clear()


def encode(found: _TextKeys) -> str:
    """One text's keys as JSON."""
    return json.dumps(
        [sorted(found.keys), sorted(found.names), sorted(found.lower)], ensure_ascii=False
    )


def decode(text: str) -> _TextKeys | None:
    """The keys ``encode`` wrote, or None for anything else."""
    try:
        keys, names, lower = json.loads(text)
        return _TextKeys(frozenset(keys), frozenset(names), frozenset(lower))
    except (ValueError, TypeError):
        return None


TEXT_KEYS = TextKeyCache()


def story_keys(
    story: StoryRecord, common_words: frozenset[str] = frozenset(), found: _TextKeys | None = None
) -> frozenset[str]:
    """The keys ``story`` is indexed under (see the module docstring)."""
    found = found or _found(story)
    keys = set(found.keys)
    keys.update("n:" + name for name in found.names if name not in common_words)
    if story.card is not None:
        keys.update("t:" + tag.strip().casefold() for tag in story.card.tags if tag.strip())
    return frozenset(keys)


def key_score(shared: set[str] | frozenset[str], common: frozenset[str] = frozenset()) -> float:
    """How related two stories sharing ``shared`` keys are: the sum of the keys' weights, a
    third of it for keys in ``common`` (carried by too many stories to say much alone)."""
    return sum(
        WEIGHTS.get(key[0], 0.0) * (COMMON_FACTOR if key in common else 1.0) for key in shared
    )


def _prepare(stories: Sequence[StoryRecord], now: datetime) -> list[_Story]:
    """Usable stories (with items, not dated in the future, each id once), oldest first."""
    usable: list[tuple[StoryRecord, _TextKeys]] = []
    seen: set[str] = set()
    vocabulary: set[str] = set()
    for story in stories:
        if not story.items or story.public_id in seen:
            continue
        seen.add(story.public_id)
        found = _found(story)
        vocabulary.update(found.lower)
        usable.append((story, found))
    lower = frozenset(vocabulary)
    out: list[_Story] = []
    for story, found in usable:
        lead = choose_lead(story.items)
        moment = published_of(lead)
        if moment > now:
            continue
        out.append(
            _Story(
                public_id=story.public_id,
                time=moment,
                title=lead.title,
                url=lead.url,
                keys=story_keys(story, lower, found),
            )
        )
    out.sort(key=lambda s: (s.time, s.public_id))
    return out


def related_updates(
    stories: Sequence[StoryRecord],
    *,
    now: datetime,
    limit: int = DEFAULT_LIMIT,
    only: Collection[str] | None = None,
) -> dict[str, tuple[RelatedRef, ...]]:
    """``{public_id: up to limit related earlier stories, best first}`` for every story.

    ``only``: score just these stories (the ones the editions export; every story still counts
    as a candidate). An edition shows a few hundred of the thousands of stories in the window,
    and scoring is most of the cost.

    Earlier means published strictly before (ties broken by public id, so the relation is
    acyclic and deterministic). Best first: higher shared-key score, then the more recent one.
    Stories dated after ``now`` are left out (bad publisher clocks); the input is what
    ``Repository.recent_stories`` returns, which already leaves out merged stories.
    """
    if limit <= 0:
        return {}
    ordered = _prepare(stories, now)
    postings: dict[str, list[int]] = {}  # key -> positions in ``ordered``, ascending
    for position, story in enumerate(ordered):
        for key in story.keys:
            postings.setdefault(key, []).append(position)
    common_df = max(COMMON_MIN_STORIES, COMMON_SHARE * len(ordered))
    weight = {
        key: WEIGHTS.get(key[0], 0.0) * (COMMON_FACTOR if len(plist) > common_df else 1.0)
        for key, plist in postings.items()
    }
    result: dict[str, tuple[RelatedRef, ...]] = {}
    for position, story in enumerate(ordered):
        if only is not None and story.public_id not in only:
            continue
        scores: dict[int, float] = {}
        for key in story.keys:
            plist, w = postings[key], weight[key]
            end = bisect_left(plist, position)  # only earlier stories
            for other in plist[max(0, end - POSTINGS_PER_KEY) : end]:
                scores[other] = scores.get(other, 0.0) + w
        best = heapq.nlargest(
            limit,
            ((score, other) for other, score in scores.items() if score >= MIN_SCORE),
        )  # higher score first, then the later (larger) position: the more recent story
        if best:
            result[story.public_id] = tuple(
                RelatedRef(
                    id=ordered[other].public_id,
                    title=ordered[other].title,
                    url=ordered[other].url,
                    published=ordered[other].time,
                )
                for _, other in best
            )
    return result
