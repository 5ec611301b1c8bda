#!/usr/bin/env bash
# Regenerate docs/screenshot-index.png and docs/screenshot-edition.png.
#
# Runs the real daemon (`aggregator run`) fed by the fixture publishers of tests/data/e2e on
# 127.0.0.1 and photographs `/` and `/editions/all` with Debian's Chromium under Playwright.
# Needs: the venv (scripts/test.sh makes it), `pip install playwright` in it, and
# `apt-get install chromium fonts-wqy-microhei` (the CJK font, or Chinese titles are boxes).
# Never runs `playwright install`; nothing leaves 127.0.0.1.
#
#   scripts/screenshots.sh [OUTDIR]      # default: docs/
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs}
mkdir -p "$OUT"
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run scripts/test.sh first" >&2; exit 1; }
"$PY" -c 'import playwright' 2>/dev/null || {
  echo "playwright is missing: .venv/bin/pip install playwright" >&2; exit 1; }

exec "$PY" - "$OUT" <<'PY'
"""Start fixture publishers and the daemon, wait for the stories, take the screenshots."""

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, ".")
from tests.daemon import FIXTURE_DIR, Daemon, write_fixture_config  # noqa: E402
from tests.servers import FeedServer  # noqa: E402
from tests.test_browser import launch  # noqa: E402

out = Path(sys.argv[1])
shots = {"/": "screenshot-index.png", "/editions/all": "screenshot-edition.png"}
with tempfile.TemporaryDirectory(prefix="aggregator-shots-") as home, FeedServer() as server:
    server.serve_dir("/own", FIXTURE_DIR)
    config = write_fixture_config(Path(home) / "aggregator.toml", server.url("/own"))
    with Daemon.start(config) as daemon:

        def rendered() -> bool:
            response = daemon.get("/feeds/all.json")
            return response.status_code == 200 and len(response.json()["items"]) == 6

        daemon.wait_until(rendered, timeout=30, what="the all edition")
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 900, "height": 600}, color_scheme="light")
            for path, name in shots.items():
                page.goto(daemon.url(path))
                page.screenshot(path=out / name, full_page=True)
                size = (out / name).stat().st_size
                print(f"{out / name}: {size // 1024} KB")
            browser.close()
PY
