"""Run a shell script inside a lab container, as its root, and collect exit code and output.

When the container runs on this machine (a host of kind `local`), the script enters the
container's namespaces with `nsenter`: one fork, no daemon round trip. An LXD exec with recorded
output costs the daemon ~0.07 CPU-s (operation, two log files to fetch and delete); on 2 cores the
fabric stage of a 50-node lab spent 7 of its 11 CPU-seconds there. Containers on other hosts,
and local ones whose init cannot be found, go through LXD's exec API (`lxd_rest.sh`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modules import lxd_rest as rest
from modules.host_shell import is_local

#: the PATH a command gets inside a node, as with LXD exec
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MONITOR = "[lxc monitor] "


class NodeShell:
    """`sh(instance, script)` for the containers of one host, reached through `client`."""

    def __init__(self, client: Any, local: bool, proc: Path = Path("/proc")):
        self.client = client
        self.local = local  # the containers run on this machine: nsenter reaches them
        self.proc = proc
        self._pids: dict[str, int] = {}
        self.nsenter_works = True

    @classmethod
    def for_endpoint(cls, client: Any, endpoint: dict[str, Any] | None) -> NodeShell:
        return cls(client, local=is_local(endpoint))

    def sh(self, instance: str, script: str, timeout: int = 120) -> rest.ExecResult:
        pid = self.init_pid(instance) if self.local and self.nsenter_works else None
        if pid is None:
            return rest.sh(self.client, instance, script, timeout=timeout)
        # --root/--wd without a path: the target's own (a path would resolve on the host)
        argv = ["nsenter", f"--target={pid}", "--all", "--root", "--wd", "sh", "-c", script]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env={"PATH": NODE_PATH, "HOME": "/root"})
        except subprocess.TimeoutExpired as err:
            raise rest.LxdCallError(f"'sh -c ...' in {instance} still running after {timeout}s") from err
        if proc.returncode != 0 and proc.stderr.startswith("nsenter: reassociate"):
            # a host that is itself a container may not enter every namespace of its own
            # containers (seen: 'ns/time' on a nested LXD): LXD's exec works there, if slower
            self.nsenter_works = False
            return rest.sh(self.client, instance, script, timeout=timeout)
        command = rest.command_text(["sh", "-c", script])
        return rest.ExecResult(command, proc.returncode, proc.stdout, proc.stderr)

    def has_file(self, instance: str, path: str) -> bool | None:
        """Whether `path` exists in the container, read from the host through its init's root
        (no process); None when that cannot be seen from here (another host, not running)."""
        pid = self.init_pid(instance) if self.local else None
        if pid is None:
            return None
        try:
            return (self.proc / str(pid) / "root" / path.lstrip("/")).exists()
        except OSError:
            return None

    def init_pid(self, instance: str) -> int | None:
        """The container's init pid, from a cache checked against /proc (a restart changes it)."""
        pid = self._pids.get(instance)
        if pid is None or not _is_init_of(self.proc, pid, instance):
            self._pids.update(container_init_pids([instance], self.proc))
            pid = self._pids.get(instance)
        return pid

    def prime(self, instances: Sequence[str]) -> None:
        """Find many containers' inits in one scan of /proc (instead of one scan per miss)."""
        if self.local:
            self._pids.update(container_init_pids(instances, self.proc))


def container_init_pids(names: Sequence[str], proc: Path = Path("/proc")) -> dict[str, int]:
    """Init pids of running LXD containers, from one scan of /proc (local host only).

    Each container's init is the child of its `[lxc monitor] <lxd dir> <name>` process; LXD's
    /state call would also give it, but computes disk and network usage first (~0.1 s each).
    """
    wanted = set(names)
    monitors: dict[int, str] = {}
    parents: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = _cmdline(entry)
            parents[int(entry.name)] = _parent(entry)
        except OSError:  # the process ended while we looked
            continue
        if cmdline.startswith(_MONITOR):
            name = cmdline.rsplit(" ", 1)[-1]
            if name in wanted:
                monitors[int(entry.name)] = name
    return {monitors[ppid]: pid for pid, ppid in sorted(parents.items()) if ppid in monitors}


def _is_init_of(proc: Path, pid: int, instance: str) -> bool:
    try:
        monitor = _cmdline(proc / str(_parent(proc / str(pid))))
    except OSError:
        return False
    return monitor.startswith(_MONITOR) and monitor.rsplit(" ", 1)[-1] == instance


def _cmdline(entry: Path) -> str:
    return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def _parent(entry: Path) -> int:
    return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])

