"""Throwaway Debian 12 machines as LXD system containers, for tests and benchmarks.

A testbed is an LXD bridge (the machines' underlay, NATed to the outside so apt, pip and npm
reach their registries) and N containers started from the `host` image (images/recipes/host.yaml:
Debian minbase built here with debootstrap, plus sshd; not a copy of this machine). Each machine
is nested-capable (`security.nesting=true`, /dev/net/tun passed in), has a static address on the
bridge, its own ssh host keys, and accepts the testbed's ssh key for root.

Uses: the fresh-machine test runs the README in one machine; the multi-host tests use three as
bare-metal `kind: ssh` hosts of one LXD cluster. What a nested host needs to run LXD (subordinate
ids inside its own map, cgroup mounts) is not done here: distrilab's installer detects and fixes
it (modules/lxd_host.py), as it would on a user's machine.

Everything a testbed creates carries `user.distrilab.testbed=<name>` (containers) or its name
(bridge), and `destroy` removes exactly that.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import shlex
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdk.errors import DistrilabError

log = logging.getLogger(__name__)

TESTBED_KEY = "user.distrilab.testbed"
RECIPE = "host"
#: testbed underlays are /24s of this range (clear of the labs' default pools 10.210-10.213)
UNDERLAY_RANGE = ipaddress.ip_network("10.240.0.0/13")
BOOT_HOOK = "/etc/distrilab/boot.d/00-network"


class TestbedError(DistrilabError):
    pass


def lxc(*args: str, stdin: str | bytes | None = None, check: bool = True, timeout: float = 600) -> str:
    proc = subprocess.run(
        ["lxc", *args], input=stdin, capture_output=True, timeout=timeout,
        text=not isinstance(stdin, bytes),
    )
    out = proc.stdout if isinstance(proc.stdout, str) else proc.stdout.decode(errors="replace")
    if check and proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        raise TestbedError(f"lxc {' '.join(args[:4])}... exited {proc.returncode}: {err.strip()}")
    return out


@dataclass(frozen=True)
class Machine:
    name: str  # container name
    address: str  # on the underlay bridge


@dataclass
class Testbed:
    name: str
    network: str
    gateway: ipaddress.IPv4Interface
    key: Path  # ssh private key root's authorized_keys holds on every machine
    machines: list[Machine] = field(default_factory=list)
    workdir: Path = Path("/tmp")

    def machine(self, index: int) -> Machine:
        return self.machines[index]


# ---------------------------------------------------------------- image


def host_image(progress: Callable[[str], None] = log.info) -> str:
    """The fingerprint of the `host` image in this machine's LXD, built and imported if needed."""
    from images.builder import ImageBuilder
    from modules.images import import_image
    from modules.lxd_client import connect

    image = ImageBuilder(progress=lambda e: progress(f"host image: [{e.layer}] {e.what}")).build(RECIPE)
    return import_image(connect(), image)


# ---------------------------------------------------------------- addresses


