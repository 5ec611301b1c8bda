"""A real feed reader (newsboat) subscribed to the daemon's RSS and Atom exports.

The whole chain runs for real: fixture publishers on a :class:`FeedServer`, ``aggregator run``
polling them every second (:mod:`tests.daemon`), and ``newsboat -x reload`` fetching the
daemon's ``/feeds/all.rss`` and ``/feeds/all.atom`` into its own SQLite cache. We then read
newsboat's cache (table ``rss_item``) and hold it against the JSON Feed export:

1. every exported story is in the reader exactly once per feed, under the exported id;
2. when a publisher gains an item, the next reload adds exactly that story, no duplicates;
3. a reload with nothing changed is answered ``304 Not Modified`` by the daemon (counted by its
   ``aggregator_http_requests_total{route="/feeds/{edition}.{fmt}",status="304"}``).

newsboat keys its cache by GUID across *all* feeds (a GUID seen in a second feed moves the
row), so the RSS and the Atom subscriptions get one cache each, as two readers would.
newsboat 2.21 also drops the validators of a feed's very first fetch (it stores them before
the feed's row exists), so it only sends ``If-None-Match`` from its third reload on; the test
reloads three times anyway (initial, after the change, unchanged).

Skipped with a reason when newsboat is not installed (``apt-get install newsboat``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon import FIXTURE_DIR, Daemon, write_fixture_config
from tests.servers import FeedServer

NEWSBOAT = shutil.which("newsboat")
pytestmark = pytest.mark.skipif(
    NEWSBOAT is None, reason="newsboat is not installed (apt-get install newsboat)"
)

FEEDS_ROUTE = "/feeds/{edition}.{fmt}"
NEW_TITLE = "OpenAI 发布新模型"
NEW_ITEM = (
    f"<item><title>{NEW_TITLE}</title>"
    "<link>https://www.ithome.example/0/900/104.htm</link>"
    "<guid>https://www.ithome.example/0/900/104.htm</guid>"
    "<pubDate>Sat, 28 Nov 2026 09:30:00 GMT</pubDate>"
    "<description>OpenAI 今日发布新模型。</description></item>"
)
# Everything newsboat may touch lives in its own directory; it talks to 127.0.0.1 only.
NEWSBOAT_CONFIG = """\
reload-threads 1
download-retries 1
download-timeout 10
use-proxy no
show-read-feeds yes
cleanup-on-quit yes
"""


@dataclass(frozen=True, slots=True)
class Reader:
    """One newsboat installation: a urls file with one feed, its config and its cache."""

    home: Path
    feed_url: str

    @property
    def cache(self) -> Path:
        return self.home / "cache.db"

    def setup(self) -> Reader:
        self.home.mkdir(parents=True)
        (self.home / "urls").write_text(self.feed_url + "\n", encoding="utf-8")
        (self.home / "config").write_text(NEWSBOAT_CONFIG, encoding="utf-8")
        return self

    def reload(self) -> None:
        """``newsboat -x reload``: fetch the feed once, update the cache, exit."""
        assert NEWSBOAT is not None
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / "xdg-config"),
            XDG_DATA_HOME=str(self.home / "xdg-data"),
            NO_PROXY="*",
            LC_ALL="C.UTF-8",
        )
        proc = subprocess.run(
            [
                *(NEWSBOAT, "-u", str(self.home / "urls"), "-c", str(self.cache)),
                *("-C", str(self.home / "config"), "-x", "reload"),
            ],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        assert proc.returncode == 0, f"newsboat failed ({proc.returncode}): {proc.stderr}"
        assert "error" not in proc.stderr.lower(), proc.stderr

    def guids(self) -> Counter[str]:
        """How often each GUID of the feed is in the cache (a duplicate would count 2)."""
        with sqlite3.connect(self.cache) as db:
            rows = db.execute(
                "SELECT guid FROM rss_item WHERE feedurl = ? AND deleted = 0", (self.feed_url,)
            ).fetchall()
        return Counter(guid for (guid,) in rows)

    def titles(self) -> dict[str, str]:
        with sqlite3.connect(self.cache) as db:
            rows = db.execute(
                "SELECT guid, title FROM rss_item WHERE feedurl = ?", (self.feed_url,)
            ).fetchall()
        return dict(rows)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FeedServer, Daemon]]:
    with FeedServer() as server:
        server.serve_dir("/own", FIXTURE_DIR)
        config = write_fixture_config(tmp_path / "aggregator.toml", server.url("/own"))
        with Daemon.start(config) as daemon:
            yield server, daemon


def exported(daemon: Daemon) -> dict[str, str]:
    """Story id -> title of the ``all`` edition's JSON Feed ({} while it is not rendered)."""
    response = daemon.get("/feeds/all.json")
    if response.status_code != 200:
        return {}
    return {item["id"]: item.get("title", "") for item in response.json()["items"]}


