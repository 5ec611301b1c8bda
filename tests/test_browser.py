"""A real browser (Debian's Chromium, driven by Playwright) on the daemon's HTML pages.

Fixture publishers on a :class:`FeedServer` feed ``aggregator run`` (:mod:`tests.daemon`);
Chromium then opens ``/`` and ``/editions/all`` and we assert what a reader actually sees:
edition titles and subscribe links, feed autodiscovery ``<link rel="alternate">`` tags in the
head, story cards with titles and publishers, "Also reported by" on the story two publishers
reported (linking to the other report), nothing executable from the hostile fixture (its
``<script>alert(1)</script>``, ``onclick`` and ``javascript:`` link), and no horizontal
scrolling on a phone-size (390x844) viewport. Screenshots land in ``tmp_path``.

Chromium is Debian's ``/usr/bin/chromium`` (never ``playwright install``), launched headless
with the background-networking switches off, so it talks to 127.0.0.1 only; Playwright gives
every launch a fresh temporary profile (``--user-data-dir``). Skipped with a reason when
Playwright or Chromium is missing. :func:`launch` is shared with ``scripts/screenshots.sh``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.daemon import FIXTURE_DIR, Daemon, write_fixture_config
from tests.servers import FeedServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page, Playwright

#: Debian's Chromium (``apt-get install chromium``); override with ``AGGREGATOR_TEST_CHROMIUM``.
CHROMIUM = os.environ.get("AGGREGATOR_TEST_CHROMIUM", "/usr/bin/chromium")
#: Headless, no sandbox (containers), and none of Chromium's own calls home.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1024, "height": 768}
EDITION_TITLES = ("Everything", "AI")
PUBLISHERS = ("IT之家", "The Verge", "JSON Blog")
DEEPSEEK = "腾讯、阿里洽谈投资 DeepSeek，估值超 200 亿美元"
VERGE_REPORT = "https://www.ithome.example/0/900/101.htm#comments"


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium under Playwright, headless, offline except for 127.0.0.1."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True
    )


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


pytestmark = pytest.mark.skipif(_missing_browser() is not None, reason=str(_missing_browser()))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon fed by the e2e fixtures, with all six stories rendered."""
    home = tmp_path_factory.mktemp("browser-daemon")
    with FeedServer() as server:
        server.serve_dir("/own", FIXTURE_DIR)
        config = write_fixture_config(home / "aggregator.toml", server.url("/own"))
        with Daemon.start(config) as running:

            def rendered() -> bool:
                response = running.get("/feeds/all.json")
                return response.status_code == 200 and len(response.json()["items"]) == 6

            running.wait_until(rendered, timeout=20, what="the all edition with 6 stories")
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """A desktop page plus every dialog it opened (a hostile ``alert()`` would show up)."""

    page: Page
    dialogs: list[str] = field(default_factory=list)

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_nothing_executable(self) -> None:
        """No script element, inline handler or ``javascript:`` link; no dialog was opened."""
        page = self.page
        assert page.locator("script").count() == 0
        assert page.locator("[onclick], [onerror], [onload]").count() == 0
        assert page.locator('a[href^="javascript:" i]').count() == 0
        html = page.content().lower()
        assert "<script" not in html and "alert(1)" not in html and "steal()" not in html
        assert self.dialogs == []


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    opened = Tab(context.new_page())
    opened.page.on("dialog", opened.on_dialog)
    yield opened
    context.close()


def autodiscovery(page: Page) -> list[dict[str, str]]:
    """The ``<link rel="alternate">`` tags of the page's head, as attribute dicts."""
    links: list[dict[str, str]] = page.eval_on_selector_all(
        'head link[rel="alternate"]',
        "els => els.map(e => ({type: e.type, title: e.title, href: e.href}))",
    )
    return links


def test_index_lists_editions_with_feed_links(tab: Tab, daemon: Daemon, tmp_path: Path) -> None:
    page = tab.page
    response = page.goto(daemon.url("/"))
    assert response is not None and response.status == 200
    assert page.title() == "Editions · aggregator"
    for title in EDITION_TITLES:
        link = page.get_by_role("link", name=title, exact=True)
        assert link.is_visible()
    assert page.get_by_role("link", name="Everything", exact=True).get_attribute("href") == (
        "/editions/all"
    )
    for label in ("RSS", "Atom", "JSON Feed"):
        assert page.get_by_role("link", name=label, exact=True).first.is_visible()

    feeds = autodiscovery(page)
    assert {(f["type"], f["href"]) for f in feeds} == {
        (media_type, daemon.url(f"/feeds/{edition}.{ext}"))
        for edition in ("all", "ai")
        for media_type, ext in (
            ("application/rss+xml", "rss"),
            ("application/atom+xml", "atom"),
            ("application/feed+json", "json"),
        )
    }
    assert "Everything (Atom)" in {f["title"] for f in feeds}
    for feed in feeds:  # every advertised feed is really there
        assert daemon.get(feed["href"].removeprefix(daemon.base_url)).status_code == 200

    tab.assert_nothing_executable()
    page.screenshot(path=tmp_path / "index.png", full_page=True)
    assert (tmp_path / "index.png").stat().st_size > 1000


def test_edition_page_shows_story_cards(tab: Tab, daemon: Daemon, tmp_path: Path) -> None:
    page = tab.page
    response = page.goto(daemon.url("/editions/all"))
    assert response is not None and response.status == 200
    assert page.get_by_role("heading", level=1).inner_text() == "Everything"
    assert len(autodiscovery(page)) == 3

    cards = page.locator("article.card")
    assert cards.count() == 6
    titles = [cards.nth(i).locator("h2").inner_text() for i in range(cards.count())]
    assert DEEPSEEK in titles and "Notes on running feed readers" in titles
    for publisher in PUBLISHERS:
        assert page.locator(".meta", has_text=publisher).first.is_visible()
    for i in range(cards.count()):  # every card: a visible linked title and a time
        card = cards.nth(i)
        assert card.locator("h2 a").is_visible()
        assert card.locator("time").count() == 1

    # the story two publishers reported: IT之家 leads, The Verge's report is linked
    deepseek = cards.filter(has_text=DEEPSEEK)
    assert deepseek.count() == 1
    assert deepseek.get_by_text("Also reported by").is_visible()
    other = deepseek.locator(".also a")
    assert other.count() == 1
    assert other.inner_text() == "The Verge"
    assert other.get_attribute("href") == VERGE_REPORT
    assert "IT之家" in deepseek.locator(".meta").first.inner_text()
    assert page.get_by_text("Also reported by").count() == 1  # single-source stories: none

    # the hostile item is shown as text, with nothing executable left
    assert cards.filter(has_text="小米发布新款手环").count() == 1
    tab.assert_nothing_executable()
    page.screenshot(path=tmp_path / "edition.png", full_page=True)
    assert (tmp_path / "edition.png").stat().st_size > 1000


@pytest.mark.parametrize("path", ["/", "/editions/all", "/editions/ai"])
def test_phone_viewport_has_no_horizontal_overflow(
    browser: Browser, daemon: Daemon, tmp_path: Path, path: str
) -> None:
    context = browser.new_context(
        viewport=PHONE,  # type: ignore[arg-type]
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        response = page.goto(daemon.url(path))
        assert response is not None and response.status == 200
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= PHONE["width"], f"{path}: content is {width}px wide on a 390px phone"
        font_px = float(page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)"))
        assert font_px >= 16  # readable without zooming
        shot = tmp_path / f"phone{path.replace('/', '-')}.png"
        page.screenshot(path=shot, full_page=True)
        assert shot.stat().st_size > 1000
    finally:
        context.close()
