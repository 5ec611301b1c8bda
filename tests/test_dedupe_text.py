"""Normalization, shingling, aliases and MinHash/LSH for same-story matching."""

from __future__ import annotations

import itertools

import pytest

from aggregator.dedupe.aliases import parse_aliases
from aggregator.dedupe.minhash import (
    DEFAULT_BANDS,
    DEFAULT_NUM_PERM,
    DEFAULT_ROWS,
    band_keys,
    estimate_jaccard,
    signature,
)
from aggregator.dedupe.text import features, normalize, shingles, stem, to_simplified

# --------------------------------------------------------------------------- normalize


def test_normalize_folds_width_case_punctuation_and_keeps_numbers() -> None:
    assert normalize("ＩＯＳ　２６．２正式版發佈！") == "ios 26.2正式版发布"
    assert normalize("Tencent's Q2: revenue $1,840.5B (up 15%)") == (
        "tencent s q2 revenue $1840.5b up 15%"
    )
    assert normalize("GPT-4o vs. DeepSeek-V3.1") == "gpt4o vs deepseek v3.1"


def test_traditional_folds_to_simplified_and_simplified_is_untouched() -> None:
    assert to_simplified("蘋果發佈新款軟體") == "苹果发布新款软件"
    mainland = "腾讯发布新款影片剪辑软件"
    assert to_simplified(mainland) is mainland  # no Traditional-only char: not converted


# --------------------------------------------------------------------------- shingles


def test_chinese_runs_become_character_bigrams() -> None:
    assert shingles("小米发布") == {"e:xiaomi", "z:发布"}
    assert shingles("今天下雨") == {"z:今天", "z:天下", "z:下雨"}
    assert shingles("雨") == {"z:雨"}  # a lone character stands for itself


def test_english_words_are_stemmed_without_stopwords_with_bigrams() -> None:
    got = shingles("The rebels captured the cities")
    assert got == {"w:rebel", "w:captur", "w:city", "b:rebel captur", "b:captur city"}
    assert stem("killings") == "kill"
    assert stem("stopped") == "stop"


def test_numbers_versions_and_codes_are_strong_tokens() -> None:
    f = features("iOS 26.2 beta, DeepSeek V3.1 and $20B; 腾讯第二季度营收200亿元, 3月5日")
    assert f.strong["num"] == {"26.2"}
    assert f.strong["code"] == {"v3.1", "q2"}
    assert f.strong["$"] == {"$20b"}
    assert f.strong["亿"] == {"200亿"}
    assert f.strong["月"] == {"3月"}
    assert f.strong["日"] == {"5日"}
    assert {"n:26.2", "c:v3.1", "c:q2", "n:200亿"} <= f.shingles


def test_titles_of_works_are_strong_tokens() -> None:
    assert features("儿歌大全之《摇篮曲》").strong["work"] == {"摇篮曲"}


def test_aliases_map_every_language_to_one_entity() -> None:
    for text in ("腾讯", "Tencent", "騰訊", "TENCENT"):
        assert features(text).entities == {"tencent"}, text
    assert features("輝達與英偉達 NVIDIA").entities == {"nvidia"}
    assert features("阿里巴巴和阿里").entities == {"alibaba"}
    assert features("Moonshot AI ships Kimi").entities == {"moonshot"}


def test_latin_aliases_match_whole_words_only() -> None:
    assert features("Gaming aside, the metaverse").entities == frozenset()
    assert features("Meta's metaverse").entities == {"meta"}


def test_alias_table_parsing_skips_comments_and_blank_lines() -> None:
    table = parse_aliases(["# comment", "", "acme\tAcme Corp|艾克米", "bad line"], normalize)
    assert table.entity_of("acme corp") == "acme"
    assert table.mark("艾克米发布 acme corp news").split() == [
        "\x01acme\x01",
        "发布",
        "\x01acme\x01",
        "news",
    ]


