"""Before anything is created on a lab's ssh hosts: can we reach them, is each the machine we
met before, does our key log in, and can it hold the nodes placed on it?

`up` runs this for every `kind: ssh` host in parallel and refuses with one error listing every
problem (host, what is wrong, what to do) before terraform starts:
- unreachable: nothing answers ssh at the address;
- host key: recorded on first contact in the lab's known_hosts (modules/lab_secrets.py); a key
  that differs later is refused unless the lab pins the new one (`hosts[i].host_key`), which is
  how a reinstalled machine is accepted;
- login: the lab's key (or `ssh_key`) must log in (`BatchMode`: never a password);
- capacity: the nodes placed on a host must fit its `capacity`, or, when the lab gives none,
  what its memory (MEMORY_PER_NODE_MIB per node beyond a reserve) and its cores
  (NODES_PER_CORE each) hold, whichever is less.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cdk.errors import DistrilabError
from cdk.model import Host, Lab
from modules import lab_secrets
from modules.file_lock import locked, replace_text
from modules.host_shell import SshShell, shell_for

#: host memory one node costs, measured on this machine (DESIGN: ~15-17 MB per idle node, its
#: lxc monitor included), with room for what the node runs
MEMORY_PER_NODE_MIB = 48
#: memory kept for the host itself and its LXD daemon
RESERVED_MIB = 1024


#: nodes one core carries: the 996-node clos-1000 lab came up, idled and passed its check on a
#: 2-core machine (bench/results/scale.json); OVS switches cost more, memory bounds them first
NODES_PER_CORE = 500


@dataclass(frozen=True)
class HostFacts:
    cores: int
    memory_mib: int

    def by_memory(self) -> int:
        return max(0, (self.memory_mib - RESERVED_MIB) // MEMORY_PER_NODE_MIB)

    def node_capacity(self) -> int:
        return min(self.by_memory(), self.cores * NODES_PER_CORE)

    def describe(self) -> str:
        """Why the host holds node_capacity() nodes, in the user's terms."""
        return (f"~{self.node_capacity()} nodes fit its {self.memory_mib} MiB at {MEMORY_PER_NODE_MIB} MiB "
                f"each and its {self.cores} core(s) at {NODES_PER_CORE} each")


class PreflightError(DistrilabError):
    def __init__(self, problems: Sequence[tuple[str, str, str]]):
        self.problems = list(problems)
        lines = [f"  {host}: {what}\n    hint: {hint}" for host, what, hint in problems]
        super().__init__("the lab's hosts are not ready (nothing was created):\n" + "\n".join(lines))


# ---------------------------------------------------------------- host keys


def scan_keys(address: str, timeout: int = 5) -> list[str]:
    """The host's public keys as known_hosts lines (`address type base64`); [] when unreachable."""
    proc = subprocess.run(["ssh-keyscan", "-T", str(timeout), "-t", "ed25519,ecdsa,rsa", address],
                          capture_output=True, text=True, timeout=timeout * 4)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip() and not line.startswith("#")]


def fingerprint(line: str) -> str:
    """`SHA256:...` of one known_hosts line."""
    out = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line + "\n", capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


def recorded(known_hosts: Path, address: str) -> list[str]:
    return [line for line in known_hosts.read_text().splitlines() if line.split(" ", 1)[0] == address]


def write_keys(known_hosts: Path, address: str, lines: Sequence[str]) -> None:
    """Replace `address`'s lines, keeping every other host's.

    Read-modify-write under a lock (pre-flight checks hosts in threads, and another distrilab
    may check the same lab): unlocked, hosts checked at once overwrote each other's keys and
    their logins failed "Host key verification failed"."""
    with locked(known_hosts):
        kept = [line for line in known_hosts.read_text().splitlines() if line.split(" ", 1)[0] != address]
        replace_text(known_hosts, "".join(f"{line}\n" for line in [*kept, *lines]))


