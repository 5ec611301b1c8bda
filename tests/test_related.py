"""Related updates: earlier stories sharing entities, codes, names or card tags (fixed clock)."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import timedelta

from factories import T0, make_stored, make_story

from aggregator.model import Card, StoryRecord
from aggregator.related import (
    MIN_SCORE,
    TextKeyCache,
    decode,
    encode,
    key_inputs,
    key_score,
    related_updates,
    story_keys,
    summary_keys_many,
)
from aggregator.store import relatedkeys
from aggregator.store.repo import Repository

NOW = T0 + timedelta(hours=1)


def story(n: int, title: str, hours_ago: float, summary: str = "", **kw: object) -> StoryRecord:
    """A one-report story published ``hours_ago`` before NOW."""
    published = NOW - timedelta(hours=hours_ago)
    item = make_stored(
        n,
        title=title,
        summary_html=f"<p>{summary}</p>",
        published_at=published,
        collected_at=published,
        **kw,
    )
    return make_story(n, item)


def ids(result: dict[str, tuple[object, ...]], s: StoryRecord) -> list[str]:
    return [ref.id for ref in result.get(s.public_id, ())]  # type: ignore[attr-defined]


def test_chinese_and_english_reports_meet_on_entities() -> None:
    zh = story(1, "腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元", 30)
    en = story(2, "Tencent and Alibaba eye DeepSeek investment", 5)
    other = story(3, "Rust 1.80 is out with lazy statics", 10, "the rust team said")
    result = related_updates([en, other, zh], now=NOW)
    assert ids(result, en) == [zh.public_id]
    ref = result[en.public_id][0]
    assert ref.title == zh.items[0].title and ref.url == zh.items[0].url
    assert ref.published == zh.items[0].published_at
    assert zh.public_id not in result  # nothing earlier than the first story
    assert other.public_id not in result  # shares nothing


def test_only_earlier_stories_best_first_and_limited() -> None:
    base = story(1, "OpenAI ships GPT-4o update", 50)
    strong = story(2, "OpenAI and Microsoft extend GPT-4o deal", 40)  # entity + code + entity
    weak = story(3, "OpenAI hires a new CFO", 30)  # one entity
    newer_weak = story(4, "OpenAI opens Tokyo office", 20)
    target = story(5, "Microsoft bundles OpenAI GPT-4o into Office", 10)
    later = story(6, "OpenAI GPT-4o gets cheaper", 1)  # later than target: never its related
    result = related_updates([base, strong, weak, newer_weak, target, later], now=NOW, limit=3)
    # strong shares openai+microsoft+gpt4o (8), base openai+gpt4o (5), then the more recent of
    # the two single-entity matches (3 each).
    assert ids(result, target) == [strong.public_id, base.public_id, newer_weak.public_id]
    assert later.public_id not in ids(result, target)
    assert target.public_id not in ids(result, target)
    assert len(ids(related_updates([base, strong, target], now=NOW, limit=1), target)) == 1
    assert related_updates([base, target], now=NOW, limit=0) == {}


def test_title_case_words_are_not_names_but_real_names_are() -> None:
    # "Investment" and "Plans" are ordinary words written in lower case elsewhere in the batch.
    a = story(1, "Startup Investment Plans Announced", 30, "an investment that plans ahead")
    b = story(2, "Investment Plans For Schools", 20, "new plans for investment")
    assert ids(related_updates([a, b], now=NOW), b) == []
    # Two shared capitalised names (never seen in lower case) make a relation; one does not.
    c = story(3, "Kubernetes maintainers meet Zephyr team", 15, "the maintainers met")
    d = story(4, "Zephyr adopts Kubernetes scheduler", 10, "it adopts a scheduler")
    e = story(5, "Zephyr wins an award", 5, "an award")
    result = related_updates([a, b, c, d, e], now=NOW)
    assert ids(result, d) == [c.public_id]
    assert ids(result, e) == []
    assert key_score({"n:zephyr"}) < MIN_SCORE <= key_score({"n:zephyr", "n:kubernetes"})


def test_card_tags_relate_stories_without_shared_words() -> None:
    tags = ("供应链", "芯片出口")

    def carded(s: StoryRecord) -> StoryRecord:
        card = Card(backend="extractive", tldr="x", generated_at=T0, input_hash="h", tags=tags)
        return replace(s, card=card)

    a = carded(story(1, "出口管制新规发布", 30))
    b = carded(story(2, "厂商调整采购计划", 10))
    assert ids(related_updates([a, b], now=NOW), b) == [a.public_id]
    assert "t:芯片出口" in story_keys(b)
    plain = related_updates(
        [story(1, "出口管制新规发布", 30), story(2, "厂商调整采购计划", 10)], now=NOW
    )
    assert plain == {}


def test_versions_and_works_are_keys_quarters_are_not() -> None:
    keys = story_keys(story(1, "Apple ships iOS 18.2 with M4 support in Q3", 1))
    assert {"e:apple", "c:m4"} <= keys
    assert any(k.startswith("v:") and k.endswith(" 18.2") for k in keys)
    assert "c:q3" not in keys
    assert "w:流浪地球" in story_keys(story(2, "电影《流浪地球》定档", 1))


def test_future_dated_duplicate_and_empty_stories_are_left_out() -> None:
    a = story(1, "DeepSeek releases R2", 30)
    future = story(2, "DeepSeek R2 benchmark", -5)  # dated after NOW: a bad publisher clock
    b = story(3, "DeepSeek R2 pricing", 5)
    empty = StoryRecord(id=9, public_id="urn:empty", created_at=T0, updated_at=T0, items=())
    result = related_updates([a, future, b, a, empty], now=NOW)
    assert ids(result, b) == [a.public_id]  # once, and never the future-dated story
    assert future.public_id not in result


def test_a_few_thousand_stories_stay_cheap() -> None:
    rng = random.Random(7)
    names = ["OpenAI", "DeepSeek", "腾讯", "华为", "Nvidia", "Apple", "GPT-4o", "iOS 18.2"]
    words = [
        "chip",
        "model",
        "launch",
        "report",
        "funding",
        "phone",
        "update",
        "price",
        "market",
        "users",
    ]
    stories = [
        story(
            n,
            f"{' '.join(rng.sample(words, 3))} {' '.join(rng.sample(names, 2))}",
            3000 - n * 0.5,
            " ".join(rng.sample(words, 5)),
        )
        for n in range(1, 3001)
    ]
    started = time.perf_counter()
    result = related_updates(stories, now=NOW)
    elapsed = time.perf_counter() - started
    # Every name is in ~750 stories: common, so only stories sharing both their names relate.
    assert len(result) > 2000 and all(len(refs) <= 3 for refs in result.values())
    for s in stories[-50:]:
        keys = story_keys(s)
        for ref in result.get(s.public_id, ()):
            other = next(o for o in stories if o.public_id == ref.id)
            assert len(keys & story_keys(other)) >= 2
    assert elapsed < 5.0, f"related updates for 3000 stories took {elapsed:.2f}s"


def test_keys_most_stories_carry_relate_nothing_alone() -> None:
    # 中国 / China is in 12 of the stories: common, a third of an entity's weight.
    topics = [
        "yuan",
        "rail",
        "solar",
        "panda",
        "steel",
        "wheat",
        "ports",
        "coal",
        "silk",
        "tea",
        "jade",
    ]
    china = [story(n, f"China {topics[n - 1]} news", 40 - n) for n in range(1, 12)]
    tencent_early = story(20, "腾讯 中国 游戏版号获批", 30)
    tencent_late = story(21, "China approves Tencent game licences", 2)
    result = related_updates([*china, tencent_early, tencent_late], now=NOW)
    assert ids(result, china[-1]) == []  # "China" alone: 1 < MIN_SCORE
    assert ids(result, tencent_late)[0] == tencent_early.public_id  # china + tencent: 1 + 3
    assert story_keys(tencent_late) >= {"e:china", "e:tencent"}
    # With few stories nothing is common: one shared entity is enough.
    assert ids(related_updates(china[:3], now=NOW), china[2]) == [
        china[1].public_id,
        china[0].public_id,
    ]


def test_text_key_cache_computes_once_and_round_trips_through_storage_text() -> None:
    cache = TextKeyCache(capacity=3)
    a = cache.get(("Tencent eyes DeepSeek", "Nvidia H20 sales"), "<p>iOS 26.1 is out</p>")
    again = cache.get(("Tencent eyes DeepSeek", "Nvidia H20 sales"), "<p>iOS 26.1 is out</p>")
    assert again is a and "e:tencent" in a.keys and "v:ios 26.1" in a.keys
    fresh = cache.take_fresh()
    assert len(fresh) == 1 and cache.take_fresh() == []  # handed over once
    other = TextKeyCache()
    other.seed([*fresh, (b"junk", "not json"), (b"junk2", "[1, 2, 3]")])
    assert other.get(("Tencent eyes DeepSeek", "Nvidia H20 sales"), "<p>iOS 26.1 is out</p>") == a
    assert other.take_fresh() == []  # served from the seed, not computed
    for n in range(5):  # bounded: the least recently used go first
        cache.get((f"title {n}",), "")
    assert cache.missing([fresh[0][0]]) == [fresh[0][0]]
    assert decode(encode(a)) == a and decode("{}") is None


def test_missing_keys_are_computed_in_one_call_as_get_would() -> None:
    inputs = [
        (("Tencent eyes DeepSeek",), "<p>iOS 26.1</p>"),
        (("Nvidia H20",), ""),
        (("Tencent eyes DeepSeek",), "<p>iOS 26.1</p>"),
        (("Xiaomi 17",), "<p>HyperOS 3</p>"),
    ]
    cache = TextKeyCache()
    known = cache.get(*inputs[1])
    cache.take_fresh()
    calls: list[list[tuple[tuple[str, ...], str]]] = []

    def compute(batch: list[tuple[tuple[str, ...], str]]) -> list[object]:
        calls.append(batch)
        return summary_keys_many(batch)

    assert cache.compute_missing(inputs, compute) == 2  # the known one and a repeat are not sent
    assert calls == [[inputs[0], inputs[3]]]
    reference = TextKeyCache()
    assert [cache.get(*i) for i in inputs] == [reference.get(*i) for i in inputs]
    assert cache.get(*inputs[1]) is known
    assert len(cache.take_fresh()) == 2  # computed keys are stored like those ``get`` computes
    assert cache.compute_missing(inputs, compute) == 0 and len(calls) == 1


def test_stored_keys_spare_a_fresh_process_the_tokenizing(repo: Repository) -> None:
    stories = [
        story(n, f"Tencent and Alibaba news {n}", n, "DeepSeek V3.1 ships") for n in range(1, 6)
    ]
    first = TextKeyCache()
    expected = {s.public_id: first.get(*key_inputs(s)) for s in stories}
    assert relatedkeys.persist(repo.engine, first, NOW) == 5
    fresh = TextKeyCache()  # a new process
    assert relatedkeys.preload(repo.engine, fresh, stories) == 5
    assert {s.public_id: fresh.get(*key_inputs(s)) for s in stories} == expected
    assert fresh.take_fresh() == []
    assert relatedkeys.preload(repo.engine, fresh, stories) == 0  # already in memory
    # rows older than KEEP_DAYS are pruned by the next save
    later = NOW + timedelta(days=relatedkeys.KEEP_DAYS + 1)
    first.get(("something new",), "")
    assert relatedkeys.persist(repo.engine, first, later) == 1
    assert relatedkeys.preload(repo.engine, TextKeyCache(), stories) == 0


def test_only_scores_the_named_stories_against_every_candidate() -> None:
    rng = random.Random(7)
    names = ["NVIDIA", "Tencent", "Alibaba", "DeepSeek", "Xiaomi", "Huawei"]
    stories = [
        story(n, f"{' '.join(rng.sample(names, 2))} update {n % 5}", 200 - n) for n in range(1, 120)
    ]
    full = related_updates(stories, now=NOW)
    shown = {s.public_id for s in stories[-10:]}
    part = related_updates(stories, now=NOW, only=shown)
    assert set(part) <= shown
    # the named stories relate to exactly what they relate to without ``only`` (candidates
    # outside ``only`` included), and some of those candidates are outside it
    assert part == {k: v for k, v in full.items() if k in shown}
    assert any(ref.id not in shown for refs in part.values() for ref in refs)
