"""Run commands on a lab host: this machine (subprocess) or a remote one (ssh, batch mode).

The host reconciler (`modules.lxd_host`) does everything through a `Shell`, so bootstrapping a
remote bare-metal host runs the same steps as the local one. `lxd_query` talks to the host's
own daemon with `lxc query` (its unix socket), which works before any TLS trust exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cdk.errors import DistrilabError


class ShellError(DistrilabError):
    def __init__(self, where: str, cmd: str, code: int, output: str):
        self.code = code
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(f"{where}: '{cmd}' exited {code}" + (f":\n{tail}" if tail else ""))


class Shell(Protocol):
    name: str

    def run(
        self, cmd: Sequence[str], stdin: str | None = None, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` (argv form) on the host; raise ShellError when it fails and `check`."""


@dataclass(frozen=True)
class LocalShell:
    name: str = "local"

    def run(
        self, cmd: Sequence[str], stdin: str | None = None, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            # what a remote shell answers for a program that is not installed: the same on both shells
            proc = subprocess.CompletedProcess(list(cmd), 127, "", f"{cmd[0]}: command not found\n")
        if check and proc.returncode != 0:
            raise ShellError(self.name, shlex.join(cmd), proc.returncode, proc.stderr + proc.stdout)
        return proc


@dataclass(frozen=True)
class SshShell:
    """`ssh -o BatchMode=yes user@address -- <command>`: keys must already be in place.

    With a lab's `known_hosts` (modules/lab_secrets.py) the host's key must be the one recorded
    there (`StrictHostKeyChecking=yes`: a changed key is refused, never prompted for); `key` is
    the private key to log in with."""

    name: str
    address: str
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    strict: bool = True  # False: record a new host's key on first contact (cloud instances)

    def options(self, master: bool = False) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15"]
        if self.key:
            opts += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            # commands ride on the host's shared connection when one runs (ensure_master), else
            # connect on their own; they never become the master themselves
            sharing = ["ControlMaster=yes", "ControlPersist=60"] if master else ["ControlMaster=no"]
            opts += ["-o", f"ControlPath={self.control_path()}", *(x for o in sharing for x in ("-o", o))]
            checking = "yes" if self.strict else "accept-new"
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}",
                     "-o", f"StrictHostKeyChecking={checking}"]
        return opts

    def control_path(self) -> str:
        # short: a socket path has 108 bytes; per key and known_hosts: a connection another lab's
        # key opened must never log this one in
        tag = hashlib.sha256(f"{self.key}\0{self.known_hosts}".encode()).hexdigest()[:10]
        return os.path.join(tempfile.gettempdir(), f"distrilab-ssh-{tag}-%C")

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}" if self.user else self.address

    def ensure_master(self) -> None:
        """One connection per host, reused by every command for a minute (a reconciler runs dozens
        of short commands on a host; each would pay a handshake), started in the background with
        no pipe of ours: a master that a captured command starts (ControlMaster=auto) keeps that
        command's stdout and stderr, and the command then waits as long as the master lives,
        which other commands keep alive (an apply hung 20 minutes on it)."""
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        check = ["ssh", *self.options(), "-O", "check", self.target]
        if subprocess.run(check, timeout=15, **quiet).returncode == 0:
            return
        # failing here is fine: the command then connects on its own and says why
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["ssh", *self.options(master=True), "-f", "-N", self.target], timeout=60, **quiet)

    def argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ssh", *self.options(), self.target, "--", shlex.join(cmd)]

    def run(
        self, cmd: Sequence[str], stdin: str | None = None, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        if self.known_hosts:
            self.ensure_master()
        proc = subprocess.run(self.argv(cmd), input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ShellError(
                f"{self.name} (ssh {self.address})",
                shlex.join(cmd),
                proc.returncode,
                proc.stderr + proc.stdout,
            )
        return proc


def is_local(endpoint: Mapping[str, Any] | None) -> bool:
    """Whether a host spec's endpoint is this machine (kind `local`, the default)."""
    return ((endpoint or {}).get("kind") or "local") == "local"


def shell_for(endpoint: dict[str, Any] | None, ssh_user: str | None = None) -> Shell:
    """Local hosts get a LocalShell; every other kind is reached over ssh at its address."""
    endpoint = endpoint or {}
    if is_local(endpoint):
        return LocalShell(str(endpoint.get("name") or "local"))
    address = endpoint.get("address")
    if not address:
        raise DistrilabError(f"host {endpoint.get('name')}: needs an address to be reached over ssh")
    lab = endpoint.get("lab")
    if not lab:  # no lab: the user's own ssh set-up decides
        return SshShell(str(endpoint.get("name")), str(address), ssh_user)
    from modules import lab_secrets

    return SshShell(
        str(endpoint.get("name")),
        str(address),
        ssh_user,
        key=str(lab_secrets.ssh_key(lab, endpoint.get("ssh_key"))),
        known_hosts=str(lab_secrets.known_hosts(lab)),
        strict=endpoint.get("kind") != "aws",  # a new instance's key can only be learnt on first contact
    )


def lxd_query(shell: Shell, path: str, method: str = "GET", data: Any = None) -> Any:
    """`lxc query` on the host: the parsed JSON answer (None for an empty one); ShellError on failure."""
    cmd = ["lxc", "query", "--wait", "-X", method, path]
    if data is not None:
        cmd[3:3] = ["-d", json.dumps(data)]
    out = shell.run(cmd, timeout=300).stdout.strip()
    return json.loads(out) if out else None
