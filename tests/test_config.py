"""Config loading: the shipped default works; bad lines fail naming file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import load_settings, parse_duration
from aggregator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = """
[[sources]]
url = "https://example.com/feed.xml"

[[editions]]
name = "all"
title = "All"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agg.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_shipped_config_is_valid_and_polls_ithome_and_six_more() -> None:
    s = load_settings(str(ROOT / "config" / "aggregator.toml"), env={})
    urls = [src.url for src in s.sources]
    assert "https://www.ithome.com/rss/" in urls
    assert len(urls) >= 7
    langs = {src.language for src in s.sources}
    assert {"zh-cn", "en"} <= langs
    assert {e.name for e in s.editions} >= {"all", "ai"}
    assert s.database_url.startswith("sqlite:///data/")
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8080)


def test_defaults_fill_in_source_key_and_name(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL), env={})
    assert s.sources[0].key == "example-com"
    assert s.sources[0].name == "example-com"
    assert s.sources[0].interval_seconds is None


def test_env_overrides_scalars(tmp_path: Path) -> None:
    env = {
        "AGGREGATOR_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "AGGREGATOR_SERVER_PORT": "9001",
        "AGGREGATOR_FETCH_MAX_BODY_BYTES": "2048",
    }
    s = load_settings(write(tmp_path, MINIMAL), env=env)
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.server.port == 9001
    assert s.fetch.max_body_bytes == 2048


def test_env_config_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    s = load_settings(None, env={"AGGREGATOR_CONFIG": path})
    assert s.config_path == path


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"environment AGGREGATOR_SERVER_PORT: server\.port"):
        load_settings(write(tmp_path, MINIMAL), env={"AGGREGATOR_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[server]\nprot = 1\n", r"server\.prot: Unexpected keyword"),
        ('[[sources]]\nurl = "ftp://x/y"\n', r"sources\[1\]\.url: must be an http\(s\) URL"),
        ('[[sources]]\nurl = "https://example.com/feed.xml"\n', r"sources\[1\]\.url: duplicate"),
        ('[[sources]]\nurl = "https://b.com/f"\nweight = "heavy"\n', r"sources\[1\]\.weight"),
        ('[[sources]]\nurl = "https://b.com/f"\ninterval = "soon"\n', r"sources\[1\]\.interval"),
        ('[[sources]]\nname = "no url"\n', r"sources\[1\]\.url: missing"),
        (
            '[[editions]]\nname = "x"\ntitle = "X"\n[[editions.include]]\nfields = ["body"]\n'
            'keywords = ["a"]\n',
            r"editions\[1\]\.include\[0\]\.fields: unknown field 'body'",
        ),
        (
            '[[editions]]\nname = "x"\ntitle = "X"\n[[editions.include]]\nfields = ["title"]\n'
            'regex = "("\n',
            r"editions\[1\]\.include\[0\]\.regex: invalid regular expression",
        ),
        ('[[editions]]\nname = "all"\ntitle = "again"\n', r"editions\[1\]\.name: duplicate"),
        (
            '[[editions]]\nname = "x"\ntitle = "X"\nlead = "loudest"\n',
            r"editions\[1\]\.lead: use one of weight, earliest, latest, fullest, got 'loudest'",
        ),
        ('database_url = "mysql://x"\n', r"database_url: only sqlite"),
    ],
)
def test_bad_config_lines_name_file_key_and_problem(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = write(
        tmp_path,
        extra + MINIMAL
        if extra.startswith("[server]") or extra.startswith("database")
        else MINIMAL + extra,
    )
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert str(info.value).startswith(path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(str(tmp_path / "nope.toml"), env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[[sources]\n"), env={})


def test_durations() -> None:
    assert parse_duration("15m", "x") == 900
    assert parse_duration("2h", "x") == 7200
    assert parse_duration(30, "x") == 30
    with pytest.raises(ConfigError, match="x: expected a duration"):
        parse_duration("fortnight", "x")
    with pytest.raises(ConfigError, match="positive"):
        parse_duration(0, "x")


def test_env_list_override_and_bad_network(tmp_path: Path) -> None:
    env = {
        "AGGREGATOR_ADMIN_ALLOW_NETWORKS": "127.0.0.0/8, 10.1.0.0/16",
        "AGGREGATOR_ADMIN_TOKEN": "t",
    }
    s = load_settings(write(tmp_path, MINIMAL), env=env)
    assert s.admin.allow_networks == ("127.0.0.0/8", "10.1.0.0/16")
    assert s.admin.token == "t"
    with pytest.raises(ConfigError, match="allow_networks"):
        load_settings(write(tmp_path, MINIMAL), env={"AGGREGATOR_ADMIN_ALLOW_NETWORKS": "nonsense"})
