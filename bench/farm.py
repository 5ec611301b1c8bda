"""A farm of N synthetic publishers on 127.0.0.1, for benchmarks (not tests).

Feeds are RSS 2.0 or Atom (alternating), a third of their items Chinese, 30-60 items and
roughly 30-150 KB each, served from memory by an aiohttp server in its own process with ETag
and Last-Modified (304 on conditional requests). ``POST /_tick?fraction=0.2`` makes that
fraction of feeds gain new items (a changed tick); ``GET /_stats`` returns request counts.

    python bench/farm.py --feeds 200 --port 8765     # serves until killed
"""

from __future__ import annotations

import argparse
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web

ZH_WORDS = tuple(
    "人工智能 大模型 芯片 发布 手机 华为 小米 腾讯 阿里巴巴 英伟达 数据中心 开源 "  # noqa: SIM905
    "操作系统 新能源 汽车 电池 屏幕 相机 处理器 网络 安全 漏洞 更新 系统 价格 市场".split()
)
EN_WORDS = tuple(
    "model chip launch phone cloud data center open source kernel release security "  # noqa: SIM905
    "update battery display camera processor network market price startup funding".split()
)
# Items are dated back from the hour the farm starts: item k of a feed appeared 37 minutes x
# (HISTORY - k) before it (a feed's first items about five days back, what a tick adds a few
# days back and newer), so they fall inside an edition's default 7-day window and the
# benchmark's renders export what a real poll's would. Bodies are the same for one seed within
# the hour.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HISTORY = 200


@dataclass
class Feed:
    """One synthetic publisher."""

    index: int
    kind: str  # rss | atom
    rng: random.Random
    items: list[dict[str, str | datetime]] = field(default_factory=list)
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""
    generation: int = 0

    def add_items(self, n: int) -> None:
        for _ in range(n):
            k = len(self.items)
            chinese = self.rng.random() < 1 / 3
            words = ZH_WORDS if chinese else EN_WORDS
            sep = "" if chinese else " "
            title = sep.join(self.rng.choice(words) for _ in range(self.rng.randint(5, 10)))
            para = sep.join(self.rng.choice(words) for _ in range(self.rng.randint(150, 400)))
            self.items.append(
                {
                    "title": f"{title} {self.index}-{k}",
                    "link": f"https://pub{self.index}.example/posts/{k}",
                    "guid": f"pub{self.index}-{k}",
                    "date": BASE - timedelta(minutes=37 * (HISTORY - k) + self.index),
                    "html": f"<p>{escape(para)}</p><p><a href='/x/{k}'>more</a></p>",
                }
            )
        self.items = self.items[-self.rng.randint(30, 60) :] if len(self.items) > 60 else self.items
        self.render()

    def render(self) -> None:
        items = list(reversed(self.items))
        if self.kind == "rss":
            parts = [
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
                f"<title>Publisher {self.index}</title><link>https://pub{self.index}.example/"
                "</link><description>synthetic</description>",
            ]
            for it in items:
                parts.append(
                    f"<item><title>{escape(str(it['title']))}</title><link>{it['link']}</link>"
                    f"<guid>{it['guid']}</guid><pubDate>{format_datetime(it['date'])}</pubDate>"  # type: ignore[arg-type]
                    f"<description>{escape(str(it['html']))}</description></item>"
                )
            parts.append("</channel></rss>")
        else:
            parts = [
                '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">',
                f"<title>Publisher {self.index}</title><id>urn:pub:{self.index}</id>"
                f"<link href='https://pub{self.index}.example/'/>"
                f"<updated>{BASE.isoformat()}</updated>",
            ]
            for it in items:
                date = it["date"].isoformat()  # type: ignore[union-attr]
                parts.append(
                    f"<entry><title>{escape(str(it['title']))}</title><id>{it['guid']}</id>"
                    f"<link href='{it['link']}'/><updated>{date}</updated>"
                    f"<author><name>a</name></author>"
                    f"<content type='html'>{escape(str(it['html']))}</content></entry>"
                )
            parts.append("</feed>")
        self.body = "".join(parts).encode("utf-8")
        self.generation += 1
        self.etag = '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'
        self.last_modified = format_datetime(BASE + timedelta(seconds=self.generation), usegmt=True)


def build(n: int, seed: int = 7) -> list[Feed]:
    """The farm's feeds, deterministic for a seed."""
    feeds = []
    for i in range(n):
        f = Feed(i, "rss" if i % 2 == 0 else "atom", random.Random(seed * 100_003 + i))
        f.add_items(f.rng.randint(30, 60))
        feeds.append(f)
    return feeds


def make_app(feeds: list[Feed]) -> web.Application:
    """The aiohttp application serving ``/feed/<i>`` plus the control endpoints."""
    stats = {"200": 0, "304": 0}

    async def feed(request: web.Request) -> web.Response:
        f = feeds[int(request.match_info["i"])]
        if request.headers.get("If-None-Match") == f.etag or (
            "If-None-Match" not in request.headers
            and request.headers.get("If-Modified-Since") == f.last_modified
        ):
            stats["304"] += 1
            return web.Response(status=304, headers={"ETag": f.etag})
        stats["200"] += 1
        ctype = "application/rss+xml" if f.kind == "rss" else "application/atom+xml"
        return web.Response(
            body=f.body,
            headers={
                "ETag": f.etag,
                "Last-Modified": f.last_modified,
                "Content-Type": f"{ctype}; charset=utf-8",
            },
        )

    async def tick(request: web.Request) -> web.Response:
        fraction = float(request.query.get("fraction", "0.2"))
        rng = random.Random(int(request.query.get("seed", "1")))
        changed = rng.sample(range(len(feeds)), int(len(feeds) * fraction))
        for i in changed:
            feeds[i].add_items(rng.randint(1, 5))
        return web.json_response({"changed": len(changed)})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/feed/{i}", feed)
    app.router.add_post("/_tick", tick)
    app.router.add_get("/_stats", get_stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    feeds = build(args.feeds)
    size = sum(len(f.body) for f in feeds)
    print(f"farm: {len(feeds)} feeds, {size / 1e6:.1f} MB on 127.0.0.1:{args.port}", flush=True)
    web.run_app(make_app(feeds), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
