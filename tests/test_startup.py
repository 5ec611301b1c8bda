"""One-shot commands start quickly: an up-to-date schema is recognised without Alembic, and
``aggregator poll`` does not load the web stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from aggregator.store.db import alembic_config, head_revisions, make_engine, upgrade


def test_head_revisions_agree_with_alembic() -> None:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert head_revisions() == frozenset(heads)


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_upgrade_of_a_current_schema_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = make_engine(url)
    upgrade(engine)  # empty database: Alembic creates the schema
    engine.dispose()
    loaded = run(
        "import sys\n"
        "from aggregator.store.db import make_engine, upgrade\n"
        f"upgrade(make_engine({url!r}))\n"
        "print('alembic' in sys.modules)"
    )
    assert loaded == "False"
    fresh = f"sqlite:///{tmp_path / 'b.db'}"
    tables = run(
        "from sqlalchemy import inspect\n"
        "from aggregator.store.db import make_engine, upgrade\n"
        f"e = make_engine({fresh!r}); upgrade(e)\n"
        "print(sorted(inspect(e).get_table_names()))"
    )
    assert "'items'" in tables and "'alembic_version'" in tables


def test_the_poll_command_does_not_load_the_web_stack() -> None:
    loaded = run(
        "import sys\n"
        "import aggregator.cli\n"
        "web = ('fastapi', 'uvicorn', 'starlette', 'jinja2')\n"
        "print(sorted(m for m in web if m in sys.modules))"
    )
    assert loaded == "[]"


def test_settle_heap_freezes_what_start_up_left_alive() -> None:
    """Long-lived commands move start-up objects out of the collector's way; later garbage is
    still collected."""
    import gc
    import weakref

    from aggregator.app import settle_heap

    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the collector frees it

    survivor = Node()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0 and survivor.me is survivor
        later = Node()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
