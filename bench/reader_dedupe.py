"""Peer driver: lemon24/reader's own duplicate tests on text pairs (run from its venv).

Usage: ``bench/.venv-reader/bin/python bench/reader_dedupe.py < pairs.jsonl > verdicts.jsonl``

Input lines: ``{"a": "...", "b": "..."}``. Output lines: ``{"title": bool, "text": bool}``:

* ``title``: reader's title grouper, the test of its ``.dedupe.once.title`` mode (and the
  first step of its default mode): the two titles tokenize to the same words.
* ``text``: reader's text-similarity test ``is_duplicate`` applied to the two texts directly,
  without the 48-token minimum its default mode demands of entry content (headlines are never
  that long, so the default mode would call no pair a duplicate): the most generous use of
  reader's similarity on these corpora.

reader only compares entries of one feed; this measures its tests, not a cross-feed feature
it does not have. Nothing here touches the network.
"""

from __future__ import annotations

import json
import sys

from reader.plugins.entry_dedupe import is_duplicate, tokenize, tokenize_title


def main() -> None:
    """Read pairs from stdin, write verdicts to stdout."""
    for line in sys.stdin:
        pair = json.loads(line)
        a, b = pair["a"], pair["b"]
        verdict = {
            "title": tokenize_title(a) == tokenize_title(b),
            "text": bool(is_duplicate(tokenize(a), tokenize(b))),
        }
        sys.stdout.write(json.dumps(verdict) + "\n")


if __name__ == "__main__":
    main()
