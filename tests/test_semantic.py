"""The semantic-backend seam (``aggregator.dedupe.semantic``): when a backend is asked, what it
can overturn, what it cannot (vetoes), how a failing one is contained, and how the config names
a bad one. The backend is ``tests.semantic_fake``: synonyms share a concept."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import load_settings
from aggregator.dedupe.semantic import build, check_spec, thresholds_for
from aggregator.dedupe.stories import DEFAULT_THRESHOLDS, Thresholds, decide, match_text
from aggregator.errors import ConfigError
from aggregator.settings import StoriesSettings
from tests.semantic_fake import ConceptJudge, make

PROBE = "Senate panel opens probe into Boeing 737 MAX door plug blowout"
INQUIRY = "Senate committee launches investigation into Boeing 737 MAX door plug blowout"
SYNONYMS = [["panel", "committee"], ["probe", "investigation"], ["opens", "launches"]]


def with_judge(judge: ConceptJudge) -> Thresholds:
    return replace(DEFAULT_THRESHOLDS, semantic=judge)


def test_the_backend_overturns_a_rejection_on_synonyms() -> None:
    a, b = match_text(PROBE), match_text(INQUIRY)
    assert not decide(a, b).same  # words alone: coverage 0.54
    judge = make(SYNONYMS)
    d = decide(a, b, with_judge(judge))
    assert d.same
    assert (d.score, d.threshold) == (pytest.approx(1.0), 0.8)
    assert d.measures["semantic"] == pytest.approx(1.0)
    assert "semantic (concepts): similarity 1.00 >= 0.80" in d.reasons
    assert judge.calls == [(PROBE, INQUIRY)]


def test_a_low_similarity_keeps_the_pair_apart_and_is_explained() -> None:
    judge = make([["panel", "committee"]], threshold=0.9)  # knows one synonym pair of three
    d = decide(match_text(PROBE), match_text(INQUIRY), with_judge(judge))
    assert not d.same
    assert d.measures["semantic"] == pytest.approx(0.8)
    assert "semantic (concepts): similarity 0.80 < 0.90" in d.reasons


@pytest.mark.parametrize(
    ("a", "b", "gap"),
    [
        # conflicting numbers: two different quakes, however alike in meaning
        ("Magnitude 7.1 quake hits Japan", "Magnitude 6.4 earthquake strikes Japan", 0),
        # negation
        ("Court finds senator guilty of fraud", "Court finds senator not guilty of fraud", 0),
        # published too far apart
        (PROBE, INQUIRY, 10),
    ],
)
def test_vetoed_pairs_are_never_sent_to_the_backend(a: str, b: str, gap: int) -> None:
    judge = make([["quake", "earthquake"], ["hits", "strikes"], *SYNONYMS])
    now = datetime(2026, 11, 1, tzinfo=UTC)
    d = decide(
        match_text(a, published_at=now),
        match_text(b, published_at=now + timedelta(days=gap)),
        with_judge(judge),
    )
    assert not d.same
    assert judge.calls == []


def test_pairs_the_words_accept_are_not_sent() -> None:
    judge = make()
    title = "Heavy smog hits north China city, flights cancelled at Harbin airport"
    assert decide(match_text(title), match_text(title + " - report"), with_judge(judge)).same
    assert judge.calls == []


def test_cross_language_pairs_get_a_second_opinion() -> None:
    zh, en = (
        match_text("腾讯与阿里巴巴洽谈投资深度求索"),
        match_text("Tencent, Alibaba in talks to invest in DeepSeek"),
    )
    assert not decide(zh, en).same

    class Translator(ConceptJudge):
        def similarity(self, a: object, b: object) -> float | None:
            return 0.9  # what a translation + comparison backend would answer here

    d = decide(zh, en, with_judge(Translator({})))
    assert d.same and d.score == 0.9


def test_a_failing_or_undecided_backend_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(ConceptJudge):
        def similarity(self, a: object, b: object) -> float | None:
            raise RuntimeError("model crashed")

    class Unsure(ConceptJudge):
        def similarity(self, a: object, b: object) -> float | None:
            return None

    a, b = match_text(PROBE), match_text(INQUIRY)
    plain = decide(a, b)
    with caplog.at_level(logging.WARNING, logger="aggregator.dedupe.semantic"):
        failed = decide(a, b, with_judge(Failing({}, name="flaky")))
    assert not failed.same and failed.score == plain.score
    assert "semantic (flaky): failed (RuntimeError), not used" in failed.reasons
    assert "model crashed" in caplog.text
    unsure = decide(a, b, with_judge(Unsure({})))
    assert not unsure.same and "semantic (concepts): cannot tell" in unsure.reasons


def test_build_checks_what_the_factory_returns() -> None:
    judge = build("tests.semantic_fake:make", {"synonyms": SYNONYMS, "threshold": 0.9})
    assert isinstance(judge, ConceptJudge) and judge.threshold == 0.9
    with pytest.raises(ValueError, match="returned object, which lacks name, threshold"):
        build("tests.semantic_fake:broken", {})
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\], got 1.5"):
        build("tests.semantic_fake:make", {"threshold": 1.5})
    with pytest.raises(ValueError, match="has no callable 'nothing'"):
        build("tests.semantic_fake:nothing", {})
    with pytest.raises(ValueError, match=r"expected 'package\.module:factory', got 'tests'"):
        check_spec("tests")
    with pytest.raises(ValueError, match="cannot find module 'no_such_backend'"):
        check_spec("no_such_backend:make")
    with pytest.raises(
        ConfigError, match=r"stories\.semantic: 'tests\.semantic_fake:failing' failed: FileNotF"
    ):
        thresholds_for(StoriesSettings(semantic="tests.semantic_fake:failing"))
    assert thresholds_for(StoriesSettings()) is DEFAULT_THRESHOLDS


MINIMAL = (
    '[[sources]]\nurl = "https://example.com/feed.xml"\n[[editions]]\nname = "all"\ntitle = "All"\n'
)


@pytest.mark.parametrize(
    ("stories", "message"),
    [
        ('semantic = "no_such_backend:make"', r"stories\.semantic: cannot find module"),
        ('semantic = "just_a_module"', r"stories\.semantic: expected 'package\.module:factory'"),
        ("[stories.semantic_options]\nx = 1", r"stories\.semantic_options: set without"),
        ("window_days = 0", r"stories\.window_days: must be positive, got 0"),
    ],
)
def test_bad_stories_lines_name_the_key(tmp_path: Path, stories: str, message: str) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(MINIMAL + "[stories]\n" + stories + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), env={})


def test_the_config_carries_the_backend_and_its_options(tmp_path: Path) -> None:
    path = tmp_path / "agg.toml"
    path.write_text(
        MINIMAL + '[stories]\nsemantic = "tests.semantic_fake:make"\n'
        "[stories.semantic_options]\nthreshold = 0.75\n"
        'synonyms = [["probe", "investigation"]]\n',
        encoding="utf-8",
    )
    settings = load_settings(str(path), env={})
    judge = thresholds_for(settings.stories).semantic
    assert isinstance(judge, ConceptJudge)
    assert judge.threshold == 0.75 and judge.concepts == {
        "probe": "probe",
        "investigation": "probe",
    }
