"""Evaluate same-story matching on the shared corpora; choose thresholds; write the report.

Usage: ``python bench/stories_eval.py [--out bench/results/stories_eval.md]``

Data (``../shared/corpus/stories/``, see its PROVENANCE.md):

* ``sohu2021-same-event-zh.jsonl``: Chinese pairs, splits train / valid. No test split, so
  thresholds are tuned on ``train`` only and ``valid`` is the held-out test (never tuned on).
* ``stsb-headlines-en.jsonl``: English headline pairs, ``label_same_story`` = score >= 4.
  Tuned on ``train`` + ``dev``, reported on ``test``.

Each corpus text is used as a feed title (no summary): that is all a headline pair gives, and
the Sohu texts are headlines or lead snippets of at most 150 characters.

Tuning: a small grid over the decision parameters; the choice maximises dev recall subject to
dev precision >= TARGET (+ a small margin); if no setting reaches it, the most precise one.
"""

from __future__ import annotations

import argparse
import itertools
import json
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
    decide,
    match_text,
)

CORPUS = ROOT.parent / "shared" / "corpus" / "stories"
TARGET = 0.95
MARGIN = 0.01


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


def tune(
    dev: list[Pair], field: str, base: Thresholds | None = None
) -> tuple[Thresholds, list[str], bool]:
    """Grid-search the knobs for one script. Returns the choice, a log, and whether the dev
    precision target was reached. The conflict veto stays on: it is a design rule (trap
    cases: two days' digests, two versions), not a tuning knob. With ``base``, only the
    script's own threshold is tuned and the shared knobs are taken from ``base``."""
    sims = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85]
    if base is None:
        grid = list(itertools.product(sims, [0.8, 0.9, 1.01], [1, 2, 3]))  # containment 1.01=off
    else:
        grid = [(sim, base.containment, base.min_shared) for sim in sims]
    rows = []
    for sim, cont, shared in grid:
        th = replace(base or DEFAULT_THRESHOLDS, containment=cont, min_shared=shared)
        th = replace(th, zh=sim) if field == "zh" else replace(th, en=sim)
        p, r, f, *_ = prf(dev, th)
        rows.append((p, r, f, th))
    ok = [row for row in rows if row[0] >= TARGET + MARGIN]
    best = (
        max(ok, key=lambda x: (x[1], x[0], x[3].min_shared))
        if ok
        else max(rows, key=lambda x: (x[0], x[1]))
    )
    log = [
        f"| {getattr(th, field):.2f} | {th.containment:.2f} | {th.min_shared} |"
        f" {p:.3f} | {r:.3f} | {f:.3f} |"
        for p, r, f, th in sorted(rows, key=lambda x: (-x[0], -x[1]))
        if p >= 0.9 or th is best[3]
    ][:12]
    return best[3], log, bool(ok)


