"""Run the real `aggregator` CLI in a subprocess, as a user would, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m aggregator ARGS`` with ``config``; fails the test on a non-zero exit.

    Warnings are errors in the child too, and the terminal is wide so tables do not fold.
    """
    root = str(Path(__file__).resolve().parents[1])  # so configs can name test modules
    path = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root,
        "AGGREGATOR_CONFIG": str(config),
        "PYTHONWARNINGS": "error",
        "COLUMNS": "1000",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
    )
    assert proc.returncode == 0, f"aggregator {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return proc
