"""The offline card (pure): a TL;DR of lead sentences, and tags.

The TL;DR is the first sentences of the story's lead report (news copy puts the facts first),
after dropping what is not news: a dateline (``IT之家 11 月 28 日消息，``, ``LONDON (Reuters) -``),
a first line that repeats the title, and "read more" boilerplate. It is bounded by the script:
at most two sentences and 200 characters of Chinese, or about 60 words of Latin text; a single
longer sentence is cut at a word (Latin) or character (Chinese) boundary with an ellipsis. With
no body text the title stands in.
"""

from __future__ import annotations

import re
from datetime import datetime

from aggregator.enrich.inputs import CardInput
from aggregator.enrich.sentences import is_cjk, split_sentences
from aggregator.enrich.tags import extract_tags
from aggregator.model import Card

CJK_MAX_CHARS = 200
CJK_MAX_SENTENCES = 2
LATIN_MAX_WORDS = 60
LATIN_MAX_SENTENCES = 3
ELLIPSIS = "…"

_CJK_DATELINE = re.compile(
    r"^[^，,。！？\s]{0,12}\s*(?:\d{4}\s*年\s*)?\d{1,2}\s*月\s*\d{1,2}\s*日\s*"
    r"(?:消息|电|讯|报道|晚间消息|早间消息)\s*[，,：:]\s*"
)
_LATIN_DATELINE = re.compile(
    r"^[A-Z][A-Za-z .,'’]{0,40}\((?:Reuters|AP|AFP|Bloomberg|Xinhua|dpa)\)\s*[-—–]+\s*"
)
_BOILERPLATE = re.compile(
    r"^(?:read more|continue reading|click here|source:|via\b|阅读全文|查看原文|点击查看|详情|"
    r"本文来源|责任编辑|原文链接)",
    re.IGNORECASE,
)
_FOLD = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    return _FOLD.sub("", text).casefold()


def strip_dateline(text: str) -> str:
    """``text`` without a leading dateline (``…月…日消息，`` or ``CITY (Agency) -``)."""
    return _LATIN_DATELINE.sub("", _CJK_DATELINE.sub("", text, count=1), count=1)


def _cut_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _cut_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]).rstrip(",;:") + ELLIPSIS


def lead_sentences(title: str, text: str, language: str | None = None) -> list[str]:
    """The body's sentences that can make a TL;DR: dateline stripped, boilerplate and a
    repeated title dropped."""
    folded_title = _fold(title)
    out: list[str] = []
    for sentence in split_sentences(strip_dateline(text.strip()), language):
        folded = _fold(sentence)
        if len(folded) < 2 or _BOILERPLATE.match(sentence) or folded == folded_title:
            continue
        out.append(sentence)
    return out


def tldr(title: str, text: str, language: str | None = None) -> str:
    """A bounded TL;DR of the lead report (see the module docstring for the bounds)."""
    sentences = lead_sentences(title, text, language) or [title.strip()]
    cjk = is_cjk(" ".join(sentences[:2]))
    picked: list[str] = []
    for sentence in sentences:
        if cjk:
            if len(picked) == CJK_MAX_SENTENCES:
                break
            if picked and len("".join(picked)) + len(sentence) > CJK_MAX_CHARS:
                break
        else:
            if len(picked) == LATIN_MAX_SENTENCES:
                break
            words = sum(len(s.split()) for s in picked)
            if picked and words + len(sentence.split()) > LATIN_MAX_WORDS:
                break
        picked.append(sentence)
    if cjk:
        text = _cut_chars("".join(picked), CJK_MAX_CHARS)
        return text[:-1] + "。" if text.endswith("；") else text
    return _cut_words(" ".join(picked), LATIN_MAX_WORDS)


def extractive_card(inp: CardInput, *, now: datetime, language: str = "en") -> Card:
    """The offline card of a story: TL;DR and tags (``language`` picks entity name forms)."""
    return Card(
        backend="extractive",
        tldr=tldr(inp.title, inp.text, inp.language),
        generated_at=now,
        input_hash=inp.hash,
        tags=extract_tags(inp.title, inp.text, language=language, categories=inp.categories),
    )