def wait_for_export(daemon: Daemon, count: int) -> dict[str, str]:
    """Wait until all three exports list ``count`` stories; return the JSON Feed's."""

    def ready() -> bool:
        ids = exported(daemon)
        if len(ids) != count:
            return False
        for fmt in ("rss", "atom"):
            body = daemon.get(f"/feeds/all.{fmt}").text
            if not all(story_id in body for story_id in ids):
                return False
        return True

    daemon.wait_until(ready, timeout=20, what=f"{count} stories in every export")
    return exported(daemon)


def feed_status_count(daemon: Daemon, status: int) -> float:
    return daemon.metric("aggregator_http_requests_total", route=FEEDS_ROUTE, status=str(status))


def test_newsboat_reads_every_story_once_and_gets_304(
    world: tuple[FeedServer, Daemon], tmp_path: Path
) -> None:
    server, daemon = world
    stories = wait_for_export(daemon, 6)  # 7 fixture entries, two of them one story
    assert any("DeepSeek" in title for title in stories.values())

    readers = [
        Reader(tmp_path / "newsboat-rss", daemon.url("/feeds/all.rss")).setup(),
        Reader(tmp_path / "newsboat-atom", daemon.url("/feeds/all.atom")).setup(),
    ]

    # 1. first reload: every exported story once, under the exported id, with its title
    for reader in readers:
        reader.reload()
        guids = reader.guids()
        assert set(guids) == set(stories), reader.feed_url
        assert max(guids.values()) == 1, guids
        assert reader.titles() == stories

    # 2. a publisher gains an item: the daemon polls it, the reader gets exactly that story
    body = (FIXTURE_DIR / "ithome.rss.xml").read_text(encoding="utf-8")
    server.serve(
        "/own/ithome.rss.xml",
        body.replace("<item>", NEW_ITEM + "<item>", 1).encode("utf-8"),
        content_type="application/rss+xml",
    )
    after = wait_for_export(daemon, 7)
    new_ids = set(after) - set(stories)
    assert len(new_ids) == 1 and after[next(iter(new_ids))] == NEW_TITLE
    assert set(stories) < set(after)  # nobody's id changed
    for reader in readers:
        before = reader.guids()
        reader.reload()
        guids = reader.guids()
        assert set(guids) - set(before) == new_ids, reader.feed_url
        assert set(guids) == set(after)
        assert max(guids.values()) == 1, guids

    # 3. nothing changed: the daemon answers the readers' conditional requests with 304
    ok_before = feed_status_count(daemon, 200)
    not_modified_before = feed_status_count(daemon, 304)
    snapshot = [reader.guids() for reader in readers]
    for reader in readers:
        reader.reload()
    assert feed_status_count(daemon, 304) - not_modified_before == len(readers)
    assert feed_status_count(daemon, 200) == ok_before
    assert [reader.guids() for reader in readers] == snapshot
