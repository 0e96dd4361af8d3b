"""Where the workspace is: --home, $MMSEARCH_HOME, a legacy ./mmsearch-data, else per-user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings, default_home, home_origin, load_settings

runner = CliRunner()


@pytest.fixture
def user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake per-user data dir, an empty current folder and no $MMSEARCH_HOME."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MMSEARCH_HOME", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path / "xdg" / "mmsearch"


def test_the_default_is_the_per_user_data_folder(user_data: Path, capsys) -> None:
    assert default_home() == user_data
    assert load_settings().home == user_data
    assert home_origin(None)[1] == "per-user default"
    assert capsys.readouterr().err == ""


def test_explicit_settings_home_still_wins(user_data: Path, tmp_path: Path) -> None:
    assert Settings(home=tmp_path / "mine").home == tmp_path / "mine"


def test_a_legacy_folder_in_the_current_folder_is_used_with_a_note(user_data: Path, capsys) -> None:
    Path("mmsearch-data").mkdir()
    settings = load_settings()
    assert settings.home == Path("mmsearch-data").resolve()
    assert settings.home.is_absolute()
    err = capsys.readouterr().err
    assert "found in the current folder" in err and str(user_data) in err


def test_env_beats_the_legacy_folder_and_home_beats_env(
    user_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    Path("mmsearch-data").mkdir()
    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path / "env"))
    assert load_settings().home == tmp_path / "env"
    assert home_origin(None)[1] == "$MMSEARCH_HOME"
    assert load_settings(tmp_path / "opt").home == tmp_path / "opt"
    assert home_origin(tmp_path / "opt")[1] == "--home"
    assert capsys.readouterr().err == ""


def test_collections_says_where_it_looked_and_keeps_json_valid(user_data: Path) -> None:
    result = runner.invoke(app, ["collections", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert f"workspace: {user_data} (per-user default)" in " ".join(result.stderr.split())


def test_the_demo_says_where_it_wrote(settings: Settings) -> None:
    from io import StringIO

    from rich.console import Console

    from mmsearch.commands.demo_flow import run_demo

    out = Console(file=StringIO(), width=400)
    run_demo(settings, "demo", console=out, progress_console=Console(file=StringIO()))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    home = settings.home.resolve()
    assert f"is in the workspace {home}" in text
    assert f"--collection demo --home {home}" in text
