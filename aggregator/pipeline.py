"""The runner that wires the stages for one tick: claim -> fetch -> ingest -> plan -> apply.

This is the only place where the pure stages meet IO. Each source is handled on its own: a
failure of any kind is recorded on that source (status, last error, backoff) and never reaches
the others or the tick. Database calls run on one dedicated thread (SQLAlchemy is synchronous;
one writer suits SQLite), parsing runs on a process pool when one is given.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from aggregator.clock import Clock
from aggregator.fetch import Fetcher
from aggregator.ingest import Ingested, ingest
from aggregator.metrics import Metrics
from aggregator.model import Fetched, FetchFailed, FetchResult, SourceState, UpdatePlan
from aggregator.parsepool import LazyProcessPool
from aggregator.plan import answered, build_plan, is_network_failure, keyed_items
from aggregator.publish import render_all
from aggregator.settings import Settings
from aggregator.store.matching import match_recent
from aggregator.store.repo import Repository

log = logging.getLogger("aggregator.pipeline")
T = TypeVar("T")
#: No publisher answered for this long, and every one in the batch failed on the network:
#: that is our outage, not theirs.
OUTAGE_WINDOW_SECONDS = 60.0


class _Batch:
    """Fetch outcomes of one run, so network failures can be judged against the others."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending = size
        self.answered = False
        self._done = asyncio.Event()
        if size == 0:
            self._done.set()

    def record(self, result: FetchResult | None) -> None:
        if result is not None and answered(result):
            self.answered = True
        self.pending -= 1
        if self.pending <= 0:
            self._done.set()

    async def wait(self) -> None:
        await self._done.wait()


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What happened to one source in one run."""

    key: str
    url: str
    status: str
    new: int = 0
    updated: int = 0
    error: str | None = None
    elapsed: float = 0.0


@dataclass
class TickReport:
    """What one run did, summed over sources."""

    sources: list[SourceReport] = field(default_factory=list)
    rendered: int = 0

    @property
    def ok(self) -> int:
        return sum(1 for s in self.sources if s.status in ("ok", "not_modified", "deferred"))

    @property
    def failed(self) -> int:
        return len(self.sources) - self.ok

    @property
    def new(self) -> int:
        return sum(s.new for s in self.sources)

    @property
    def updated(self) -> int:
        return sum(s.updated for s in self.sources)


class Pipeline:
    """Polls sources and keeps the edition snapshots current."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        fetcher: Fetcher,
        *,
        clock: Clock,
        owner: str,
        rng: random.Random | None = None,
        parse_executor: Executor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.fetcher = fetcher
        self.clock = clock
        self.owner = owner
        self.rng = rng or random.Random()
        self.parse_executor = parse_executor
        self.metrics = metrics
        self._pool_lock = asyncio.Lock()
        self._last_answer = float("-inf")  # monotonic time any publisher last answered
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aggregator-db")

    def close(self) -> None:
        """Stop the database thread (after in-flight calls finish)."""
        self._db.shutdown(wait=True)

    async def _in_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, partial(fn, *args, **kwargs))

    # ------------------------------------------------------------------ runs

    async def tick(self) -> TickReport:
        """Claim the sources that are due, poll them, re-render editions if anything changed."""
        sched = self.settings.schedule
        due = await self._in_db(
            self.repo.claim_due_sources,
            self.clock.now(),
            sched.batch_size,
            self.owner,
            sched.lease_seconds,
        )
        return await self.run(due)

    async def poll_all(self, on_done: Callable[[SourceReport], None] | None = None) -> TickReport:
        """Poll every enabled source once, whether due or not (``aggregator poll``)."""
        sched = self.settings.schedule
        keys = [s.key for s in await self._in_db(self.repo.list_sources) if s.enabled]
        claimed = await self._in_db(
            self.repo.claim_sources, keys, self.clock.now(), self.owner, sched.lease_seconds
        )
        return await self.run(claimed, on_done=on_done)

    async def run(
        self,
        sources: Sequence[SourceState],
        on_done: Callable[[SourceReport], None] | None = None,
    ) -> TickReport:
        """Poll the given (already claimed) sources concurrently, then render if needed."""
        report = TickReport()
        batch = _Batch(len(sources))

        async def one(src: SourceState) -> None:
            rep = await self.process(src, batch)
            report.sources.append(rep)
            if on_done is not None:
                on_done(rep)

        await asyncio.gather(*(one(s) for s in sources))
        if report.new or report.updated or not await self._in_db(self.repo.list_snapshot_editions):
            report.rendered = await self._in_db(self.render_editions)
        if self.metrics is not None:
            await self._in_db(self.refresh_gauges)
        return report

    # ------------------------------------------------------------------ one source

    async def process(self, source: SourceState, batch: _Batch | None = None) -> SourceReport:
        """Fetch, ingest, plan and apply one source; never raises."""
        started = time.perf_counter()
        result: FetchResult | None = None
        try:
            try:
                result = await self.fetcher.fetch(
                    source.url, etag=source.etag, last_modified=source.last_modified
                )
            finally:
                if batch is not None:
                    batch.record(result)
            plan = await self._plan(source, result, await self._is_outage(result, batch))
            now = self.clock.now()
            applied = await self._in_db(self.repo.apply, plan, now, self.owner)
            if self.metrics is not None and applied.new > applied.new_stories:
                # reports that joined a story already told by someone (URL or link-blog match)
                self.metrics.stories_merged.inc(applied.new - applied.new_stories)
            if applied.new and self.settings.stories.match_text:
                matched = await self._in_db(
                    match_recent,
                    self.repo.engine,
                    plan.source_id,
                    now,
                    window=timedelta(days=self.settings.stories.window_days),
                )
                if self.metrics is not None and matched.merged:
                    self.metrics.stories_merged.inc(matched.merged)
            upd = plan.source_update
            rep = SourceReport(
                source.key,
                source.url,
                upd.status,
                applied.new,
                applied.updated,
                upd.last_error,
                time.perf_counter() - started,
            )
        except Exception as exc:  # the runner's last line of defence: record, never propagate
            log.exception("source %s failed unexpectedly", source.key)
            rep = SourceReport(
                source.key,
                source.url,
                "error",
                error=f"internal: {exc!r}"[:500],
                elapsed=time.perf_counter() - started,
            )
            await self._record_crash(source, rep.error or "internal error")
        log.info(
            "polled %s",
            source.key,
            extra={
                "source": source.key,
                "url": source.url,
                "outcome": rep.status,
                "new": rep.new,
                "updated": rep.updated,
                "error": rep.error,
                "duration_ms": round(rep.elapsed * 1000, 1),
            },
        )
        if self.metrics is not None:
            self._count(rep, result)
        return rep

    def _count(self, rep: SourceReport, result: FetchResult | None) -> None:
        """Update fetch and item metrics for one processed source."""
        assert self.metrics is not None
        if isinstance(result, Fetched):
            outcome = "200"
        elif isinstance(result, FetchFailed):
            outcome = result.error_class
        elif result is None:
            outcome = "internal"
        else:
            outcome = "304"
        self.metrics.fetches.labels(outcome=outcome).inc()
        if result is not None:
            self.metrics.fetch_seconds.observe(result.elapsed)
        if rep.new:
            self.metrics.items.labels(kind="new").inc(rep.new)
        if rep.updated:
            self.metrics.items.labels(kind="updated").inc(rep.updated)

    def refresh_gauges(self) -> None:
        """Sources by status and the next-due lag, read from the database."""
        if self.metrics is None:
            return
        counts: dict[str, int] = {}
        for src in self.repo.list_sources():
            status = src.status if src.enabled else "disabled"
            counts[status] = counts.get(status, 0) + 1
        self.metrics.sources.clear()
        for status, n in counts.items():
            self.metrics.sources.labels(status=status).set(n)
        self.metrics.next_due_lag_seconds.set(self.repo.overdue_seconds(self.clock.now()))

    async def _is_outage(self, result: FetchResult, batch: _Batch | None) -> bool:
        """True when ``result`` is a network failure and nobody else answered either."""
        if answered(result):
            self._last_answer = time.monotonic()
            return False
        if not is_network_failure(result) or batch is None or batch.size < 2:
            return False
        await batch.wait()  # bounded: every fetch ends within the fetcher's total timeout
        quiet_for = time.monotonic() - self._last_answer
        return not batch.answered and quiet_for > OUTAGE_WINDOW_SECONDS

    async def _plan(self, source: SourceState, result: FetchResult, outage: bool) -> UpdatePlan:
        now = self.clock.now()
        settings, rng = self.settings.schedule, self.rng
        if not isinstance(result, Fetched):
            return build_plan(
                source, result, feed=None, mean_gap=None, keyed=(), existing=(), tombstoned=(),
                parse_error=None, body_hash=None, now=now, settings=settings, rng=rng,
                outage=outage,
            )  # fmt: skip
        body_hash = hashlib.sha256(result.body).hexdigest()
        if body_hash == source.body_hash and source.status in ("ok", "not_modified"):
            return build_plan(
                source, result, feed=None, mean_gap=None, keyed=(), existing=(), tombstoned=(),
                parse_error=None, body_hash=body_hash, now=now, settings=settings, rng=rng,
                unchanged=True,
            )  # fmt: skip
        ingested = await self._ingest(result, source, now)
        keyed = keyed_items(ingested.items)
        keys = [k for k, _ in keyed]
        urls = [it.canonical_url for _, it in keyed if it.canonical_url]
        existing = await self._in_db(self.repo.existing_items, source.id, keys, urls)
        tombstoned = await self._in_db(self.repo.tombstoned, source.id, keys)
        return build_plan(
            source, result, feed=ingested.feed, mean_gap=ingested.mean_gap, keyed=keyed,
            existing=existing, tombstoned=tombstoned, parse_error=ingested.error,
            body_hash=body_hash, now=now, settings=settings, rng=rng,
        )  # fmt: skip

    async def _ingest(self, result: Fetched, source: SourceState, now: datetime) -> Ingested:
        if self.parse_executor is None:
            return ingest(result.body, result.headers, result.url, source.language, now)
        pool = self.parse_executor
        if isinstance(pool, LazyProcessPool) and not pool.started:
            # starting the workers blocks for a moment: do it off the event loop, once
            async with self._pool_lock:
                if not pool.started:
                    await asyncio.to_thread(pool.warm_up)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.parse_executor,
            ingest,
            result.body,
            result.headers,
            result.url,
            source.language,
            now,
        )

    async def _record_crash(self, source: SourceState, error: str) -> None:
        """Record an unexpected failure and back off, so a poison source cannot spin."""
        now = self.clock.now()
        failed = FetchFailed(source.url, "internal", error, 0.0)
        plan = build_plan(
            source,
            failed,
            feed=None,
            mean_gap=None,
            keyed=(),
            existing=(),
            tombstoned=(),
            parse_error=None,
            body_hash=None,
            now=now,
            settings=self.settings.schedule,
            rng=self.rng,
        )
        try:
            await self._in_db(self.repo.apply, plan, now, self.owner)
        except Exception:
            log.exception("could not record the failure of %s", source.key)

    # ------------------------------------------------------------------ editions

    def render_editions(self) -> int:
        """Re-render every edition from recent stories; store the snapshots that changed."""
        now = self.clock.now()
        horizon = max((e.max_age_days for e in self.settings.editions), default=7.0)
        limit = max((e.limit for e in self.settings.editions), default=100) * 20
        stories = self.repo.recent_stories(now - timedelta(days=horizon), limit)
        snaps = render_all(
            self.settings.editions, stories, base_url=self.settings.server.base_url, now=now
        )
        changed = []
        for snap in snaps:
            old = self.repo.get_snapshot(snap.edition, snap.format)
            if old is None or old.etag != snap.etag:
                changed.append(snap)
        if changed:
            self.repo.save_snapshots(changed)
        if self.metrics is not None:
            for snap in changed:
                self.metrics.export_renders.labels(edition=snap.edition, format=snap.format).inc()
        return len(changed)
