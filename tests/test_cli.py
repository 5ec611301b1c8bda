"""The CLI contract: command names, exit codes, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app

OPML = Path(__file__).resolve().parent / "data" / "opml" / "reader-export.opml"


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "agg.toml"
    path.write_text(
        f'database_url = "{db_url}"\n'
        'log_format = "text"\n'
        "[[sources]]\n"
        'key = "cfg"\n'
        'url = "https://config.example/feed.xml"\n'
        "[[editions]]\n"
        'name = "all"\n'
        'title = "All"\n',
        encoding="utf-8",
    )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # rich wraps at 80 columns


def test_check_config_ok_and_bad(config: Path, tmp_path: Path) -> None:
    code, out = run("check-config", "--config", str(config))
    assert code == 0 and "ok: 1 sources, editions all" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[sources]]\nurl = "gopher://x"\n[[editions]]\nname="a"\ntitle="A"\n')
    code, out = run("check-config", "--config", str(bad))
    assert code == 2
    assert f"{bad}: sources[0].url: must be an http(s) URL" in out


def test_sources_add_list_remove(config: Path) -> None:
    code, out = run(
        "--config",
        str(config),
        "sources",
        "add",
        "https://new.example/rss",
        "--name",
        "New",
        "--tag",
        "zh",
    )
    assert code == 0 and "added new-example" in out
    code, out = run("--config", str(config), "sources", "add", "https://new.example/rss")
    assert code == 1 and "error" in out.lower()
    code, out = run("--config", str(config), "sources", "list")
    assert code == 0 and "new-example" in out and "cfg" in out
    code, out = run("--config", str(config), "sources", "remove", "new-example")
    assert code == 0 and "removed new-example" in out
    code, out = run("--config", str(config), "sources", "remove", "new-example")
    assert code == 1 and "no source with key 'new-example'" in out
    code, out = run("--config", str(config), "sources", "add", "ftp://x/y")
    assert code == 2 and "must be an http(s) URL" in out


def test_opml_import_then_export_round_trip(config: Path, tmp_path: Path) -> None:
    code, out = run("--config", str(config), "sources", "import-opml", str(OPML))
    assert code == 0 and out.startswith("imported ")
    imported = int(out.split()[1])
    assert imported > 0
    code, out = run("--config", str(config), "sources", "import-opml", str(OPML))
    assert code == 0 and "imported 0 sources" in out
    target = tmp_path / "out.opml"
    code, _ = run("--config", str(config), "sources", "export-opml", "-o", str(target))
    assert code == 0
    exported = target.read_text(encoding="utf-8")
    assert "https://config.example/feed.xml" in exported
    assert exported.count("xmlUrl=") == imported + 1


def test_export_unknown_edition_and_format(config: Path) -> None:
    code, out = run("--config", str(config), "export", "nope")
    assert code == 2 and "no edition named 'nope' (have all)" in out
    code, out = run("--config", str(config), "export", "all", "--format", "xml")
    assert code == 2 and "--format: must be one of rss, atom, json" in out


def test_export_empty_edition_to_file(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "all.atom"
    code, _ = run("--config", str(config), "export", "all", "-f", "atom", "-o", str(target))
    assert code == 0
    assert target.read_bytes().startswith(b"<?xml")


def test_stories_reindex_defaults_to_what_pruning_keeps(config: Path) -> None:
    code, _ = run("--config", str(config), "sources", "list")  # creates and migrates the DB
    assert code == 0
    code, out = run("--config", str(config), "stories", "reindex")
    assert code == 0, out
    assert out == "re-indexed 0 stories updated in the last 6 days (0 band rows)"  # 2 x 3 days
    code, out = run("--config", str(config), "stories", "reindex", "--days", "40")
    assert code == 0 and "in the last 40 days" in out
    code, out = run("--config", str(config), "stories", "reindex", "--days", "-1")
    assert code == 2 and "--days" in out and "greater than or equal to 0" in out
