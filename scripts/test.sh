#!/usr/bin/env bash
# Set up a virtualenv with the test extras (first run only) and run the test suite.
# PostgreSQL tests run when AGGREGATOR_TEST_POSTGRES_URL is set, e.g.
#   AGGREGATOR_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/ruff check aggregator tests bench
exec .venv/bin/python -m pytest -q "$@"
