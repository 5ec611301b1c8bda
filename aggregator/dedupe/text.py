"""Text normalization and shingling for same-story matching, Chinese and English.

Pure functions (the only IO is reading the Traditional->Simplified dictionary and the alias
table once, lazily, from installed package data).

* :func:`normalize` folds the ways one headline can be written: NFKC (full-width letters and
  digits), Traditional -> Simplified Chinese, casefold, punctuation to spaces. Digits, decimal
  points inside numbers, ``$`` and ``%`` survive because numbers are evidence.
* :func:`tokens` splits normalized text into typed tokens: entity markers (from the alias
  table), numbers with their unit, alphanumeric codes (``v3.1``, ``r2``, ``q3``, ``gpt4o``),
  Latin words and runs of Chinese characters.
* :func:`features` turns a text into :class:`TextFeatures`: the shingle set (Chinese character
  bigrams, English stemmed word unigrams + bigrams, one token per entity, number and code),
  plus the "strong" tokens grouped by kind so that conflicting numbers can veto a match, and
  the English content units (:attr:`TextFeatures.units`) and negation flag that the English
  decision compares. Only ``shingles`` feeds MinHash: the decision-only fields can change
  without changing a stored band key.
"""

from __future__ import annotations

import itertools
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aggregator.dedupe.aliases import MARK, default_aliases

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

# --------------------------------------------------------------------------- to Simplified


@lru_cache(maxsize=1)
def _t2s() -> tuple[frozenset[str], Callable[[str], str]]:
    """Load the converter once: (Traditional-only characters, convert function).

    Uses ``opencc-python-reimplemented`` (Apache-2.0, pure Python, OpenCC's dictionaries) with
    the ``tw2sp`` chain: characters, phrases and Taiwan vocabulary (軟體 -> 软件). It costs
    ~0.3 ms per headline, so it only runs when the text holds a Traditional-only character.
    """
    import opencc

    dictionary = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    traditional: set[str] = set()
    for line in dictionary.read_text(encoding="utf-8").splitlines():
        source, _, targets = line.partition("\t")
        if source and targets and targets.split()[0] != source:
            traditional.add(source)
    converter = opencc.OpenCC("tw2sp")
    return frozenset(traditional), converter.convert


def to_simplified(text: str) -> str:
    """Traditional Chinese -> Simplified; text without Traditional-only characters is returned
    unchanged (so mainland text never goes through Taiwan vocabulary rules)."""
    traditional, convert = _t2s()
    if traditional.isdisjoint(text):
        return text
    result: str = convert(text)
    return result


# --------------------------------------------------------------------------- normalize

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LETTER_HYPHEN_DIGIT = re.compile(r"(?<=[a-z])-(?=\d)")  # gpt-4o -> gpt4o, covid-19 -> covid19
_DROP = re.compile(rf"[^0-9a-z{CJK}$%.\s\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff-]")
_STRAY_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_SPACES = re.compile(r"[\s-]+")
_DIGIT_SPACE_CJK = re.compile(rf"(?<=\d) (?=[{CJK}%])")  # "52.99 万元" -> "52.99万元"


def normalize(text: str) -> str:
    """Fold ``text`` to the form that matching compares (see module docstring).

    NFKC first (full-width ``ＩＯＳ２６`` -> ``IOS26``, ``，`` -> ``,``), then Traditional ->
    Simplified, casefold, thousands separators removed, ``gpt-4o`` joined to ``gpt4o``, every
    other punctuation mark and hyphen folded to one space. A ``.`` survives only between digits.
    """
    folded = unicodedata.normalize("NFKC", text)
    folded = to_simplified(folded).casefold()
    # each of these patterns needs its character: a text without it skips the scan
    if "," in folded:
        folded = _THOUSANDS.sub("", folded)
    if "-" in folded:
        folded = _LETTER_HYPHEN_DIGIT.sub("", folded)
    folded = _DROP.sub(" ", folded)
    if "." in folded:
        folded = _STRAY_DOT.sub(" ", folded)
    return _DIGIT_SPACE_CJK.sub("", _SPACES.sub(" ", folded).strip())


# --------------------------------------------------------------------------- tokens

# Units that make a number a different kind of fact: "3月" and "5日" are not comparable with
# each other, but "5日" and "6日" are (two days' digests), and so are "$20b" and "$30b".
_CJK_UNITS = (
    "美元|亿元|万元|亿|万|千|元|日|号|月|年|岁|例|人|名|家|个|分钟|分|秒|小时|天|周|倍|%|款|代|期"
)
_LATIN_UNITS = "bn|b|m|k|nm|gb|tb|mah|mp|hz|ghz|w|kw|fps|mm|km|kg|th|st|nd|rd"
_UNIT_GROUP = {
    "号": "日",
    "亿元": "亿",
    "万元": "万",
    "bn": "b",
    "分钟": "分钟",
    "th": "ord",
    "st": "ord",
    "nd": "ord",
    "rd": "ord",
}
_CN_DIGIT = {"一": "1", "二": "2", "三": "3", "四": "4", "1": "1", "2": "2", "3": "3", "4": "4"}

