"""Peer benchmark driver: lemon24/reader updating the same farm (run with reader's own venv).

    bench/.venv-reader/bin/python bench/reader_poll.py DB PORT N

Adds the N farm feeds on first use, runs ``update_feeds(scheduled=False)`` (since 3.21 reader
skips feeds updated within the hour otherwise) and prints the entry count.
"""

from __future__ import annotations

import sys

from reader import make_reader


def main() -> None:
    db, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reader = make_reader(db)
    known = {f.url for f in reader.get_feeds()}
    for i in range(n):
        url = f"http://127.0.0.1:{port}/feed/{i}"
        if url not in known:
            reader.add_feed(url)
    reader.update_feeds(scheduled=False)
    print(reader.get_entry_counts().total)


if __name__ == "__main__":
    main()
