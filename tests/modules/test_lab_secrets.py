"""A lab's ssh key: made once, whole, even when every host's stage asks for it at once."""

from __future__ import annotations

import multiprocessing
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from modules import lab_secrets


def test_stages_asking_at_once_share_one_whole_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTRILAB_SECRETS", str(tmp_path))
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        keys = set(pool.map(lab_secrets.ssh_key, ["lab-a"] * 16))
    key = tmp_path / "lab-a" / "id_ed25519"
    assert keys == {key} and oct(key.stat().st_mode & 0o777) == "0o600"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == Path(f"{key}.pub").read_text().split()[:2]
    assert lab_secrets.ssh_key("lab-a") == key
    assert lab_secrets.ssh_key("lab-a", "/given/key") == Path("/given/key")
