"""Edition rules (pure): validate, compile once per edition, evaluate per report, explain.

A rule (``settings.Rule``, one TOML table) holds conditions, and *every* condition it gives must
hold:

- text: one of ``fields`` (title, summary, content, categories, source, language, tags)
  contains one of ``keywords`` or ``phrases``, or matches ``regex`` (any one of them is enough).
  Latin terms match whole words ("AI" is not in "said"), CJK terms anywhere ("大模型" is in
  "新一代大模型"); whitespace inside a term matches any run of whitespace, and between a CJK
  character and anything else it is optional ("英伟达 H20" matches "英伟达H20"). A keyword ending
  in ``*`` is a prefix ("GPU*" matches "GPUs"). Case-insensitive unless ``case_sensitive``.
- attributes: ``sources`` (source key or display name), ``tags`` (the source's tags plus the
  story card's tags), ``languages`` (language-tag prefix: "zh" matches "zh-cn"), ``max_age`` /
  ``min_age`` (seconds since publication; needs the evaluation clock).
- boolean: ``all`` (every sub-rule), ``any`` (at least one), ``not`` (the sub-rule must fail).
  Sub-rules are rules, so they nest arbitrarily.

Evaluation comes in two speeds: ``matches`` short-circuits (curation of thousands of stories),
``explain`` evaluates everything and returns a ``Verdict`` tree that names each rule (its
``name`` or its path such as ``include[0].any[1]``), the field and the text that matched, or why
nothing did. Text of a report is extracted once per report (``ItemView``), not once per rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.errors import ConfigError
from aggregator.model import StoredItem
from aggregator.sanitize import html_to_text
from aggregator.settings import FIELDS, EditionConfig, Rule

# Characters that have no word boundaries: CJK radicals/symbols, kana, CJK ideographs (+ ext A),
# Hangul, compatibility ideographs, full-width forms.
_CJK_RANGES = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_CJK_RE = re.compile(f"[{_CJK_RANGES}]")
# Characters that make up a Latin "word" for whole-word matching (ASCII + Latin-1/Extended).
_WORD = "0-9A-Za-z\u00c0-\u024f"
_WORD_RE = re.compile(f"[{_WORD}]")
_CONTEXT = 24  # characters of context shown either side of a text match


def published_of(item: StoredItem) -> datetime:
    """When the publisher says it appeared; when it says nothing, when we collected it."""
    return item.published_at or item.collected_at


def format_duration(seconds: float) -> str:
    """``90`` -> ``1.5m``, ``7200`` -> ``2h``, ``172800`` -> ``2d`` (for explanations)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.4g}s"


# ---------------------------------------------------------------------------- terms


def _is_cjk(ch: str) -> bool:
    return bool(_CJK_RE.match(ch))


def term_pattern(term: str, *, prefix: bool = False) -> str:
    """Regex source for a keyword or phrase (see the module docstring for the rules)."""
    words = term.split()
    parts: list[str] = []
    for i, word in enumerate(words):
        if i:
            loose = _is_cjk(words[i - 1][-1]) or _is_cjk(word[0])
            parts.append(r"\s*" if loose else r"\s+")
        parts.append(re.escape(word))
    start = f"(?<![{_WORD}])" if _WORD_RE.match(words[0][0]) else ""
    end = "" if prefix or not _WORD_RE.match(words[-1][-1]) else f"(?![{_WORD}])"
    return start + "".join(parts) + end


def _keyword(term: str) -> tuple[str, bool]:
    """A keyword without its trailing ``*``, and whether it was a prefix keyword."""
    stripped = term.strip()
    if len(stripped) > 1 and stripped.endswith("*"):
        return stripped[:-1].rstrip(), True
    return stripped, False


# ---------------------------------------------------------------------------- evaluation data


