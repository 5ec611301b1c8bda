"""Benchmark `aggregator poll` (and the peer lemon24/reader) on a local farm of publishers.

Three phases per tool on the same farm, in the same run: cold (empty database), warm (nothing
changed: every fetch is a 304) and tick (20% of feeds gained items). Reports wall time,
feeds/s, items/s and peak RSS (the whole process tree, sampled every 50 ms).

    python bench/poll_bench.py --feeds 200 [--reader-python bench/.venv-reader/bin/python]

The reader peer needs its own venv: ``python -m venv bench/.venv-reader &&
bench/.venv-reader/bin/pip install reader sgmllib3k``. Results go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Phase:
    """One measured run."""

    tool: str
    phase: str
    feeds: int
    seconds: float
    items: int
    peak_rss_mb: float

    def row(self) -> str:
        fps = self.feeds / self.seconds if self.seconds else 0
        ips = self.items / self.seconds if self.seconds else 0
        return (
            f"| {self.tool} | {self.phase} | {self.feeds} | {self.seconds:.2f} | {fps:,.0f} | "
            f"{self.items} | {ips:,.0f} | {self.peak_rss_mb:.0f} |"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Run ``cmd``; return wall seconds, peak RSS of its process tree (MB), stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            parent = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
                peak = max(peak, rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    return elapsed, peak, out.decode()


def write_config(path: Path, port: int, n: int, db: Path, match_text: bool = False) -> None:
    lines = [
        f'database_url = "sqlite:///{db}"',
        'log_format = "json"',
        'log_level = "WARNING"',
        "[fetch]",
        "concurrency = 64",
        "per_host_concurrency = 64",
        "per_host_delay = 0.0",
        "[schedule]",
        f"batch_size = {n}",
        "[stories]",
        f"match_text = {'true' if match_text else 'false'}",
    ]
    for i in range(n):
        lines += ["[[sources]]", f'key = "pub{i}"', f'url = "http://127.0.0.1:{port}/feed/{i}"']
    lines += ["[[editions]]", 'name = "all"', 'title = "All"', "limit = 200"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def ours(phase: str, config: Path, db: Path, n: int, before: int) -> Phase:
    env = {**os.environ, "AGGREGATOR_CONFIG": str(config)}
    cmd = [str(ROOT / ".venv" / "bin" / "aggregator"), "poll"]
    seconds, peak, _ = run_measured(cmd, env, config.parent)
    with sqlite3.connect(db) as conn:
        total = conn.execute("select count(*) from items").fetchone()[0]
    return Phase("aggregator", phase, n, seconds, total - before, peak)


def reader_peer(phase: str, python: str, port: int, n: int, db: Path, before: int) -> Phase:
    cmd = [python, str(ROOT / "bench" / "reader_poll.py"), str(db), str(port), str(n)]
    seconds, peak, out = run_measured(cmd, dict(os.environ), ROOT)
    total = int(out.strip().splitlines()[-1])
    return Phase("reader", phase, n, seconds, total - before, peak)


def tick(port: int, fraction: float, seed: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_tick?fraction={fraction}&seed={seed}", method="POST"
    )
    with urllib.request.urlopen(req) as resp:
        json.load(resp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--reader-python", default=None)
    parser.add_argument(
        "--match-text", action="store_true", help="turn on [stories] match_text (text matching)"
    )
    args = parser.parse_args()
    n = args.feeds
    port = free_port()
    farm = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "farm.py"), "--feeds", str(n), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert farm.stdout is not None
        print(farm.stdout.readline().decode().strip(), file=sys.stderr)
        results: list[Phase] = []
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            config, db = work / "agg.toml", work / "agg.db"
            write_config(config, port, n, db, args.match_text)
            rdb = work / "reader.sqlite"
            seed = 1
            for phase in ("cold", "warm", "tick"):
                if phase == "tick":
                    tick(port, 0.2, seed)
                # ours
                before = 0
                if db.exists():
                    with sqlite3.connect(db) as conn:
                        before = conn.execute("select count(*) from items").fetchone()[0]
                results.append(ours(phase, config, db, n, before))
                print(results[-1].row(), file=sys.stderr)
                if args.reader_python:
                    rbefore = 0
                    if rdb.exists():
                        with sqlite3.connect(rdb) as conn:
                            rbefore = conn.execute("select count(*) from entries").fetchone()[0]
                    results.append(reader_peer(phase, args.reader_python, port, n, rdb, rbefore))
                    print(results[-1].row(), file=sys.stderr)
        print(f"\nN = {n} feeds, {os.cpu_count()} CPUs, match_text={args.match_text}\n")
        print("| tool | phase | feeds | wall s | feeds/s | items new | items/s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            print(r.row())
        if args.reader_python:
            print()
            for phase in ("cold", "warm", "tick"):
                a = next(r for r in results if r.tool == "aggregator" and r.phase == phase)
                b = next(r for r in results if r.tool == "reader" and r.phase == phase)
                print(f"- {phase}: aggregator is {b.seconds / a.seconds:.1f}x reader's speed")
    finally:
        farm.terminate()
        farm.wait()


if __name__ == "__main__":
    main()
