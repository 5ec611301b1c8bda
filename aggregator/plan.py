"""Decide what one fetch changes (pure): item intents and the source's next poll state.

The runner (``pipeline.py``) gathers the inputs (fetch result, parsed items, what the database
already holds) and applies the returned ``UpdatePlan`` in one transaction; nothing here does IO.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.dedupe.identity import item_keys
from aggregator.model import (
    ExistingItem,
    Fetched,
    FetchFailed,
    FetchResult,
    Item,
    ItemIntent,
    ParsedFeed,
    SourceState,
    SourceUpdate,
    UpdatePlan,
)
from aggregator.schedule import hints_from, next_check
from aggregator.settings import ScheduleSettings

#: Failures that say nothing about the publisher when every other publisher fails the same way.
NETWORK_ERRORS = frozenset({"dns", "connect", "timeout", "tls"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a fetch ended, reduced to what the source state records."""

    status: str  # ok | not_modified | deferred | error | gone
    error: str | None = None
    counted: bool = True  # False: a local network outage, not held against the source


def is_network_failure(result: FetchResult) -> bool:
    """A failure where no server answered at all (our network may be the one that is down)."""
    return isinstance(result, FetchFailed) and result.error_class in NETWORK_ERRORS


def answered(result: FetchResult) -> bool:
    """Some server answered (any HTTP status): the network itself works."""
    return not isinstance(result, FetchFailed) or result.status_code is not None


def keyed_items(items: Sequence[Item]) -> list[tuple[str, Item]]:
    """Pair each item with its identity key, dropping repeats inside the batch.

    The same canonical URL under two different GUIDs is one item: the first occurrence wins.
    Entries that share GUID *and* URL but differ in content are distinct posts of a careless
    publisher; their keys (content hashes, see ``item_keys``) tell them apart.
    """
    seen_keys: set[str] = set()
    guid_of_url: dict[str, str | None] = {}
    out: list[tuple[str, Item]] = []
    for key, item in zip(item_keys(items), items, strict=True):
        url = item.canonical_url
        if key in seen_keys or (url in guid_of_url and guid_of_url[url] != item.guid):
            continue
        seen_keys.add(key)
        if url:
            guid_of_url.setdefault(url, item.guid)
        out.append((key, item))
    return out


def plan_items(
    keyed: Sequence[tuple[str, Item]],
    existing: Sequence[ExistingItem],
    tombstoned: Collection[str],
) -> tuple[ItemIntent, ...]:
    """Insert what is new, update what changed (matched by key, else by canonical URL)."""
    by_key = {e.item_key: e for e in existing}
    by_url = {e.canonical_url: e for e in existing if e.canonical_url}
    intents: list[ItemIntent] = []
    claimed: set[int] = set()
    for key, item in keyed:
        if key in tombstoned:
            continue
        found = by_key.get(key)
        if found is None and item.canonical_url:
            found = by_url.get(item.canonical_url)
        if found is None:
            intents.append(ItemIntent("insert", key, item))
        elif found.id not in claimed and found.content_hash != item.content_hash:
            intents.append(ItemIntent("update", found.item_key, item, existing_id=found.id))
        if found is not None:
            claimed.add(found.id)
    return tuple(intents)


def classify(
    result: FetchResult,
    parse_error: str | None,
    *,
    unchanged: bool = False,
    outage: bool = False,
) -> Outcome:
    """Reduce a fetch (and parse) result to the status recorded on the source.

    ``unchanged`` marks a 200 whose body hashes the same as last time: it counts as
    not-modified (and is never parsed again). ``outage`` says no publisher at all answered
    lately: a network failure is then recorded but not counted against this source.
    """
    if isinstance(result, FetchFailed):
        if result.error_class == "deferred":  # the host's Retry-After: not this source's fault
            return Outcome("deferred", result.message, counted=False)
        if result.status_code == 410:
            return Outcome("gone", f"{result.error_class}: {result.message}")
        if outage and is_network_failure(result):
            return Outcome(
                "error",
                f"{result.error_class}: {result.message} (network outage: no publisher "
                "answered; not counted against this source)",
                counted=False,
            )
        return Outcome("error", f"{result.error_class}: {result.message}")
    if parse_error is not None:
        return Outcome("error", f"parse: {parse_error}")
    if isinstance(result, Fetched) and not unchanged:
        return Outcome("ok")
    return Outcome("not_modified")


def source_update(
    source: SourceState,
    result: FetchResult,
    *,
    outcome: Outcome,
    feed: ParsedFeed | None,
    mean_gap: float | None,
    body_hash: str | None,
    now: datetime,
    settings: ScheduleSettings,
    rng: random.Random,
) -> SourceUpdate:
    """The source's state after this fetch, including when to look again."""
    failed = outcome.status in ("error", "gone")
    error_count = source.error_count + 1 if failed else 0
    if not outcome.counted:
        error_count = source.error_count
    hints = hints_from(result.headers, feed, now)
    if isinstance(result, FetchFailed) and result.retry_after_seconds is not None:
        # the fetcher's value also covers a host hold (deferred), which has no header
        hints = dataclasses.replace(hints, retry_after_seconds=result.retry_after_seconds)
    mean_gap = mean_gap or source.mean_gap_seconds
    when = next_check(
        now,
        # a deferred source is simply due again once its host's hold is over
        outcome="not_modified" if outcome.status == "deferred" else outcome.status,  # type: ignore[arg-type]
        settings=settings,
        fixed_interval=float(source.interval_seconds) if source.interval_seconds else None,
        mean_gap=mean_gap,
        error_count=error_count if outcome.counted else 1,  # an outage retries at the base delay
        hints=hints,
        rng=rng,
    )
    fetched = result if isinstance(result, Fetched) else None
    return SourceUpdate(
        status=outcome.status,
        last_error=outcome.error,
        error_count=error_count,
        next_check_at=when,
        last_fetched_at=now,
        etag=fetched.etag if fetched and not failed else source.etag,
        last_modified=fetched.last_modified if fetched and not failed else source.last_modified,
        body_hash=body_hash if outcome.status == "ok" else source.body_hash,
        last_success_at=now if outcome.status in ("ok", "not_modified") else source.last_success_at,
        url=fetched.permanent_url if fetched and fetched.permanent_url else None,
        site_url=(feed.link if feed is not None and feed.link else source.site_url),
        enabled=outcome.status != "gone",
        mean_gap_seconds=mean_gap,
    )


def build_plan(
    source: SourceState,
    result: FetchResult,
    *,
    feed: ParsedFeed | None,
    mean_gap: float | None,
    keyed: Sequence[tuple[str, Item]],
    existing: Sequence[ExistingItem],
    tombstoned: Collection[str],
    parse_error: str | None,
    body_hash: str | None,
    now: datetime,
    settings: ScheduleSettings,
    rng: random.Random,
    unchanged: bool = False,
    outage: bool = False,
) -> UpdatePlan:
    """Everything this fetch changes for ``source``."""
    outcome = classify(result, parse_error, unchanged=unchanged, outage=outage)
    update = source_update(
        source,
        result,
        outcome=outcome,
        feed=feed,
        mean_gap=mean_gap,
        body_hash=body_hash,
        now=now,
        settings=settings,
        rng=rng,
    )
    intents = plan_items(keyed, existing, tombstoned) if outcome.status == "ok" else ()
    return UpdatePlan(source_id=source.id, source_update=update, intents=intents)
