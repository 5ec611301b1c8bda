"""Peer benchmark driver: lemon24/reader updating the same farm (run with reader's own venv).

    bench/.venv-reader/bin/python bench/reader_poll.py DB PORT N [WORKERS]

Adds the N farm feeds on first use, runs ``update_feeds(scheduled=False)`` (since 3.21 reader
skips feeds updated within the hour otherwise) with reader's default ``workers=1`` unless told
otherwise, and prints one JSON line: the entry count and the seconds ``update_feeds`` took
(the cycle, without interpreter start-up and imports).
"""

from __future__ import annotations

import json
import sys
import time

from reader import make_reader


def main() -> None:
    db, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    reader = make_reader(db)
    known = {f.url for f in reader.get_feeds()}
    for i in range(n):
        url = f"http://127.0.0.1:{port}/feed/{i}"
        if url not in known:
            reader.add_feed(url)
    started = time.perf_counter()
    reader.update_feeds(scheduled=False, workers=workers)
    cycle = time.perf_counter() - started
    print(json.dumps({"entries": reader.get_entry_counts().total, "cycle_seconds": cycle}))


if __name__ == "__main__":
    main()
