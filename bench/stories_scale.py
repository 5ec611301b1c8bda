"""Story matching at scale: cost per new item and memory with 10k, 100k and 1M stored items.

Usage: ``python bench/stories_scale.py [--sizes 10000,100000,1000000] [--out FILE]``

For each size a fresh SQLite database (migrated to head) is filled with synthetic reports:
English headline + lead from a Zipf-distributed vocabulary, one story per report, published
uniformly over 90 days, 100 sources, and the LSH band keys in ``story_bands`` that matching
would have left there. Reports of the last ``REAL_KEYS`` (every report a new item can be
compared with, plus margin) get their real keys; older ones get random 64-bit keys, 31 per
report on average, which is what distinct texts' keys look like to the index (same row count
and key spread), but only back to ``INDEXED`` (8 days): the daemon prunes the rows of stories
not updated for twice the 3-day window (``aggregator.store.bandprune``), allowing for its
2-day slice. ``--unpruned`` indexes all 90 days, as before pruning existed. The fill is a bulk
load for speed: rows go in key order, in chunked transactions, with the secondary index of
``story_bands`` built afterwards; the schema ends identical to a migrated one.

Then new items arrive the way the pipeline handles them: ``--rounds`` applies of ``BATCH`` new
items, half of them another publisher's version of a stored report of the last 3 days (they
should merge), half fresh. Matching runs as the ``then`` hook of ``Repository.apply`` (one
transaction, one commit), with features and band keys prepared beforehand
(``prepare_many``, which the pipeline runs in a parse worker). Apply rounds without matching
alternate with them, on the same database, as the baseline. Reported per new item (medians of
the rounds): the apply with matching, the apply alone, their difference (what matching adds on
the database thread, commit included), the time inside the matching hook, and the preparation
(features + keys, off the database thread when there is a parse worker); merges found, Python
heap peak during matching, max RSS, database size. The difference is also given as the
difference of the means: a commit that runs a WAL checkpoint costs many times a plain one, and
when that happens in fewer than half of the rounds the median leaves it out; the mean spreads
it over all of them (the amortized cost).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator.dedupe.prepare import prepare, prepare_many  # noqa: E402
from aggregator.model import Item, ItemIntent, SourceUpdate, UpdatePlan  # noqa: E402
from aggregator.settings import SourceConfig  # noqa: E402
from aggregator.store import Repository, make_engine, upgrade  # noqa: E402
from aggregator.store.bandprune import SLICE as PRUNE_SLICE  # noqa: E402
from aggregator.store.bandprune import band_cutoff, prune_story_bands  # noqa: E402
from aggregator.store.matching import MatchAfterApply  # noqa: E402

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SPREAD = timedelta(days=90)
SOURCES = 100
ROUNDS, BATCH = 30, 20
REAL_KEYS = timedelta(days=7)  # reports this recent get their real band keys
# What the daemon's pruning (aggregator.store.bandprune) leaves indexed at the default 3-day
# window: stories updated in the last 2 x 3 days, plus the 2-day slice a late run can lag.
INDEXED = timedelta(days=8)
KEYS_PER_ITEM = 31  # 21 body + 10 title keys
CHUNK = 50_000  # reports per fill transaction
VOCAB = 20_000
_rng = random.Random(7)
WORDS = [
    "".join(
        _rng.choice("bcdfghjklmnprstvwz") + _rng.choice("aeiou") for _ in range(_rng.randint(2, 4))
    )
    for _ in range(VOCAB)
]
CUM = list(itertools.accumulate(1 / (r + 1) ** 1.05 for r in range(VOCAB)))
BAND_INDEXES = {
    "ix_story_bands_story_id": "story_bands (story_id)",
}


def headline(rng: random.Random) -> tuple[str, str]:
    """A synthetic (title, summary) pair: 7-12 and 20-30 Zipf-distributed words."""
    title = " ".join(rng.choices(WORDS, cum_weights=CUM, k=rng.randint(7, 12))).capitalize()
    lead = " ".join(rng.choices(WORDS, cum_weights=CUM, k=rng.randint(20, 30))).capitalize() + "."
    return title, lead


def reword(title: str, lead: str, rng: random.Random) -> tuple[str, str]:
    """Another publisher's version of the same headline, as the English rule accepts it (the
    same words re-cased with headline boilerplate, or one word dropped from a long title); the
    lead rewritten. A changed word makes a different report to the rule (see
    bench/stories_eval.md), so it would not merge."""
    words = title.split()
    if rng.random() < 0.5 and len(words) >= 9:
        del words[rng.randrange(len(words))]
        new_title = " ".join(words)
    else:
        new_title = title.title() + rng.choice([" - report", ": live updates", " (video)", ""])
    return new_title, headline(rng)[1]


def _random_rows(
    count: int, ids: list[int], stamps: list[str], rng: random.Random
) -> Iterator[tuple[int, int, str]]:
    """``count`` band rows with random keys in increasing order (exponential gaps: the order
    statistics of uniform draws), each on a random one of the ``ids`` stories."""
    key = -(2**63)
    mean_gap = 2**64 / (count + 1)
    for _ in range(count):
        key += max(1, int(rng.expovariate(1.0) * mean_gap))
        if key >= 2**63:
            return
        n = rng.randrange(len(ids))
        yield key, ids[n], stamps[n]


def fill(
    path: Path, size: int, pruned: bool = True, spread: timedelta = SPREAD
) -> list[tuple[str, str, datetime]]:
    """Create and bulk-load the database with ``size`` reports published uniformly over the
    ``spread`` before ``NOW``; return the stored texts of the last 3 days.

    ``pruned``: only reports of the last ``INDEXED`` have band rows, as after the daemon's
    pruning; otherwise every report has them (the index before pruning existed).
    """
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    rng = random.Random(size)
    recent: list[tuple[str, str, datetime]] = []
    real: list[tuple[int, int, str]] = []  # band rows with computed keys
    old_ids: list[int] = []
    old_stamps: list[str] = []
    t = NOW - spread
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    for name in BAND_INDEXES:
        db.execute(f"DROP INDEX {name}")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO sources (id, key, url, name, weight, tags, enabled, origin, status,"
        " error_count, created_at) VALUES (?, ?, ?, ?, 1.0, '[]', 1, 'api', 'ok', 0, ?)",
        [(s, f"s{s}", f"http://127.0.0.1:9/{s}", f"S{s}", t.isoformat()) for s in range(1, 101)],
    )
    for start in range(1, size + 1, CHUNK):
        stories, items = [], []
        for n in range(start, min(size, start + CHUNK - 1) + 1):
            title, lead = headline(rng)
            published = NOW - spread * rng.random()
            stamp = published.isoformat(sep=" ")
            stories.append((n, f"urn:bench:{n}", stamp, stamp))
            items.append(
                (n, n % SOURCES + 1, n, f"k{n}", f"https://p{n % SOURCES}.example/{n}",
                 f"https://p{n % SOURCES}.example/{n}", title, f"<p>{lead}</p>", "",
                 f"{title} {lead}", "[]", "en", stamp, f"h{n}", stamp)
            )  # fmt: skip
            if published > NOW - REAL_KEYS:
                keys = prepare(title, f"<p>{lead}</p>", "en", published).keys
                real.extend((k, n, stamp) for k in keys)
            elif not pruned or published > NOW - INDEXED:
                # outside every window: distinct texts' keys, drawn in key order below
                old_ids.append(n)
                old_stamps.append(stamp)
            if published > NOW - timedelta(days=3) and len(recent) < 5000:
                recent.append((title, lead, published))
        db.executemany(
            "INSERT INTO stories (id, public_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
            stories,
        )
        db.executemany(
            "INSERT INTO items (id, source_id, story_id, item_key, url, canonical_url, title,"
            " summary_html, content_html, text, categories, language, published_at,"
            " content_hash, collected_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            items,
        )
        db.execute("COMMIT")
        db.execute("BEGIN")
    real.sort()
    rows = heapq.merge(real, _random_rows(len(old_ids) * KEYS_PER_ITEM, old_ids, old_stamps, rng))
    insert = "INSERT OR IGNORE INTO story_bands (band_key, story_id, published_at) VALUES (?,?,?)"
    while batch := list(itertools.islice(rows, 20 * CHUNK)):
        db.executemany(insert, batch)
        db.execute("COMMIT")
        db.execute("BEGIN")
    for name, target in BAND_INDEXES.items():
        db.execute(f"CREATE INDEX {name} ON {target}")
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return recent


def item(n: int, title: str, lead: str, published: datetime) -> Item:
    """A new normalized item."""
    url = f"https://new.example/{n}"
    return Item(
        guid=url, url=url, canonical_url=url, title=title, summary_html=f"<p>{lead}</p>",
        content_html="", text=title, author=None, categories=(), language="en",
        published_at=published, updated_at=None, content_hash=f"new{n}",
    )  # fmt: skip


def measure(
    size: int,
    workdir: Path,
    pruned: bool = True,
    rounds: int = ROUNDS,
    spread: timedelta = SPREAD,
) -> dict[str, float]:
    """Fill a database of ``size`` reports and time ``rounds`` applies with matching and as
    many without."""
    path = workdir / f"scale-{size}.db"
    started = time.perf_counter()
    recent = fill(path, size, pruned, spread)
    fill_s = time.perf_counter() - started
    engine = make_engine(f"sqlite:///{path}")
    repo = Repository(engine)
    source = repo.add_source(SourceConfig(key="new", url="http://127.0.0.1:9/new", name="N"), NOW)
    rng = random.Random(size + 1)
    with_match: list[float] = []
    alone: list[float] = []
    hook_ms: list[float] = []
    prep: list[float] = []
    merged = expected = 0
    heap_peak = 0
    for r in range(2 * rounds + 1):  # even: with matching, odd: apply alone; last: heap peak
        matching = r % 2 == 0
        last = r == 2 * rounds
        now = NOW + timedelta(minutes=r)
        intents = []
        for b in range(BATCH):
            n = r * BATCH + b
            if matching and b % 2 == 0 and recent:
                # each stored report once: the new source may join a story only once
                title, lead, published = recent.pop(rng.randrange(len(recent)))
                expected += not last  # the last round measures memory, not merges
                title, lead = reword(title, lead, rng)
            else:
                (title, lead), published = headline(rng), NOW - timedelta(hours=rng.random() * 48)
            intents.append(ItemIntent("insert", f"n{n}", item(n, title, lead, published)))
        plan = UpdatePlan(
            source.id,
            SourceUpdate("ok", None, 0, now + timedelta(minutes=5), now, last_success_at=now),
            tuple(intents),
        )
        if not matching:
            t0 = time.perf_counter()
            repo.apply(plan, now)
            alone.append((time.perf_counter() - t0) / BATCH)
            continue
        if last:
            tracemalloc.start()
        t0 = time.perf_counter()
        prepared = prepare_many(
            [
                (i.item.title, i.item.summary_html, i.item.language, i.item.published_at)
                for i in intents
            ]
        )
        t1 = time.perf_counter()
        hook = MatchAfterApply(source.id, now, prepared=prepared)
        spent: list[float] = []

        def timed(conn: object, hook: MatchAfterApply = hook, spent: list[float] = spent) -> None:
            t = time.perf_counter()
            hook(conn)  # type: ignore[arg-type]
            spent.append(time.perf_counter() - t)

        repo.apply(plan, now, then=timed)
        t2 = time.perf_counter()
        assert not hook.failed
        if last:
            heap_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            continue
        prep.append((t1 - t0) / BATCH)
        with_match.append((t2 - t1) / BATCH)
        hook_ms.append(spent[0] / BATCH)
        merged += hook.report.merged
    # the daemon's pruning catching up on two days of stories (what an hourly run meets
    # after a two-day outage; a run an hour after the last one finds an hour's worth)
    cutoff = band_cutoff(NOW, 3.0)
    t0 = time.perf_counter()
    pruned_rows = prune_story_bands(engine, cutoff, cutoff - PRUNE_SLICE)
    prune_s = time.perf_counter() - t0
    engine.dispose()
    med = statistics.median
    result = {
        "size": size,
        "fill_s": fill_s,
        "with_ms": med(with_match) * 1000,
        "with_p95_ms": sorted(with_match)[int(0.95 * (len(with_match) - 1))] * 1000,
        "alone_ms": med(alone) * 1000,
        "added_ms": (med(with_match) - med(alone)) * 1000,
        "added_mean_ms": (statistics.mean(with_match) - statistics.mean(alone)) * 1000,
        "hook_ms": med(hook_ms) * 1000,
        "prepare_ms": med(prep) * 1000,
        "merged": merged,
        "expected": expected,
        "heap_peak_mb": heap_peak / 2**20,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "db_mb": sum(p.stat().st_size for p in workdir.glob(f"scale-{size}.db*")) / 2**20,
        "prune_s": prune_s,
        "pruned_rows": pruned_rows,
    }
    for leftover in workdir.glob(f"scale-{size}.db*"):
        leftover.unlink()
    return result


def main() -> None:
    """Run the sizes and print (or write) a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--unpruned",
        action="store_true",
        help="index every stored report (the layout before the daemon pruned its story index)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="applies with matching per size (as many without); more rounds steady the mean,"
        " which a few WAL checkpoints more or less move",
    )
    span = parser.add_mutually_exclusive_group()
    span.add_argument(
        "--days",
        type=float,
        default=SPREAD.days,
        help="history every size is spread over (default 90: the ingest rate grows with size)",
    )
    span.add_argument(
        "--per-day",
        type=float,
        help="a constant ingest rate instead: each size spans size / PER_DAY days",
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="stories-scale-"))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        days = size / args.per_day if args.per_day else args.days
        res = measure(
            size, workdir, pruned=not args.unpruned, rounds=args.rounds, spread=timedelta(days=days)
        )
        print(res, flush=True)
        rows.append(
            f"| {size:,} | {days:g} ({size / days:,.0f}/day)"
            f" | {res['added_ms']:.2f} | {res['added_mean_ms']:.2f}"
            f" | {res['hook_ms']:.2f} | {res['prepare_ms']:.2f}"
            f" | {res['with_ms']:.2f} | {res['with_p95_ms']:.2f} | {res['alone_ms']:.2f}"
            f" | {res['merged']}/{res['expected']} | {res['heap_peak_mb']:.1f}"
            f" | {res['rss_mb']:.0f} | {res['db_mb']:.0f} | {res['fill_s']:.0f}"
            f" | {res['prune_s']:.2f} ({res['pruned_rows']:,} rows) |"
        )
    table = "\n".join(
        [
            "| stored items | days (ingest) | matching adds (ms/item) | mean | in the hook"
            " | prepare (worker)"
            " | apply + match | p95 | apply alone | merged/expected | heap peak MB (matching)"
            " | max RSS MB | DB MB | fill s | prune 2 days s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
