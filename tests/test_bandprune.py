"""Pruning the story-matching index (``aggregator.store.bandprune``) and rebuilding it
(``aggregator.store.reindex``) on SQLite and PostgreSQL.

Stories are matched and indexed exactly as the pipeline does (``Repository.apply`` then
``match_recent``); pruning must drop the band rows of stories past every window, keep the
recent ones, and leave a story that was pruned still joinable by URL (only text matching
forgets it). Re-indexing must bring back exactly the rows matching wrote.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from aggregator.store import Repository
from aggregator.store.bandprune import SLICE, band_cutoff, prune_story_bands
from aggregator.store.reindex import reindex_stories
from aggregator.store.schema import story_bands
from tests.test_story_matching import APPLE, APPLE_B, LEAD, T0, add, put, report


def band_rows(repo: Repository) -> set[tuple[int, int, object]]:
    with repo.engine.connect() as conn:
        return {(int(k), int(sid), p) for k, sid, p in conn.execute(select(story_bands))}


def band_owners(repo: Repository) -> dict[int, int]:
    with repo.engine.connect() as conn:
        rows = conn.execute(
            select(story_bands.c.story_id, func.count()).group_by(story_bands.c.story_id)
        )
        return {int(sid): int(n) for sid, n in rows}


def test_rows_of_stories_past_the_cutoff_go_recent_ones_stay(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    old_time = T0 - timedelta(days=10)
    put(repo, a, old_time, ("old", report("a", APPLE, LEAD, published=old_time)))
    put(repo, a, T0, ("new", report("a", "Nvidia ships Blackwell B300 to cloud providers")))
    before = band_owners(repo)
    assert len(before) == 2 and all(n > 0 for n in before.values())
    cutoff = band_cutoff(T0, 3.0)
    assert cutoff == T0 - timedelta(days=6)
    deleted = prune_story_bands(repo.engine, cutoff)
    after = band_owners(repo)
    assert len(after) == 1 and deleted == sum(before.values()) - sum(after.values())
    assert prune_story_bands(repo.engine, cutoff) == 0  # nothing left to do
    # the pruned story cannot be text-matched any more (it was outside the window anyway) ...
    report_b = report("b", APPLE_B, LEAD, published=T0)
    assert put(repo, b, T0, ("b1", report_b)).merged == 0


def test_a_slice_only_touches_stories_that_crossed_the_cutoff_in_it(repo: Repository) -> None:
    a = add(repo, "a")
    for days in (20, 7):
        moment = T0 - timedelta(days=days)
        put(repo, a, moment, (f"k{days}", report("a", f"{APPLE} {days}", published=moment)))
    cutoff = band_cutoff(T0, 3.0)
    assert len(band_owners(repo)) == 2
    prune_story_bands(repo.engine, cutoff, cutoff - SLICE)  # the 7-day-old story only
    assert len(band_owners(repo)) == 1
    prune_story_bands(repo.engine, cutoff)  # a full pass takes the 20-day-old one too
    assert band_owners(repo) == {}


def test_reindex_brings_back_exactly_the_rows_matching_wrote(repo: Repository) -> None:
    a, b = add(repo, "a"), add(repo, "b")
    old_time = T0 - timedelta(days=10)
    put(repo, a, old_time, ("old", report("a", APPLE, LEAD, published=old_time)))
    put(repo, a, T0, ("new", report("a", "Nvidia ships Blackwell B300 to cloud providers")))
    # a second publisher's report of the old story joins it by text: two reports, one story
    late = old_time + timedelta(hours=2)
    assert put(repo, b, late, ("b-old", report("b", APPLE_B, LEAD, published=late))).merged == 1
    written = band_rows(repo)
    assert len({sid for _, sid, _ in written}) == 2
    prune_story_bands(repo.engine, band_cutoff(T0, 3.0))
    assert band_rows(repo) < written  # the old story's rows are gone
    stories, rows = reindex_stories(repo.engine, T0 - timedelta(days=30))  # a wider window
    assert stories == 2 and rows == len(written)
    assert band_rows(repo) == written  # the same keys, stories and newest published_at
    assert reindex_stories(repo.engine, T0 - timedelta(days=30)) == (2, len(written))
    assert band_rows(repo) == written  # idempotent
    # only stories updated since the moment given are touched
    prune_story_bands(repo.engine, band_cutoff(T0, 3.0))
    assert reindex_stories(repo.engine, T0 - timedelta(days=1))[0] == 1
    assert band_rows(repo) < written
