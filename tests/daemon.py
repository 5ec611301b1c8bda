"""Run the real ``aggregator run`` daemon in a subprocess for tests that need a live server.

Usage::

    with Daemon.start(config_path) as daemon:          # waits for /healthz
        daemon.wait_until(lambda: b"DeepSeek" in daemon.get("/feeds/all.rss").content)
        body = daemon.get("/feeds/all.json").json()
    # leaving the block sends SIGTERM and asserts a clean exit (code 0) within 10 s

The daemon listens on a free 127.0.0.1 port picked here; ``AGGREGATOR_SERVER_PORT`` and
``AGGREGATOR_SERVER_BASE_URL`` are set for it so the feed self links and the HTML page's
autodiscovery links point at that port whatever the config file says. Its output (JSON logs)
goes to ``daemon.log`` next to the config; failures quote the tail of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

#: The fixture publishers of ``tests/data/e2e``: key, name, file, language, weight.
FIXTURE_DIR = Path(__file__).resolve().parent / "data" / "e2e"
FIXTURE_SOURCES = (
    ("ithome", "IT之家", "ithome.rss.xml", "zh-cn", 2.0),
    ("verge", "The Verge", "verge.atom.xml", "en", 1.0),
    ("blog", "JSON Blog", "blog.json", "en", 1.0),
)
#: How long ``aggregator run`` may take to answer /healthz (migrations, parse pool warm-up).
START_TIMEOUT = 30.0
#: How long the daemon may take to exit after SIGTERM.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_METRIC_LINE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition -> ``{(name, frozenset(labels)): value}`` (comments skipped)."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if match is None or line.startswith("#"):
            continue
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def write_fixture_config(
    path: Path,
    publisher_base: str,
    *,
    database_url: str | None = None,
    interval: int = 1,
) -> Path:
    """Write a daemon config polling the three ``tests/data/e2e`` fixtures every ``interval`` s.

    ``publisher_base`` is where a :class:`tests.servers.FeedServer` serves that directory
    (``server.url("/own")``). Editions: ``all`` (everything) and ``ai`` (AI keywords). The
    schedule ticks every second without jitter and parsing is inline, so changes show quickly.
    """
    base = publisher_base.rstrip("/")
    db = database_url or f"sqlite:///{path.parent / 'aggregator.db'}"
    lines = [
        f'database_url = "{db}"',
        "parse_workers = 0",
        'log_format = "json"',
        "[schedule]",
        "tick_seconds = 1",
        "jitter = 0.0",
        "min_interval = 1",
        "[fetch]",
        "per_host_delay = 0.0",
        "per_host_concurrency = 8",
    ]
    for key, name, file, language, weight in FIXTURE_SOURCES:
        lines += [
            "[[sources]]",
            f'key = "{key}"',
            f'name = "{name}"',
            f'url = "{base}/{file}"',
            f'language = "{language}"',
            f"weight = {weight}",
            f"interval = {interval}",
        ]
    lines += [
        "[[editions]]",
        'name = "all"',
        'title = "Everything"',
        'description = "Every story from every source."',
        "limit = 1000",
        "max_age_days = 100000",
        "[[editions]]",
        'name = "ai"',
        'title = "AI"',
        'description = "Stories about AI and large models."',
        "max_age_days = 100000",
        "[[editions.include]]",
        'fields = ["title", "summary"]',
        'keywords = ["AI", "LLM", "大模型"]',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Daemon:
    """One running ``python -m aggregator run`` process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path, log: IO[bytes]):
        self.proc = proc
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False)

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        config: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> Daemon:
        """Start ``aggregator run --config config`` on a free port and wait for ``/healthz``.

        ``env`` adds or overrides environment variables (``AGGREGATOR_*`` settings overrides).
        """
        port = free_port()
        full_env = {
            **os.environ,
            "PYTHONWARNINGS": "error",
            "AGGREGATOR_SERVER_PORT": str(port),
            "AGGREGATOR_SERVER_BASE_URL": f"http://127.0.0.1:{port}",
            **(env or {}),
        }
        log_path = config.parent / "daemon.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aggregator", "run", "--config", str(config)),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=config.parent,
        )
        daemon = cls(proc, port, log_path, log)
        try:
            daemon.wait_until(daemon._healthy, timeout=timeout, what="/healthz to answer 200")
        except BaseException:
            daemon.kill()
            raise
        return daemon

    def _healthy(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then assert the process exits with code 0 within ``timeout`` seconds."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"daemon did not exit within {timeout} s of SIGTERM\n{self.log_tail()}"
                ) from None
            took = time.monotonic() - started
            assert code == 0, f"daemon exited with {code} after SIGTERM\n{self.log_tail()}"
            assert took <= timeout
        else:
            code = self.proc.returncode
            self._log.close()
            raise AssertionError(f"daemon had already exited with {code}\n{self.log_tail()}")
        self._log.close()

    def kill(self) -> None:
        """Kill the process without ceremony (cleanup after a failed start)."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:  # the test already failed: do not mask its error with a shutdown assertion
            with contextlib.suppress(AssertionError):
                self.stop()

    # ----------------------------------------------------------------- helpers

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on the daemon."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """GET ``path`` from the daemon (no proxies from the environment)."""
        return self.client.get(path, headers=dict(headers or {}))

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The daemon's ``/metrics``, parsed (see :func:`parse_metrics`)."""
        response = self.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0.0 when the series does not exist yet)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the daemon's output, for failure messages."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no daemon log)"

    def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 20.0,
        interval: float = 0.1,
        what: str = "condition",
    ) -> None:
        """Poll ``predicate`` until it is true; fail (quoting the daemon log) on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode} while waiting for {what}\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n{self.log_tail()}"
                )
            time.sleep(interval)
