"""Edition rules (``aggregator.rules``): terms, attributes, age, boolean trees, explanations, and
config errors that name the key path. Fixture reports, fixed clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.config import load_settings
from aggregator.curate import Curator, build_edition
from aggregator.errors import ConfigError
from aggregator.model import Card, StoredItem
from aggregator.rules import ItemView, compile_edition, compile_rule, term_pattern
from aggregator.settings import EditionConfig, Rule
from tests.factories import T0, make_stored, make_story

ROOT = Path(__file__).resolve().parents[1]


def hit(rule: Rule, item: StoredItem) -> bool:
    """Whether ``rule`` matches ``item`` at T0, by the fast path and by ``explain`` alike."""
    compiled = compile_rule(rule, "include[0]")
    view = ItemView(item, T0)
    fast = compiled.matches(view)
    assert compiled.explain(view).matched == fast, "matches() and explain() disagree"
    return fast


TITLE = ("title",)


# ---------------------------------------------------------------------------- text terms


def test_chinese_phrases_match_anywhere_and_whitespace_is_optional_next_to_cjk() -> None:
    rule = Rule(fields=("title", "summary"), phrases=("英伟达 H20", "大语言模型"))
    assert hit(rule, make_stored(1, title="英伟达H20芯片对华出口恢复"))
    assert hit(rule, make_stored(2, title="英伟达 H20 供货", summary_html=""))
    assert hit(rule, make_stored(3, title="x", summary_html="<p>阿里发布新一代大语言模型</p>"))
    assert not hit(rule, make_stored(4, title="英伟达发布 H200", summary_html=""))
    assert not hit(rule, make_stored(5, title="大模型价格战", summary_html=""))


def test_latin_phrases_are_whole_words_and_whitespace_insensitive() -> None:
    rule = Rule(fields=("summary",), phrases=("large language model",))
    assert hit(rule, make_stored(1, summary_html="<p>a Large\n  language&nbsp;model today</p>"))
    assert hit(rule, make_stored(2, summary_html="<p>large</p><p>language model</p>"))
    assert not hit(rule, make_stored(3, summary_html="<p>large language models</p>"))
    assert not hit(rule, make_stored(4, summary_html="<p>language model, large</p>"))


def test_keywords_whole_word_prefix_and_case() -> None:
    assert hit(Rule(fields=TITLE, keywords=("AI",)), make_stored(1, title="苹果发布AI功能"))
    assert not hit(Rule(fields=TITLE, keywords=("AI",)), make_stored(2, title="He said so"))
    prefix = Rule(fields=TITLE, keywords=("GPU*",))
    assert hit(prefix, make_stored(3, title="New GPUs ship"))
    assert not hit(prefix, make_stored(4, title="eGPU dock"))
    strict = Rule(fields=TITLE, keywords=("Apple",), case_sensitive=True)
    assert hit(strict, make_stored(5, title="Apple event"))
    assert not hit(strict, make_stored(6, title="apple pie"))


def test_term_pattern_shape() -> None:
    assert term_pattern("AI") == "(?<![0-9A-Za-z\u00c0-\u024f])AI(?![0-9A-Za-z\u00c0-\u024f])"
    assert term_pattern("大模型") == "大模型"
    assert term_pattern("英伟达 H20").startswith(r"英伟达\s*H20")


def test_regex_on_categories_and_content() -> None:
    rule = Rule(fields=("categories", "content"), regex=r"^GPU$|\bv\d+\.\d+\b")
    assert hit(rule, make_stored(1, categories=("GPU",), content_html=""))
    assert hit(rule, make_stored(2, content_html="<p>Linux v6.12 is out</p>"))
    assert not hit(rule, make_stored(3, categories=("GPUs",), content_html="<p>none</p>"))


# ---------------------------------------------------------------------------- attributes


def test_language_prefixes() -> None:
    zh = Rule(languages=("zh",))
    assert hit(zh, make_stored(1, language="zh-cn"))
    assert hit(zh, make_stored(2, language="zh_Hans"))
    assert hit(zh, make_stored(3, language="ZH"))
    assert not hit(zh, make_stored(4, language="zho"))
    assert not hit(zh, make_stored(5, language=None))
    assert hit(Rule(languages=("zh-cn",)), make_stored(6, language="zh-CN"))
    assert not hit(Rule(languages=("zh-cn",)), make_stored(7, language="zh-tw"))


def test_sources_by_key_or_name_and_tags() -> None:
    src = Rule(sources=("ithome", "The Verge"))
    assert hit(src, make_stored(1, source_key="ithome", source_name="IT之家"))
    assert hit(src, make_stored(2, source_key="verge", source_name="the verge"))
    assert not hit(src, make_stored(3, source_key="ithome2", source_name="IT之家二"))
    tags = Rule(tags=("zh", "business"))
    assert hit(tags, make_stored(4, source_tags=("tech", "Business")))
    assert not hit(tags, make_stored(5, source_tags=("tech", "zh-cn")))


def test_card_tags_count_as_tags_of_every_report() -> None:
    ed = EditionConfig(name="x", title="x", include=(Rule(tags=("deepseek",)),))
    card = Card(backend="extractive", tldr="t", generated_at=T0, input_hash="h", tags=("DeepSeek",))
    plain = make_story(1, make_stored(1, title="Tencent, Alibaba eye investment"))
    carded = replace(
        make_story(2, make_stored(2, title="Tencent, Alibaba eye investment")), card=card
    )
    feed = build_edition(ed, [plain, carded], base_url="http://h", now=T0)
    assert [e.id for e in feed.entries] == [carded.public_id]


def test_age_bounds_use_the_injected_clock() -> None:
    fresh = Rule(max_age=6 * 3600.0)
    old = Rule(min_age=2 * 86400.0)
    recent = make_stored(1, published_at=T0 - timedelta(hours=5))
    stale = make_stored(2, published_at=T0 - timedelta(days=3))
    undated = make_stored(3, published_at=None, collected_at=T0 - timedelta(hours=7))
    assert hit(fresh, recent) and not hit(fresh, stale) and not hit(fresh, undated)
    assert hit(old, stale) and not hit(old, recent)
    with pytest.raises(ValueError, match="need the evaluation time"):
        compile_rule(fresh, "p").matches(ItemView(recent))
    cur = Curator.from_config(EditionConfig(name="x", title="x", exclude=(old,)))
    with pytest.raises(ValueError, match="has age rules: pass now"):
        cur.admits(recent)
    assert cur.admits(recent, T0) and not cur.admits(stale, T0)


# ---------------------------------------------------------------------------- boolean trees


NESTED = Rule(
    name="chips",
    all=(
        Rule(fields=("title",), keywords=("GPU", "芯片")),
        Rule(any=(Rule(languages=("zh",)), Rule(sources=("theverge",), name="verge"))),
    ),
    not_=Rule(fields=("title",), keywords=("游戏", "gaming")),
)


def test_nested_all_any_not() -> None:
    assert hit(NESTED, make_stored(1, title="国产AI芯片量产", language="zh-cn"))
    assert hit(NESTED, make_stored(2, title="A GPU for servers", source_key="theverge"))
    assert not hit(NESTED, make_stored(3, title="A GPU for servers", source_key="other"))
    assert not hit(NESTED, make_stored(4, title="游戏芯片", language="zh-cn"))
    assert not hit(NESTED, make_stored(5, title="新手机发布", language="zh-cn"))
    deep = Rule(not_=Rule(not_=Rule(any=(Rule(all=(Rule(fields=TITLE, keywords=("x",)),)),))))
    assert hit(deep, make_stored(6, title="x marks")) and not hit(deep, make_stored(7, title="y"))


def test_explain_names_rule_field_and_matched_text() -> None:
    compiled = compile_rule(NESTED, "include[0]")
    yes = compiled.explain(
        ItemView(make_stored(1, title="A GPU for servers", source_key="theverge"))
    )
    assert yes.matched and yes.label == "chips" and yes.path == "include[0]"
    text_verdict, any_verdict, not_verdict = yes.children
    assert text_verdict.path == "include[0].all[0]"
    assert text_verdict.hits[0].field == "title"
    assert text_verdict.hits[0].text == "GPU"
    assert text_verdict.hits[0].term == "keyword 'GPU'"
    assert any_verdict.children[1].label == "verge"
    assert any_verdict.children[1].path == "include[0].all[1].any[1]"
    assert any_verdict.children[1].matched and not any_verdict.children[0].matched
    assert "any: verge" in any_verdict.reason
    assert not not_verdict.matched and "not: include[0].not did not match" in yes.reason
    lines = "\n".join(yes.lines())
    assert "chips (include[0]): MATCH" in lines
    assert "verge (include[0].all[1].any[1]): MATCH" in lines

    no = compiled.explain(
        ItemView(make_stored(2, title="游戏芯片", language="en", summary_html=""))
    )
    assert not no.matched and no.hits == ()
    assert "include[0].all[1] did not match" in no.reason
    assert "not: include[0].not matched" in no.reason
    assert "language 'en' is not one of 'zh'" in "\n".join(no.lines())
    assert "source 'pub' (Publisher) is not one of 'theverge'" in "\n".join(no.lines())


def test_edition_explain_says_which_rule_let_in_or_kept_out() -> None:
    ed = EditionConfig(
        name="ai",
        title="AI",
        include=(Rule(name="topics", fields=("title", "summary"), keywords=("AI", "大模型")),),
        exclude=(Rule(name="deals", fields=TITLE, phrases=("限时 优惠",)),),
    )
    cur = Curator.from_config(ed)
    why_in = cur.explain(make_stored(1, title="阿里大模型降价", summary_html=""))
    assert why_in.admitted
    assert why_in.reason.startswith("let in by include rule topics: title matched keyword '大模型'")
    why_out = cur.explain(make_stored(2, title="大模型会员限时优惠", summary_html=""))
    assert not why_out.admitted
    assert "kept out by exclude rule deals: title matched phrase '限时 优惠'" in why_out.reason
    nothing = cur.explain(make_stored(3, title="Weather", summary_html="<p>rain</p>"))
    assert not nothing.admitted and nothing.reason == "kept out: none of 1 include rules matched"
    assert "no match for title/summary: 2 keywords" in nothing.include[0].reason
    everything = Curator.from_config(EditionConfig(name="a", title="a"))
    assert "no include rules" in everything.explain(make_stored(4)).reason


def test_story_boost_counts_each_rule_once() -> None:
    ed = EditionConfig(
        name="x",
        title="x",
        include=(Rule(name="ai", fields=TITLE, keywords=("AI",), boost=0.5), Rule(tags=("zh",))),
        boost=(Rule(name="launch", fields=TITLE, keywords=("launch*",), boost=1.0),),
    )
    rules = compile_edition(ed)
    views = [
        ItemView(make_stored(1, title="AI launch")),
        ItemView(make_stored(2, title="AI launches")),
    ]
    assert rules.story_boost(views) == (("ai", 0.5), ("launch", 1.0))
    assert rules.story_boost([ItemView(make_stored(3, title="weather"))]) == ()


def test_rules_are_compiled_once_per_edition_not_per_item() -> None:
    ed = EditionConfig(name="once", title="x", include=(Rule(fields=TITLE, keywords=("AI",)),))
    before = compile_edition.compilations
    stories = [make_story(i, make_stored(i, title=f"AI {i}")) for i in range(1, 50)]
    first = build_edition(ed, stories, base_url="http://h", now=T0)
    build_edition(ed, stories, base_url="http://h", now=T0)
    assert len(first.entries) == 49
    assert compile_edition.compilations == before + 1
    assert compile_edition(ed) is compile_edition(ed)


# ---------------------------------------------------------------------------- config


def write(tmp_path: Path, editions: str) -> str:
    path = tmp_path / "agg.toml"
    path.write_text(
        '[[sources]]\nurl = "https://example.com/feed.xml"\n' + editions, encoding="utf-8"
    )
    return str(path)


NESTED_TOML = """
[[editions]]
name = "ai"
title = "AI"
sort = "score"
max_per_source = 3
half_life = "12h"

