"""Tags of a story (pure): named entities, Latin product names and versions, Chinese titles.

No NLP model: three cheap, explainable sources, ranked by how often they occur (the title
counts double) and then by first appearance.

* Entities from the alias table (``aggregator/data/aliases.tsv``): 腾讯, Tencent and 微信 all
  become one tag, shown in the card language's form (``Tencent`` for ``en``, ``腾讯`` for ``zh``).
* Latin names: runs of capitalised, camel-case or all-caps words with an optional version
  (``DeepSeek``, ``iPhone 17 Pro``, ``GPT-5.1``, ``Windows 11``), minus the capitalised function
  words that start sentences. Title Case headlines capitalise every word, so such a title only
  votes for single words its body writes with a capital too. A name found with and without
  its version (``Windows``, ``Windows 11``) is one tag, the versioned one.
* Chinese names the copy marks itself: 《书名》 and short “quoted” terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from aggregator.dedupe.aliases import MARK, default_aliases
from aggregator.dedupe.text import normalize
from aggregator.enrich.sentences import CJK, is_cjk

MAX_TAGS = 6
_MARKED = re.compile(f"{MARK}([^{MARK}]+){MARK}")
_WORD = r"(?:[A-Z][A-Za-z0-9]*|[a-z]{1,2}[A-Z][A-Za-z0-9]*)(?:[.+\-][A-Za-z0-9]+)*\+?"
_VERSION = r"(?:\d+(?:\.\d+)*[A-Za-z]{0,3})"
_NAME = re.compile(rf"(?<![\w.])({_WORD}(?: (?:{_WORD}|{_VERSION}))*)(?![\w])")
_TITLE_WORD = re.compile(rf"(?<![\w.]){_WORD}(?: {_VERSION})?(?!\w)")
_SENTENCE_START = re.compile(r"(?:^|[.!?。！？:;]\s*|\n\s*)$")
_BOOK = re.compile(r"《([^《》]{1,30})》")
_QUOTED = re.compile(rf"“([{CJK}A-Za-z0-9 ]{{2,12}})”")
_STOP_WORDS = """a an the this that these those it its in on at for with and but or as by from to
    of if
    when what why how who whom which where while after before over under into about than then
    there here we i you he she they our your their his her my me us them is are was were be
    been has have had do does did will would can could should may might must not no yes so
    also just now new more most all any some every each one two three first last next today
    yesterday tomorrow monday tuesday wednesday thursday friday saturday sunday january
    february march april may june july august september october november december according
    report reports reportedly said says update updated breaking exclusive mr mrs ms dr chinese
    american european japanese korean british german french indian global"""
_STOP = frozenset(_STOP_WORDS.split())


@lru_cache(maxsize=4)
def entity_names(language: str) -> dict[str, str]:
    """Entity id -> display name: its first Chinese surface for ``zh``, else its first Latin
    one (falling back to whatever comes first)."""
    data = resources.files("aggregator").joinpath("data/aliases.tsv").read_text(encoding="utf-8")
    want_cjk = language.lower().startswith("zh")
    names: dict[str, str] = {}
    for raw in data.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entity, _, forms = line.partition("\t")
        surfaces = [f.strip() for f in forms.split("|") if f.strip()]
        if not entity.strip() or not surfaces:
            continue
        preferred = [s for s in surfaces if bool(re.search(f"[{CJK}]", s)) == want_cjk]
        names[entity.strip()] = (preferred or surfaces)[0]
    return names


def _title_case(title: str) -> bool:
    """True for English headline style, where capitals say nothing about names."""
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'’-]*", title) if len(w) > 3]
    if len(words) < 3:
        return False
    return sum(w[0].isupper() for w in words) / len(words) >= 0.6


def _trim(name: str) -> str:
    """Drop function words from both ends of a run (``The DeepSeek`` -> ``DeepSeek``); inner
    ones stay (``Bank of America``)."""
    words = name.split(" ")
    while words and words[0].lower() in _STOP:
        words.pop(0)
    while words and words[-1].lower() in _STOP:
        words.pop()
    return " ".join(words)


def _in_text(name: str, text: str) -> bool:
    """True when ``text`` has ``name`` as a whole word (same case: capitals mark a name)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


