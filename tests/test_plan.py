"""Item identity and the pure update planner."""

from __future__ import annotations

import random
from datetime import timedelta

from aggregator.dedupe.identity import item_keys
from aggregator.model import ExistingItem, Fetched, FetchFailed, NotModified, SourceState
from aggregator.plan import build_plan, keyed_items, plan_items
from aggregator.settings import ScheduleSettings
from tests.factories import T0, make_item

SETTINGS = ScheduleSettings()


def test_unique_guids_key_by_guid() -> None:
    a = make_item(guid="1", url="https://x/a")
    b = make_item(guid="2", url="https://x/a?changed")
    ka, kb = item_keys([a, b])
    assert ka.startswith("g:") and kb.startswith("g:") and ka != kb
    # the GUID alone decides: a changed link keeps the key
    assert item_keys([make_item(guid="1", url="https://x/other")])[0] == ka


def test_repeated_guids_fall_back_to_guid_plus_link() -> None:
    items = [make_item(guid="same", url=f"https://x/{i}") for i in range(3)]
    keys = item_keys(items)
    assert all(k.startswith("gl:") for k in keys)
    assert len(set(keys)) == 3


def test_no_guid_uses_link_then_content_hash() -> None:
    with_link = make_item(url="https://x/a")
    bare1 = make_item(title="one")
    bare2 = make_item(title="two")
    keys = item_keys([with_link, bare1, bare2])
    assert keys[0].startswith("l:")
    assert keys[1].startswith("h:") and keys[2].startswith("h:") and keys[1] != keys[2]


def test_identical_guid_and_link_still_distinct_by_content() -> None:
    items = [make_item(guid="g", url="https://x/a", title=t) for t in ("a", "b")]
    keys = item_keys(items)
    assert len(set(keys)) == 2


def test_same_url_under_two_guids_is_one_item() -> None:
    a = make_item(guid="1", url="https://x/a")
    b = make_item(guid="2", url="https://x/a")
    keyed = keyed_items([a, b])
    assert len(keyed) == 1 and keyed[0][1].guid == "1"


def test_changed_entry_updates_in_place_and_unchanged_is_skipped() -> None:
    old = make_item(guid="1", url="https://x/a", title="Old title")
    ((key, _),) = keyed_items([old])
    existing = [ExistingItem(7, key, "https://x/a", old.content_hash)]
    assert plan_items(keyed_items([old]), existing, ()) == ()
    new = make_item(guid="1", url="https://x/a", title="Corrected title")
    (intent,) = plan_items(keyed_items([new]), existing, ())
    assert (intent.action, intent.existing_id, intent.item_key) == ("update", 7, key)


def test_guid_churn_matches_by_canonical_url() -> None:
    first = make_item(guid="run-1", url="https://x/a")
    ((key, _),) = keyed_items([first])
    existing = [ExistingItem(3, key, "https://x/a", first.content_hash)]
    again = make_item(guid="run-2", url="https://x/a")
    assert plan_items(keyed_items([again]), existing, ()) == ()


def test_tombstoned_items_do_not_come_back() -> None:
    item = make_item(guid="dead", url="https://x/d")
    keyed = keyed_items([item])
    assert plan_items(keyed, [], {keyed[0][0]}) == ()


def _source(**kw: object) -> SourceState:
    base: dict[str, object] = {"id": 1, "key": "s", "url": "https://x/feed", "name": "S"}
    base.update(kw)
    return SourceState(**base)  # type: ignore[arg-type]


def _plan(source: SourceState, result: object, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "feed": None,
        "mean_gap": None,
        "keyed": (),
        "existing": (),
        "tombstoned": (),
        "parse_error": None,
        "body_hash": None,
        "now": T0,
        "settings": SETTINGS,
        "rng": random.Random(1),
    }
    args.update(kw)
    return build_plan(source, result, **args)  # type: ignore[arg-type]