_TOKEN = re.compile(
    rf"""
    {MARK}(?P<ent>[a-z0-9_]+){MARK}
  | 第(?P<quarter>[一二三四1-4])季度? | (?P<quarter2>[一二三四1-4])季度
  | \$(?P<money>\d+(?:\.\d+)?)(?P<money_unit>bn|[kmb])?(?![a-z0-9])
  | (?<![a-z0-9])(?P<code>[a-z]+\d+(?:\.\d+)*[a-z]*)(?![a-z0-9])
  | (?P<num>\d+(?:\.\d+)*)
      (?:(?P<cunit>{_CJK_UNITS})|(?P<lunit>{_LATIN_UNITS})(?![a-z0-9])|(?P<tail>[a-z]+))?
  | (?P<word>[a-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]+)
  | (?P<cjk>[{CJK}]+)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    """One typed token: ``kind`` is ent, num, code, word or cjk; ``group`` types a number."""

    kind: str
    value: str
    group: str = ""


def tokens(normalized: str) -> list[Token]:
    """Split normalized text (aliases are marked here) into typed tokens, in order.

    The alternative that matched is told by ``lastgroup`` (the last group to close: a number's
    unit or tail, a sum's unit), one lookup instead of probing each group in turn.
    """
    marked = default_aliases().mark(normalized)
    out: list[Token] = []
    append = out.append
    for m in _TOKEN.finditer(marked):
        kind = m.lastgroup
        if kind == "word" or kind == "cjk" or kind == "ent":
            append(Token(kind, m.group(kind)))
        elif kind == "code":
            append(Token("code", m.group("code"), "code"))
        elif kind == "quarter" or kind == "quarter2":
            append(Token("code", "q" + _CN_DIGIT[m.group(kind)], "code"))
        elif kind == "money" or kind == "money_unit":
            unit = _UNIT_GROUP.get(m.group("money_unit") or "", m.group("money_unit") or "")
            append(Token("num", f"${m.group('money')}{unit}", "$"))
        else:  # num, with its unit (cunit, lunit) or tail
            number = m.group("num")
            if kind == "tail":  # 5g, 4o, 14pro: a model or standard name, not a quantity
                append(Token("code", number + m.group("tail"), "code"))
                continue
            unit = m.group("cunit") or m.group("lunit") or ""
            group = _UNIT_GROUP.get(unit, unit) or "num"
            value = number + (_UNIT_GROUP.get(unit, unit) if group != "ord" else "")
            append(Token("num", value, group))
    return out


# --------------------------------------------------------------------------- English words

_STOPWORD_TEXT = (
    "a an the and or but of in on at to for from by with as is are was were be been being "
    "it its this that these those has have had do does did will would can could may might "
    "shall should not no after before over under into out up down about than then there "
    "here he she they we you i his her their our your my me him them us who whom which "
    "what when where why how all any some more most new says said say just also amid via "
    "vs per"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Decision-only English evidence (never part of the shingles, so band keys do not change):
# spelled-out numbers are numbers ("six" = "6", "eight" conflicts with "4"); weekdays and
# unambiguous month names are facts of their own kind ("10 things to know for Wednesday" is
# not Thursday's); headline boilerplate words say nothing about the event.
_NUMBER_TEXT = (
    "two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
    " sixteen seventeen eighteen nineteen twenty"
)  # not "one": "one of the...", "no one" are rarely a count
_TENS_TEXT = "thirty forty fifty sixty seventy eighty ninety"
_WEEKDAY_TEXT = "monday tuesday wednesday thursday friday saturday sunday"
_MONTH_TEXT = "january february april june july august september october november december"
NUMBER_WORDS = {w: str(n) for n, w in enumerate(_NUMBER_TEXT.split(), start=2)} | {
    w: str(10 * n) for n, w in enumerate(_TENS_TEXT.split(), start=3)
}
# not "march" or "may": verbs far more often than months
_DATE_WORDS = {d: "weekday" for d in _WEEKDAY_TEXT.split()} | {
    m: "month" for m in _MONTH_TEXT.split()
}
_WEAK_TEXT = (
    "report reported reports update updated updates insight source sources official officials"
    " breaking video videos photo photos live exclusive analysis watch factbox explainer"
    " opinion editorial"
)
_NEGATION = re.compile(r"\b(?:not|never|without|nor|no(?!\.\s*\d))\b|n['’]t\b", re.IGNORECASE)


@lru_cache(maxsize=16_384)
def stem(word: str) -> str:
    """A light English stemmer: enough to make plural, -ed and -ing forms meet (memoized in a
    bounded cache: words follow Zipf's law)."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # stopp(ed) -> stop, kill stays kill
    return word


# --------------------------------------------------------------------------- features


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """Everything the matcher compares, computed once per text.

    ``shingles``: the set MinHash and Jaccard run on. ``strong``: number/code values grouped by
    kind (``日``, ``%``, ``$``, ``code``, ``num``...), used for conflict vetoes.
    ``entities``: canonical entity ids. ``cjk_chars`` / ``latin_words``: script counts, to tell
    a Chinese text from an English one.
    """

    shingles: frozenset[str]
    strong: dict[str, frozenset[str]]
    entities: frozenset[str]
    cjk_chars: int
    latin_words: int
    # English content units: stemmed words (stop words and headline boilerplate dropped,
    # spelled-out numbers as numbers), entities, numbers, codes; what the English rule compares
    units: frozenset[str] = frozenset()
    negated: bool = False  # "not", "no", "never", "without", "n't" (English)

    @property
    def script(self) -> str:
        """``zh`` when Chinese characters dominate, ``en`` otherwise (``""`` when empty)."""
        if not self.cjk_chars and not self.latin_words:
            return ""
        return "zh" if self.cjk_chars >= 2 * self.latin_words else "en"

    @property
    def strong_tokens(self) -> frozenset[str]:
        """All entity, number and code shingles (the language-independent evidence)."""
        return frozenset(s for s in self.shingles if s[0] in "enc")


_WORK_TITLE = re.compile(r"《([^《》]{1,40})》")


def features(text: str) -> TextFeatures:
    """Normalize and shingle ``text`` (see :class:`TextFeatures`).

    Titles of works in 《》 (songs, films, documents) are also kept as strong tokens of kind
    ``work``: "儿歌《摇篮曲》" and "儿歌《小白船》" are different items from one template.
    """
    toks = tokens(normalize(text))
    shingles: set[str] = set()
    units: set[str] = set()
    strong: dict[str, set[str]] = {}
    works = {normalize(w) for w in _WORK_TITLE.findall(text)} - {""}
    if works:
        strong["work"] = works
    entities: set[str] = set()
    cjk_chars = 0
    latin_words = 0
    run: list[str] = []  # consecutive non-Chinese units, for word bigrams

    def flush() -> None:
        for left, right in itertools.pairwise(run):
            if left != right:
                shingles.add(f"b:{left} {right}")
        run.clear()

    for tok in toks:
        if tok.kind == "cjk":
            flush()
            cjk_chars += len(tok.value)
            chars = tok.value
            if len(chars) == 1:
                shingles.add("z:" + chars)
            else:
                shingles.update("z:" + chars[i : i + 2] for i in range(len(chars) - 1))
            continue
        if tok.kind == "word":
            latin_words += 1
            if tok.value in STOPWORDS or len(tok.value) < 2:
                continue
            unit = "w:" + stem(tok.value)
            if tok.value in NUMBER_WORDS:
                strong.setdefault("num", set()).add(NUMBER_WORDS[tok.value])
                units.add("n:" + NUMBER_WORDS[tok.value])
            elif tok.value in _DATE_WORDS:
                strong.setdefault(_DATE_WORDS[tok.value], set()).add(tok.value)
                units.add(unit)
            elif unit[2:] not in _weak_stems():
                units.add(unit)
        elif tok.kind == "ent":
            entities.add(tok.value)
            unit = "e:" + tok.value
        else:
            unit = ("n:" if tok.kind == "num" else "c:") + tok.value
            strong.setdefault(tok.group, set()).add(tok.value)
        if tok.kind != "word":
            units.add(unit)
        shingles.add(unit)
        run.append(unit[2:])
    flush()
    return TextFeatures(
        # interned: the same few thousand shingles recur in every text, so cached features
        # share one copy of each string
        shingles=frozenset(map(sys.intern, shingles)),
        strong={k: frozenset(v) for k, v in strong.items()},
        entities=frozenset(entities),
        cjk_chars=cjk_chars,
        latin_words=latin_words,
        units=frozenset(map(sys.intern, units)),
        negated=bool(latin_words and _NEGATION.search(text)),
    )


@lru_cache(maxsize=1)
def _weak_stems() -> frozenset[str]:
    """Stems of the headline boilerplate words (computed once: ``stem`` is defined above)."""
    return frozenset(stem(w) for w in _WEAK_TEXT.split())


def shingles(text: str) -> set[str]:
    """The shingle set of ``text``: Chinese character bigrams (a lone character as itself),
    English stemmed content words and word bigrams, one token per entity, number and code."""
    return set(features(text).shingles)