class ItemView:
    """One report as rules see it: field texts extracted lazily, once, and its age at ``now``."""

    __slots__ = ("_folded", "_texts", "extra_tags", "item", "now")

    def __init__(
        self, item: StoredItem, now: datetime | None = None, extra_tags: Iterable[str] = ()
    ) -> None:
        self.item = item
        self.now = now
        self.extra_tags = tuple(extra_tags)
        self._texts: dict[str, str] = {}
        self._folded: dict[str, str] = {}

    def text(self, field: str) -> str:
        """The text of one rule field (HTML fields as visible text)."""
        cached = self._texts.get(field)
        if cached is None:
            cached = self._texts[field] = _field_text(self, field)
        return cached

    def folded(self, field: str) -> str:
        """``text(field)`` case-folded, for the keyword prefilter."""
        cached = self._folded.get(field)
        if cached is None:
            cached = self._folded[field] = self.text(field).casefold()
        return cached

    @property
    def tags(self) -> tuple[str, ...]:
        """The source's tags plus the story's enrichment tags."""
        return (*self.item.source_tags, *self.extra_tags)

    def age_seconds(self) -> float:
        """Seconds since publication (collection when undated); needs ``now``."""
        if self.now is None:
            raise ValueError("rules with max_age/min_age need the evaluation time (now)")
        return (self.now - published_of(self.item)).total_seconds()


def _field_text(view: ItemView, field: str) -> str:
    item = view.item
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
        return "\n".join(view.tags)
    raise ValueError(f"unknown rule field {field!r}")


@dataclass(frozen=True, slots=True)
class Hit:
    """Evidence that one condition held: where, what matched and the text it matched."""

    field: str  # title, summary, ..., or age / language / source / tags for attributes
    term: str  # e.g. "keyword 'AI'", "phrase '大模型'", "regex 'x'", "max_age 6h"
    text: str  # the matched text or the attribute's value
    context: str = ""  # the matched text with some surroundings (text conditions)

    def describe(self) -> str:
        """One line, e.g. ``title matched keyword 'AI': "AI" in "OpenAI ships new AI model"``."""
        if self.field == "age":
            return f"age {self.text} is within {self.term}"
        if self.field in ("source", "tags", "language") and not self.context:
            return f"{self.field} {self.text!r} matches {self.term}"
        where = f' in "{self.context}"' if self.context and self.context != self.text else ""
        return f'{self.field} matched {self.term}: "{self.text}"{where}'


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of one rule on one report, with the verdicts of its sub-rules."""

    label: str  # the rule's name, or its path
    path: str  # e.g. include[0].any[1]
    matched: bool
    reason: str  # one line: what held, or the first thing that did not
    hits: tuple[Hit, ...] = ()
    children: tuple[Verdict, ...] = ()
    boost: float = 0.0

    def lines(self, indent: str = "") -> list[str]:
        """The verdict tree as indented text lines."""
        mark = "MATCH" if self.matched else "no match"
        name = self.label if self.label == self.path else f"{self.label} ({self.path})"
        boost = f" [boost {self.boost:+g}]" if self.boost else ""
        out = [f"{indent}{name}: {mark}{boost}: {self.reason}"]
        for child in self.children:
            out.extend(child.lines(indent + "  "))
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (CLI ``--json``)."""
        return {
            "rule": self.label,
            "path": self.path,
            "matched": self.matched,
            "reason": self.reason,
            "boost": self.boost,
            "hits": [
                {"field": h.field, "term": h.term, "text": h.text, "context": h.context}
                for h in self.hits
            ],
            "children": [c.to_dict() for c in self.children],
        }