def test_script_detection() -> None:
    assert features("腾讯第二季度营收增长").script == "zh"
    assert features("Tencent second-quarter revenue rises").script == "en"
    assert features("").script == ""


# --------------------------------------------------------------------------- MinHash / LSH


def test_signature_is_stable_and_estimates_jaccard() -> None:
    a = {f"s{i}" for i in range(100)}
    b = {f"s{i}" for i in range(50, 150)}  # Jaccard 50/150
    sa, sb = signature(a, 128), signature(b, 128)
    assert sa == signature(sorted(a), 128)  # order and duplicates do not matter
    assert len(sa) == 128
    assert abs(estimate_jaccard(sa, sb) - 1 / 3) < 0.12
    assert estimate_jaccard(sa, sa) == 1.0


def test_band_keys_are_signed_64_bit_and_empty_text_has_none() -> None:
    keys = band_keys(signature(shingles("腾讯发布第二季度财报")))
    assert len(keys) == DEFAULT_BANDS
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert band_keys(signature(set())) == []
    with pytest.raises(ValueError):
        band_keys(signature({"x"}, 8), bands=4, rows=3)


def test_band_keys_do_not_collide_across_bands() -> None:
    sig = (7,) * DEFAULT_NUM_PERM  # identical bands must still give distinct keys
    assert len(set(band_keys(sig, DEFAULT_BANDS, DEFAULT_ROWS))) == DEFAULT_BANDS


def test_similar_texts_share_a_band_key() -> None:
    pairs = [
        ("山西晋中榆次区中小学12日起陆续放假", "山西晋中榆次区中小学明起陆续放假"),
        ("黑龙江大庆一客车坠桥致2死7伤", "黑龙江大庆一客车坠桥 2死7伤"),
        ("Heavy smog hits north China city, flights cancelled", "Heavy Smog Hits North China City"),
        ("苹果發佈iOS 26.2正式版", "苹果发布iOS 26.2正式版"),
    ]
    for left, right in pairs:
        ka = set(band_keys(signature(features(left).shingles)))
        kb = set(band_keys(signature(features(right).shingles)))
        assert ka & kb, (left, right)


def test_dissimilar_texts_rarely_share_a_band_key() -> None:
    subjects = ["腾讯", "小米", "华为", "特斯拉", "英伟达", "百度", "京东", "美团"]
    events = ["发布新款手机", "第二季度营收增长", "宣布裁员计划", "股价大涨", "起诉竞争对手"]
    places = ["在北京", "在上海", "在深圳", "在杭州"]
    texts = [f"{s}{p}{e}" for s, e, p in itertools.product(subjects, events, places)][::3]
    keys = [set(band_keys(signature(features(t).shingles))) for t in texts]
    pairs = list(itertools.combinations(range(len(texts)), 2))
    shared = sum(1 for i, j in pairs if keys[i] & keys[j])
    # These texts share a template (J ~ 0.2-0.4 for many pairs), far above random news.
    assert shared / len(pairs) < 0.25


def test_unrelated_headlines_almost_never_share_a_band_key() -> None:
    texts = [
        "腾讯发布第二季度财报，营收同比增长15%",
        "小米SU7 Ultra正式交付，雷军亲自到场",
        "华为发布鸿蒙新版本，支持更多设备",
        "北京今日降温，最高气温仅5度",
        "国足世预赛客场不敌日本队",
        "教育部：中小学寒假不得违规补课",
        "Apple unveils new MacBook Pro with M5 chip",
        "Heavy smog hits north China city, flights cancelled",
        "Tesla recalls 200,000 cars over camera fault",
        "UN monitors reach site of Syrian massacre",
        "Stocks fall as Fed signals more rate hikes",
        "NASA delays Artemis launch after fuel leak",
    ]
    keys = [set(band_keys(signature(features(t).shingles))) for t in texts]
    pairs = list(itertools.combinations(range(len(texts)), 2))
    assert sum(1 for i, j in pairs if keys[i] & keys[j]) <= 1