def check_host_key(
    host: Host, known_hosts: Path, scan: Callable[[str], list[str]] = scan_keys,
    fingerprint_of: Callable[[str], str] = fingerprint,
) -> tuple[str, str, str] | None:
    """None when the host's key is the recorded (or pinned) one, recording it on first contact;
    else the problem (host, what, hint)."""
    assert host.address
    scanned = scan(host.address)
    if not scanned:
        return (host.name, f"unreachable: no ssh answer at {host.address}:22",
                "check the address, that sshd runs, and that this machine can route to it")
    prints = {fingerprint_of(line): line for line in scanned}
    if host.host_key:
        if host.host_key not in prints:
            return (host.name, f"host key is not the pinned {host.host_key} (it offers {', '.join(prints)})",
                    "check that this is the right machine; pin its current key with host_key")
        write_keys(known_hosts, host.address, [prints[host.host_key]])
        return None
    before = recorded(known_hosts, host.address)
    if not before:
        write_keys(known_hosts, host.address, scanned)  # first contact: remember this machine
        return None
    known = {fingerprint_of(line) for line in before}
    if known & set(prints):
        return None
    offered = sorted(prints)[0]
    return (host.name, f"host key CHANGED since first contact (recorded {', '.join(sorted(known))}, "
            f"now {', '.join(sorted(prints))})",
            f"if the machine was reinstalled, pin its new key: hosts[].host_key: {offered}")


# ---------------------------------------------------------------- login and capacity


def read_facts(shell: SshShell) -> HostFacts:
    out = shell.run(["sh", "-c", "nproc; grep MemTotal /proc/meminfo"], timeout=60).stdout.split()
    return HostFacts(cores=int(out[0]), memory_mib=int(out[2]) // 1024)


def check_host(
    lab: Lab, host: Host, counts: dict[str, int], read: dict[str, int]
) -> list[tuple[str, str, str]]:
    endpoint = {"name": host.name, "kind": host.kind, "address": host.address, "lab": lab.name,
                "ssh_key": host.ssh_key}
    problem = check_host_key(host, lab_secrets.known_hosts(lab.name))
    if problem:
        return [problem]
    shell = shell_for(endpoint, host.ssh_user)
    assert isinstance(shell, SshShell)
    probe = subprocess.run(shell.argv(["true"]), capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        user = host.ssh_user or "root"
        pub = f"{shell.key}.pub"
        return [(host.name, f"ssh login as {user}@{host.address} with {shell.key} failed: "
                 f"{probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode}",
                 f"add {pub} to {user}'s ~/.ssh/authorized_keys there, or name the right key in ssh_key")]
    placed = counts.get(host.name, 0)
    facts = read_facts(shell)
    read[host.name] = facts.node_capacity()
    capacity = host.capacity if host.capacity_given else facts.node_capacity()
    if placed > capacity:
        source = "its capacity" if host.capacity_given else facts.describe()
        return [(host.name, f"{placed} nodes placed there, more than {source}",
                 "add hosts, shrink the lab, or set hosts[].capacity if you know better")]
    return []


def preflight(lab: Lab) -> bool:
    """Check every ssh host of the lab in parallel; PreflightError listing all problems.

    What each host holds is kept for the lab (modules/lab_secrets.py), and every command places
    the nodes of hosts without a `capacity` by it: True when it changed (the caller loads the lab
    again, the placement may differ)."""
    hosts = [h for h in lab.hosts if h.kind == "ssh"]
    if not hosts:
        return False
    counts: dict[str, int] = {}
    for host_name in lab.placement.assignment.values():
        counts[host_name] = counts.get(host_name, 0) + 1
    read: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        found = list(pool.map(lambda h: check_host(lab, h, counts, read), hosts))
    problems = [p for items in found for p in items]
    if problems:
        raise PreflightError(problems)
    wanted = {h.name: read[h.name] for h in hosts if not h.capacity_given and h.name in read}
    if wanted and wanted != lab_secrets.read_capacities(lab.name):
        lab_secrets.save_capacities(lab.name, wanted)
        return True
    return False
