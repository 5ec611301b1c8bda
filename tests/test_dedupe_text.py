"""Normalization, shingling, aliases and MinHash/LSH for same-story matching."""

from __future__ import annotations

import itertools
import random

import pytest

from aggregator.dedupe.aliases import _CJK_CHAR as _CJK
from aggregator.dedupe.aliases import _RUNS, AliasTable, default_aliases, parse_aliases
from aggregator.dedupe.minhash import (
    DEFAULT_BANDS,
    DEFAULT_NUM_PERM,
    DEFAULT_ROWS,
    band_keys,
    estimate_jaccard,
    signature,
)
from aggregator.dedupe.text import (
    _CN_DIGIT,
    _TOKEN,
    _UNIT_GROUP,
    Token,
    features,
    normalize,
    shingles,
    stem,
    to_simplified,
    tokens,
)

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


def _reference_mark(table: AliasTable, normalized: str) -> str:
    """``AliasTable.mark`` as a plain scan: at every word (Latin) or character (Chinese),
    try every alias length, longest first. The table's indexes must not change the result."""

    def scan(units: list[str], sep: str) -> str:
        out, i = [], 0
        while i < len(units):
            for n in range(len(units) - i, 0, -1):
                candidate = sep.join(units[i : i + n])
                if candidate in table.surfaces:
                    out.append(f" \x01{table.surfaces[candidate]}\x01 ")
                    i += n
                    break
            else:
                out.append(units[i])
                i += 1
        return sep.join(out)

    return _RUNS.sub(
        lambda m: scan(list(m[0]), "") if _CJK.match(m[0]) else scan(m[0].split(" "), " "),
        normalized,
    )


def test_alias_marking_equals_a_plain_scan_on_generated_text() -> None:
    """The shipped table and a table of overlapping aliases (one word or character the start
    of several, longer ones first), over 3,000 texts built from alias pieces and filler."""
    rng = random.Random(11)
    small = parse_aliases(
        ["a\tapple|apple inc|apple inc cn|苹果|苹果公司", "b\tbyte|bytedance|字节|字节跳动",
         "c\tinc|公司"], normalize,
    )  # fmt: skip
    for table in (default_aliases(), small):
        pieces = [
            *list(table.surfaces)[:400],
            *["苹果", "公", "司", "字", "节", "跳", "动", "的", "了", "inc", "apple", "byte"],
        ]
        pieces += ["news", "2026", "q3", "v3.1", "跳", "节跳", "apple", "inc cn"]
        for _ in range(1500):
            text = normalize(
                "".join(rng.choice(pieces) + rng.choice(["", " ", "  ", ", "]) for _ in range(12))
            )
            assert table.mark(text) == _reference_mark(table, text), text
    assert small.mark("apple inc cn 字节跳动公司").split() == [
        "\x01a\x01", "\x01b\x01", "\x01c\x01",
    ]  # fmt: skip


def _reference_tokens(normalized: str) -> list[Token]:
    """``tokens`` as first written: each named group probed in turn."""
    out: list[Token] = []
    for m in _TOKEN.finditer(default_aliases().mark(normalized)):
        if m.group("ent"):
            out.append(Token("ent", m.group("ent")))
        elif m.group("quarter") or m.group("quarter2"):
            out.append(
                Token("code", "q" + _CN_DIGIT[m.group("quarter") or m.group("quarter2")], "code")
            )
        elif m.group("money"):
            unit = _UNIT_GROUP.get(m.group("money_unit") or "", m.group("money_unit") or "")
            out.append(Token("num", f"${m.group('money')}{unit}", "$"))
        elif m.group("code"):
            out.append(Token("code", m.group("code"), "code"))
        elif m.group("num"):
            number = m.group("num")
            if m.group("tail"):
                out.append(Token("code", number + m.group("tail"), "code"))
                continue
            unit = m.group("cunit") or m.group("lunit") or ""
            group = _UNIT_GROUP.get(unit, unit) or "num"
            value = number + (_UNIT_GROUP.get(unit, unit) if group != "ord" else "")
            out.append(Token("num", value, group))
        elif m.group("word"):
            out.append(Token("word", m.group("word")))
        else:
            out.append(Token("cjk", m.group("cjk")))
    return out


def test_tokens_equal_probing_every_group_on_generated_text() -> None:
    rng = random.Random(5)
    pieces = [
        "腾讯", "Tencent", "第三季度", "2季度", "Q3", "$20bn", "$5", "$1.5b", "$3k", "iPhone 17",
        "v3.1", "26.2", "5G", "4o", "14pro", "3月", "5日", "10亿元", "200万", "60hz", "3nm",
        "21st", "2nd", "1.5", "gpt4", "R2", "deepseek", "发布", "了", "news", "Ünïcode", "Жук",
        "λ", "2026年", "8 gb", "12%", "x", "-", ".",
    ]  # fmt: skip
    seen: set[str] = set()
    for _ in range(3000):
        text = normalize(
            "".join(rng.choice(pieces) + rng.choice(["", " ", ", "]) for _ in range(10))
        )
        got = tokens(text)
        assert got == _reference_tokens(text), text
        seen.update(t.kind for t in got)
    assert seen == {"ent", "code", "num", "word", "cjk"}


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


def test_normalize_skips_only_scans_that_could_not_match() -> None:
    """``normalize`` skips the thousands, hyphen and stray-dot rewrites for text without their
    character; on generated text full of those characters it equals running every rewrite."""
    import random
    import unicodedata

    from aggregator.dedupe import text as t

    def reference(raw: str) -> str:
        folded = t.to_simplified(unicodedata.normalize("NFKC", raw)).casefold()
        folded = t._THOUSANDS.sub("", folded)
        folded = t._LETTER_HYPHEN_DIGIT.sub("", folded)
        folded = t._DROP.sub(" ", folded)
        folded = t._STRAY_DOT.sub(" ", folded)
        return t._DIGIT_SPACE_CJK.sub("", t._SPACES.sub(" ", folded).strip())

    rng = random.Random(3)
    pieces = ["1,000", "12,5", "gpt-4o", "covid-19", "a-b", "3.5", "v1.", ".x", "...", "，",
              "ＩＯＳ２６", "52.99 万元", "iPhone 17", "騰訊", "-", ",", ".", " ", "x",
              "7"]  # fmt: skip
    for _ in range(5000):
        raw = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert t.normalize(raw) == reference(raw), raw
