"""`distrilab image build|list|rm` through the real CLI entry point (no debootstrap: errors and cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.cli import main


def test_missing_input_names_the_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTRILAB_CACHE", str(tmp_path))
    assert main(["image", "build", "aca"]) == 1
    err = capsys.readouterr().err
    assert "needs input" in err and "--input" in err and "--without" in err


def test_bad_input_flag_and_unknown_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "build", "server", "--input", "nopath"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    assert main(["image", "build", "nosuch"]) == 1
    assert "known recipes:" in capsys.readouterr().err


def test_list_and_rm_work_on_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTRILAB_CACHE", str(tmp_path))
    layer = tmp_path / ("server-" + "a" * 64)
    layer.mkdir()
    manifest = {"hash": "a" * 64, "name": "server", "parent": None, "build_seconds": 1.0, "skipped": []}
    (layer / "build.json").write_text(json.dumps(manifest))
    assert main(["image", "list"]) == 0
    assert "aaaaaaaaaaaa" in capsys.readouterr().out
    assert main(["image", "rm", "server"]) == 0
    assert not layer.exists()
    assert main(["image", "rm", "server"]) == 2
    assert "no cached layers of recipe 'server'" in capsys.readouterr().err