def used_networks() -> list[ipaddress.IPv4Network]:
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "table", "all"],
                                       capture_output=True, text=True, check=True).stdout)
    nets = []
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default" and ":" not in dst:
            nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def pick_subnet(taken: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A random free /24 of UNDERLAY_RANGE (random: parallel runs must not pick the same one)."""
    candidates = list(UNDERLAY_RANGE.subnets(new_prefix=24))
    for _ in range(200):
        net = candidates[secrets.randbelow(len(candidates))]
        if not any(net.overlaps(t) for t in taken):
            return net
    raise TestbedError(f"no free /24 in {UNDERLAY_RANGE} (routes of this machine take them all)")


# ---------------------------------------------------------------- create / destroy


def create(
    count: int,
    name: str | None = None,
    pool: str = "distrilab",
    disks: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = log.info,
) -> Testbed:
    """Start `count` machines on a fresh bridge. `disks` maps host paths to paths inside every
    machine, mounted read-only (package sources the machine kind has, never installed software)."""
    name = name or f"tb{secrets.token_hex(3)}"
    fingerprint = host_image(progress)
    subnet = pick_subnet(used_networks())
    gateway = ipaddress.ip_interface(f"{subnet[1]}/{subnet.prefixlen}")
    workdir = Path(tempfile.mkdtemp(prefix=f"distrilab-{name}-"))
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"testbed {name}", "-f", str(key)],
                   check=True)
    bed = Testbed(name, f"dl{name}"[:15], gateway, key, workdir=workdir)
    lxc("network", "create", bed.network, f"ipv4.address={gateway}", "ipv4.nat=true",
        "ipv4.dhcp=false", "ipv6.address=none", f"user.{TESTBED_KEY.split('.', 1)[1]}={name}")
    try:
        for index in range(1, count + 1):
            address = str(subnet[10 + index])
            machine = Machine(f"dl{name}-h{index}", address)
            progress(f"testbed {name}: starting {machine.name} ({address})")
            _launch(bed, machine, fingerprint, pool, disks or {})
            bed.machines.append(machine)
        for machine in bed.machines:
            wait_ssh(bed, machine)
    except BaseException:
        destroy(bed)
        raise
    return bed


def _launch(bed: Testbed, machine: Machine, fingerprint: str, pool: str, disks: Mapping[str, str]) -> None:
    lxc("init", fingerprint, machine.name, "-s", pool, "-n", bed.network,
        "-c", "security.nesting=true", "-c", f"{TESTBED_KEY}={bed.name}")
    # 0666 as on a real machine (udev): nested containers get it bind-mounted, owned by nobody
    lxc("config", "device", "add", machine.name, "tun", "unix-char", "path=/dev/net/tun", "mode=0666")
    for index, (source, path) in enumerate(sorted((disks or {}).items())):
        lxc("config", "device", "add", machine.name, f"ro{index}", "disk", f"source={source}",
            f"path={path}", "readonly=true")
    hook = "\n".join([
        "#!/bin/sh",
        "# testbed underlay address (modules/testbed.py)",
        "ip link set lo up; ip link set eth0 up",
        f"ip addr replace {machine.address}/{bed.gateway.network.prefixlen} dev eth0",
        f"ip route replace default via {bed.gateway.ip}",
        "",
    ])
    push_text(machine, BOOT_HOOK, hook, mode="0755")
    push_text(machine, "/etc/resolv.conf", resolv_conf())
    push_text(machine, "/etc/hostname", machine.name + "\n")
    push_text(machine, "/root/.ssh/authorized_keys", Path(f"{bed.key}.pub").read_text(), mode="0600")
    lxc("start", machine.name)


def resolv_conf() -> str:
    """This machine's resolvers (the machines reach them through the bridge's NAT)."""
    lines = [line for line in Path("/etc/resolv.conf").read_text().splitlines()
             if line.startswith(("nameserver", "search", "options"))]
    return "\n".join(lines) + "\n"


def push_text(machine: Machine, path: str, text: str, mode: str = "0644") -> None:
    lxc("file", "push", "-p", "--mode", mode, "-", f"{machine.name}{path}", stdin=text)


def destroy(bed: Testbed) -> None:
    """Delete the testbed's machines and bridge (only what carries its name); idempotent."""
    listed = json.loads(lxc("list", "--format", "json", check=False) or "[]")
    for item in listed:
        if item.get("config", {}).get(TESTBED_KEY) == bed.name:
            lxc("delete", "--force", item["name"], check=False, timeout=300)
    lxc("network", "delete", bed.network, check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(bed.workdir)], check=False)


# ---------------------------------------------------------------- use


def ssh_hosts(bed: Testbed) -> list[dict[str, str]]:
    """The testbed's machines as a lab file's `hosts`: h1, h2, ... of kind ssh, logged into with
    the testbed's key."""
    return [{"name": f"h{i + 1}", "kind": "ssh", "address": m.address, "ssh_key": str(bed.key)}
            for i, m in enumerate(bed.machines)]


