"""The chat messages that ask an LLM for a story's card (pure).

One system message fixes the role, the output language and the JSON shape; one user message
carries the story: lead headline, publisher, the other publishers' headlines and the lead's
text (bounded by ``max_chars``). The reply is asked for in the configured language; a story
written in another language also gets a translated ``title`` (null otherwise).
"""

from __future__ import annotations

import json

from aggregator.enrich.inputs import CardInput
from aggregator.enrich.sentences import is_cjk

LANGUAGE_NAMES = {
    "en": "English",
    "zh": "Simplified Chinese",
    "zh-tw": "Traditional Chinese",
    "zh-hk": "Traditional Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "pt": "Portuguese",
    "it": "Italian",
    "ru": "Russian",
}
MAX_OTHERS = 10


def language_name(tag: str) -> str:
    """A language tag as the model understands it best: ``en`` -> ``English``."""
    low = tag.lower()
    return LANGUAGE_NAMES.get(low) or LANGUAGE_NAMES.get(low.split("-")[0]) or tag


def is_foreign(inp: CardInput, language: str) -> bool:
    """True when the story is not written in ``language`` (so it needs a translated title).

    Chinese-looking text is Chinese whatever the feed declared; otherwise the lead's declared
    language is compared by primary subtag, and an undeclared language counts as foreign only
    when it is Chinese text read by a non-Chinese edition.
    """
    want = language.lower().split("-")[0]
    if is_cjk(f"{inp.title} {inp.text[:400]}"):
        return want != "zh"
    if inp.language:
        return inp.language.lower().split("-")[0] != want
    return False


def build_messages(inp: CardInput, *, language: str, max_chars: int) -> list[dict[str, str]]:
    """The ``messages`` of a chat-completions request for ``inp``'s card."""
    lang = language_name(language)
    foreign = is_foreign(inp, language)
    title_rule = (
        f'"title": the headline translated faithfully into {lang}.'
        if foreign
        else '"title": null (the headline is already in the right language).'
    )
    system = (
        "You are a careful news editor. From the report given, write a short analysis card "
        f"in {lang}. Use only facts in the report; do not invent numbers, names or dates. "
        "Answer with one JSON object and nothing else, with exactly these keys:\n"
        f"{title_rule}\n"
        '"tldr": one or two sentences a reader can take in within 30 seconds.\n'
        '"what_changed": what is new, in one or two sentences.\n'
        '"why_it_matters": the consequence, in one or two sentences.\n'
        '"what_to_do_next": what a reader may want to do or watch for, one sentence.\n'
        '"who_should_care": the people or businesses concerned, one sentence.\n'
        '"key_takeaways": an array of two to four short strings.'
    )
    text = inp.text if len(inp.text) <= max_chars else inp.text[:max_chars] + "…"
    story = {
        "headline": inp.title,
        "publisher": inp.publisher,
        "language": inp.language,
        "reported_by": len(inp.others) + 1,
        "other_headlines": [f"{pub}: {title}" for pub, title in inp.others[:MAX_OTHERS]],
        "text": text,
    }
    user = "Report:\n" + json.dumps(story, ensure_ascii=False, indent=1)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
