"""Regenerate docs/screenshot-story-card.png and docs/screenshot-feed-item.png.

    .venv/bin/python scripts/card_screenshots.py [OUTDIR]      # default: docs/

Local data only: a temporary SQLite database is filled through the repository (reports of a
few publishers, the DeepSeek story told by IT之家 and The Verge, earlier related stories), an
LLM-style card is stored for that story through the enrichment store, last week's recap is
built by the real recap code, the editions are rendered by the real pipeline code, and the web
app is served by uvicorn on 127.0.0.1. Debian's Chromium under Playwright (never
``playwright install``; see tests/test_browser.py) then photographs the edition page and the
RSS item's HTML as a feed reader shows it. Needs ``apt-get install chromium fonts-wqy-microhei``.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from lxml import etree
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aggregator.clock import FixedClock
from aggregator.model import Card, Item, ItemIntent, SourceUpdate, UpdatePlan
from aggregator.pipeline import render_stored
from aggregator.recap_cli import build_and_store
from aggregator.settings import (
    EditionConfig,
    RecapSettings,
    Rule,
    ServerSettings,
    Settings,
    SourceConfig,
)
from aggregator.store.db import make_engine, upgrade
from aggregator.store.enrichments import CardWrite, EnrichmentState, EnrichmentStore
from aggregator.store.recaps import RecapStore
from aggregator.store.repo import Repository
from aggregator.web import create_app
from tests.test_browser import launch

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
SOURCES = (
    SourceConfig(key="ithome", name="IT之家", url="https://www.ithome.com/rss/", weight=2.0,
                 language="zh-cn"),
    SourceConfig(key="verge", name="The Verge", url="https://www.theverge.com/rss/index.xml",
                 weight=1.2, language="en"),
    SourceConfig(key="36kr", name="36氪", url="https://36kr.com/feed", weight=1.0,
                 language="zh-cn"),
)  # fmt: skip
DEEPSEEK = "https://www.ithome.com/0/900/101.htm"
# (source, title, summary, url, published, external url)
REPORTS = (
    ("ithome", "DeepSeek 发布 V3.1 模型，上下文扩展至 128K",
     "IT之家 11 月 19 日消息，深度求索 DeepSeek 今日发布 V3.1 模型。",
     "https://www.ithome.com/0/898/512.htm", NOW - timedelta(days=9), None),
    ("36kr", "腾讯混元大模型更新，开放 API 降价 50%",
     "腾讯今日宣布混元大模型 API 降价。", "https://36kr.com/p/3050001",
     NOW - timedelta(days=8, hours=3), None),
    ("verge", "Alibaba's Qwen team ships a new open model",
     "Alibaba released another open-weight model.", "https://www.theverge.com/ai/100200",
     NOW - timedelta(days=7, hours=20), None),
    ("ithome", "腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元",
     "IT之家 11 月 28 日消息，据知情人士透露，腾讯、阿里巴巴正与深度求索 DeepSeek 洽谈投资，"
     "本轮估值或超过 200 亿美元。",
     DEEPSEEK, NOW - timedelta(minutes=50), None),
    ("verge", "Tencent and Alibaba eye $20 billion-plus DeepSeek investment",
     "China's two largest tech companies are in talks to back DeepSeek, IT Home reports.",
     "https://www.theverge.com/ai/100300", NOW - timedelta(minutes=20), DEEPSEEK),
    ("36kr", "小米汽车 11 月交付量突破 4 万台", "小米汽车公布 11 月交付数据。",
     "https://36kr.com/p/3050099", NOW - timedelta(hours=3), None),
)  # fmt: skip
CARD = Card(
    backend="llm",
    model="qwen2.5-7b-instruct",
    title="Tencent, Alibaba eye $20B+ DeepSeek investment",
    tldr=(
        "Tencent and Alibaba are in talks to invest in DeepSeek at a valuation above $20 billion, "
        "which would make it one of China's most valuable AI start-ups."
    ),
    what_changed="DeepSeek, so far funded by its parent High-Flyer, is negotiating its first "
    "outside investment, with China's two largest internet companies.",
    why_it_matters="A $20B+ round would reset valuations for Chinese model makers and tie "
    "DeepSeek's open models closer to Tencent's and Alibaba's clouds.",
    what_to_do_next="Watch for a term sheet and regulatory filings; teams building on "
    "DeepSeek's open weights should track licence or API pricing changes.",
    who_should_care="AI investors, cloud buyers in China, and developers using DeepSeek models.",
    key_takeaways=(
        "Valuation reportedly above $20 billion",
        "Talks are early; no terms are final",
        "Both investors also build their own models (Hunyuan, Qwen)",
    ),
    tags=("DeepSeek", "investment", "AI"),
    generated_at=NOW - timedelta(minutes=15),
    input_hash="screenshot",
)
READER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><style>
body {{ margin: 0; background: #fafaf7; color: #222; font: 17px/1.6 Georgia, "Noto Serif CJK SC",
  "WenQuanYi Micro Hei", serif; }}
.reader {{ max-width: 44rem; margin: 0 auto; padding: 1.2rem 1.5rem 2rem; }}
.chrome {{ font: 13px/1.4 system-ui, sans-serif; color: #777; border-bottom: 1px solid #ddd;
  padding-bottom: .6rem; margin-bottom: 1rem; }}
h1 {{ font-size: 1.5rem; line-height: 1.3; margin: .2rem 0 .4rem; }}
</style></head><body><div class="reader">
<div class="chrome">Feed reader · {feed} · {date}</div>
<h1>{title}</h1>
{body}
</div></body></html>"""