def test_success_stores_validators_and_schedules_within_bounds() -> None:
    res = Fetched("https://x/feed", 200, {}, b"<rss/>", 0.1, etag='"e1"', last_modified="lm")
    plan = _plan(_source(), res, body_hash="h1")
    up = plan.source_update
    assert (up.status, up.etag, up.last_modified, up.body_hash, up.error_count) == (
        "ok",
        '"e1"',
        "lm",
        "h1",
        0,
    )
    assert T0 + timedelta(seconds=SETTINGS.min_interval * 0.8) <= up.next_check_at
    assert up.next_check_at <= T0 + timedelta(seconds=SETTINGS.max_interval)


def test_failure_keeps_validators_counts_errors_and_backs_off() -> None:
    src = _source(etag='"old"', body_hash="h0", error_count=2, status="error")
    res = FetchFailed("https://x/feed", "http_500", "server error", 0.1, status_code=500)
    plan = _plan(src, res)
    up = plan.source_update
    assert (up.status, up.etag, up.body_hash, up.error_count) == ("error", '"old"', "h0", 3)
    assert up.last_error == "http_500: server error"
    assert up.enabled and plan.intents == ()


def test_gone_disables_and_permanent_redirect_moves() -> None:
    gone = _plan(_source(), FetchFailed("u", "http_410", "gone", 0.0, status_code=410))
    assert gone.source_update.enabled is False and gone.source_update.status == "gone"
    moved = Fetched("https://new/feed", 200, {}, b"x", 0.1, permanent_url="https://new/feed")
    assert _plan(_source(), moved, body_hash="h").source_update.url == "https://new/feed"


def test_parse_error_is_an_error_without_items() -> None:
    res = Fetched("https://x/feed", 200, {}, b"<html>", 0.1, etag='"e"')
    plan = _plan(
        _source(etag='"old"'),
        res,
        parse_error="not a feed",
        body_hash="h",
        keyed=keyed_items([make_item(guid="1")]),
    )
    assert plan.source_update.status == "error" and plan.intents == ()
    assert plan.source_update.etag == '"old"'  # so the next poll refetches the body


def test_not_modified_and_unchanged_body() -> None:
    nm = _plan(_source(status="ok"), NotModified("https://x/feed", {}, 0.01))
    assert nm.source_update.status == "not_modified"
    same = Fetched("https://x/feed", 200, {}, b"x", 0.1)
    assert _plan(_source(), same, body_hash="h", unchanged=True).source_update.status == (
        "not_modified"
    )


def test_network_outage_is_recorded_but_not_counted() -> None:
    src = _source(error_count=1, status="error", etag='"e"')
    failed = FetchFailed("https://x/feed", "connect", "connection refused", 0.1)
    counted = _plan(src, failed).source_update
    outage = _plan(src, failed, outage=True).source_update
    assert counted.error_count == 2
    assert outage.error_count == 1 and outage.status == "error"
    assert outage.last_error is not None and "network outage" in outage.last_error
    assert outage.etag == '"e"'
    # an HTTP error is the publisher's own, outage or not
    http = FetchFailed("https://x/feed", "http_500", "boom", 0.1, status_code=500)
    assert _plan(src, http, outage=True).source_update.error_count == 2


def test_same_guid_and_url_with_different_content_are_two_items() -> None:
    a = make_item(guid="g", url="https://x/day.html#a1", title="First post")
    b = make_item(guid="g", url="https://x/day.html#a1", title="Second post")
    assert [it.title for _, it in keyed_items([a, b])] == ["First post", "Second post"]
    assert len(keyed_items([a, a])) == 1


def test_deferred_by_a_host_hold_is_not_an_error() -> None:
    src = _source(error_count=2, status="error", etag='"e"')
    held = FetchFailed(
        "https://x/feed", "deferred", "x asked us to wait", 0.0, retry_after_seconds=600
    )
    up = _plan(src, held).source_update
    assert (up.status, up.error_count, up.etag) == ("deferred", 2, '"e"')
    assert up.next_check_at >= T0 + timedelta(seconds=600)
