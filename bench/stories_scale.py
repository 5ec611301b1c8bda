"""Story matching at scale: cost per new item and memory with 10k, 100k and 1M stored items.

Usage: ``python bench/stories_scale.py [--sizes 10000,100000,1000000] [--out FILE]``

For each size a fresh SQLite database (migrated to head) is filled with synthetic reports:
English headline + lead from a Zipf-distributed vocabulary, one story per report, published
uniformly over 90 days, 100 sources, every report's LSH band keys in ``story_bands`` (exactly
what ``match_recent`` writes; bulk-loaded through the driver for speed). Computing real keys
costs ~1.5 ms a report in pure Python, so only reports of the last ``REAL_KEYS`` (every report a
new item can be compared with, plus margin) get real keys; older ones get 31 random 64-bit keys,
which is what distinct texts' keys look like to the index (same row count and key spread).
Then ``ROUNDS`` applies
of ``BATCH`` new items each go through ``Repository.apply`` + ``match_recent`` like the
pipeline; half of the new items are rewordings of a stored report from the last 3 days (they
should merge), half are fresh. Reported: ``match_recent`` time per new item (median and p95 of
the rounds), the pure-Python share of it (features + band keys of a fresh text), merges found,
RSS and Python heap peak during matching, database size.
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator.model import Item, ItemIntent, SourceUpdate, UpdatePlan  # noqa: E402
from aggregator.settings import SourceConfig  # noqa: E402
from aggregator.store import Repository, make_engine, upgrade  # noqa: E402
from aggregator.store.matching import item_band_keys, item_match_text, match_recent  # noqa: E402

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SPREAD = timedelta(days=90)
SOURCES = 100
ROUNDS, BATCH = 20, 20
REAL_KEYS = timedelta(days=7)  # reports this recent get their real band keys
KEYS_PER_ITEM = 31  # 21 body + 10 title keys
VOCAB = 20_000
_rng = random.Random(7)
WORDS = [
    "".join(
        _rng.choice("bcdfghjklmnprstvwz") + _rng.choice("aeiou") for _ in range(_rng.randint(2, 4))
    )
    for _ in range(VOCAB)
]
CUM = list(itertools.accumulate(1 / (r + 1) ** 1.05 for r in range(VOCAB)))


def headline(rng: random.Random) -> tuple[str, str]:
    """A synthetic (title, summary) pair: 7-12 and 20-30 Zipf-distributed words."""
    title = " ".join(rng.choices(WORDS, cum_weights=CUM, k=rng.randint(7, 12))).capitalize()
    lead = " ".join(rng.choices(WORDS, cum_weights=CUM, k=rng.randint(20, 30))).capitalize() + "."
    return title, lead


def reword(title: str, lead: str, rng: random.Random) -> tuple[str, str]:
    """Another publisher's version: one title word changed, the lead rewritten."""
    words = title.split()
    words[rng.randrange(len(words))] = rng.choice(WORDS[:2000])
    return " ".join(words), headline(rng)[1]


def fill(url: str, size: int) -> list[tuple[str, str, datetime]]:
    """Create and bulk-load the database; return the stored texts of the last 3 days."""
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(size)
    recent: list[tuple[str, str, datetime]] = []
    t = NOW - SPREAD
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        cur.executemany(
            "INSERT INTO sources (id, key, url, name, weight, tags, enabled, origin, status,"
            " error_count, created_at) VALUES (?, ?, ?, ?, 1.0, '[]', 1, 'api', 'ok', 0, ?)",
            [
                (s, f"s{s}", f"http://127.0.0.1:9/{s}", f"S{s}", t.isoformat())
                for s in range(1, 101)
            ],
        )
        chunk = 20_000
        for start in range(1, size + 1, chunk):
            stories, items, bands = [], [], []
            for n in range(start, min(size, start + chunk - 1) + 1):
                title, lead = headline(rng)
                published = NOW - SPREAD * rng.random()
                stamp = published.isoformat(sep=" ")
                stories.append((n, f"urn:bench:{n}", stamp, stamp))
                items.append(
                    (n, n % SOURCES + 1, n, f"k{n}", f"https://p{n % SOURCES}.example/{n}",
                     f"https://p{n % SOURCES}.example/{n}", title, f"<p>{lead}</p>", "",
                     f"{title} {lead}", "[]", "en", stamp, f"h{n}", stamp)
                )  # fmt: skip
                if published > NOW - REAL_KEYS:
                    keys = item_band_keys(item_match_text(title, f"<p>{lead}</p>", "en", published))
                else:  # outside every window: distinct texts' keys, drawn instead of computed
                    keys = [rng.getrandbits(64) - 2**63 for _ in range(KEYS_PER_ITEM)]
                bands.extend((k, n, stamp) for k in keys)
                if published > NOW - timedelta(days=3) and len(recent) < 5000:
                    recent.append((title, lead, published))
            cur.executemany(
                "INSERT INTO stories (id, public_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                stories,
            )
            cur.executemany(
                "INSERT INTO items (id, source_id, story_id, item_key, url, canonical_url, title,"
                " summary_html, content_html, text, categories, language, published_at,"
                " content_hash, collected_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                items,
            )
            cur.executemany(
                "INSERT OR IGNORE INTO story_bands (band_key, story_id, published_at)"
                " VALUES (?, ?, ?)",
                bands,
            )
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return recent


