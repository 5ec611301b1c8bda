"""The offline card: sentence splitting (Chinese and Latin), bounded TL;DR, tags, input hash."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from aggregator.enrich.extractive import (
    CJK_MAX_CHARS,
    LATIN_MAX_WORDS,
    extractive_card,
    strip_dateline,
    tldr,
)
from aggregator.enrich.inputs import card_input, input_hash
from aggregator.enrich.sentences import is_cjk, split_sentences
from aggregator.enrich.tags import extract_tags
from aggregator.model import StoredItem, StoryRecord

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def item(
    id: int,
    title: str,
    summary: str,
    *,
    weight: float = 1.0,
    source: str = "ithome",
    language: str | None = "zh-cn",
    categories: tuple[str, ...] = (),
    minute: int = 0,
) -> StoredItem:
    when = datetime(2026, 11, 28, 8, minute, tzinfo=UTC)
    return StoredItem(
        id=id,
        source_id=id,
        source_key=source,
        source_name=source.upper(),
        source_weight=weight,
        source_site_url=None,
        source_feed_url=f"https://{source}.example/feed",
        source_tags=(),
        guid=None,
        url=f"https://{source}.example/{id}",
        canonical_url=f"https://{source}.example/{id}",
        title=title,
        summary_html=summary,
        content_html=summary,
        author=None,
        categories=categories,
        language=language,
        published_at=when,
        updated_at=None,
        collected_at=when,
    )


def story(*items: StoredItem) -> StoryRecord:
    return StoryRecord(id=7, public_id="urn:x", created_at=NOW, updated_at=NOW, items=items)


# ------------------------------------------------------------------ sentences


def test_chinese_sentences_split_on_full_stops_exclamations_questions_and_semicolons() -> None:
    text = "腾讯和阿里巴巴正在洽谈投资。估值超 200 亿美元！你怎么看？交易尚未敲定；双方均未回应。"
    assert split_sentences(text, "zh-cn") == [
        "腾讯和阿里巴巴正在洽谈投资。",
        "估值超 200 亿美元！",
        "你怎么看？",
        "交易尚未敲定；",
        "双方均未回应。",
    ]


def test_chinese_text_is_split_as_chinese_whatever_the_feed_declares() -> None:
    assert split_sentences("第一句。第二句！", "en") == ["第一句。", "第二句！"]
    assert is_cjk("腾讯和阿里巴巴洽谈投资 DeepSeek")
    assert not is_cjk("Tencent and Alibaba eye DeepSeek (深度求索)")


def test_english_sentences_keep_abbreviations_and_version_numbers() -> None:
    text = "Dr. Smith said the U.S. deal closes soon. Apple shipped iOS 26.1! Is it good? Yes."
    assert split_sentences(text, "en") == [
        "Dr. Smith said the U.S. deal closes soon.",
        "Apple shipped iOS 26.1!",
        "Is it good?",
        "Yes.",
    ]


def test_splitting_collapses_whitespace_and_handles_empty_text() -> None:
    assert split_sentences("  \n ", "en") == []
    assert split_sentences("One\n\n sentence.   Two.", "en") == ["One sentence.", "Two."]


# ------------------------------------------------------------------ TL;DR


def test_chinese_tldr_drops_the_dateline_and_keeps_two_sentences() -> None:
    text = (
        "IT之家 11 月 28 日消息，据报道，腾讯和阿里巴巴正在洽谈投资深度求索（DeepSeek）。"
        "估值超过 200 亿美元；第三句不该出现。"
    )
    got = tldr("腾讯、阿里洽谈投资 DeepSeek", text, "zh-cn")
    assert got == "据报道，腾讯和阿里巴巴正在洽谈投资深度求索（DeepSeek）。估值超过 200 亿美元。"


def test_chinese_tldr_is_bounded_in_characters() -> None:
    long_sentence = "这是一个非常长的句子" * 40 + "。"
    got = tldr("标题", long_sentence + "第二句。", "zh")
    assert len(got) == CJK_MAX_CHARS
    assert got.endswith("…")
    two = tldr("标题", "短句一。" + "长" * 199 + "。", "zh")
    assert two == "短句一。"  # the second sentence would pass the bound: left out


def test_english_tldr_keeps_lead_sentences_within_the_word_bound() -> None:
    text = (
        "BEIJING (Reuters) - Tencent and Alibaba are in talks to invest in DeepSeek. "
        "The deal would value the lab at over $20 bn. Dr. Lee declined to comment. "
        "A fourth sentence never makes it."
    )
    got = tldr("Tencent, Alibaba eye DeepSeek", text, "en")
    assert got == (
        "Tencent and Alibaba are in talks to invest in DeepSeek. "
        "The deal would value the lab at over $20 bn. Dr. Lee declined to comment."
    )
    one_long = " ".join(f"w{i}" for i in range(100)) + "."
    cut = tldr("t", one_long, "en")
    assert len(cut.split()) == LATIN_MAX_WORDS and cut.endswith("…")


def test_tldr_skips_a_repeated_title_and_boilerplate_and_falls_back_to_the_title() -> None:
    title = "Nvidia unveils its next AI chip"
    text = "Nvidia unveils its next AI chip. It targets training of large models. Read more"
    assert tldr(title, text, "en") == "It targets training of large models."
    assert tldr(title, "", "en") == title
    assert tldr("小米发布新款手环", "详情", "zh") == "小米发布新款手环"


def test_dateline_patterns() -> None:
    assert strip_dateline("IT之家 11 月 28 日消息，正文。") == "正文。"
    assert strip_dateline("新华社北京11月28日电，正文。") == "正文。"
    assert strip_dateline("LONDON (Reuters) - Body.") == "Body."
    assert strip_dateline("No dateline here.") == "No dateline here."


# ------------------------------------------------------------------ tags


def test_tags_of_a_chinese_story_use_the_alias_table_and_book_titles() -> None:
    tags = extract_tags(
        "腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元",
        "据报道，腾讯和阿里巴巴正在洽谈投资深度求索（DeepSeek）。游戏《黑神话：悟空》也被提及。",
        language="en",
        categories=("AI",),
    )
    assert set(tags[:3]) == {"DeepSeek", "Tencent", "Alibaba"}
    assert "黑神话：悟空" in tags and tags[-1] == "AI"
    zh = extract_tags("腾讯投资 DeepSeek", "腾讯投资深度求索。", language="zh")
    assert zh[:2] == ("深度求索", "腾讯") or zh[:2] == ("腾讯", "深度求索")


def test_tags_of_an_english_story_find_names_and_versions_not_function_words() -> None:
    tags = extract_tags(
        "The Chip Race Heats Up As Nvidia Ships Blackwell",
        "Nvidia started shipping Blackwell GPUs on Monday. The company said GPT-5.1 runs on "
        "them, and that Windows 11 support follows.",
    )
    assert tags[0] == "NVIDIA"  # known entity (alias table form), named in title and body
    assert "Blackwell" in tags and "GPT-5.1" in tags
    lowered = {t.casefold() for t in tags}
    assert not lowered & {"the", "monday", "chip race heats up as"}
    assert len(tags) <= 6


# ------------------------------------------------------------------ input and hash


def test_card_input_uses_the_lead_report_and_counts_reports() -> None:
    lead = item(1, "腾讯、阿里洽谈投资 DeepSeek", "<p>IT之家消息。腾讯洽谈投资。</p>", weight=2.0)
    other = item(2, "Tencent eyes DeepSeek", "<p>Tencent is in talks.</p>", source="verge")
    inp = card_input(story(other, lead))
    assert inp.title == lead.title and inp.publisher == "ITHOME"
    assert inp.text == "IT之家消息。腾讯洽谈投资。"
    assert inp.reports == 2 and inp.others == (("VERGE", "Tencent eyes DeepSeek"),)


def test_input_hash_is_stable_and_changes_only_with_title_text_or_report_count() -> None:
    base = input_hash("Title", "Body text.", 1)
    assert base == input_hash("Title", "Body text.", 1)
    assert len(base) == 64
    variants = {
        base,
        input_hash("Title!", "Body text.", 1),
        input_hash("Title", "Body.", 1),
        input_hash("Title", "Body text.", 2),
        input_hash("TitleBody", " text.", 1),  # no separator ambiguity
    }
    assert len(variants) == 5
    lead = item(1, "Title", "<p>Body text.</p>")
    moved = replace(lead, collected_at=NOW, categories=("x",), url="https://elsewhere/1")
    assert card_input(story(lead)).hash == card_input(story(moved)).hash == base
    second = item(2, "Other", "<p>x</p>", source="verge", minute=5)
    assert card_input(story(lead, second)).hash == input_hash("Title", "Body text.", 2)


def test_extractive_card_fields() -> None:
    lead = item(1, "小米发布新款手环，售价 249 元", "<p>小米今日发布新款手环。续航 21 天。</p>")
    card = extractive_card(card_input(story(lead)), now=NOW)
    assert card.backend == "extractive" and not card.ai_generated
    assert card.tldr == "小米今日发布新款手环。续航 21 天。"
    assert card.tags[0] == "Xiaomi"
    assert card.generated_at == NOW and card.input_hash == card_input(story(lead)).hash
    assert card.what_changed == "" and card.key_takeaways == () and card.model is None


def test_sentence_initial_capitals_and_plural_weekdays_are_not_tags() -> None:
    """ "Library" only starts sentences and "Sundays" is a weekday: neither names anything;
    a word also capitalised mid-sentence is kept."""
    from aggregator.enrich.tags import extract_tags

    tags = extract_tags(
        "Library extends weekend opening hours",
        "The central library will open on Sundays. Library staff agreed with Westfield Council.",
    )
    assert "Library" not in tags and "Sundays" not in tags
    assert "Westfield Council" in tags
    # sentence-initial but also written capitalised mid-sentence: a name
    assert extract_tags(
        "Cluster news", "Kubernetes 1.31 is out. Teams running Kubernetes should upgrade."
    ) == ("Kubernetes 1.31",)