# ---------------------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class TextCondition:
    """``fields`` x (keywords | phrases | regex): one pattern per term, plus the user regex."""

    fields: tuple[str, ...]
    terms: tuple[str, ...]  # labels, index i is named group _t{i} of ``named``
    named: re.Pattern[str] | None  # the same with one named group per term (explanations)
    regex: re.Pattern[str] | None
    # Per term: a case-folded literal any match of it must contain (its longest word) and the
    # term's own pattern. Only terms whose literal is in the field are searched for: ``in`` is
    # far cheaper than one regex of many alternatives over a long body.
    needles: tuple[tuple[str, re.Pattern[str]], ...] = ()

    @classmethod
    def compile(cls, rule: Rule) -> TextCondition | None:
        flags = 0 if rule.case_sensitive else re.IGNORECASE
        labels: list[str] = []
        parts: list[str] = []
        needles: list[str] = []
        for raw in rule.keywords:
            word, prefix = _keyword(raw)
            if word:
                labels.append(f"keyword {raw.strip()!r}")
                parts.append(term_pattern(word, prefix=prefix))
                needles.append(_needle(word))
        for raw in rule.phrases:
            if raw.strip():
                labels.append(f"phrase {raw.strip()!r}")
                parts.append(term_pattern(raw.strip()))
                needles.append(_needle(raw))
        if not parts and not rule.regex:
            return None
        regex = re.compile(rule.regex, flags) if rule.regex else None
        if not parts:
            return cls(tuple(rule.fields), (), None, regex)
        named = re.compile("|".join(f"(?P<_t{i}>{p})" for i, p in enumerate(parts)), flags)
        per_term = tuple(
            (needle, re.compile(part, flags)) for needle, part in zip(needles, parts, strict=True)
        )
        return cls(tuple(rule.fields), tuple(labels), named, regex, per_term)

    def test(self, view: ItemView) -> bool:
        """Fast path: does any field match?"""
        for field in self.fields:
            text = view.text(field)
            if self.needles:
                folded = view.folded(field)
                if any(n in folded and p.search(text) for n, p in self.needles):
                    return True
            if self.regex is not None and self.regex.search(text):
                return True
        return False

    def search(self, view: ItemView) -> Hit | None:
        """The first match (fields in rule order; terms before the regex within a field)."""
        for field in self.fields:
            text = view.text(field)
            if self.named is not None and (m := self.named.search(text)):
                index = int((m.lastgroup or "_t0")[2:])
                return Hit(field, self.terms[index], m.group(0), _context(text, m))
            if self.regex is not None and (m := self.regex.search(text)):
                return Hit(field, f"regex {self.regex.pattern!r}", m.group(0), _context(text, m))
        return None

    def describe(self) -> str:
        """What was looked for, e.g. ``title/summary: 3 keywords, 1 phrase, regex '...'``."""
        kinds: list[str] = []
        n_kw = sum(1 for t in self.terms if t.startswith("keyword"))
        n_ph = len(self.terms) - n_kw
        if n_kw:
            kinds.append(
                self.terms[0] if len(self.terms) == 1 else f"{n_kw} keyword{'s' * (n_kw > 1)}"
            )
        if n_ph:
            kinds.append(
                self.terms[-1] if len(self.terms) == 1 else f"{n_ph} phrase{'s' * (n_ph > 1)}"
            )
        if self.regex is not None:
            kinds.append(f"regex {self.regex.pattern!r}")
        return f"{'/'.join(self.fields)}: {', '.join(kinds)}"


def _needle(term: str) -> str:
    """The longest word of a keyword or phrase, case-folded (see ``TextCondition``)."""
    return max(term.split(), key=len).casefold()


def _context(text: str, m: re.Match[str]) -> str:
    start, end = max(0, m.start() - _CONTEXT), min(len(text), m.end() + _CONTEXT)
    snippet = " ".join(text[start:end].split())
    return ("…" if start else "") + snippet + ("…" if end < len(text) else "")