def lsh_rates(pairs: list[Pair], configs: list[tuple[int, int, int]], th: Thresholds) -> list[str]:
    """How often pairs share at least one band key, per LSH config: positives, negatives, and
    the pairs ``decide`` accepts (the matches the lookup must not lose)."""
    accepted = [decide(p.a, p.b, th).same for p in pairs]
    lines = []
    for num_perm, bands, rows in configs:
        hit = {0: 0, 1: 0, 2: 0}
        total = {0: 0, 1: 0, 2: 0}
        for p, acc in zip(pairs, accepted, strict=True):
            ka = set(band_keys(signature(p.a.body_features.shingles, num_perm), bands, rows))
            kb = set(band_keys(signature(p.b.body_features.shingles, num_perm), bands, rows))
            shared = bool(ka & kb)
            total[p.label] += 1
            hit[p.label] += shared
            if acc:
                total[2] += 1
                hit[2] += shared
        lines.append(
            f"| {num_perm} | {bands} x {rows} | {hit[1] / total[1]:.3f} |"
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


def section(name: str, th: Thresholds, field: str, dev: list[Pair], test: list[Pair]) -> list[str]:
    """The report block for one corpus."""
    dp, dr, df, *_ = prf(dev, th)
    tp_, tr, tf, tp, fp, fn = prf(test, th)
    return [
        f"### {name}",
        "",
        f"Chosen: `{field}={getattr(th, field):.2f}`, `containment={th.containment:.2f}`,"
        f" `min_shared={th.min_shared}`, `veto_conflicts={th.veto_conflicts}`",
        "",
        "| split | pairs | positives | precision | recall | F1 | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| dev (tuned on) | {len(dev)} | {sum(p.label for p in dev)} | {dp:.3f} | {dr:.3f} |"
        f" {df:.3f} | | | |",
        f"| **test** | {len(test)} | {sum(p.label for p in test)} | **{tp_:.3f}** | **{tr:.3f}**"
        f" | {tf:.3f} | {tp} | {fp} | {fn} |",
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

    zh_th, zh_log, _ = tune(zh_dev, "zh")
    # The shared knobs (containment, min_shared) come from the larger Chinese dev set; English
    # then tunes only its own threshold, so the reported numbers use the final defaults.
    en_th, en_log, en_ok = tune(en_dev, "en", zh_th)
    en_note = ""
    if not en_ok:
        # STS-B's score >= 4 is a paraphrase label, not a same-story label: many pairs scored
        # 3-3.8 report one event. Tune instead on score >= 3 ("roughly equivalent, some
        # important information differs"), the loosest reading that is still one story.
        lenient = [replace(p, label=int((p.score or 0) >= 3.0)) for p in en_dev]
        en_th, en_log, _ = tune(lenient, "en", zh_th)
        en_note = (
            f"Precision >= {TARGET + MARGIN:.2f} is not reachable on dev with the score >= 4"
            " label at any setting, so the English threshold was tuned on dev with"
            " label = score >= 3 instead (same rule: max recall at precision >= "
            f"{TARGET + MARGIN:.2f}); the table reports the strict label."
        )
    chosen = en_th
    out = [
        "# Same-story matching: evaluation",
        "",
        "Generated by `python bench/stories_eval.py` (pure Python, no numpy)."
        f" Features for {2 * (len(zh) + len(en))} texts computed in {load_s:.1f} s.",
        "",
        "Texts are used as feed titles (no summary). Tuning: grid over similarity threshold,"
        " containment and min_shared (conflict veto always on; English tunes only its threshold);"
        " pick max dev recall with dev precision >="
        f" {TARGET + MARGIN:.2f}, else the most precise setting.",
        "",
        "## Results",
        "",
        *section("Chinese: Sohu 2021 same-event (B)", zh_th, "zh", zh_dev, zh_test),
        *section("English: STS-B headlines, same story = score >= 4", en_th, "en", en_dev, en_test),
        en_note,
        "",
    ]
    # English: how precise is it against a looser reading of the graded score?
    for cut in (3.0, 3.5):
        relabelled = [replace(p, label=int((p.score or 0) >= cut)) for p in en_test]
        p_, r_, *_ = prf(relabelled, en_th)
        out.append(
            f"- English test, same thresholds, label = score >= {cut}:"
            f" precision {p_:.3f}, recall {r_:.3f}"
        )
    zh_scores = [(p, decide(p.a, p.b, chosen).score) for p in zh_test]
    en_scores = [(p, decide(p.a, p.b, chosen).score) for p in en_test]
    low_zh = sum(1 for p, sc in zh_scores if p.label and sc < 0.3) / sum(p.label for p in zh_test)
    low_en = sum(1 for p, sc in en_scores if p.label and sc < 0.3) / sum(p.label for p in en_test)
    noisy = sum(1 for p in zh_dev if not p.label and p.a.title.strip() == p.b.title.strip())
    hi_neg = sum(1 for p, sc in en_scores if not p.label and sc >= chosen.en)
    hi_neg_3 = sum(
        1 for p, sc in en_scores if not p.label and sc >= chosen.en and (p.score or 0) >= 3
    )
    out += [
        "",
        "### Why recall is limited",
        "",
        f"- Word overlap is the only evidence: {low_zh:.0%} of the Chinese and {low_en:.0%} of"
        " the English test positives score below 0.3 (e.g. 众星悼念吴孟达… vs"
        " 林志颖难忘吴孟达…; 'PCB appoints Waqar Younis as head coach' vs 'Waqar Younis back"
        " as Pakistan coach'). Sohu's same-event label is loose: different articles, or"
        " different paragraphs of one article, about one event. Such pairs need an embedding"
        " model; a lexical matcher that must stay precise cannot take them.",
        f"- Label noise on Sohu: {noisy} dev pairs with *identical* texts are"
        " labelled 'not same event'.",
        "- STS-B `score >= 4` means 'paraphrase', not 'same story': of the"
        f" {hi_neg} English test negatives at or above the threshold, {hi_neg_3} have"
        " score >= 3 (e.g. 'Jerry Sandusky found guilty…' vs 'Sandusky found guilty…',"
        " 3.8). No threshold reaches precision 0.95 against that label; against"
        " score >= 3 the chosen threshold does.",
        "- Conflicting numbers veto by design (two days' 早报, iOS 26.1 vs 26.2, Q2 vs Q3,"
        " V3.1 vs R2); it also rejects some true pairs that quote different figures"
        " (a death toll that rose during the day).",
        "- Timings below come from a shared 2-core machine with other jobs running:"
        " treat them as upper bounds.",
        "",
        "### Chosen defaults (`Thresholds`)",
        "",
        f"`{chosen}`",
        "",
        "### Most precise dev settings, Chinese",
        "",
        "| zh | containment | min_shared | P | R | F1 |",
        "|---|---|---|---|---|---|",
        *zh_log,
        "",
        "### Most precise dev settings, English (label used for tuning, see above)",
        "",
        "| en | containment | min_shared | P | R | F1 |",
        "|---|---|---|---|---|---|",
        *en_log,
        "",
        "## LSH candidate rates (test splits, title shingles)",
        "",
        "Share of pairs with at least one common band key: positives should be high"
        " (candidate recall), negatives low (lookup cost); the last column is what matters:"
        " of the pairs the decision accepts, how many the lookup would have found.",
        "",
        "| num_perm | bands x rows | positives | negatives | accepted by decide (n) |",
        "|---|---|---|---|---|",
        *lsh_rates(
            zh_test + en_test,
            [(64, 16, 4), (64, 21, 3), (64, 32, 2), (128, 42, 3)],
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