def fill(repo: Repository) -> None:
    """Store the reports through the repository, one plan per source."""
    repo.sync_sources(SOURCES, NOW - timedelta(days=10))
    ids = {s.key: s.id for s in repo.list_sources()}
    for n, (key, title, summary, url, published, external) in enumerate(REPORTS):
        item = Item(
            guid=url, url=url, canonical_url=url, title=title, summary_html=f"<p>{summary}</p>",
            content_html=f"<p>{summary}</p>", text=f"{title} {summary}", author=None,
            categories=("汽车",) if "小米" in title else ("AI",),
            language="en" if key == "verge" else "zh-cn",
            published_at=published, updated_at=None, content_hash=f"h{n}",
            external_url=external,
        )  # fmt: skip
        collected = published + timedelta(minutes=3)
        update = SourceUpdate(
            status="ok", last_error=None, error_count=0,
            next_check_at=collected + timedelta(minutes=15), last_fetched_at=collected,
            last_success_at=collected,
        )  # fmt: skip
        plan = UpdatePlan(ids[key], update, (ItemIntent("insert", url, item),))
        repo.apply(plan, collected)


def store_card(repo: Repository) -> None:
    """The DeepSeek story's card, stored as the enrichment job would store it."""
    story = next(s for s in repo.recent_stories(NOW - timedelta(days=30), 100) if len(s.items) > 1)
    state = EnrichmentState(
        story_id=story.id,
        input_hash=CARD.input_hash,
        story_updated_at=story.updated_at,
        card=CARD,
        llm_status="ok",
    )
    EnrichmentStore(repo.engine).save([CardWrite(state, None)], NOW)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ai = EditionConfig(
        name="ai",
        title="AI and LLM news",
        description="AI, large language models and the companies building them.",
        include=(Rule(fields=("title", "summary", "categories"), keywords=("AI", "DeepSeek")),),
        max_age_days=14,
    )
    with tempfile.TemporaryDirectory(prefix="aggregator-card-shots-") as home:
        settings = Settings(
            config_path=f"{home}/aggregator.toml",
            database_url=f"sqlite:///{home}/aggregator.db",
            server=ServerSettings(base_url=base),
            recap=RecapSettings(top_n=5),
            sources=SOURCES,
            editions=(ai,),
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        repo = Repository(engine)
        fill(repo)
        store_card(repo)
        build_and_store(settings, repo, NOW, week="2026-W47")
        render_stored(settings, repo, NOW)
        app = create_app(settings, repo, clock=FixedClock(NOW), recaps=RecapStore(engine))
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(
                    viewport={"width": 900, "height": 700}, color_scheme="light"
                )
                page.goto(f"{base}/editions/ai")
                page.screenshot(path=out / "screenshot-story-card.png", full_page=True)
                if len(sys.argv) > 2:  # a look at the recap page too, for checking by eye
                    page.goto(f"{base}/editions/ai/recaps/2026-W47")
                    page.screenshot(path=out / "recap-page.png", full_page=True)
                rss = etree.fromstring(page.request.get(f"{base}/feeds/ai.rss").body())
                item = next(
                    i
                    for i in rss.iter("item")
                    if "DeepSeek" in (i.findtext("title") or "")
                    and "Tencent" in (i.findtext("description") or "")
                )
                page.set_content(
                    READER_PAGE.format(
                        title=item.findtext("title"),
                        feed="AI and LLM news",
                        date=item.findtext("pubDate"),
                        body=item.findtext("description"),
                    )
                )
                page.screenshot(path=out / "screenshot-feed-item.png", full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
            engine.dispose()
    for name in ("screenshot-story-card.png", "screenshot-feed-item.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
