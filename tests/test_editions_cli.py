"""``aggregator editions list|preview|explain`` run for real (``python -m aggregator``) against a
database filled through the real ``Repository`` (SQLite; PostgreSQL too when configured).

The clock is fixed with ``--now`` so the expected order, scores and cuts are exact.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.model import Item, ItemIntent, SourceUpdate, UpdatePlan
from aggregator.settings import SourceConfig
from aggregator.store import Repository
from tests.clirun import run_cli
from tests.factories import T0, make_item

NOW = T0.isoformat()
ITHOME_URL = "https://www.ithome.com/0/800/001.htm"
CONFIG = """
database_url = "{db_url}"
log_format = "text"

[[editions]]
name = "all"
title = "All"

[[editions]]
name = "ai"
title = "AI news"
sort = "score"
limit = 5
max_per_source = 2
half_life = "24h"

[[editions.include]]
name = "ai-topics"
fields = ["title", "summary"]
keywords = ["AI", "DeepSeek", "大模型"]

[[editions.exclude]]
name = "deals"
fields = ["title"]
phrases = ["限时 优惠"]

[[editions.boost]]
name = "zh-sources"
languages = ["zh"]
boost = 0.5
"""


def ok(now: datetime) -> SourceUpdate:
    return SourceUpdate(
        status="ok",
        last_error=None,
        error_count=0,
        next_check_at=now + timedelta(minutes=15),
        last_fetched_at=now,
        last_success_at=now,
    )


def put(repo: Repository, key: str, weight: float, now: datetime, *reports: Item) -> None:
    """Add source ``key`` if needed and apply ``reports`` as one poll at ``now``."""
    existing = repo.get_source(key)
    if existing is None:
        cfg = SourceConfig(
            key=key, url=f"http://127.0.0.1:9/{key}.xml", name=key.title(), weight=weight
        )
        existing = repo.add_source(cfg, now)
    intents = tuple(ItemIntent("insert", r.url or r.title, r) for r in reports)
    repo.apply(UpdatePlan(existing.id, ok(now), intents), now)


def news(url: str, title: str, hours_ago: float, **kw: object) -> Item:
    return make_item(
        guid=url, url=url, title=title, published_at=T0 - timedelta(hours=hours_ago), **kw
    )


@pytest.fixture
def config(tmp_path: Path, repo: Repository, db_url: str) -> Path:
    """A config with an ``ai`` edition, and a database holding:

    - the DeepSeek story: IT之家 (3 h ago, zh) and The Verge (2 h ago, links to IT之家);
    - five single-report AI stories from a firehose (10-50 min ago);
    - an IT之家 deal post (excluded), a weather story (no rule matches);
    - an IT之家 AI story polled 10 days ago (outside the window).
    """
    put(
        repo,
        "ithome",
        1.0,
        T0 - timedelta(days=10),
        news("https://www.ithome.com/0/700/001.htm", "十天前的 AI 新闻", 240, language="zh-cn"),
    )
    put(
        repo,
        "ithome",
        1.0,
        T0,
        news(ITHOME_URL, "腾讯、阿里拟投资 DeepSeek 逾 200 亿美元", 3, language="zh-cn"),
        news("https://www.ithome.com/0/800/002.htm", "大模型会员限时优惠", 1, language="zh-cn"),
    )
    put(
        repo,
        "theverge",
        1.2,
        T0,
        news(
            "https://www.theverge.com/ai/1",
            "Tencent, Alibaba eye $20B+ DeepSeek investment",
            2,
            external_url=ITHOME_URL,
        ),
        news("https://www.theverge.com/weather/2", "Rain all week", 1),
    )
    put(
        repo,
        "firehose",
        1.0,
        T0,
        *(news(f"https://fire.example/{n}", f"AI gadget {n}", n / 6) for n in range(1, 6)),
    )
    path = tmp_path / "agg.toml"
    path.write_text(CONFIG.format(db_url=db_url), encoding="utf-8")
    return path


def expected_deepseek_score() -> float:
    """(weight 1.2 x (1 + ln 2) + boost 0.5) x 0.5 ^ (3 h / 24 h): The Verge leads (weight)."""
    return (1.2 * (1 + math.log(2)) + 0.5) * 0.5 ** (3 / 24)


def test_preview_json_ranks_scores_and_caps(config: Path) -> None:
    proc = run_cli(config, "editions", "preview", "ai", "--json", "--cut", "--now", NOW)
    doc = json.loads(proc.stdout)
    assert doc["edition"] == "ai" and doc["sort"] == "score" and doc["total"] == 3
    entries = doc["entries"]
    assert [e["rank"] for e in entries] == [1, 2, 3]
    top = entries[0]
    assert top["source"] == "theverge" and top["reports"] == 2 and top["publishers"] == 2
    assert top["title"] == "Tencent, Alibaba eye $20B+ DeepSeek investment"
    assert top["score"] == pytest.approx(expected_deepseek_score(), rel=1e-5)
    assert top["boosts"] == ["zh-sources"]
    assert [e["title"] for e in entries[1:]] == ["AI gadget 1", "AI gadget 2"]
    cut = {e["title"]: e["status"] for e in doc["cut"]}
    assert cut == {f"AI gadget {n}": "capped" for n in (3, 4, 5)}
    titles = {e["title"] for e in entries} | set(cut)
    assert "大模型会员限时优惠" not in titles and "Rain all week" not in titles

    code, output = cli(
        "editions", "preview", "ai", "--json", "--limit", "1", "--now", NOW, config=config, raw=True
    )
    assert code == 0
    limited = json.loads(output)
    assert [e["rank"] for e in limited["entries"]] == [1] and limited["total"] == 3


def test_preview_table_and_list(config: Path) -> None:
    table = run_cli(config, "editions", "preview", "ai", "--now", NOW).stdout
    lines = [line for line in table.splitlines() if "AI gadget" in line or "DeepSeek" in line]
    assert len(lines) == 3
    assert "theverge" in lines[0] and f"{expected_deepseek_score():.3f}" in lines[0]
    assert "2 (2 pub.)" in lines[0]
    code, listing = cli("editions", "list", "--json", config=config, raw=True)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(listing)}
    assert rows["ai"]["max_per_source"] == 2 and rows["ai"]["sort"] == "score"
    assert (rows["ai"]["include"], rows["ai"]["exclude"], rows["ai"]["boost"]) == (1, 1, 1)


def test_explain_admitted_story_names_rule_field_text_and_score(config: Path) -> None:
    text = run_cli(config, "editions", "explain", "ai", ITHOME_URL, "--now", NOW).stdout
    assert "IN the edition at rank 1 of 3 (score order)" in text
    assert (
        "let in by include rule ai-topics: title matched keyword 'DeepSeek': \"DeepSeek\"" in text
    )
    assert "report ithome (Ithome)" in text and "<- ITEM_URL" in text
    assert "report theverge (Theverge)" in text
    assert "coverage 1.693 [2 publishers]" in text and "boost +0.5 from rule zh-sources" in text
    assert f"= {expected_deepseek_score():.4f}" in text

    code, output = cli(
        "editions", "explain", "ai", ITHOME_URL, "--json", "--now", NOW, config=config, raw=True
    )
    assert code == 0
    doc = json.loads(output)
    assert doc["status"] == "in" and doc["rank"] == 1 and doc["lead"] == "theverge"
    mine = next(r for r in doc["reports"] if r["matches_url"])
    assert mine["source"] == "ithome" and mine["admitted"] is True
    hit = mine["include"][0]["hits"][0]
    assert (hit["field"], hit["text"]) == ("title", "DeepSeek")
    assert doc["score"]["publishers"] == 2
    assert doc["score"]["score"] == pytest.approx(expected_deepseek_score())


def test_explain_exclusion_cap_age_and_unknown(config: Path) -> None:
    _, deal = cli(
        "editions",
        "explain",
        "ai",
        "https://www.ithome.com/0/800/002.htm",
        "--now",
        NOW,
        config=config,
        raw=True,
    )
    assert "NOT in the edition: no report of this story passes the edition's rules" in deal
    assert "kept out by exclude rule deals: title matched phrase '限时 优惠'" in deal

    _, capped = cli(
        "editions",
        "explain",
        "ai",
        "https://fire.example/4?utm_source=x",
        "--now",
        NOW,
        config=config,
        raw=True,
    )
    assert "CUT by the per-source cap: firehose already leads 2 stories" in capped
    assert '"AI gadget 1"; "AI gadget 2"' in capped

    _, old = cli(
        "editions",
        "explain",
        "ai",
        "https://www.ithome.com/0/700/001.htm",
        "--now",
        NOW,
        config=config,
        raw=True,
    )
    assert "CUT by age" in old and "7-day window" in old

    code, out = cli(
        "editions", "explain", "ai", "https://nowhere.example/x", "--now", NOW, config=config
    )
    assert code == 1 and "no stored item has the URL https://nowhere.example/x" in out


def cli(*args: str, config: Path, raw: bool = False) -> tuple[int, str]:
    """The same CLI in-process (faster than ``run_cli``; also for error exits, which
    ``run_cli`` refuses). Output with whitespace runs collapsed unless ``raw``."""
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    return result.exit_code, result.output if raw else " ".join(result.output.split())


def test_errors_exit_nonzero_with_one_line(config: Path) -> None:
    code, out = cli("editions", "preview", "nope", config=config)
    assert code == 2 and "no edition named 'nope' (have all, ai)" in out
    code, out = cli("editions", "preview", "ai", "--now", "yesterday", config=config)
    assert code == 2 and "--now: expected an ISO 8601 time" in out
    code, out = cli("editions", "explain", "nope", ITHOME_URL, config=config)
    assert code == 2 and "no edition named 'nope'" in out
    # the global --config reaches the sub-command; its own --config works too
    code, out = cli("editions", "list", config=config)
    assert code == 0 and "ai" in out
    result = CliRunner().invoke(app, ["editions", "list", "--json", "--config", str(config)])
    assert result.exit_code == 0 and json.loads(result.output)[1]["name"] == "ai"
