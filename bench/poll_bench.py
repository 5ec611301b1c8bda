"""Benchmark `aggregator poll` against the peer lemon24/reader on a local farm of publishers.

For each N: a fresh farm (``farm.py``) and, per tool, three phases in the same run: cold (empty
database), warm (nothing changed: every fetch is a 304) and tick (20% of feeds gained items).
The two tools alternate phase by phase on the same farm, so both see the same load.

Per run it reports:

* **cycle**: the poll itself, measured inside the process (``aggregator poll --json``:
  ``Pipeline.poll_all``, edition render included; reader: ``update_feeds``);
* **process**: wall time of the whole command, interpreter start-up, imports, schema check and
  config sync included (the cycle plus a fixed start-up cost);
* feeds/s and items/s over the cycle;
* peak memory of the process tree (parse workers and forkserver included): the sum of RSS,
  sampled every 0.1 s (counts pages shared between processes once per process), and the sum
  of PSS, sampled every 0.5 s (shares them out: the memory the tree really uses; the targets
  are judged on it). PSS costs the sampler about 2 ms of CPU per process read, so it is read
  less often (``PSS_EVERY``): at 10 Hz it took a sixth of a core from our runs;
* the 1-minute load average just before the run (it lags: it mostly shows the previous run)
  and **other CPU s**: CPU seconds that processes other than the tool, the farm and this script
  used during the run (0 on a quiet machine; on a shared one, how much the run was disturbed).

    python bench/poll_bench.py --feeds 200 2000            # the README table, one command
    python bench/poll_bench.py --feeds 200 2000 --repeat 3 # best of 3 runs per phase

On a shared machine other jobs only ever slow a run down, so ``--repeat K`` runs every phase K
times (tools alternating) and reports the fastest run of each tool (with the highest memory
peak seen in any of its runs).

The reader peer needs its own venv: ``python -m venv bench/.venv-reader &&
bench/.venv-reader/bin/pip install reader sgmllib3k`` (used by default when present).
Results go to stdout as Markdown (``--output FILE`` also writes them to a file).

Fairness: every farm feed is on 127.0.0.1, so our per-host politeness (default 2 requests at a
time, 1 s apart, per host) would serialise the whole farm behind one "host"; the config written
here lifts it for the farm (``per_host_concurrency = 64``, ``per_host_delay = 0``), as a user
would for a host they own. reader has no per-host limit at all and runs with its default
``workers=1`` (``--reader-workers`` changes it; on loopback more threads do not help it, its
parse is CPU-bound).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
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
DEFAULT_READER = ROOT / "bench" / ".venv-reader" / "bin" / "python"
PHASES = ("cold", "warm", "tick")


@dataclass
class Run:
    """One measured run of one tool in one phase."""

    tool: str
    phase: str
    feeds: int
    cycle: float  # seconds inside the process
    process: float  # seconds of the whole command
    items: int
    rss_mb: float  # peak of the summed RSS of the process tree
    pss_mb: float  # peak of the summed PSS of the process tree
    load: float  # 1-minute load average before the run
    other_cpu: float  # CPU seconds used by unrelated processes during the run
    render: float | None = None  # seconds of the cycle spent re-rendering editions (ours)

    def row(self) -> str:
        fps = self.feeds / self.cycle if self.cycle else 0
        ips = self.items / self.cycle if self.cycle else 0
        render = f"{self.render:.2f}" if self.render is not None else "-"
        return (
            f"| {self.tool} | {self.phase} | {self.feeds} | {self.cycle:.2f} | {render} | "
            f"{self.process:.2f} | {fps:,.0f} | {self.items} | {ips:,.0f} | {self.rss_mb:.0f} | "
            f"{self.pss_mb:.0f} | {self.load:.2f} | {self.other_cpu:.1f} |"
        )


HEADER = (
    "| tool | phase | feeds | cycle s | of which render s | process s | feeds/s | items new "
    "| items/s | peak RSS MB (sum) | peak PSS MB (sum) | load before | other CPU s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Seconds between samples of the tree's RSS and CPU (cheap: ``/proc/PID/statm``, ``stat``).
SAMPLE_SECONDS = 0.1
#: Every how many samples PSS is read as well. PSS walks every page table of every process
#: (``smaps_rollup``, about 2 ms of CPU per process of ~75 MB here): at 10 Hz over five
#: processes that took a sixth of a core from a CPU-bound run of ours, a few percent of one
#: core from reader's single process.
PSS_EVERY = 5


def _tree_memory(tree: list[psutil.Process], with_pss: bool) -> tuple[float, float]:
    """Summed RSS and (when ``with_pss``, else 0) PSS, in bytes, of the processes of ``tree``."""
    rss = pss = 0.0
    for proc in tree:
        try:
            info = proc.memory_full_info() if with_pss else proc.memory_info()
        except psutil.AccessDenied:
            info = proc.memory_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss) if with_pss else 0.0
    return rss, pss


_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")
_farm: psutil.Process | None = None  # the farm of the current N (its CPU is not "other")


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores)."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in _BUSY)


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def run_measured(
    cmd: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, float, float, str, float, float]:
    """Run ``cmd``; return wall seconds, peak RSS and PSS of its tree (MB), stdout, load and
    the CPU seconds other processes used meanwhile."""
    load = os.getloadavg()[0]
    me = psutil.Process()
    busy0, farm0, me0 = _busy_seconds(), _cpu(_farm), _cpu(me)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak_rss = peak_pss = 0.0
    tree_cpu: dict[int, float] = {}  # last CPU time seen per process of the tree
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        count = 0
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss, pss = _tree_memory(tree, with_pss=count % PSS_EVERY == 0)
                for member in tree:
                    tree_cpu[member.pid] = max(tree_cpu.get(member.pid, 0.0), _cpu(member))
            except psutil.Error:
                rss = pss = 0.0
            peak_rss, peak_pss = max(peak_rss, rss / 2**20), max(peak_pss, pss / 2**20)
            count += 1
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    ours_cpu = sum(tree_cpu.values()) + (_cpu(_farm) - farm0) + (_cpu(me) - me0)
    other = max(0.0, _busy_seconds() - busy0 - ours_cpu)
    return elapsed, peak_rss, peak_pss, out.decode(), load, other


def write_config(path: Path, port: int, n: int, db: Path, match_text: bool = False) -> None:
    lines = [
        f'database_url = "sqlite:///{db}"',
        'log_format = "json"',
        'log_level = "WARNING"',
        "[fetch]",
        "concurrency = 64",
        "per_host_concurrency = 64",  # every farm feed is on 127.0.0.1 (see the module doc)
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


def count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


def ours(phase: str, config: Path, db: Path, n: int) -> Run:
    before = count(db, "items")
    env = {**os.environ, "AGGREGATOR_CONFIG": str(config)}
    cmd = [str(ROOT / ".venv" / "bin" / "aggregator"), "poll", "--json"]
    seconds, rss, pss, out, load, other = run_measured(cmd, env, config.parent)
    summary = json.loads(out.strip().splitlines()[-1])
    if summary["failed"]:
        raise SystemExit(f"aggregator: {summary['failed']} sources failed in the {phase} phase")
    return Run(
        "aggregator",
        phase,
        n,
        summary["cycle_seconds"],
        seconds,
        count(db, "items") - before,
        rss,
        pss,
        load,
        other,
        summary["render_seconds"],
    )


def reader_peer(phase: str, python: str, port: int, n: int, db: Path, workers: int) -> Run:
    before = count(db, "entries")
    script = str(ROOT / "bench" / "reader_poll.py")
    cmd = [python, script, str(db), str(port), str(n), str(workers)]
    seconds, rss, pss, out, load, other = run_measured(cmd, dict(os.environ), ROOT)
    summary = json.loads(out.strip().splitlines()[-1])
    return Run(
        "reader", phase, n, summary["cycle_seconds"], seconds, summary["entries"] - before,
        rss, pss, load, other,
    )  # fmt: skip


def tick(port: int, fraction: float, seed: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_tick?fraction={fraction}&seed={seed}", method="POST"
    )
    with urllib.request.urlopen(req) as resp:
        json.load(resp)


def best(runs: list[Run]) -> Run:
    """The fastest of repeated runs (other load only ever slows a run down), with the highest
    memory peak seen in any of them."""
    fastest = min(runs, key=lambda r: r.cycle)
    fastest.rss_mb = max(r.rss_mb for r in runs)
    fastest.pss_mb = max(r.pss_mb for r in runs)
    return fastest


def bench(
    n: int, reader: str | None, reader_workers: int, match_text: bool, repeat: int = 1
) -> tuple[list[Run], dict[tuple[int, str], list[float]]]:
    """All phases for both tools on a fresh farm of ``n`` feeds, each run ``repeat`` times.

    Repeated cold runs each start from an empty database (the first one's is kept for the
    next phases); repeated ticks each change another 20% of the feeds. The tools alternate
    run by run, so both meet the same load.
    """
    port = free_port()
    farm = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "farm.py"), "--feeds", str(n), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    global _farm
    _farm = psutil.Process(farm.pid)
    runs: list[Run] = []
    paired: dict[tuple[int, str], list[float]] = {}  # reader's cycle / ours, run by run
    try:
        assert farm.stdout is not None
        print(farm.stdout.readline().decode().strip(), file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            config, db, rdb = work / "agg.toml", work / "agg.db", work / "reader.sqlite"
            write_config(config, port, n, db, match_text)
            for phase in PHASES:
                mine: list[Run] = []
                theirs: list[Run] = []
                for k in range(repeat):
                    if phase == "tick":
                        tick(port, 0.2, k + 1)
                    cfg, adb, bdb = config, db, rdb
                    if phase == "cold" and k > 0:  # a fresh, throw-away database each time
                        cfg, adb = work / f"agg{k}.toml", work / f"agg{k}.db"
                        bdb = work / f"reader{k}.sqlite"
                        write_config(cfg, port, n, adb, match_text)
                    mine.append(ours(phase, cfg, adb, n))
                    print(mine[-1].row(), file=sys.stderr, flush=True)
                    if reader:
                        theirs.append(reader_peer(phase, reader, port, n, bdb, reader_workers))
                        print(theirs[-1].row(), file=sys.stderr, flush=True)
                    for extra in (adb, bdb) if adb != db else ():
                        extra.unlink(missing_ok=True)
                if theirs:
                    paired[(n, phase)] = [
                        t.cycle / m.cycle for m, t in zip(mine, theirs, strict=True)
                    ]
                runs.append(best(mine))
                if theirs:
                    runs.append(best(theirs))
    finally:
        farm.terminate()
        farm.wait()
    return runs, paired


def summary(runs: list[Run], paired: dict[tuple[int, str], list[float]] | None = None) -> list[str]:
    """Ratios per N and phase, and the issue's targets, as Markdown lines.

    ``paired``: reader's cycle over ours in each repeated run, both tools having met the same
    farm state; listed beside the best-against-best ratio, which can pair different runs.
    """
    lines: list[str] = []
    sizes = sorted({r.feeds for r in runs})
    get = {(r.tool, r.phase, r.feeds): r for r in runs}
    for n in sizes:
        for phase in PHASES:
            a, b = get.get(("aggregator", phase, n)), get.get(("reader", phase, n))
            if a and b:
                each = (paired or {}).get((n, phase), [])
                by_run = (
                    f" (run by run: {', '.join(f'{r:.1f}x' for r in each)}; "
                    f"median {statistics.median(each):.1f}x)"
                    if len(each) > 1
                    else ""
                )
                lines.append(
                    f"- N = {n}, {phase}: aggregator is {b.cycle / a.cycle:.1f}x reader's speed "
                    f"over the cycle{by_run}, {b.process / a.process:.1f}x over the whole process"
                )
    big = max(sizes)
    checks: list[tuple[str, bool]] = []
    a, b = get.get(("aggregator", "cold", big)), get.get(("reader", "cold", big))
    if a and b:
        ratio = b.cycle / a.cycle
        checks.append((f"cold >= 3x reader at N = {big}: {ratio:.1f}x", ratio >= 3))
    w = get.get(("aggregator", "warm", big))
    if w:
        fps = w.feeds / w.cycle
        checks.append((f"warm >= 2,000 feeds/s at N = {big}: {fps:,.0f} feeds/s", fps >= 2000))
    a, b = get.get(("aggregator", "tick", big)), get.get(("reader", "tick", big))
    if a and b:
        ratio = b.cycle / a.cycle
        checks.append((f"changed tick >= 5x reader at N = {big}: {ratio:.1f}x", ratio >= 5))
    ours_runs = [r for r in runs if r.tool == "aggregator"]
    peak = {n: max(r.pss_mb for r in ours_runs if r.feeds == n) for n in sizes}
    checks.append(
        (f"peak PSS < 200 MB at N = {big}: {peak[big]:.0f} MB", peak[big] < 200),
    )
    if len(sizes) > 1:
        small = min(sizes)
        grows = peak[big] > 1.25 * peak[small]
        checks.append(
            (
                f"memory not growing with N: {peak[small]:.0f} MB at N = {small}, "
                f"{peak[big]:.0f} MB at N = {big}",
                not grows,
            )
        )
    lines.append("")
    for text, ok in checks:
        lines.append(f"- {'met' if ok else 'NOT met'}: {text}")
    return lines


def main() -> None:
    # a SIGTERM (e.g. a timeout) still runs the finally blocks that stop the farm
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, nargs="+", default=[200])
    parser.add_argument(
        "--reader-python",
        default=str(DEFAULT_READER) if DEFAULT_READER.exists() else None,
        help="python of a venv with reader installed (default bench/.venv-reader if present)",
    )
    parser.add_argument("--no-reader", action="store_true", help="measure aggregator only")
    parser.add_argument("--reader-workers", type=int, default=1)
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each phase K times, report the fastest"
    )
    parser.add_argument(
        "--match-text", action="store_true", help="turn on [stories] match_text (text matching)"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    reader = None if args.no_reader else args.reader_python
    started = time.perf_counter()
    runs: list[Run] = []
    paired: dict[tuple[int, str], list[float]] = {}
    for n in args.feeds:
        got, pairs = bench(n, reader, args.reader_workers, args.match_text, max(args.repeat, 1))
        runs += got
        paired |= pairs
    lines = [
        f"{os.cpu_count()} CPUs, match_text={args.match_text}, reader workers="
        f"{args.reader_workers}, best of {max(args.repeat, 1)}, "
        f"total {time.perf_counter() - started:.0f} s",
        "",
        HEADER,
        *(r.row() for r in runs),
        "",
        *summary(runs, paired),
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