def _language_matches(wanted: str, language: str | None) -> bool:
    """BCP 47-ish prefix match: ``zh`` matches ``zh``, ``zh-cn``, ``zh_Hans``; not ``zho``."""
    if not language:
        return False
    lang = language.lower().replace("_", "-")
    return lang == wanted or lang.startswith(wanted + "-")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to evaluate: regexes compiled, attribute lists normalized, children too."""

    path: str
    name: str | None
    boost: float
    text: TextCondition | None
    sources: frozenset[str]
    tags: frozenset[str]
    languages: tuple[str, ...]
    max_age: float | None
    min_age: float | None
    all: tuple[CompiledRule, ...]
    any: tuple[CompiledRule, ...]
    not_: CompiledRule | None

    @property
    def label(self) -> str:
        """The rule's name, or its path when it has none."""
        return self.name or self.path

    # -------------------------------------------------------------- attribute checks

    def _source_hit(self, view: ItemView) -> Hit | None:
        it = view.item
        for value in (it.source_key, it.source_name):
            if value.casefold() in self.sources:
                return Hit("source", f"source {value!r}", value)
        return None

    def _tag_hit(self, view: ItemView) -> Hit | None:
        for tag in view.tags:
            if tag.casefold() in self.tags:
                return Hit("tags", f"tag {tag!r}", tag)
        return None

    def _language_hit(self, view: ItemView) -> Hit | None:
        for wanted in self.languages:
            if _language_matches(wanted, view.item.language):
                return Hit("language", f"language {wanted!r}", view.item.language or "")
        return None

    def _age_ok(self, age: float) -> bool:
        if self.max_age is not None and age > self.max_age:
            return False
        return self.min_age is None or age >= self.min_age

    # -------------------------------------------------------------- evaluation

    def matches(self, view: ItemView) -> bool:
        """Whether the report satisfies every condition (cheapest conditions first)."""
        if self.sources and self._source_hit(view) is None:
            return False
        if self.languages and self._language_hit(view) is None:
            return False
        if self.tags and self._tag_hit(view) is None:
            return False
        if (self.max_age is not None or self.min_age is not None) and not self._age_ok(
            view.age_seconds()
        ):
            return False
        if self.text is not None and not self.text.test(view):
            return False
        if self.all and not all(r.matches(view) for r in self.all):
            return False
        if self.any and not any(r.matches(view) for r in self.any):
            return False
        return self.not_ is None or not self.not_.matches(view)

    def explain(self, view: ItemView) -> Verdict:
        """Evaluate every condition and sub-rule; say what held and what did not."""
        hits: list[Hit] = []
        failures: list[str] = []
        it = view.item
        if self.sources:
            _collect(
                self._source_hit(view),
                hits,
                failures,
                f"source {it.source_key!r} ({it.source_name}) is not one of {_list(self.sources)}",
            )
        if self.languages:
            _collect(
                self._language_hit(view),
                hits,
                failures,
                f"language {it.language or 'unknown'!r} is not one of {_list(self.languages)}",
            )
        if self.tags:
            _collect(
                self._tag_hit(view),
                hits,
                failures,
                f"tags {_list(view.tags) if view.tags else '(none)'} include none of "
                f"{_list(self.tags)}",
            )
        if self.max_age is not None or self.min_age is not None:
            age = view.age_seconds()
            bounds = " and ".join(
                f"{k} {format_duration(v)}"
                for k, v in (("max_age", self.max_age), ("min_age", self.min_age))
                if v is not None
            )
            if self._age_ok(age):
                hits.append(Hit("age", bounds, format_duration(age)))
            else:
                failures.append(f"age {format_duration(age)} is outside {bounds}")
        if self.text is not None:
            _collect(
                self.text.search(view),
                hits,
                failures,
                f"no match for {self.text.describe()}",
            )
        all_v = tuple(r.explain(view) for r in self.all)
        any_v = tuple(r.explain(view) for r in self.any)
        not_v = self.not_.explain(view) if self.not_ is not None else None
        failed = [v.label for v in all_v if not v.matched]
        if failed:
            failures.append(f"all: {', '.join(failed)} did not match")
        if any_v and not any(v.matched for v in any_v):
            failures.append(f"any: none of {len(any_v)} sub-rules matched")
        if not_v is not None and not_v.matched:
            failures.append(f"not: {not_v.label} matched")
        children = (*all_v, *any_v, *((not_v,) if not_v is not None else ()))
        matched = not failures
        if matched:
            parts = [h.describe() for h in hits]
            if all_v:
                parts.append(f"all {len(all_v)} sub-rules matched")
            if any_v:
                parts.append("any: " + ", ".join(v.label for v in any_v if v.matched))
            if not_v is not None:
                parts.append(f"not: {not_v.label} did not match")
            reason = "; ".join(parts)
        else:
            reason = "; ".join(failures)
        return Verdict(
            label=self.label,
            path=self.path,
            matched=matched,
            reason=reason,
            hits=tuple(hits) if matched else (),
            children=children,
            boost=self.boost,
        )


def _collect(hit: Hit | None, hits: list[Hit], failures: list[str], failure: str) -> None:
    if hit is None:
        failures.append(failure)
    else:
        hits.append(hit)


def _list(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in sorted(values))


def compile_rule(rule: Rule, path: str) -> CompiledRule:
    """Compile one (valid) rule tree; ``path`` names it in explanations, e.g. ``include[0]``."""
    return CompiledRule(
        path=path,
        name=rule.name,
        boost=rule.boost,
        text=TextCondition.compile(rule),
        sources=frozenset(s.casefold() for s in rule.sources),
        tags=frozenset(t.casefold() for t in rule.tags),
        languages=tuple(lang.lower().replace("_", "-") for lang in rule.languages),
        max_age=rule.max_age,
        min_age=rule.min_age,
        all=tuple(compile_rule(r, f"{path}.all[{i}]") for i, r in enumerate(rule.all)),
        any=tuple(compile_rule(r, f"{path}.any[{i}]") for i, r in enumerate(rule.any)),
        not_=compile_rule(rule.not_, f"{path}.not") if rule.not_ is not None else None,
    )