def _absorb_versions(
    score: dict[str, float], first: dict[str, int], display: dict[str, str]
) -> None:
    """Fold a name into its versioned form when both were found (``Windows`` into
    ``Windows 11``): one tag, the more specific one, with both scores."""
    for key in list(score):
        base, _, version = key.rpartition(" ")
        if base in score and base != key and re.fullmatch(_VERSION, version):
            score[key] += score.pop(base)
            first[key] = min(first[key], first.pop(base))
            display.pop(base)


def _latin_names(text: str) -> list[str]:
    """Capitalised runs of ``text``. A single word that is capitalised only where a sentence
    starts ("Library extends ...") says nothing about being a name and is left out, as are
    plurals of function words ("Sundays")."""
    out: list[str] = []
    initial_only: dict[str, bool] = {}
    for match in _NAME.finditer(text):
        name = _trim(match.group(1))
        low = name.lower()
        if len(name) < 2 or low in _STOP or low.removesuffix("s") in _STOP:
            continue
        if re.fullmatch(_VERSION, name):
            continue
        if " " not in name and name[1:].islower():
            starts = _SENTENCE_START.search(text[: match.start(1)]) is not None
            initial_only[name] = initial_only.get(name, True) and starts
        out.append(name)
    return [n for n in out if not initial_only.get(n, False)]


def _entities(text: str) -> list[str]:
    return _MARKED.findall(default_aliases().mark(normalize(text)))


def _cjk_names(text: str) -> list[str]:
    return [m.strip() for m in (*_BOOK.findall(text), *_QUOTED.findall(text)) if m.strip()]


def extract_tags(
    title: str,
    text: str,
    *,
    language: str = "en",
    categories: Iterable[str] = (),
    limit: int = MAX_TAGS,
) -> tuple[str, ...]:
    """Up to ``limit`` tags for a story whose lead has ``title`` and body ``text``.

    ``language`` picks the display form of known entities; ``categories`` (the publisher's
    own, e.g. ``AI``) are added after the names found in the text, if there is room.
    """
    names = entity_names(language)
    surface_entity = default_aliases().entity_of
    score: dict[str, float] = {}
    first: dict[str, int] = {}
    display: dict[str, str] = {}
    order = 0

    def vote(tag: str, weight: float) -> None:
        nonlocal order
        entity = surface_entity(normalize(tag))
        if entity is not None:
            tag = names.get(entity, tag)
        key = tag.casefold()
        if key not in first:
            first[key], display[key] = order, tag
            order += 1
        score[key] = score.get(key, 0.0) + weight

    for part, weight in ((title, 2.0), (text, 1.0)):
        for entity in _entities(part):
            vote(names.get(entity, entity), weight)
        for name in _cjk_names(part):
            vote(name, weight)
    if not is_cjk(title) and _title_case(title):
        # every word is capitalised: single words count, if the body writes them the same way
        title_latin = [
            name
            for name in dict.fromkeys(_trim(m.group(0)) for m in _TITLE_WORD.finditer(title))
            if len(name) > 1 and name.lower() not in _STOP and _in_text(name, text)
        ]
    else:
        title_latin = _latin_names(title)
    for name in title_latin:
        vote(name, 2.0)
    for name in _latin_names(text):
        vote(name, 1.0)
    _absorb_versions(score, first, display)
    ranked = sorted(score, key=lambda k: (-score[k], first[k]))
    tags = [display[k] for k in ranked]
    for cat in categories:
        cat = cat.strip()
        if cat and cat.casefold() not in {t.casefold() for t in tags}:
            tags.append(cat)
    return tuple(tags[:limit])
