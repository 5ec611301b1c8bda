"""Evaluate same-story matching on the shared corpora; choose thresholds; write the report.

Usage: ``python bench/stories_eval.py [--out bench/results/stories_eval.md]``

Data (``../shared/corpus/stories/``, see its PROVENANCE.md). The splits are the corpora's own
published splits, fixed by their authors (no random draw here, so nothing to seed and nothing
we picked):

* ``sohu2021-same-event-zh.jsonl``: Chinese pairs, splits train / valid. No test split, so
  thresholds are tuned on ``train`` only and ``valid`` is the held-out test (never tuned on).
* ``stsb-headlines-en.jsonl``: English headline pairs, ``label_same_story`` = score >= 4.
  Tuned on ``train`` + ``dev``, reported on ``test``.

Each corpus text is used as a feed title (no summary): that is all a headline pair gives, and
the Sohu texts are headlines or lead snippets of at most 150 characters.

Tuning: a grid over the decision parameters (English: every distinct title-coverage value seen
on dev); the choice maximises dev recall subject to dev precision >= TARGET + MARGIN; if no
setting reaches it, the most precise one. Test precision comes with a 95% Wilson interval:
the English test split has 68 positives, so a handful of accepted pairs decide it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator.dedupe.minhash import band_keys, signature  # noqa: E402
from aggregator.dedupe.stories import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    MatchText,
    Thresholds,
    coverage,
    decide,
    match_text,
)
from aggregator.store.matching import item_band_keys  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "stories"
TARGET = 0.95
MARGIN = 0.02
Row = tuple[float, float, float, Thresholds]  # precision, recall, F1, setting


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled corpus pair with pre-computed features."""

    id: str
    split: str
    label: int
    a: MatchText
    b: MatchText
    score: float | None  # STS-B graded similarity, None for Sohu


def load(name: str, label_field: str) -> list[Pair]:
    """Read one JSONL corpus into pairs (features computed once)."""
    pairs = []
    with (CORPUS / name).open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            pairs.append(
                Pair(
                    row["id"],
                    row["split"],
                    int(row[label_field]),
                    match_text(row["text_a"]),
                    match_text(row["text_b"]),
                    row.get("score"),
                )
            )
    return pairs


def prf(pairs: Iterable[Pair], th: Thresholds) -> tuple[float, float, float, int, int, int]:
    """Precision, recall, F1, TP, FP, FN of ``decide`` under ``th``."""
    tp = fp = fn = 0
    for p in pairs:
        same = decide(p.a, p.b, th).same
        if same and p.label:
            tp += 1
        elif same:
            fp += 1
        elif p.label:
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, tp, fp, fn


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (precision on few accepted pairs)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def choose(dev: list[Pair], grid: list[Thresholds]) -> tuple[Thresholds, list[Row], bool]:
    """Evaluate ``grid`` on ``dev``; return the choice (max recall at precision >= TARGET +
    MARGIN, else the most precise), every row, and whether the target was reached."""
    rows = [(*prf(dev, th)[:3], th) for th in grid]
    ok = [row for row in rows if row[0] >= TARGET + MARGIN]
    best = (
        max(ok, key=lambda x: (x[1], x[0], x[3].min_shared))
        if ok
        else max(rows, key=lambda x: (x[0], x[1]))
    )
    return best[3], rows, bool(ok)


def tune_zh(dev: list[Pair]) -> tuple[Thresholds, list[str]]:
    """Chinese knobs: Jaccard threshold, containment (off = 1.01) and its Jaccard floor, and
    the shared-shingle minimum."""
    sims = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85]
    grid = [
        replace(DEFAULT_THRESHOLDS, zh=sim, containment=cont, containment_floor=floor, min_shared=n)
        for sim, cont, floor, n in itertools.product(
            sims, [0.8, 0.9, 1.01], [0.4, 0.5, 0.6], [1, 3]
        )
        if cont <= 1 or floor == 0.5  # the floor means nothing with containment off
    ]
    best, rows, _ = choose(dev, grid)
    log = [
        f"| {th.zh:.2f} | {th.containment:.2f} | {th.containment_floor:.2f} | {th.min_shared} |"
        f" {p:.3f} | {r:.3f} | {f:.3f} |"
        for p, r, f, th in sorted(rows, key=lambda x: (-x[0], -x[1]))
        if p >= TARGET or th is best
    ][:12]
    return best, log


