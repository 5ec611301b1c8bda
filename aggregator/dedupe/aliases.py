"""Entity aliases: map company, product and people names in any language to one token.

Why: a Chinese report says 腾讯 and an English one says Tencent; 台湾 media say 輝達 where the
mainland says 英伟达. Mapping every surface form to a canonical id (``tencent``) lets the
shingler emit the same entity token for all of them, which is what makes cross-language and
cross-region matching possible at all.

The table is data (``aggregator/data/aliases.tsv``), read once, lazily, and cached. Matching is
pure: :meth:`AliasTable.mark` rewrites normalized text, replacing each alias with a marker
that :mod:`aggregator.dedupe.text` turns into an entity token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

MARK = "\x01"  # surrounds an entity id in marked text: "\x01tencent\x01"

_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


_RUNS = re.compile(rf"[a-z0-9_.$%]+(?: [a-z0-9_.$%]+)*|{_CJK_CHAR.pattern}+")


@dataclass(frozen=True, slots=True)
class AliasTable:
    """Surface form (normalized) -> canonical entity id, with lookup indexes.

    ``latin_lengths``: for each first word of a Latin alias, the alias lengths in words
    starting with it, longest first. ``cjk_lengths``: for each first character of a Chinese
    alias, the alias lengths starting with it, longest first. ``cjk_starts``: a pattern
    matching any such first character (the scan jumps from one to the next).
    """

    surfaces: dict[str, str]
    latin_lengths: dict[str, tuple[int, ...]]
    cjk_lengths: dict[str, tuple[int, ...]]
    cjk_starts: re.Pattern[str] | None

    def mark(self, normalized: str) -> str:
        """Replace every alias in already-normalized text by `` \\x01id\\x01 ``.

        Latin aliases match whole words only (``us`` never matches inside ``bus``); Chinese
        aliases match as substrings, longest first (阿里巴巴 before 阿里). The spaces around
        the marker split a Chinese run so no character bigram straddles an entity. Dictionary
        lookups, not one big regex: ~10x faster on 100-alias tables.
        """
        if not self.surfaces:
            return normalized
        out: list[str] = []
        last = 0
        for run in _RUNS.finditer(normalized):
            text = run.group(0)
            pieces = self._mark_cjk(text) if _CJK_CHAR.match(text) else self._mark_latin(text)
            if pieces is not None:
                out.append(normalized[last : run.start()])
                out.append(pieces)
                last = run.end()
        if not out:
            return normalized
        out.append(normalized[last:])
        return "".join(out)

    def _marker(self, surface: str) -> str:
        return f" {MARK}{self.surfaces[surface]}{MARK} "

    def _mark_latin(self, text: str) -> str | None:
        """Whole-word aliases of one Latin run, longest first from each word on; only words
        that start some alias are tried (most words start none)."""
        words = text.split(" ")
        lengths = self.latin_lengths
        out: list[str] = []
        changed = False
        i = 0
        count = len(words)
        while i < count:
            for n in lengths.get(words[i], ()):
                if n > count - i:
                    continue
                candidate = " ".join(words[i : i + n]) if n > 1 else words[i]
                if candidate in self.surfaces:
                    out.append(self._marker(candidate))
                    i += n
                    changed = True
                    break
            else:
                out.append(words[i])
                i += 1
        return " ".join(out) if changed else None

    def _mark_cjk(self, text: str) -> str | None:
        """Aliases inside one Chinese run, longest first from each character on; the scan
        jumps between characters that start some alias (``cjk_starts``)."""
        starts = self.cjk_starts
        if starts is None:
            return None
        out: list[str] = []
        changed = False
        i = 0
        while True:
            found = starts.search(text, i)
            if found is None:
                break
            j = found.start()
            for n in self.cjk_lengths[text[j]]:
                candidate = text[j : j + n]
                if candidate in self.surfaces:
                    out.append(text[i:j])
                    out.append(self._marker(candidate))
                    i = j + n
                    changed = True
                    break
            else:
                out.append(text[i : j + 1])
                i = j + 1
        if not changed:
            return None
        out.append(text[i:])
        return "".join(out)

    def entity_of(self, normalized_surface: str) -> str | None:
        """The canonical id of one normalized surface form, or None."""
        return self.surfaces.get(normalized_surface)


def parse_aliases(lines: Iterable[str], normalize: Callable[[str], str]) -> AliasTable:
    """Build an :class:`AliasTable` from TSV lines ``id<TAB>surface|surface|...``.

    ``normalize`` is the text normalizer, applied to each surface so that aliases are compared
    with text in the same form (casefolded, Simplified, punctuation folded). A surface that
    mixes Chinese and Latin characters (SK海力士) is indexed as Chinese.
    """
    surfaces: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entity, _, forms = line.partition("\t")
        entity = entity.strip()
        if not entity or not forms:
            continue
        for form in forms.split("|"):
            surface = normalize(form)
            if surface:
                surfaces.setdefault(surface, entity)
    latin: dict[str, set[int]] = {}
    cjk: dict[str, set[int]] = {}
    for surface in surfaces:
        if _CJK_CHAR.search(surface):
            cjk.setdefault(surface[0], set()).add(len(surface))
        else:
            words = surface.split(" ")
            latin.setdefault(words[0], set()).add(len(words))
    starts = "".join(re.escape(c) for c in sorted(cjk))
    return AliasTable(
        surfaces=surfaces,
        latin_lengths={w: tuple(sorted(n, reverse=True)) for w, n in latin.items()},
        cjk_lengths={c: tuple(sorted(n, reverse=True)) for c, n in cjk.items()},
        cjk_starts=re.compile(f"[{starts}]") if starts else None,
    )


@lru_cache(maxsize=1)
def default_aliases() -> AliasTable:
    """The shipped alias table (read once from package data, then cached)."""
    from aggregator.dedupe.text import normalize

    data = resources.files("aggregator").joinpath("data/aliases.tsv").read_text(encoding="utf-8")
    return parse_aliases(data.splitlines(), normalize)
