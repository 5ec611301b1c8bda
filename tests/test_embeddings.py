"""The embeddings backend (``aggregator.dedupe.embeddings``) against a real OpenAI-compatible
server on 127.0.0.1 (``tests.embedserver``): similarity, one request per pair and a cache, a
key from the environment, and every way the endpoint can fail: a clear error per pair, a pause
after failures in a row, a bounded wait, and matching that goes on by words alone."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from aggregator.dedupe.embeddings import EmbeddingError, EmbeddingJudge, make
from aggregator.dedupe.stories import DEFAULT_THRESHOLDS, decide, match_text
from tests.embedserver import EmbedServer

PROBE = "Senate panel opens probe into Boeing 737 MAX door plug blowout"
INQUIRY = "Senate committee launches investigation into Boeing 737 MAX door plug blowout"
OTHER = "Heavy smog hits north China city, flights cancelled at Harbin airport"
SYNONYMS = [["panel", "committee"], ["probe", "investigation"], ["opens", "launches"]]


@pytest.fixture
def server() -> EmbedServer:
    with EmbedServer(SYNONYMS) as running:
        yield running


def test_synonyms_are_similar_and_each_text_is_embedded_once(server: EmbedServer) -> None:
    judge = EmbeddingJudge(server.base_url, "m", cache_size=2)
    probe, inquiry, other = match_text(PROBE), match_text(INQUIRY), match_text(OTHER)
    assert judge.similarity(probe, inquiry) == pytest.approx(1.0)
    assert server.requests == [{"model": "m", "input": [PROBE, INQUIRY]}]  # one request a pair
    assert judge.similarity(inquiry, probe) == pytest.approx(1.0)
    assert len(server.requests) == 1  # both cached
    assert judge.similarity(probe, other) < 0.3
    assert server.requests[-1]["input"] == [OTHER]  # only the text it had not seen
    assert judge.similarity(inquiry, probe) == pytest.approx(1.0)
    assert server.requests[-1]["input"] == [INQUIRY]  # the cache holds 2: INQUIRY went first


def test_the_summary_head_is_embedded_with_the_title(server: EmbedServer) -> None:
    judge = EmbeddingJudge(server.base_url, "m", summary_chars=10)
    judge.similarity(match_text(PROBE, "Lawmakers demand answers"), match_text(INQUIRY))
    assert server.requests[0]["input"] == [f"{PROBE}\nLawmakers", INQUIRY]


def test_it_turns_a_word_rejection_into_one_story(server: EmbedServer) -> None:
    thresholds = replace(DEFAULT_THRESHOLDS, semantic=EmbeddingJudge(server.base_url, "m"))
    d = decide(match_text(PROBE), match_text(INQUIRY), thresholds)
    assert d.same and "semantic (embeddings m): similarity 1.00 >= 0.85" in d.reasons
    apart = decide(match_text(PROBE), match_text(OTHER), thresholds)
    assert not apart.same


@pytest.mark.parametrize("mode", ["http_500", "bad_body", "short"])
def test_a_bad_answer_is_an_error_naming_the_endpoint(server: EmbedServer, mode: str) -> None:
    judge = EmbeddingJudge(server.base_url, "m")
    server.script(mode)
    with pytest.raises(EmbeddingError, match=r"http://127\.0\.0\.1:\d+/v1/embeddings"):
        judge.similarity(match_text(PROBE), match_text(INQUIRY))
    assert judge.similarity(match_text(PROBE), match_text(INQUIRY)) == pytest.approx(1.0)


def test_failures_in_a_row_pause_it_and_words_decide_meanwhile(server: EmbedServer) -> None:
    judge = EmbeddingJudge(server.base_url, "m", max_failures=2, cooldown=0.5)
    thresholds = replace(DEFAULT_THRESHOLDS, semantic=judge)
    server.mode = "http_500"
    a, b = match_text(PROBE), match_text(INQUIRY)
    for _ in range(2):
        d = decide(a, b, thresholds)
        assert not d.same
        assert "semantic (embeddings m): failed (EmbeddingError), not used" in d.reasons
    sent = len(server.requests)
    paused = decide(a, b, thresholds)
    assert "semantic (embeddings m): cannot tell" in paused.reasons
    assert len(server.requests) == sent  # nothing asked while paused
    server.mode = "good"
    time.sleep(0.6)
    assert decide(a, b, thresholds).same  # asked again after the cool-down


def test_a_slow_endpoint_costs_at_most_the_timeout(server: EmbedServer) -> None:
    judge = EmbeddingJudge(server.base_url, "m", timeout=0.3)
    server.mode, server.delay = "slow", 3.0
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match="Timeout"):
        judge.similarity(match_text(PROBE), match_text(INQUIRY))
    assert time.monotonic() - started < 2.0


def test_make_reads_the_key_from_the_environment(
    server: EmbedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_EMBED_KEY", "sk-test")
    judge = make(server.base_url, "m", threshold=0.9, api_key_env="MY_EMBED_KEY")
    assert (judge.name, judge.threshold) == ("embeddings m", 0.9)
    judge.similarity(match_text(PROBE), match_text(INQUIRY))
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    with pytest.raises(ValueError, match="base_url must be an http"):
        make("127.0.0.1:11434", "m")
    with pytest.raises(ValueError, match="model must name"):
        make(server.base_url, "")


def test_prepare_embeds_a_batch_in_few_requests_and_pairs_find_it_cached(
    server: EmbedServer,
) -> None:
    judge = EmbeddingJudge(server.base_url, "m", batch_size=2)
    texts = [match_text(PROBE), match_text(INQUIRY), match_text(OTHER), match_text(PROBE)]
    judge.prepare(texts)
    assert [r["input"] for r in server.requests] == [[PROBE, INQUIRY], [OTHER]]
    assert judge.similarity(texts[0], texts[1]) == pytest.approx(1.0)
    assert judge.similarity(texts[2], texts[1]) < 0.3
    assert len(server.requests) == 2  # every pair was cached
    judge.prepare(texts)
    assert len(server.requests) == 2  # nothing new to embed


def test_a_summary_that_repeats_the_title_is_not_embedded_twice(server: EmbedServer) -> None:
    judge = EmbeddingJudge(server.base_url, "m")
    assert judge.text(match_text(PROBE, PROBE + ". Lawmakers")) == PROBE + ". Lawmakers"
    assert judge.text(match_text(PROBE, "")) == PROBE