def tune_en(dev: list[Pair], base: Thresholds) -> tuple[Thresholds, list[str], bool]:
    """English: the title-coverage threshold ``en``, over every distinct coverage value of the
    dev pairs in [0.5, 1] (coverage is a ratio of small counts, so between two such values
    every threshold decides the same)."""
    values = sorted(
        {round(coverage(p.a.title_features, p.b.title_features).score, 4) for p in dev} - {0.0}
    )
    grid = [replace(base, en=v) for v in values if v >= 0.5]
    best, rows, ok = choose(dev, grid)
    log = [
        f"| {th.en:.3f} | {p:.3f} | {r:.3f} | {f:.3f} |"
        for p, r, f, th in sorted(rows, key=lambda x: -x[3].en)
        if p >= 0.85 or th is best
    ][:14]
    return best, log, ok


def lsh_rates(pairs: list[Pair], configs: list[tuple[int, int, int]], th: Thresholds) -> list[str]:
    """How often pairs share at least one band key, per LSH config: positives, negatives, and
    the pairs ``decide`` accepts (the matches the lookup must not lose)."""
    accepted = [decide(p.a, p.b, th).same for p in pairs]
    lines = []
    for num_perm, bands, rows in configs:
        hit = {0: 0, 1: 0, 2: 0}
        total = {0: 0, 1: 0, 2: 0}
        for p, acc in zip(pairs, accepted, strict=True):
            if num_perm == 0:  # as indexed by the store
                ka, kb = set(item_band_keys(p.a)), set(item_band_keys(p.b))
            else:
                ka = set(band_keys(signature(p.a.body_features.shingles, num_perm), bands, rows))
                kb = set(band_keys(signature(p.b.body_features.shingles, num_perm), bands, rows))
            shared = bool(ka & kb)
            total[p.label] += 1
            hit[p.label] += shared
            if acc:
                total[2] += 1
                hit[2] += shared
        label = ("as indexed", "body + title") if num_perm == 0 else (num_perm, f"{bands} x {rows}")
        lines.append(
            f"| {label[0]} | {label[1]} | {hit[1] / total[1]:.3f} |"
            f" {hit[0] / total[0]:.3f} | {hit[2] / max(1, total[2]):.3f} ({total[2]}) |"
        )
    return lines


def timings(pairs: list[Pair], texts: list[str]) -> list[str]:
    """Per-text feature cost, per-signature cost, per-pair decision cost (medians of runs)."""

    def per_call(fn: Callable[[Any], object], items: Sequence[Any], runs: int = 3) -> float:
        best = []
        for _ in range(runs):
            start = time.perf_counter()
            for item in items:
                fn(item)
            best.append((time.perf_counter() - start) / len(items))
        return statistics.median(best) * 1e6

    sample = texts[:2000]
    shingle_sets = [match_text(t).body_features.shingles for t in sample]
    sigs = [signature(s) for s in shingle_sets]
    pair_sample = pairs[:3000]
    return [
        f"| match_text (normalize + shingles), per text | {per_call(match_text, sample):.0f} µs |",
        f"| signature (64 perms), per text | {per_call(signature, shingle_sets):.0f} µs |",
        f"| band_keys (21 x 3), per signature | {per_call(band_keys, sigs):.0f} µs |",
        f"| decide, per pair (features pre-computed) |"
        f" {per_call(lambda p: decide(p.a, p.b), pair_sample):.1f} µs |",
    ]


FOLDS = 5


def fold_of(pair: Pair) -> int:
    """A pair's fold, from its id (fixed by the data, no random draw)."""
    return int.from_bytes(hashlib.sha256(pair.id.encode()).digest()[:4], "big") % FOLDS


def cross_validated(
    pairs: list[Pair], tune: Callable[[list[Pair]], Thresholds]
) -> tuple[float, float, int, int, int, list[str]]:
    """Every pair judged once by thresholds tuned without it: for each of ``FOLDS`` folds,
    tune on the other folds and judge this one; pool the verdicts. Many more accepted pairs
    than one small test split, so a tighter interval on precision. Returns precision, recall,
    TP, FP, FN and the per-fold choices."""
    tp = fp = fn = 0
    chosen = []
    for k in range(FOLDS):
        held = [p for p in pairs if fold_of(p) == k]
        th = tune([p for p in pairs if fold_of(p) != k])
        _, _, _, t, f, n = prf(held, th)
        tp, fp, fn = tp + t, fp + f, fn + n
        chosen.append(f"zh={th.zh:.2f} cont={th.containment:.2f} en={th.en:.3f}")
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / (tp + fn) if tp + fn else 0.0, tp, fp, fn, chosen


