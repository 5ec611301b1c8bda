#!/usr/bin/env bash
# Set up a virtualenv (first run only) and start the daemon on its embedded default:
# SQLite under ./data/, the shipped config/aggregator.toml, HTTP on 127.0.0.1:8080.
# Extra arguments go to `aggregator run` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/aggregator run "$@"
