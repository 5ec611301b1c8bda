"""Turn stored stories into an edition (pure): rules, lead choice, ordering, limit.

An edition holds stories, not items: a story is in when any of its reports passes the edition's
rules, and it is exported once, as its lead report plus "also reported by" the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aggregator.model import EditionEntry, EditionFeed, SourceRef, StoredItem, StoryRecord
from aggregator.sanitize import html_to_text
from aggregator.settings import EditionConfig, Rule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its keywords folded into one case-insensitive regular expression."""

    rule: Rule
    pattern: re.Pattern[str]


def _keyword_pattern(keyword: str) -> str:
    """Latin keywords match whole words ("AI" not in "said"); CJK ones match anywhere."""
    escaped = re.escape(keyword)
    if keyword.isascii():
        return rf"(?<![0-9A-Za-z]){escaped}(?![0-9A-Za-z])"
    return escaped


def compile_rule(rule: Rule) -> CompiledRule:
    """Compile a config rule once; matching then costs one regex search per field."""
    parts = [_keyword_pattern(k) for k in rule.keywords if k]
    if rule.regex:
        parts.append(f"(?:{rule.regex})")
    return CompiledRule(rule, re.compile("|".join(parts), re.IGNORECASE))


def field_text(item: StoredItem, field: str) -> str:
    """The text of one rule field of an item."""
    if field == "title":
        return item.title
    if field == "summary":
        return html_to_text(item.summary_html)
    if field == "content":
        return html_to_text(item.content_html)
    if field == "categories":
        return "\n".join(item.categories)
    if field == "source":
        return f"{item.source_key}\n{item.source_name}"
    if field == "language":
        return item.language or ""
    if field == "tags":
        return "\n".join(item.source_tags)
    raise ValueError(f"unknown rule field {field!r}")


def rule_matches(rule: CompiledRule, item: StoredItem) -> bool:
    """True when any of the rule's fields of ``item`` matches."""
    return any(rule.pattern.search(field_text(item, f)) for f in rule.rule.fields)


@dataclass(frozen=True, slots=True)
class Curator:
    """An edition's compiled rules."""

    config: EditionConfig
    include: tuple[CompiledRule, ...]
    exclude: tuple[CompiledRule, ...]

    @classmethod
    def from_config(cls, config: EditionConfig) -> Curator:
        return cls(
            config,
            tuple(compile_rule(r) for r in config.include),
            tuple(compile_rule(r) for r in config.exclude),
        )

    def admits(self, item: StoredItem) -> bool:
        """Whether one report passes the edition's include and exclude rules."""
        if self.include and not any(rule_matches(r, item) for r in self.include):
            return False
        return not any(rule_matches(r, item) for r in self.exclude)


def published_of(item: StoredItem) -> datetime:
    """When the publisher says it appeared; when it says nothing, when we collected it."""
    return item.published_at or item.collected_at


def choose_lead(items: Sequence[StoredItem]) -> StoredItem:
    """Default lead rule: the earliest report from the highest-weight source."""
    return min(items, key=lambda it: (-it.source_weight, published_of(it), it.id))


def to_entry(story: StoryRecord, lead: StoredItem) -> EditionEntry:
    """Export shape of one story: the lead's fields plus every report as a ``SourceRef``."""
    others = sorted((it for it in story.items if it.id != lead.id), key=published_of)
    reports = (lead, *others)
    updated = max((it.updated_at or published_of(it)) for it in reports)
    return EditionEntry(
        id=story.public_id,
        title=lead.title,
        url=lead.url,
        publisher=lead.source_name,
        publisher_url=lead.source_site_url or lead.source_feed_url,
        publisher_feed_url=lead.source_feed_url,
        published=published_of(lead),
        updated=max(updated, published_of(lead)),
        collected_at=lead.collected_at,
        summary_html=lead.summary_html,
        content_html=lead.content_html,
        author=lead.author,
        categories=lead.categories,
        language=lead.language,
        sources=tuple(
            SourceRef(
                publisher=it.source_name, url=it.url, title=it.title, published=it.published_at
            )
            for it in reports
        ),
    )


def build_edition(
    config: EditionConfig,
    stories: Sequence[StoryRecord],
    *,
    base_url: str,
    now: datetime,
) -> EditionFeed:
    """Select, order (newest lead first) and cap the stories of one edition."""
    curator = Curator.from_config(config)
    cutoff = now - timedelta(days=config.max_age_days)
    entries: list[EditionEntry] = []
    for story in stories:
        if not story.items or not any(curator.admits(it) for it in story.items):
            continue
        entry = to_entry(story, choose_lead(story.items))
        if entry.published >= cutoff:
            entries.append(entry)
    entries.sort(key=lambda e: (e.published, e.id), reverse=True)
    entries = entries[: config.limit]
    updated = max((e.updated for e in entries), default=_EPOCH)
    return EditionFeed(
        name=config.name,
        title=config.title,
        description=config.description or config.title,
        base_url=base_url.rstrip("/"),
        updated=updated,
        entries=tuple(entries),
    )
