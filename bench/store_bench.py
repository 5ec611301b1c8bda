"""Micro-benchmark of the store's hot paths (not a test): what one poll costs in the database.

Phases, each over ``--sources`` sources (default 200) with ``--items`` items per plan (50):

* ``cold apply``: one ``Repository.apply`` per source of a plan with only new items; a fraction
  (``--shared``) of each plan's items share canonical URLs with other sources (cross-source
  stories), a few carry an ``external_url`` pointing at another publisher's article, and one pair
  per plan shares a URL inside the plan.
* ``planner reads``: ``existing_items`` + ``tombstoned`` for the same keys/URLs (a changed feed).
* ``update apply``: every item edited (``update`` intents with ``existing_id``).
* ``replay apply``: the cold plans again (idempotent upserts: everything becomes an update).
* ``warm poll``/``warm tick``: every fetch a 304: ``apply`` of a plan without intents per
  source, after ``claim_source`` per source, ``claim_due_sources`` (the daemon's tick) or
  ``claim_sources`` (one batch claim); and ``claim_sources`` + one ``write_source_states`` for
  all of them (what the pipeline does: 304s are written in batches).

Runs on a temporary SQLite file, and on PostgreSQL (a throwaway schema) when
``AGGREGATOR_TEST_POSTGRES_URL`` is set. Prints a Markdown table of milliseconds per call (wall
time, and this process's CPU time, which other load on the machine disturbs less)::

    python bench/store_bench.py [--sources 200] [--items 50] [--shared 0.2] [--backend both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from aggregator.model import Item, ItemIntent, SourceUpdate, UpdatePlan
from aggregator.settings import SourceConfig
from aggregator.store.db import make_engine, upgrade
from aggregator.store.repo import Repository

POSTGRES_ENV = "AGGREGATOR_TEST_POSTGRES_URL"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make_item(source: int, n: int, canonical: str | None, external: str | None, rev: int) -> Item:
    """A synthetic normalized item of realistic size (a few hundred bytes of HTML)."""
    body = f"<p>Item {n} of source {source}, revision {rev}. " + "Lorem ipsum dolor sit. " * 20
    return Item(
        guid=f"https://pub{source}.example/p/{n}",
        url=canonical,
        canonical_url=canonical,
        title=f"Headline {n} from publisher {source} 新闻标题 r{rev}",
        summary_html=body[:200] + "</p>",
        content_html=body + "</p>",
        text=f"Headline {n} from publisher {source} " + body[:200],
        author="Reporter",
        categories=("tech", "科技"),
        language="zh",
        published_at=T0 - timedelta(minutes=n),
        updated_at=None,
        content_hash=f"h-{source}-{n}-{rev}",
        external_url=external,
    )


def cold_plan(source_id: int, index: int, n_items: int, shared: float) -> UpdatePlan:
    """Plan of ``n_items`` inserts for source number ``index`` (deterministic)."""
    intents = []
    n_shared = int(n_items * shared)
    for n in range(n_items):
        external = None
        if n < n_shared:  # shared pool: neighbouring sources report the same articles
            canonical = f"https://wire.example/story/{(index // 3) * 100 + n}"
        elif n == n_shared and index > 0:  # a link blog pointing at the previous source
            canonical = f"https://pub{index}.example/p/{n}"
            external = f"https://pub{index - 1}.example/p/{n + 1}"
        elif n == n_items - 1:  # same canonical URL as the previous item in this plan
            canonical = f"https://pub{index}.example/p/{n - 1}"
        else:
            canonical = f"https://pub{index}.example/p/{n}"
        intents.append(
            ItemIntent("insert", f"k{n}", make_item(index, n, canonical, external, rev=0))
        )
    return UpdatePlan(source_id, ok_update(T0), tuple(intents))


def ok_update(now: datetime) -> SourceUpdate:
    """A successful poll's source update."""
    return SourceUpdate(
        status="ok",
        last_error=None,
        error_count=0,
        next_check_at=now + timedelta(minutes=15),
        last_fetched_at=now,
        etag='"v1"',
        last_success_at=now,
    )


class Meter:
    """Collects wall and CPU milliseconds of repeated measurements of one phase."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.wall: list[float] = []
        self.cpu: list[float] = []

    @contextmanager
    def sample(self) -> Iterator[None]:
        """Measure the block once."""
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.cpu.append((time.process_time() - cpu) * 1000)
        self.wall.append((time.perf_counter() - wall) * 1000)

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Measure one call of ``fn(*args)``."""
        with self.sample():
            fn(*args)

    def row(self) -> str:
        """A Markdown table row: calls, mean/median/p95 wall ms, mean CPU ms, total wall ms.

        CPU time is this process's (Python, SQLAlchemy, the driver and, for SQLite, the
        database engine itself); it is less disturbed by other load on the machine than wall
        time. PostgreSQL's server-side work only shows in wall time.
        """
        ordered = sorted(self.wall)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return (
            f"| {self.name} | {len(ordered)} | {statistics.fmean(ordered):.2f} | "
            f"{statistics.median(ordered):.2f} | {p95:.2f} | {statistics.fmean(self.cpu):.2f} | "
            f"{sum(ordered):.0f} |"
        )


