"""The on-disk cache (opensim_pinn.cache): where it is, what ``opensim-pinn cache info|clear`` say and do."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from opensim_pinn import cli
from opensim_pinn.cache import cache_folder, cache_info, clear_cache, reused


def test_folder_follows_the_override_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENSIM_PINN_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_folder() == tmp_path / "home" / ".cache" / "opensim-pinn"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset (XDG specification)
    assert cache_folder() == tmp_path / "home" / ".cache" / "opensim-pinn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # relative paths are ignored (XDG specification)
    assert cache_folder() == tmp_path / "home" / ".cache" / "opensim-pinn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "opensim-pinn"
    monkeypatch.setenv("OPENSIM_PINN_CACHE", str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"


def _fill(folder: Path) -> dict[str, Path]:
    """Entries as the package names them, a partial write, and files it did not write."""
    files = {"model": folder / "models" / ("a" * 24 + ".json"), "trial": folder / "trials" / ("b" * 24 + ".npz"),
             "paths": folder / "paths" / ("c" * 20 + ".json"),
             "partial": folder / "trials" / f".{'b' * 24}.npz.123.deadbeef.partial",
             "foreign_top": folder / "notes.txt", "foreign_sub": folder / "paths" / "my_fit.json",
             "foreign_folder": folder / "other" / ("d" * 24 + ".json")}
    for name, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (100 if name in ("model", "trial", "paths") else 7))
    return files


def test_info_counts_entries_by_kind(tmp_path):
    _fill(tmp_path)
    info = cache_info(tmp_path)
    assert {kind: value["entries"] for kind, value in info["kinds"].items()} == {
        "models": 1, "trials": 1, "paths": 1, "partial": 1}
    assert info["entries"] == 4 and info["bytes"] == 307 and info["other_files"] == 3


def test_clear_removes_only_the_packages_own_files(tmp_path):
    files = _fill(tmp_path)
    result = clear_cache(tmp_path)
    assert result["removed"] == 4 and result["kept"] == 3
    assert {name for name, path in files.items() if path.exists()} == {"foreign_top", "foreign_sub",
                                                                        "foreign_folder"}
    assert not (tmp_path / "models").exists() and not (tmp_path / "trials").exists()  # emptied: removed
    assert (tmp_path / "paths").is_dir()  # holds a foreign file: kept


def test_clear_removes_an_emptied_cache_folder(tmp_path):
    folder = tmp_path / "cache"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / ("e" * 24 + ".json")).write_text("{}")
    assert clear_cache(folder)["removed"] == 1
    assert not folder.exists()


def test_cache_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENSIM_PINN_CACHE", str(tmp_path / "cache"))
    _fill(tmp_path / "cache")
    assert cli.main(["cache", "info"]) == 0
    text = capsys.readouterr().out
    assert str(tmp_path / "cache") in text and "1 prepared trials" in text and "3 other file(s)" in text
    assert cli.main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 4
    assert cli.main(["cache", "clear"]) == 0
    assert "removed 4 entries" in capsys.readouterr().out
    assert cli.main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0
    assert (tmp_path / "cache" / "notes.txt").is_file()


def test_reuse_is_logged_once_per_folder(tmp_path, caplog):
    entry = tmp_path / "unique_cache_for_this_test" / "trials" / ("f" * 24 + ".npz")
    with caplog.at_level(logging.INFO, logger="opensim_pinn.cache"):
        reused(entry, "inverse dynamics")
        reused(entry.with_name("0" * 24 + ".npz"), "inverse dynamics")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(messages) == 1 and str(entry.parent.parent) in messages[0]


def test_a_second_run_says_it_reuses_the_cache(builtin_project, tmp_path, monkeypatch, caplog):
    """The first 'inspect' with a motion fits the paths (cached); the second says where it took them from."""
    pytest.importorskip("opensim")
    monkeypatch.setenv("OPENSIM_PINN_CACHE", str(tmp_path / "fresh_cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["inspect", str(builtin_project["model"]), "--motion", str(builtin_project["motion"])]
    with caplog.at_level(logging.INFO):
        assert cli.main(argv) == 0
        assert not [r for r in caplog.records if "reusing results computed earlier" in r.getMessage()]
        assert cli.main(argv) == 0
    assert [r for r in caplog.records if f"from {tmp_path / 'fresh_cache'}" in r.getMessage()]
    assert cache_info(tmp_path / "fresh_cache")["kinds"]["paths"]["entries"] == 1