def item(n: int, title: str, lead: str, published: datetime) -> Item:
    """A new normalized item."""
    url = f"https://new.example/{n}"
    return Item(
        guid=url, url=url, canonical_url=url, title=title, summary_html=f"<p>{lead}</p>",
        content_html="", text=title, author=None, categories=(), language="en",
        published_at=published, updated_at=None, content_hash=f"new{n}",
    )  # fmt: skip


def measure(size: int, workdir: Path) -> dict[str, float]:
    """Fill a database of ``size`` reports and time matching of new items against it."""
    path = workdir / f"scale-{size}.db"
    url = f"sqlite:///{path}"
    started = time.perf_counter()
    recent = fill(url, size)
    fill_s = time.perf_counter() - started
    engine = make_engine(url)
    repo = Repository(engine)
    source = repo.add_source(SourceConfig(key="new", url="http://127.0.0.1:9/new", name="N"), NOW)
    rng = random.Random(size + 1)
    per_item: list[float] = []
    merged = 0
    heap_peak = 0
    for r in range(ROUNDS + 1):  # the last round runs under tracemalloc for the heap peak
        if r == ROUNDS:
            tracemalloc.start()
        now = NOW + timedelta(minutes=r)
        intents = []
        for b in range(BATCH):
            n = r * BATCH + b
            if b % 2 == 0 and recent:
                title, lead, published = rng.choice(recent)
                title, lead = reword(title, lead, rng)
            else:
                (title, lead), published = headline(rng), NOW - timedelta(hours=rng.random() * 48)
            intents.append(ItemIntent("insert", f"n{n}", item(n, title, lead, published)))
        plan = UpdatePlan(
            source.id,
            SourceUpdate("ok", None, 0, now + timedelta(minutes=5), now, last_success_at=now),
            tuple(intents),
        )
        repo.apply(plan, now)
        t0 = time.perf_counter()
        got = match_recent(engine, source.id, now)
        if r == ROUNDS:
            heap_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            continue
        per_item.append((time.perf_counter() - t0) / BATCH)
        merged += got.merged
    engine.dispose()
    fresh = [headline(rng) for _ in range(200)]  # the pure-Python share: features + band keys
    t0 = time.perf_counter()
    for title, lead in fresh:
        item_band_keys(item_match_text(title, f"<p>{lead}</p>", "en", NOW))
    features_ms = (time.perf_counter() - t0) / len(fresh) * 1000
    per_item.sort()
    result = {
        "size": size,
        "fill_s": fill_s,
        "median_ms": statistics.median(per_item) * 1000,
        "features_ms": features_ms,
        "p95_ms": per_item[int(0.95 * (len(per_item) - 1))] * 1000,
        "merged": merged,
        "expected": ROUNDS * BATCH // 2,
        "heap_peak_mb": heap_peak / 2**20,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "db_mb": sum(p.stat().st_size for p in workdir.glob(f"scale-{size}.db*")) / 2**20,
    }
    path.unlink()
    return result


def main() -> None:
    """Run the sizes and print (or write) a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="stories-scale-"))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        res = measure(size, workdir)
        print(res, flush=True)
        rows.append(
            f"| {size:,} | {res['median_ms']:.2f} | {res['p95_ms']:.2f} | {res['features_ms']:.2f}"
            f" | {res['merged']}/{res['expected']} | {res['heap_peak_mb']:.1f}"
            f" | {res['rss_mb']:.0f} | {res['db_mb']:.0f} | {res['fill_s']:.0f} |"
        )
    table = "\n".join(
        [
            "| stored items | match ms/item (median) | p95 | of which features + keys"
            " | merged/expected | heap peak MB (matching) | max RSS MB | DB MB | fill s |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
