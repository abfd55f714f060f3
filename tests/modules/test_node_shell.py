"""modules/node_shell.py: finding a container's init in /proc, and which way a script goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules import lxd_rest as rest
from modules.node_shell import NodeShell, container_init_pids
from tests.fakes.lxd import FakeLxd


def fake_process(proc: Path, pid: int, ppid: int, cmdline: bytes) -> None:
    d = proc / str(pid)
    d.mkdir()
    (d / "cmdline").write_bytes(cmdline)
    (d / "stat").write_text(f"{pid} (some (odd) name) S {ppid} 0 0\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    fake_process(tmp_path, 10, 1, b"[lxc monitor] /var/lib/lxd/containers dl-a-leaf-01")
    fake_process(tmp_path, 11, 10, b"/usr/bin/tini\0--\0/usr/lib/distrilab/init")
    fake_process(tmp_path, 20, 1, b"[lxc monitor] /var/lib/lxd/containers dl-other")
    fake_process(tmp_path, 21, 20, b"/sbin/init")
    fake_process(tmp_path, 30, 11, b"runsvdir")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_container_init_pids_from_a_proc_tree(proc: Path) -> None:
    assert container_init_pids(["dl-a-leaf-01", "dl-a-missing"], proc=proc) == {"dl-a-leaf-01": 11}


def test_a_cached_pid_is_checked_and_found_again_after_a_restart(proc: Path) -> None:
    shell = NodeShell(None, local=True, proc=proc)
    shell.prime(["dl-a-leaf-01", "dl-other"])
    assert shell.init_pid("dl-a-leaf-01") == 11
    # the container restarts: old init gone, a new monitor and init; pid 11 now belongs to another
    for pid in (10, 11):
        for f in (proc / str(pid)).iterdir():
            f.unlink()
        (proc / str(pid)).rmdir()
    fake_process(proc, 40, 1, b"[lxc monitor] /var/lib/lxd/containers dl-a-leaf-01")
    fake_process(proc, 41, 40, b"/usr/bin/tini")
    fake_process(proc, 11, 20, b"sleep 100")  # a reused pid under another container's monitor
    assert shell.init_pid("dl-a-leaf-01") == 41
    assert shell.init_pid("dl-a-gone") is None


def test_remote_containers_and_local_ones_without_an_init_go_through_lxd_exec(proc: Path) -> None:
    fake = FakeLxd(exec_handler=lambda name, argv: (3, "out", "err"))
    fake.add_instance("dl-a-srv")
    for shell in (NodeShell(fake, local=False, proc=proc), NodeShell(fake, local=True, proc=proc)):
        result = shell.sh("dl-a-srv", "echo hi")
        assert (result.returncode, result.stdout, result.stderr) == (3, "out", "err")
    assert [argv for _, argv in fake.execs] == [["sh", "-c", "echo hi"]] * 2
    with pytest.raises(rest.LxdCallError, match="exited 3"):
        NodeShell(fake, local=False, proc=proc).sh("dl-a-srv", "false").check()


def test_local_hosts_are_the_ones_on_the_unix_socket() -> None:
    assert NodeShell.for_endpoint(None, {"name": "local", "kind": "local"}).local
    assert not NodeShell.for_endpoint(None, {"name": "h2", "kind": "ssh", "address": "192.0.2.7"}).local


def test_has_file_looks_through_the_inits_root_and_knows_what_it_cannot_see(proc: Path) -> None:
    script = proc / "11" / "root" / "etc" / "distrilab" / "boot.d" / "50-fabric.sh"
    script.parent.mkdir(parents=True)
    (proc / "21" / "root" / "etc").mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    shell = NodeShell(None, local=True, proc=proc)
    assert shell.has_file("dl-a-leaf-01", "/etc/distrilab/boot.d/50-fabric.sh") is True
    assert shell.has_file("dl-other", "/etc/distrilab/boot.d/50-fabric.sh") is False
    assert shell.has_file("dl-a-stopped", "/etc/distrilab/boot.d/50-fabric.sh") is None
    assert NodeShell(None, local=False, proc=proc).has_file("dl-a-leaf-01", "/etc/hostname") is None


def test_a_host_that_cannot_enter_its_containers_namespaces_falls_back_to_lxd_exec(
    proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from modules import node_shell

    calls: list[list[str]] = []

    def refused(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)  # what a nested LXD host sees
        failure = "nsenter: reassociate to namespace 'ns/time' failed\n"
        return subprocess.CompletedProcess(argv, 1, "", failure)

    monkeypatch.setattr(node_shell.subprocess, "run", refused)
    fake = FakeLxd(exec_handler=lambda name, argv: (0, "hi\n", ""))
    fake.add_instance("dl-a-leaf-01")
    shell = NodeShell(fake, local=True, proc=proc)
    assert shell.sh("dl-a-leaf-01", "echo hi").stdout == "hi\n"
    assert shell.sh("dl-a-leaf-01", "echo hi").stdout == "hi\n"
    assert len(calls) == 1 and not shell.nsenter_works  # tried once, then LXD exec only
    assert len(fake.execs) == 2