def cv_section(zh: list[Pair], en: list[Pair]) -> list[str]:
    """The report block of the cross-validated estimates, both corpora."""
    rows = []
    for name, pairs, tune in (
        ("Chinese, all 11,501 Sohu pairs", zh, lambda dev: tune_zh(dev)[0]),
        (
            "English, all 2,499 STS-B pairs",
            en,
            lambda dev: tune_en(dev, DEFAULT_THRESHOLDS)[0],
        ),
    ):
        precision, recall, tp, fp, fn, chosen = cross_validated(pairs, tune)
        low, high = wilson(tp, tp + fp)
        rows.append(
            f"| {name} | {precision:.3f} | {recall:.3f} | {tp} | {fp} | {fn} |"
            f" {low:.3f}-{high:.3f} | {'; '.join(sorted(set(chosen)))} |"
        )
    return [
        f"### Cross-validated over every pair ({FOLDS} folds)",
        "",
        "The English test split accepts only a handful of pairs, so its precision interval is"
        f" wide. Here every pair is judged once, by thresholds tuned (the same grids and rule)"
        f" on the other {FOLDS - 1} folds without it; folds are fixed by a hash of the pair id."
        " Pooled over the folds:",
        "",
        "| corpus | precision | recall | TP | FP | FN | precision 95% Wilson | settings chosen |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def section(name: str, knobs: str, th: Thresholds, dev: list[Pair], test: list[Pair]) -> list[str]:
    """The report block for one corpus."""
    dp, dr, df, *_ = prf(dev, th)
    tp_, tr, tf, tp, fp, fn = prf(test, th)
    low, high = wilson(tp, tp + fp)
    return [
        f"### {name}",
        "",
        f"Chosen: {knobs}",
        "",
        "| split | pairs | positives | precision | recall | F1 | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| dev (tuned on) | {len(dev)} | {sum(p.label for p in dev)} | {dp:.3f} | {dr:.3f} |"
        f" {df:.3f} | | | |",
        f"| **test** | {len(test)} | {sum(p.label for p in test)} | **{tp_:.3f}** | **{tr:.3f}**"
        f" | {tf:.3f} | {tp} | {fp} | {fn} |",
        "",
        f"Test precision, 95% Wilson interval: {low:.3f} to {high:.3f} ({tp + fp} accepted pairs).",
        "",
    ]


def main() -> None:
    """Run everything and write the markdown report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "stories_eval.md"))
    args = parser.parse_args()
    if not CORPUS.is_dir():
        raise SystemExit(f"corpus not found: {CORPUS}")

    start = time.perf_counter()
    zh = load("sohu2021-same-event-zh.jsonl", "label")
    en = load("stsb-headlines-en.jsonl", "label_same_story")
    load_s = time.perf_counter() - start
    zh_dev = [p for p in zh if p.split == "train"]
    zh_test = [p for p in zh if p.split == "valid"]
    en_dev = [p for p in en if p.split in ("train", "dev")]
    en_test = [p for p in en if p.split == "test"]

    zh_th, zh_log = tune_zh(zh_dev)
    # English tunes only its own threshold on top of the Chinese choice (the other knobs do
    # not act on English pairs), so the reported numbers use the final defaults.
    chosen, en_log, en_ok = tune_en(en_dev, zh_th)
    en_note = (
        ""
        if en_ok
        else f"Precision >= {TARGET + MARGIN:.2f} is not reachable on dev at any setting:"
        " the most precise one is reported."
    )
    out = [
        "# Same-story matching: evaluation",
        "",
        "Generated by `python bench/stories_eval.py` (pure Python)."
        f" Features for {2 * (len(zh) + len(en))} texts computed in {load_s:.1f} s.",
        "",
        "Texts are used as feed titles (no summary). Splits: the corpora's own (Sohu: tune on"
        " train, test on valid; STS-B: tune on train + dev, test on test), never re-drawn."
        " Tuning: Chinese, a grid over the Jaccard threshold, containment (with its Jaccard"
        " floor) and min_shared; English, the title-coverage threshold over every distinct"
        " coverage value on dev. The conflict and negation vetoes are always on (design rules,"
        f" not knobs). Rule: max dev recall with dev precision >= {TARGET + MARGIN:.2f}, else"
        " the most precise setting.",
        "",
        "## Results",
        "",
        *section(
            "Chinese: Sohu 2021 same-event (B)",
            f"`zh={zh_th.zh:.2f}`, `containment={zh_th.containment:.2f}`"
            f" (floor {zh_th.containment_floor:.2f}), `min_shared={zh_th.min_shared}`",
            chosen,
            zh_dev,
            zh_test,
        ),
        *section(
            "English: STS-B headlines, same story = score >= 4",
            f"`en={chosen.en:.3f}` (title coverage)",
            chosen,
            en_dev,
            en_test,
        ),
        *([en_note, ""] if en_note else []),
        *cv_section(zh, en),
    ]
    out += [
        "Before (word-set Jaccard for English at 0.60, Chinese Jaccard 0.70 without"
        " containment), test: English precision 0.692, recall 0.265; Chinese precision 1.000,"
        " recall 0.260.",
        "",
    ]
    # English: how precise is it against looser readings of the graded score?
    for cut in (3.0, 3.5):
        relabelled = [replace(p, label=int((p.score or 0) >= cut)) for p in en_test]
        p_, r_, *_ = prf(relabelled, chosen)
        out.append(
            f"- English test, same thresholds, label = score >= {cut}:"
            f" precision {p_:.3f}, recall {r_:.3f}"
        )
    zh_scores = [(p, decide(p.a, p.b, chosen).score) for p in zh_test]
    en_scores = [(p, decide(p.a, p.b, chosen)) for p in en_test]
    low_zh = sum(1 for p, sc in zh_scores if p.label and sc < 0.3) / sum(p.label for p in zh_test)
    near_en = sum(1 for p, d in en_scores if p.label and not d.same and d.score >= 0.75)
    near_en_neg = sum(1 for p, d in en_scores if not p.label and d.score >= 0.75 and not d.same)
    noisy = sum(1 for p in zh_dev if not p.label and p.a.title.strip() == p.b.title.strip())
    out += [
        "",
        "### What limits recall",
        "",
        f"- Word overlap is the only evidence: {low_zh:.0%} of the Chinese test positives score"
        " below 0.3 (e.g. 众星悼念吴孟达… vs 林志颖难忘吴孟达…; Sohu's same-event label is loose:"
        " different articles, or different paragraphs of one article, about one event). Such"
        " pairs need an embedding model; a lexical matcher that must stay precise cannot take"
        " them.",
        f"- Label noise on Sohu: {noisy} dev pairs with *identical* texts are"
        " labelled 'not same event'.",
        "- STS-B `score >= 4` means 'paraphrase': a headline that adds one fact ('...in Paris',"
        " 'Jerry Sandusky' vs 'Sandusky', '12 bodies' vs 'Bodies') scores 3-3.8 and counts as a"
        " negative, while the same shape with an unimportant word ('...enter crucial third"
        " day') scores 5. Word-set Jaccard cannot tell these apart (the old rule: test"
        " precision 0.69). Title coverage counts the words only one title has: with none"
        " (coverage 1.0) it is precise, with one among six shared words (0.857) it is not, with"
        " one among seven or more (0.875) it is again (see the English dev table). So English"
        " recall stops near 10%: the other positives differ by a word or more, mostly synonyms"
        " ('urges'/'calls for', 'tied'/'held') that only a thesaurus or an embedding model"
        " would pair.",
        f"- English test pairs scoring 0.75 or more but rejected: {near_en} positives,"
        f" {near_en_neg} negatives (the zone no lexical rule separates).",
        "- Conflicting numbers veto by design (two days' 早报, iOS 26.1 vs 26.2, Q2 vs Q3,"
        " V3.1 vs R2; English spelled-out numbers, weekdays and month names count too:"
        " 'Eight NATO troops' vs '4 NATO troops', '...for Wednesday' vs '...for Thursday');"
        " it also rejects some true pairs that quote different figures (a death toll that rose"
        " during the day).",
        "- Real feeds also give summaries: with both summaries present (8+ content words beyond"
        f" the title) English pairs have a second route, title+summary Jaccard >="
        f" {chosen.en_body:.2f}. These corpora have no summaries, so that route is not measured"
        " here.",
        "- Timings below come from a shared 2-core machine with other jobs running:"
        " treat them as upper bounds.",
        "",
        "### Chosen defaults (`Thresholds`)",
        "",
        f"`{chosen}`",
        "",
        "### Most precise dev settings, Chinese",
        "",
        "| zh | containment | floor | min_shared | P | R | F1 |",
        "|---|---|---|---|---|---|---|",
        *zh_log,
        "",
        "### English dev, by title-coverage threshold",
        "",
        "| en | P | R | F1 |",
        "|---|---|---|---|",
        *en_log,
        "",
        "## LSH candidate rates (test splits)",
        "",
        "Share of pairs with at least one common band key: positives should be high"
        " (candidate recall), negatives low (lookup cost); the last column is what matters:"
        " of the pairs the decision accepts, how many the lookup would have found. The first"
        " row is what the store indexes (`item_band_keys`: body 21 x 3 of 64, title 10 x 2"
        " of 20); the others are body keys alone.",
        "",
        "| num_perm | bands x rows | positives | negatives | accepted by decide (n) |",
        "|---|---|---|---|---|",
        *lsh_rates(
            zh_test + en_test,
            [(0, 0, 0), (64, 16, 4), (64, 21, 3), (64, 32, 2), (128, 42, 3)],
            chosen,
        ),
        "",
        "## Cost (one core, CPython)",
        "",
        "| step | time |",
        "|---|---|",
        *timings(
            zh_test + en_test,
            [p.a.title for p in zh_test + en_test] + [p.b.title for p in zh_test + en_test],
        ),
        "",
    ]
    Path(args.out).write_text("\n".join(out) + "\n", encoding="utf-8")
    print("\n".join(out))


if __name__ == "__main__":
    main()