def run(url: str, label: str, n_sources: int, n_items: int, shared: float) -> list[str]:
    """Run every phase on a fresh, migrated database at ``url``; return table rows."""
    engine = make_engine(url)
    upgrade(engine)
    repo = Repository(engine)
    try:
        keys = [f"s{i:04d}" for i in range(n_sources)]
        ids = [
            repo.add_source(SourceConfig(key=k, url=f"http://127.0.0.1:9/{k}.xml", name=k), T0).id
            for k in keys
        ]
        plans = [cold_plan(sid, i, n_items, shared) for i, sid in enumerate(ids)]
        meters = []

        cold = Meter(f"{label}: cold apply ({n_items} new items)")
        for p in plans:
            cold.call(repo.apply, p, T0)
        meters.append(cold)

        reads = Meter(f"{label}: planner reads (existing_items + tombstoned)")
        existing = []
        for p in plans:
            item_keys = [i.item_key for i in p.intents]
            urls = [i.item.canonical_url for i in p.intents if i.item.canonical_url]
            with reads.sample():
                found = repo.existing_items(p.source_id, item_keys, urls)
                repo.tombstoned(p.source_id, item_keys)
            existing.append({e.item_key: e.id for e in found})
        meters.append(reads)

        later = T0 + timedelta(minutes=20)
        updates = []
        for idx, (p, known) in enumerate(zip(plans, existing, strict=True)):
            intents = tuple(
                ItemIntent(
                    "update",
                    i.item_key,
                    make_item(idx, n, i.item.canonical_url, i.item.external_url, rev=1),
                    known[i.item_key],
                )
                for n, i in enumerate(p.intents)
            )
            updates.append(UpdatePlan(p.source_id, ok_update(later), intents))
        edit = Meter(f"{label}: update apply ({n_items} edited items)")
        for p in updates:
            edit.call(repo.apply, p, later)
        meters.append(edit)
        replay = Meter(f"{label}: replay apply (cold plans again)")
        for p in plans:
            replay.call(repo.apply, p, later)
        meters.append(replay)

        # A warm poll where every fetch is a 304, the three ways sources get claimed.
        at = T0 + timedelta(hours=1)
        warm = Meter(f"{label}: warm poll, claim_source + 304 apply, per source")
        for key, sid in zip(keys, ids, strict=True):
            with warm.sample():
                repo.claim_source(key, at, "bench", 300)
                repo.apply(UpdatePlan(sid, ok_update(at)), at, "bench")
        meters.append(warm)
        at += timedelta(hours=1)
        tick = Meter(f"{label}: warm tick, claim_due_sources + {n_sources} 304 applies, total")
        with tick.sample():
            for src in repo.claim_due_sources(at, n_sources, "bench", 300):
                repo.apply(UpdatePlan(src.id, ok_update(at)), at, "bench")
        meters.append(tick)
        if hasattr(repo, "claim_sources"):  # batch claim (added with the batched write path)
            at += timedelta(hours=1)
            batch = Meter(f"{label}: warm poll, claim_sources + {n_sources} 304 applies, total")
            with batch.sample():
                for src in repo.claim_sources(keys, at, "bench", 300):
                    repo.apply(UpdatePlan(src.id, ok_update(at)), at, "bench")
            meters.append(batch)
        if hasattr(repo, "write_source_states"):  # what the pipeline does for 304s now
            at += timedelta(hours=1)
            states = Meter(
                f"{label}: warm poll, claim_sources + write_source_states of {n_sources}, total"
            )
            with states.sample():
                claimed = repo.claim_sources(keys, at, "bench", 300)
                repo.write_source_states(
                    [UpdatePlan(src.id, ok_update(at)) for src in claimed], "bench"
                )
            meters.append(states)
        return [m.row() for m in meters]
    finally:
        engine.dispose()


@contextmanager
def postgres_url(base: str) -> Iterator[str]:
    """A throwaway PostgreSQL schema on ``base``, dropped afterwards."""
    schema = f"bench_{uuid4().hex[:20]}"
    admin = create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base)
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    """Parse arguments, run the selected backends, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--shared", type=float, default=0.2)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    rows: list[str] = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            rows += run(url, "sqlite", args.sources, args.items, args.shared)
    pg = os.environ.get(POSTGRES_ENV)
    if args.backend in ("postgres", "both"):
        if pg:
            with postgres_url(pg) as url:
                rows += run(url, "postgres", args.sources, args.items, args.shared)
        else:
            print(f"({POSTGRES_ENV} not set: PostgreSQL skipped)")
    print(
        f"{args.sources} sources x {args.items} items/plan, {args.shared:.0%} shared URLs\n\n"
        "| phase | calls | mean ms | median ms | p95 ms | mean CPU ms | total ms |\n"
        "|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