# ---------------------------------------------------------------------------- per edition


@dataclass(frozen=True, slots=True)
class ReportVerdict:
    """Why one report is in or out of an edition."""

    admitted: bool
    reason: str
    include: tuple[Verdict, ...]
    exclude: tuple[Verdict, ...]
    boost: tuple[Verdict, ...]  # boost-only rules

    def to_dict(self) -> dict[str, object]:
        return {
            "admitted": self.admitted,
            "reason": self.reason,
            "include": [v.to_dict() for v in self.include],
            "exclude": [v.to_dict() for v in self.exclude],
            "boost": [v.to_dict() for v in self.boost],
        }


@dataclass(frozen=True, slots=True)
class EditionRules:
    """An edition's compiled rules: ``include`` (any), ``exclude`` (none), ``boost`` (score)."""

    include: tuple[CompiledRule, ...]
    exclude: tuple[CompiledRule, ...]
    boost: tuple[CompiledRule, ...]

    @property
    def needs_clock(self) -> bool:
        """Whether any rule looks at age (evaluation then needs ``now``)."""
        return any(_uses_age(r) for r in (*self.include, *self.exclude, *self.boost))

    def admits(self, view: ItemView) -> bool:
        """A report is in when some include rule matches (or there are none) and no exclude."""
        if self.include and not any(r.matches(view) for r in self.include):
            return False
        return not any(r.matches(view) for r in self.exclude)

    def boosters(self) -> tuple[CompiledRule, ...]:
        """Rules whose match adds to the score: top-level include rules with a boost, and the
        ``boost`` rules."""
        return (*(r for r in self.include if r.boost), *self.boost)

    def story_boost(self, views: Sequence[ItemView]) -> tuple[tuple[str, float], ...]:
        """(label, boost) of every boosting rule that matches at least one report (once each)."""
        return tuple(
            (r.label, r.boost) for r in self.boosters() if any(r.matches(v) for v in views)
        )

    def explain(self, view: ItemView) -> ReportVerdict:
        """Every rule's verdict on one report and the edition's decision, in words."""
        inc = tuple(r.explain(view) for r in self.include)
        exc = tuple(r.explain(view) for r in self.exclude)
        boo = tuple(r.explain(view) for r in self.boost)
        excluded = [v for v in exc if v.matched]
        included = [v for v in inc if v.matched]
        if excluded:
            admitted = False
            reason = f"kept out by exclude rule {excluded[0].label}: {excluded[0].reason}"
        elif not self.include:
            admitted, reason = True, "let in: the edition has no include rules (everything is in)"
        elif included:
            admitted = True
            reason = f"let in by include rule {included[0].label}: {included[0].reason}"
        else:
            admitted = False
            reason = f"kept out: none of {len(inc)} include rules matched"
        return ReportVerdict(admitted, reason, inc, exc, boo)


def _uses_age(rule: CompiledRule) -> bool:
    if rule.max_age is not None or rule.min_age is not None:
        return True
    subs = (*rule.all, *rule.any, *((rule.not_,) if rule.not_ is not None else ()))
    return any(_uses_age(r) for r in subs)