[[editions.include]]
name = "chips"
all = [
  { fields = ["title"], keywords = ["GPU*", "芯片"] },
  { any = [ { languages = ["zh"] }, { sources = ["theverge"], max_age = "6h" } ] },
]
not = { fields = ["title"], phrases = ["游戏 本"] }
boost = 0.5

[[editions.exclude]]
min_age = "2d"
tags = ["community"]

[[editions.boost]]
fields = ["title"]
keywords = ["launch"]
boost = 1
"""


def test_nested_rules_load_from_toml(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, NESTED_TOML), env={})
    (ed,) = s.editions
    assert (ed.sort, ed.max_per_source, ed.half_life) == ("score", 3, 12 * 3600.0)
    chips = ed.include[0]
    assert chips.name == "chips" and chips.boost == 0.5
    assert chips.all[1].any[1].max_age == 6 * 3600.0
    assert chips.not_ is not None and chips.not_.phrases == ("游戏 本",)
    assert ed.exclude[0].min_age == 2 * 86400.0
    assert ed.boost[0].boost == 1.0
    cur = Curator.from_config(ed)
    assert cur.admits(make_stored(1, title="国产芯片", language="zh-cn"), T0)
    assert not cur.admits(make_stored(2, title="游戏本芯片", language="zh-cn"), T0)


def test_shipped_config_uses_score_a_cap_and_a_boolean_rule() -> None:
    s = load_settings(str(ROOT / "config" / "aggregator.toml"), env={})
    ai = next(e for e in s.editions if e.name == "ai")
    assert ai.sort == "score" and ai.max_per_source is not None
    assert any(r.all or r.any or r.not_ for r in ai.include)
    cur = Curator.from_config(ai)
    zh = {"language": "zh-cn", "summary_html": ""}
    assert cur.admits(make_stored(1, title="英伟达H20芯片进入数据中心", **zh), T0)
    assert not cur.admits(make_stored(2, title="英伟达游戏芯片数据中心", **zh), T0)
    assert cur.admits(make_stored(3, title="DeepSeek 发布新模型", **zh), T0)
    assert not cur.admits(make_stored(4, title="DeepSeek 会员优惠", **zh), T0)


BASE = '[[editions]]\nname = "x"\ntitle = "X"\n'


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            '[[editions.include]]\nall = [{ fields = ["title"], regex = "(" }]\n',
            r"editions\[0\]\.include\[0\]\.all\[0\]\.regex: invalid regular expression",
        ),
        (
            '[[editions.include]]\nany = [{ languages = ["en"] }, '
            '{ not = { fields = ["body"], keywords = ["a"] } }]\n',
            r"editions\[0\]\.include\[0\]\.any\[1\]\.not\.fields: unknown field 'body'",
        ),
        (
            '[[editions.include]]\nall = { fields = ["title"], keywords = ["a"] }\n',
            r"editions\[0\]\.include\[0\]\.all: must be a non-empty array of rule tables",
        ),
        ("[[editions.include]]\nany = []\n", r"editions\[0\]\.include\[0\]\.any: must be a non"),
        (
            '[[editions.exclude]]\nnot = [{ tags = ["a"] }]\n',
            r"editions\[0\]\.exclude\[0\]\.not: must be one rule table, not an array",
        ),
        (
            "[[editions.include]]\nall = [1]\n",
            r"editions\[0\]\.include\[0\]\.all\[0\]: must be a rule table",
        ),
        (
            '[[editions.include]]\nall = [{ fields = ["title"], keyword = ["a"] }]\n',
            r"editions\[0\]\.include\[0\]\.all\[0\]\.keyword: Unexpected keyword argument",
        ),
        (
            '[[editions.include]]\nnot = { sources = "ithome" }\n',
            r"editions\[0\]\.include\[0\]\.not\.sources: Input should be a valid tuple",
        ),
        ('[[editions.include]]\nname = "empty"\n', r"editions\[0\]\.include\[0\]: empty rule"),
        (
            '[[editions.include]]\nfields = ["title"]\n',
            r"include\[0\]: fields given but nothing to look for",
        ),
        (
            '[[editions.include]]\nkeywords = ["a"]\n',
            r"include\[0\]\.fields: name at least one of title",
        ),
        (
            '[[editions.include]]\nfields = ["title"]\nkeywords = ["a", " "]\n',
            r"include\[0\]\.keywords\[1\]: empty value",
        ),
        (
            '[[editions.exclude]]\ntags = ["a"]\nboost = 1\n',
            r"exclude\[0\]\.boost: boost only applies to top-level include or boost rules",
        ),
        (
            '[[editions.include]]\nall = [{ tags = ["a"], boost = 1 }]\n',
            r"include\[0\]\.all\[0\]\.boost: boost only applies .* not to a sub-rule",
        ),
        ('[[editions.boost]]\ntags = ["a"]\n', r"boost\[0\]\.boost: a boost rule needs"),
        ('[[editions.include]]\nmax_age = "soon"\n', r"include\[0\]\.max_age: expected a dur"),
        (
            '[[editions.include]]\nmax_age = "1h"\nmin_age = "2h"\n',
            r"include\[0\]\.min_age: is larger than max_age",
        ),
        ('[[editions.include]]\nlanguages = ["中文"]\n', r"languages\[0\]: expected a language"),
        (
            '[[editions.include]]\nname = "a"\ntags = ["x"]\n'
            'any = [{ name = "a", tags = ["y"] }]\n',
            r"include\[0\]\.any\[0\]\.name: duplicate rule name 'a' \(also include\[0\]\)",
        ),
        ('sort = "random"\n', r"editions\[0\]\.sort: use one of time, score, got 'random'"),
        ("max_per_source = 0\n", r"editions\[0\]\.max_per_source: must be at least 1"),
        ('half_life = "never"\n', r"editions\[0\]\.half_life: expected a duration"),
    ],
)
def test_bad_rules_name_file_key_path_and_problem(tmp_path: Path, rules: str, message: str) -> None:
    path = write(tmp_path, BASE + rules)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert str(info.value).startswith(path)


@pytest.mark.parametrize(
    ("term", "kind", "text"),
    [
        ("OpenAI", "keywords", "OPENAI ships a model"),  # case folded
        ("GPU*", "keywords", "new gpus for training"),  # prefix keyword
        ("英伟达 H20", "phrases", "英伟达H20 出口"),  # optional space next to CJK
        ("machine learning", "phrases", "Machine\n  Learning at scale"),  # any whitespace
        ("ſtrasse", "keywords", "STRASSE"),  # long s folds like re.IGNORECASE does
    ],
)
def test_the_literal_prefilter_never_hides_a_match(term: str, kind: str, text: str) -> None:
    """Rules look for a term's longest word with ``in`` before running its regex; that
    shortcut must accept everything the regex accepts."""
    rule = Rule(fields=("title",), **{kind: (term,)})
    assert hit(rule, make_stored(1, title=text))
    assert not hit(rule, make_stored(2, title="nothing relevant here"))