def run(
    machine: Machine,
    script: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`sh -c script` as root in the machine, with a login-like environment plus `env`; output to
    `log_file` as it comes (long runs) or captured."""
    argv = ["lxc", "exec", machine.name, "--env", "HOME=/root",
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    argv += ["--", "sh", "-c", script]
    if log_file is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    with log_file.open("w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(argv, proc.returncode, log_file.read_text(), "")


def wait_ssh(bed: Testbed, machine: Machine, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        probe = subprocess.run(
            ["ssh", *ssh_options(bed), f"root@{machine.address}", "true"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TestbedError(f"{machine.name}: no ssh at {machine.address} after {timeout:.0f} s: "
                               f"{probe.stderr.strip()}")
        time.sleep(1)


def ssh_options(bed: Testbed) -> list[str]:
    """For the testbed's own probes only (a lab's ssh hosts pin their keys: modules/host_keys)."""
    return ["-i", str(bed.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={bed.workdir / 'known_hosts'}", "-o", "ConnectTimeout=5"]


def push_tree(machine: Machine, files: Sequence[tuple[Path, str]], dest: str) -> None:
    """Copy `files` ((path on this machine, path relative to dest)) into the machine, in one tar."""
    with tempfile.NamedTemporaryFile(suffix=".tar") as handle:
        with tarfile.open(handle.name, "w") as tar:
            for source, relative in files:
                tar.add(str(source), arcname=relative, recursive=False)
        data = Path(handle.name).read_bytes()
    where = shlex.quote(dest)
    lxc("exec", machine.name, "--", "sh", "-c", f"mkdir -p {where} && tar -x -C {where}", stdin=data)


def repository_files(root: Path) -> list[tuple[Path, str]]:
    """The repository's tracked files as they are in the work tree: a clean copy, without the
    venv, node_modules, caches or state a working copy collects."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    names = [n for n in out.decode().split("\0") if n]
    return [(root / n, n) for n in names if (root / n).exists() or (root / n).is_symlink()]


def seed_image_cache(
    machine: Machine, recipes: Sequence[str], dest: str = "/root/.cache/distrilab/images"
) -> None:
    """Copy the built layers of `recipes` (manifest, metadata and packed tarball, not the rootfs)
    into the machine's image cache: the images stage finds them cached and imports the tarball,
    so the machine does not debootstrap what this one already built."""
    from images.builder import MANIFEST, ImageBuilder, pack

    builder = ImageBuilder()
    files: list[tuple[Path, str]] = []
    for recipe in recipes:
        image = builder.build(recipe)
        pack(image)
        for layer in image.layers:
            directory = builder.cache / layer
            for name in (MANIFEST, "metadata.yaml", "image.tar.zst"):
                if (directory / name).is_file():
                    files.append((directory / name, f"{layer}/{name}"))
    push_tree(machine, list(dict.fromkeys(files)), dest)


#: package-source settings of this machine kind (pip's local mirror and constraints, npm's
#: settings): copied into a machine so it installs from the same sources; they install nothing
SOURCE_CONFIG = (
    "/etc/pip.conf", "/etc/xdg/pip/pip.conf", "/etc/xdg/pip/constraints.txt", "/root/.config/pip/pip.conf",
    "/root/.npmrc",
)


def local_certificate_authorities(certs: Path = Path("/etc/ssl/certs")) -> list[Path]:
    """CA certificates this machine trusts beyond Debian's bundle (a site's own, or its egress
    proxy's): without them a machine of this kind reaches no registry over TLS."""
    found = []
    for pem in sorted(certs.glob("*.pem")):
        target = pem.resolve()
        if target.is_file() and not str(target).startswith("/usr/share/ca-certificates/"):
            found.append(target)
    return list(dict.fromkeys(found))


def package_sources() -> tuple[dict[str, str], list[tuple[Path, str]]]:
    """(read-only disks, files) that give a machine this machine's package sources: the local
    PyPI mirror directories pip's config names, the config files themselves, and the local CA
    certificates (put where `update-ca-certificates`, run when ca-certificates installs, adds them)."""
    files = [(Path(p), p.lstrip("/")) for p in SOURCE_CONFIG if os.path.isfile(p)]
    text = "".join(source.read_text() for source, _ in files)
    authorities = local_certificate_authorities()
    files += [(ca, f"usr/local/share/ca-certificates/{ca.stem}.crt") for ca in authorities]
    disks = {p: p for p in sorted({w.rstrip("/").removeprefix("file://").removesuffix("/simple")
                                   for w in text.split() if w.startswith(("/opt/", "file:///opt/"))})
             if os.path.isdir(p)}
    return disks, files
