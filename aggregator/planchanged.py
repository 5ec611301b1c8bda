"""Plan a changed body: the source's stored state, parse and normalize, then the update plan.

A changed body (its hash differs from the last one stored) goes through these steps:

1. read the source's recent stored items and its entry cache (``Reads.known_items``);
2. ``ingest`` the body, telling it which (key, content hash) pairs are stored, so unchanged
   entries come back as identity stubs;
3. look up the keys and URLs that are not known stored and unchanged
   (``Reads.planner_lookups``) and build the plan;
4. if the plan would write a stub (a stale or colliding digest), ingest again in full.

``plan_changed`` does all four against any ``Reads`` (a ``Repository`` is one).
``plan_in_worker`` is what the pipeline sends to a parse worker process: the worker opens its
own read connection to the database once and answers the whole step there, so the main
process, whose event loop, fetches and database writes share one interpreter lock, gets back
only the plan (the new and changed items) instead of doing the reads, hashing every entry's
key and planning itself. On a 2,000-feed tick that lock, not the CPU, bounds the run
(``bench/README.md``). The pipeline keeps its own async path for runs without parse workers
and for in-memory SQLite (a worker could not see that database).

The pieces the async path shares (``split_known``, ``existing_rows``, ``writes_stub``) live
here too, so both paths plan exactly alike.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from aggregator.ingest import Ingested, ingest, pack_digests, stored_digest
from aggregator.model import ExistingItem, Fetched, Item, SourceState, UpdatePlan
from aggregator.plan import build_plan, keyed_items
from aggregator.settings import ScheduleSettings

log = logging.getLogger("aggregator.planchanged")

#: Stored items of a source whose (key, content hash) are sent along with a changed body.
KNOWN_ITEMS = 500


class Reads(Protocol):
    """The stored state planning a changed body needs (``Repository`` provides it)."""

    def known_items(
        self, source_id: int, limit: int
    ) -> tuple[list[ExistingItem], bytes | None]: ...

    def planner_lookups(
        self, source_id: int, item_keys: Sequence[str], canonical_urls: Sequence[str]
    ) -> tuple[list[ExistingItem], set[str]]: ...

    def tombstoned(self, source_id: int, item_keys: Sequence[str]) -> set[str]: ...


def known_digests(recent: Sequence[ExistingItem]) -> bytes | None:
    """``ingest(known=...)`` for a source's recent stored items."""
    return pack_digests([stored_digest(e.item_key, e.content_hash) for e in recent]) or None


def split_known(
    keyed: Sequence[tuple[str, Item]], recent: Sequence[ExistingItem]
) -> tuple[dict[str, ExistingItem], list[str], list[str]]:
    """Items known stored and unchanged (their rows, by key), and the keys and canonical URLs
    of the others, which the planner must look up.

    An item whose (key, content hash) is among the source's ``recent`` stored items is stored
    unchanged: its row is taken from ``recent``. The planner then sees exactly the rows a
    lookup of every key and URL would give it for any item it has to match, at a fraction of
    the cost (most of a changed feed is unchanged).
    """
    stored = {(e.item_key, e.content_hash): e for e in recent}
    sure = {k: stored[(k, it.content_hash)] for k, it in keyed if (k, it.content_hash) in stored}
    ask = [(k, it) for k, it in keyed if k not in sure]
    return (
        sure,
        [k for k, _ in ask],
        [it.canonical_url for _, it in ask if it.canonical_url],
    )


def existing_rows(
    found: Sequence[ExistingItem], sure: Mapping[str, ExistingItem]
) -> list[ExistingItem]:
    """The rows looked up and the rows known, once each, in id order."""
    rows = {e.id: e for e in found} | {e.id: e for e in sure.values()}
    return [rows[i] for i in sorted(rows)]


def writes_stub(plan: UpdatePlan, ingested: Ingested) -> bool:
    """Whether ``plan`` would insert or update one of the identity-only stub items."""
    stubs = {id(ingested.items[i]) for i in ingested.stubs}
    return any(id(intent.item) in stubs for intent in plan.intents)


def _plan_items(
    reads: Reads,
    source: SourceState,
    result: Fetched,
    ingested: Ingested,
    body_hash: str,
    now: datetime,
    settings: ScheduleSettings,
    rng: random.Random,
    recent: Sequence[ExistingItem] = (),
    has_items: bool = True,
) -> UpdatePlan:
    keyed = keyed_items(ingested.items)
    sure, keys, urls = split_known(keyed, recent)
    if has_items:
        found, tombstoned = reads.planner_lookups(source.id, keys, urls)
    else:  # the source has no stored item: none can match by key or URL
        found, tombstoned = [], reads.tombstoned(source.id, keys)
    return build_plan(
        source, result, feed=ingested.feed, mean_gap=ingested.mean_gap, keyed=keyed,
        existing=existing_rows(found, sure), tombstoned=tombstoned,
        parse_error=ingested.error, body_hash=body_hash, now=now, settings=settings, rng=rng,
    )  # fmt: skip


def plan_changed(
    reads: Reads,
    source: SourceState,
    result: Fetched,
    body_hash: str,
    now: datetime,
    settings: ScheduleSettings,
    rng: random.Random,
) -> UpdatePlan:
    """The update plan for a changed body of ``source`` (steps 1-4 of the module docs)."""
    recent, cache = reads.known_items(source.id, KNOWN_ITEMS)
    body, headers, url = result.body, result.headers, result.url
    ingested = ingest(body, headers, url, source.language, now, known_digests(recent), cache)
    plan = _plan_items(
        reads, source, result, ingested, body_hash, now, settings, rng, recent, bool(recent)
    )
    if ingested.stubs and writes_stub(plan, ingested):
        # a stored digest or cached span was stale (or collided): parse every entry in full
        log.debug("source %s: re-ingesting without known entries", source.key)
        ingested = ingest(body, headers, url, source.language, now)
        plan = _plan_items(reads, source, result, ingested, body_hash, now, settings, rng)
    if ingested.cache is not None and plan.source_update.status == "ok":
        plan = dataclasses.replace(plan, entry_cache=ingested.cache)
    return plan


_readers: dict[str, Reads] = {}


def _reader(database_url: str) -> Reads:
    """This process's read-only repository for ``database_url`` (opened on first use)."""
    reads = _readers.get(database_url)
    if reads is None:
        from aggregator.store import Repository, make_engine

        reads = _readers[database_url] = Repository(make_engine(database_url))
    return reads


def plan_in_worker(
    database_url: str,
    source: SourceState,
    result: Fetched,
    body_hash: str,
    now: datetime,
    settings: ScheduleSettings,
    seed: int,
) -> UpdatePlan:
    """``plan_changed`` in a parse worker, reading through the worker's own connection.

    ``seed`` seeds the schedule's jitter (the worker has no share of the pipeline's RNG).
    """
    return plan_changed(
        _reader(database_url), source, result, body_hash, now, settings, random.Random(seed)
    )
