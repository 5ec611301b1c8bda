"""Batched poll-state writes and recent item hashes, on real SQLite and PostgreSQL.

``write_source_states`` must leave every source exactly as ``apply`` of the same plan would:
validators, next check, status and error count per source, "no news" fields kept, leases
respected and cleared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.model import Item, ItemIntent, SourceState, SourceUpdate, UpdatePlan
from aggregator.settings import SourceConfig
from aggregator.store import Repository

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def add(repo: Repository, key: str) -> int:
    cfg = SourceConfig(key=key, url=f"http://127.0.0.1:9/{key}.xml", name=key)
    return repo.add_source(cfg, T0).id


def state(repo: Repository, key: str) -> SourceState:
    src = repo.get_source(key)
    assert src is not None
    return src


def update(n: int, **kw: object) -> SourceUpdate:
    """A distinct poll state per ``n`` (validators, due time, error count differ)."""
    values: dict[str, object] = {
        "status": "not_modified",
        "last_error": None,
        "error_count": 0,
        "next_check_at": T0 + timedelta(minutes=10 + n),
        "last_fetched_at": T0 + timedelta(seconds=n),
        "etag": f'"etag-{n}"',
        "last_modified": f"Sat, 28 Nov 2026 12:{n:02d}:00 GMT",
        "body_hash": f"hash-{n}",
        "last_success_at": T0 + timedelta(seconds=n),
    }
    values.update(kw)
    return SourceUpdate(**values)  # type: ignore[arg-type]


def test_batched_states_match_what_apply_writes(repo: Repository) -> None:
    keys = [f"s{n}" for n in range(6)]
    ids = {k: add(repo, k) for k in keys}
    twins = {k: add(repo, f"{k}-twin") for k in keys}
    repo.apply(UpdatePlan(ids["s0"], update(0, site_url="https://site0/")), T0)
    repo.apply(UpdatePlan(twins["s0"], update(0, site_url="https://site0/")), T0)
    plans = {
        "s0": update(1, mean_gap_seconds=None, site_url=None),  # "no news": keeps site_url
        "s1": update(2, mean_gap_seconds=600.0),
        "s2": update(
            3, status="error", last_error="timeout: slow", error_count=3, last_success_at=None
        ),
        "s3": update(4, status="gone", last_error="http_410: Gone", error_count=1, enabled=False),
        "s4": update(5, etag=None, last_modified=None),
        "s5": update(6, status="deferred", last_error="held"),
    }
    written = repo.write_source_states([UpdatePlan(ids[k], u) for k, u in plans.items()])
    assert written == [True] * len(plans)
    for k, upd in plans.items():
        repo.apply(UpdatePlan(twins[k], upd), T0)  # the reference: one transaction each
    fields = [
        "status",
        "last_error",
        "error_count",
        "next_check_at",
        "last_fetched_at",
        "etag",
        "last_modified",
        "body_hash",
        "last_success_at",
        "site_url",
        "enabled",
        "mean_gap_seconds",
    ]
    for k, upd in plans.items():
        got, want = state(repo, k), state(repo, f"{k}-twin")
        assert {f: getattr(got, f) for f in fields} == {f: getattr(want, f) for f in fields}, k
        assert got.etag == upd.etag and got.next_check_at == upd.next_check_at
    assert state(repo, "s0").site_url == "https://site0/"
    assert state(repo, "s0").url == "http://127.0.0.1:9/s0.xml"
    assert not state(repo, "s3").enabled and state(repo, "s2").enabled
    assert state(repo, "s1").mean_gap_seconds == 600.0


def test_batched_states_respect_and_clear_leases(repo: Repository) -> None:
    a, b, c = add(repo, "a"), add(repo, "b"), add(repo, "c")
    claimed = repo.claim_sources(["a", "b"], T0, "w1", 60)
    assert [s.key for s in claimed] == ["a", "b"]
    later = T0 + timedelta(seconds=120)
    assert repo.claim_source("b", later, "w2", 60) is not None  # w1's lease on b expired
    repo.remove_source("c")
    written = repo.write_source_states(
        [UpdatePlan(a, update(1)), UpdatePlan(b, update(2)), UpdatePlan(c, update(3))], "w1"
    )
    assert written == [True, False, False]
    assert state(repo, "a").etag == '"etag-1"'
    assert state(repo, "b").etag is None and state(repo, "b").status == "new"
    # a's lease is cleared (anyone may claim it now); b's stays with w2
    assert repo.claim_source("a", later, "w3", 60) is not None
    assert repo.claim_source("b", later, "w3", 60) is None


def test_batched_states_refuse_plans_with_items_or_moves(repo: Repository) -> None:
    sid = add(repo, "a")
    moved = UpdatePlan(sid, update(1, url="http://127.0.0.1:9/new.xml"))
    with pytest.raises(ValueError, match="URL move"):
        repo.write_source_states([moved])
    item = Item(
        guid="g", url="https://x/1", canonical_url="https://x/1", title="t",
        summary_html="<p>s</p>", content_html="<p>s</p>", text="t s", author=None,
        categories=(), language=None, published_at=None, updated_at=None, content_hash="h",
    )  # fmt: skip
    with_items = UpdatePlan(sid, update(1), (ItemIntent("insert", "k", item),))
    with pytest.raises(ValueError, match="items"):
        repo.write_source_states([with_items])
    assert repo.write_source_states([]) == []
    assert state(repo, "a").status == "new"  # nothing was written


def test_many_states_in_one_call(repo: Repository) -> None:
    ids = [add(repo, f"s{n:04d}") for n in range(1200)]  # more than one IN-list chunk
    plans = [UpdatePlan(sid, update(n % 60)) for n, sid in enumerate(ids)]
    assert all(repo.write_source_states(plans))
    assert state(repo, "s0061").etag == '"etag-1"'
    assert state(repo, "s1199").next_check_at == T0 + timedelta(minutes=10 + 1199 % 60)


def test_known_items_are_the_newest_first(repo: Repository) -> None:
    sid, other = add(repo, "a"), add(repo, "b")

    def item(n: int) -> Item:
        url = f"https://x/{n}"
        return Item(
            guid=f"g{n}", url=url, canonical_url=url, title=f"t{n}", summary_html="<p>s</p>",
            content_html="<p>s</p>", text="t s", author=None, categories=(), language=None,
            published_at=None, updated_at=None, content_hash=f"h{n}",
        )  # fmt: skip

    for n in range(5):
        repo.apply(UpdatePlan(sid, update(n), (ItemIntent("insert", f"k{n}", item(n)),)), T0)
    repo.apply(UpdatePlan(other, update(9), (ItemIntent("insert", "k9", item(9)),)), T0)

    def recent(source: int, limit: int) -> list[tuple[str, str]]:
        return [(e.item_key, e.content_hash) for e in repo.known_items(source, limit)[0]]

    assert recent(sid, 3) == [("k4", "h4"), ("k3", "h3"), ("k2", "h2")]
    assert len(recent(sid, 100)) == 5
    assert recent(sid, 0) == []
