"""ssh to lab hosts: a command never becomes the shared connection's master (a master started by a
captured command keeps its pipes open, and the command then waits as long as the master lives)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modules.host_shell import LocalShell, ShellError, SshShell


def shell(tmp_path: Path) -> SshShell:
    return SshShell("h1", "192.0.2.9", "root", key=str(tmp_path / "id"), known_hosts=str(tmp_path / "kh"))


def test_commands_ride_on_a_master_and_never_start_one(tmp_path: Path) -> None:
    command = shell(tmp_path).argv(["cat", "/dev/null"])
    assert "ControlMaster=no" in command and not any("ControlPersist" in o for o in command)
    master = shell(tmp_path).options(master=True)
    assert "ControlMaster=yes" in master and "ControlPersist=60" in master
    path = shell(tmp_path).control_path()
    assert f"ControlPath={path}" in command and f"ControlPath={path}" in master


def test_the_master_is_started_detached_from_every_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], dict]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append((argv, dict(kwargs)))
        return subprocess.CompletedProcess(argv, 255 if "-O" in argv else 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    shell(tmp_path).run(["cat", "/dev/null"])
    (check, _), (start, quiet), (command, captured) = seen
    assert "-O" in check and "check" in check
    assert "-f" in start and "-N" in start and "ControlMaster=yes" in start
    assert quiet["stdin"] == quiet["stdout"] == quiet["stderr"] == subprocess.DEVNULL
    assert "ControlMaster=no" in command and captured.get("capture_output") is True


def test_a_missing_program_fails_locally_as_it_does_over_ssh() -> None:
    """A remote shell answers 127 for a program that is not installed; the local one does the same
    (the doctor reads a fresh machine without kmod or lxc through it)."""
    shell, absent = LocalShell("local"), "distrilab-no-such-program"  # not a literal: not on the list
    proc = shell.run([absent, "-n"], check=False)
    assert proc.returncode == 127 and "command not found" in proc.stderr
    with pytest.raises(ShellError, match="distrilab-no-such-program"):
        shell.run([absent])