class EditionCompiler:
    """Compiles an edition's rules once per config object and remembers the result.

    Keyed by identity (the daemon passes the same frozen ``EditionConfig`` on every render), so
    a config never needs to be hashable; the cache holds the config itself, so an id cannot be
    reused while its entry lives. ``compilations`` counts real compilations (tests use it).
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.compilations = 0
        self._cache: dict[int, tuple[EditionConfig, EditionRules]] = {}

    def __call__(self, config: EditionConfig) -> EditionRules:
        hit = self._cache.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        rules = EditionRules(
            include=tuple(compile_rule(r, f"include[{i}]") for i, r in enumerate(config.include)),
            exclude=tuple(compile_rule(r, f"exclude[{i}]") for i, r in enumerate(config.exclude)),
            boost=tuple(compile_rule(r, f"boost[{i}]") for i, r in enumerate(config.boost)),
        )
        self.compilations += 1
        if len(self._cache) >= self.size:
            self._cache.clear()
        self._cache[id(config)] = (config, rules)
        return rules


compile_edition = EditionCompiler()


# ---------------------------------------------------------------------------- validation


def check_edition_rules(config: EditionConfig, where: str) -> None:
    """Validate every rule of an edition; ``ConfigError`` names ``where`` + the key path."""
    names: dict[str, str] = {}
    for kind in ("include", "exclude", "boost"):
        for i, rule in enumerate(getattr(config, kind)):
            path = f"{kind}[{i}]"
            check_rule(rule, f"{where}.{path}", top=kind)
            for sub_path, name in _names(rule, path):
                if name in names:
                    raise ConfigError(
                        f"{where}.{sub_path}.name: duplicate rule name {name!r} "
                        f"(also {names[name]})"
                    )
                names[name] = sub_path


def _names(rule: Rule, path: str) -> Iterable[tuple[str, str]]:
    if rule.name is not None:
        yield path, rule.name
    for i, r in enumerate(rule.all):
        yield from _names(r, f"{path}.all[{i}]")
    for i, r in enumerate(rule.any):
        yield from _names(r, f"{path}.any[{i}]")
    if rule.not_ is not None:
        yield from _names(rule.not_, f"{path}.not")


def check_rule(rule: Rule, where: str, *, top: str | None = None) -> None:
    """Validate one rule tree. ``top`` is include/exclude/boost for a top-level rule, else None.

    Raises ``ConfigError`` with ``where`` extended by the offending key path, e.g.
    ``config.toml: editions[1].include[0].any[2].regex: invalid regular expression: ...``.
    """
    has_terms = bool(rule.keywords or rule.phrases or rule.regex)
    for f in rule.fields:
        if f not in FIELDS:
            raise ConfigError(f"{where}.fields: unknown field {f!r}; use {', '.join(FIELDS)}")
    if has_terms and not rule.fields:
        raise ConfigError(f"{where}.fields: name at least one of {', '.join(FIELDS)}")
    if rule.fields and not has_terms:
        raise ConfigError(
            f"{where}: fields given but nothing to look for: give keywords, phrases or regex"
        )
    for key in ("keywords", "phrases", "sources", "tags", "languages"):
        for j, value in enumerate(getattr(rule, key)):
            if not value.strip() or (key == "keywords" and not _keyword(value)[0]):
                raise ConfigError(f"{where}.{key}[{j}]: empty value")
    for j, lang in enumerate(rule.languages):
        if not re.fullmatch(r"[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*", lang):
            raise ConfigError(
                f"{where}.languages[{j}]: expected a language tag like 'en' or 'zh-cn', "
                f"got {lang!r}"
            )
    if rule.regex is not None:
        if not rule.regex:
            raise ConfigError(f"{where}.regex: empty regular expression")
        try:
            re.compile(rule.regex)
        except re.error as exc:
            raise ConfigError(f"{where}.regex: invalid regular expression: {exc}") from exc
    for key in ("max_age", "min_age"):
        value = getattr(rule, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{where}.{key}: must be a positive duration, got {value}")
    if rule.max_age is not None and rule.min_age is not None and rule.min_age > rule.max_age:
        raise ConfigError(f"{where}.min_age: is larger than max_age, so nothing can match")
    if rule.name is not None and not rule.name.strip():
        raise ConfigError(f"{where}.name: empty rule name")
    conditions = (
        has_terms,
        rule.sources,
        rule.tags,
        rule.languages,
        rule.max_age is not None,
        rule.min_age is not None,
        rule.all,
        rule.any,
        rule.not_ is not None,
    )
    if not any(conditions):
        raise ConfigError(
            f"{where}: empty rule: give keywords, phrases or regex (with fields), sources, "
            "tags, languages, max_age/min_age, or all/any/not sub-rules"
        )
    if rule.boost != rule.boost or abs(rule.boost) == float("inf"):
        raise ConfigError(f"{where}.boost: must be a finite number")
    if rule.boost and top not in ("include", "boost"):
        what = "an exclude rule" if top == "exclude" else "a sub-rule"
        raise ConfigError(
            f"{where}.boost: boost only applies to top-level include or boost rules, not to {what}"
        )
    if top == "boost" and not rule.boost:
        raise ConfigError(f"{where}.boost: a boost rule needs a non-zero boost")
    for i, sub in enumerate(rule.all):
        check_rule(sub, f"{where}.all[{i}]")
    for i, sub in enumerate(rule.any):
        check_rule(sub, f"{where}.any[{i}]")
    if rule.not_ is not None:
        check_rule(rule.not_, f"{where}.not")
