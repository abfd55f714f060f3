"""Stage "cluster": an LXD daemon that answers on each host, the shared storage pool, kernel limits.

Owns: the LXD installation and daemon of a host, the storage pool `distrilab` (shared by every
lab on the host) and the sysctls containers need at scale (fs.inotify.*, raised, never lowered,
persisted in /etc/sysctl.d/60-distrilab.conf).

Apply, in phases, each step only when needed and saying what it does:
  0. install the packages of every `host` program the host lacks (cdk/programs.py, the list
     `.ci/setup` installs from too; nftables before the daemon first starts, or bridge creation
     fails) and raise the sysctls;
  1. on a nested host (itself a container), make it able to hold containers: give root a
     subordinate id range inside the host's own, and mount the cgroup hierarchies missing
     under /sys/fs/cgroup (see "Nested hosts");
  2. start the daemon: the system's service manager when there is one, else
     `lxd --group root --logfile /var/log/lxd-distrilab.log` detached, then `lxd waitready`;
  3. (multi-host labs) bootstrap the LXD cluster on the first host, join it from the others
     with a `cluster_token` preseed (see "Remote hosts" below);
  4. create the storage pool: btrfs on a loop file where the kernel has btrfs and the daemon
     offers it (copy-on-write containers) and loop devices exist, `dir` otherwise. An existing
     pool is reused as is;
  5. (multi-host labs) trust the lab's client certificate (first host) and pin the cluster's
     certificate for the reconcilers' TLS (every host).

Destroy leaves the daemon, the shared pool and the sysctls: infrastructure other labs on the
host use; a lab's own objects are removed by the later stages' destroys. A multi-host lab's
destroy releases what it set up: its certificate leaves the trust store, and a host it joined
to its cluster leaves it (its LXD state cleared, as it was before the join).

Everything runs through a `modules.host_shell.Shell`, so a remote host (kind ssh/aws) goes
through exactly the same steps over ssh. `python -m modules.lxd_host ensure` runs the local
steps without a lab (the set-up script and CI call it).

AWS hosts (see "AWS hosts" below): their addresses exist only once terraform created the
instances, after synth wrote this stage's spec, so they come from the provisioner's environment
(stacks/lab_stack.py sets it); distrilab logs in as the image's user and runs commands with
`sudo -n`, waits for cloud-init's ready marker first, and the cluster listens on private addresses.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cdk.aws import READY_MARKER, SSH_USER
from cdk.errors import DistrilabError, ReconcileError
from cdk.programs import probe_script
from cdk.stages.cluster import POOL, SYSCTLS
from modules.host_shell import Shell, ShellError, is_local, lxd_query, shell_for
from modules.lxd_client import LxdUnreachableError, custom_lxd_dir, local_hint, local_socket
from modules.reconcile import Action, Reconciler

log = logging.getLogger(__name__)
OWNER = "lxd_host"

#: the program groups every lab host needs (cdk/programs.py)
HOST_GROUPS = ("host",)
LXD_LOG = "/var/log/lxd-distrilab.log"
SYSCTL_FILE = "/etc/sysctl.d/60-distrilab.conf"
#: where `dir` pools keep their files (LXD wants the source folder to exist, be empty, and lie
#: outside its own directory)
DIR_POOL_ROOT = "/var/lib/distrilab/pools"
DRIVERS = ("auto", "btrfs", "dir")
LXD_PORT = 8443


# ---------------------------------------------------------------- spec


@dataclass(frozen=True)
class PoolSpec:
    name: str = POOL
    driver: str = "auto"  # auto | btrfs | dir
    size: str = "20GiB"  # loop file size (btrfs)


@dataclass(frozen=True)
class ClusterSpec:
    enabled: bool = False
    role: str = "bootstrap"  # bootstrap | join
    bootstrap: dict[str, Any] = field(default_factory=dict)  # endpoint of the first host


@dataclass(frozen=True)
class Spec:
    lab: str
    host: str
    max_workers: int = 1
    endpoint: dict[str, Any] = field(default_factory=dict)
    ssh_user: str | None = None
    pool: PoolSpec | None = PoolSpec()
    sysctls: dict[str, int] = field(default_factory=dict)
    cluster: ClusterSpec = ClusterSpec()
    daemon: bool = True  # False in the destroy spec: nothing is wanted, nothing is removed


def parse_spec(data: dict[str, Any]) -> Spec:
    try:
        pool = data.get("pool")
        pool_spec = PoolSpec(**pool) if pool else None
        if pool_spec and pool_spec.driver not in DRIVERS:
            raise DistrilabError(
                f"pool.driver: must be one of {', '.join(DRIVERS)} (got {pool_spec.driver!r})"
            )
        cluster = ClusterSpec(**(data.get("cluster") or {}))
        if cluster.role not in ("bootstrap", "join"):
            raise DistrilabError(f"cluster.role: must be bootstrap or join (got {cluster.role!r})")
        return Spec(
            lab=str(data["lab"]),
            host=str(data["host"]),
            max_workers=int(data.get("max_workers") or 1),
            endpoint=dict(data.get("endpoint") or {"name": data["host"], "kind": "local"}),
            ssh_user=data.get("ssh_user"),
            pool=pool_spec,
            sysctls={str(k): int(v) for k, v in (data.get("sysctls") or {}).items()},
            cluster=cluster,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DistrilabError(f"bad cluster spec: {err!r}") from err


# ---------------------------------------------------------------- observe


@dataclass(frozen=True)
class Facts:
    """What a host looks like (JSON-friendly; reads only)."""

    missing_packages: tuple[str, ...]
    kernel_btrfs: bool  # btrfs in /proc/filesystems (built in or loaded), or a loadable module
    loop_devices: bool  # /dev/loop-control exists: a btrfs pool can live on a loop file
    systemd: bool  # a service manager runs (then it starts lxd, not us)
    lxd_answers: bool
    daemon_drivers: tuple[str, ...] = ()  # storage drivers the running daemon offers
    pools: dict[str, str] = field(default_factory=dict)  # name -> driver
    sysctls: dict[str, int] = field(default_factory=dict)
    clustered: bool = False
    #: the host's own uid map (/proc/self/uid_map): not the identity on a nested host
    uid_map: str = "0 0 4294967295"
    #: cgroup hierarchies this host's processes belong to but that are not mounted where LXD
    #: looks for them ("dir options", e.g. "cpu cpu", "systemd none,name=systemd")
    missing_cgroups: tuple[str, ...] = ()
    trusted: tuple[str, ...] = ()  # sha256 fingerprints of the client certificates the daemon trusts
    server_certificate: str = ""  # the (cluster's) certificate the API answers with
    formed_by: str = ""  # the lab whose cluster stage bootstrapped or joined this host (marker)


def observe_host(shell: Shell, sysctl_names: Sequence[str]) -> Facts:
    missing = shell.run(["sh", "-c", probe_script(HOST_GROUPS)], check=False).stdout.split()
    filesystems = shell.run(["cat", "/proc/filesystems"], check=False).stdout
    systemd = shell.run(["test", "-d", "/run/systemd/system"], check=False).returncode == 0
    values: dict[str, int] = {}
    for name in sysctl_names:
        out = shell.run(["sysctl", "-n", name], check=False)
        if out.returncode == 0 and out.stdout.strip().lstrip("-").isdigit():
            values[name] = int(out.stdout.strip())
    facts = Facts(
        missing_packages=tuple(missing),
        kernel_btrfs=any(line.split()[-1:] == ["btrfs"] for line in filesystems.splitlines())
        or shell.run(["modinfo", "-n", "btrfs"], check=False).returncode == 0,  # loadable module
        loop_devices=shell.run(["test", "-e", "/dev/loop-control"], check=False).returncode == 0,
        systemd=systemd,
        lxd_answers=False,
        sysctls=values,
        uid_map=shell.run(["cat", "/proc/self/uid_map"], check=False).stdout.strip() or "0 0 4294967295",
        missing_cgroups=tuple(shell.run(["sh", "-c", MISSING_CGROUPS], check=False).stdout.splitlines()),
    )
    try:
        server = lxd_query(shell, "/1.0")
        pools = lxd_query(shell, "/1.0/storage-pools?recursion=1") or []
    except (ShellError, ValueError):
        return facts
    drivers = tuple(d["Name"] for d in server.get("environment", {}).get("storage_supported_drivers") or [])
    certificates = lxd_query(shell, "/1.0/certificates?recursion=1") or []
    return replace(
        facts,
        lxd_answers=True,
        daemon_drivers=drivers,
        pools={p["name"]: p["driver"] for p in pools},
        clustered=bool(server.get("environment", {}).get("server_clustered")),
        trusted=tuple(sorted(c.get("fingerprint", "") for c in certificates)),
        server_certificate=api_certificate(shell, server),
        formed_by=shell.run(["cat", CLUSTER_MARKER], check=False).stdout.strip(),
    )


# ---------------------------------------------------------------- plan (pure)


def choose_driver(spec_driver: str, facts: Facts, will_install_btrfs: bool) -> str:
    """auto -> btrfs when the kernel has it and the daemon offers it (or is about to), else dir."""
    if spec_driver != "auto":
        return spec_driver
    if not facts.kernel_btrfs or not facts.loop_devices:
        return "dir"  # LXD puts a btrfs pool on a loop file: no loop devices (a container), no btrfs
    if facts.lxd_answers:
        return "btrfs" if "btrfs" in facts.daemon_drivers else "dir"
    return "btrfs" if will_install_btrfs or "btrfs-progs" not in facts.missing_packages else "dir"


def plan_host(spec: Spec, facts: Facts, client_fingerprint: str = "", pinned: str = "") -> list[Action]:
    """The actions that bring a host to `spec` (pure). `client_fingerprint` is the lab's LXD client
    certificate, `pinned` the server certificate pinned for the host (multi-host labs).
    Destroy specs (`daemon=False`) only release what a multi-host lab set up: the lab's trust,
    and the membership of a host the lab joined to its cluster."""
    if not spec.daemon:
        return plan_release(spec, facts, client_fingerprint)
    actions: list[Action] = []
    # a running daemon without the tools is left alone: installing under it would change nothing
    # until a restart, and restarting a shared daemon is not ours to do
    install = facts.missing_packages if not facts.lxd_answers else ()
    if install:
        actions.append(
            Action("install", " ".join(install), "missing packages", 0, {"packages": list(install)})
        )
    # a sysctl the host does not show (a container sees no neighbour-table limits outside the
    # initial network namespace) is not ours to set there
    raise_to = {k: v for k, v in sorted(spec.sysctls.items()) if facts.sysctls.get(k, v) < v}
    if raise_to:
        why = ", ".join(f"{k} {facts.sysctls.get(k, '?')}->{v}" for k, v in raise_to.items())
        # persisted values never lower what the host already has
        persist = {k: max(v, facts.sysctls.get(k, 0)) for k, v in sorted(spec.sysctls.items())}
        actions.append(Action("set", "sysctls", why, 0, {"sysctls": raise_to, "persist": persist}))
    if not facts.lxd_answers and is_nested(facts.uid_map):
        # after the install: the lxd package writes its own /etc/subuid entry, which may not fit
        actions.append(Action("fit", "subordinate ids", "nested host: root's range must lie in "
                              "the host's own uid map", 1))
    if facts.missing_cgroups and is_nested(facts.uid_map):
        names = ",".join(m.split()[0] for m in facts.missing_cgroups)
        actions.append(Action("mount", f"cgroup {names}", "not mounted: containers would not start",
                              1, {"mounts": list(facts.missing_cgroups)}))
    if not facts.lxd_answers:
        how = "service manager" if facts.systemd else "detached, no service manager"
        actions.append(Action("start", "lxd daemon", f"not answering ({how})", 2, {"systemd": facts.systemd}))
    if spec.cluster.enabled and not facts.clustered:
        verb = "bootstrap" if spec.cluster.role == "bootstrap" else "join"
        actions.append(Action(verb, "lxd cluster", "host not clustered yet", 3, {"systemd": facts.systemd}))
    joining = spec.cluster.enabled and spec.cluster.role == "join"
    if spec.pool and not joining and spec.pool.name not in facts.pools:
        if spec.pool.driver == "btrfs" and facts.lxd_answers and "btrfs" not in facts.daemon_drivers:
            raise ReconcileError(
                OWNER,
                [(f"create pool {spec.pool.name}", "the daemon offers no btrfs driver")],
                hint="install btrfs-progs and restart LXD, or set lxd.storage: dir",
            )
        driver = choose_driver(spec.pool.driver, facts, "btrfs-progs" in install)
        if spec.pool.driver == "btrfs" and not facts.kernel_btrfs:
            raise ReconcileError(
                OWNER,
                [(f"create pool {spec.pool.name}", "kernel has no btrfs")],
                hint="set lxd.storage: dir (or auto)",
            )
        detail = f"size {spec.pool.size}" if driver == "btrfs" else "source " + dir_source(spec.pool.name)
        actions.append(
            Action(
                "create",
                f"pool {spec.pool.name}",
                f"missing ({driver}, {detail})",
                4,
                {"driver": driver, "size": spec.pool.size, "name": spec.pool.name},
            )
        )
    if spec.cluster.enabled:
        if spec.cluster.role == "bootstrap" and client_fingerprint not in facts.trusted:
            actions.append(Action("trust", f"certificate {trust_name(spec.lab)}", "the lab's client "
                                  "certificate is not trusted yet", 5))
        if not facts.server_certificate or pinned.strip() != facts.server_certificate.strip():
            actions.append(Action("pin", "server certificate", "not pinned for TLS yet", 5))
    return actions


def plan_release(spec: Spec, facts: Facts, client_fingerprint: str) -> list[Action]:
    if not spec.cluster.enabled or not facts.lxd_answers:
        return []
    actions = []
    if spec.cluster.role == "join" and facts.clustered and facts.formed_by == spec.lab:
        actions.append(Action("leave", "lxd cluster", f"lab {spec.lab} joined this host to its cluster", 0))
    if spec.cluster.role == "bootstrap" and client_fingerprint in facts.trusted:
        actions.append(Action("untrust", f"certificate {trust_name(spec.lab)}", "the lab is destroyed", 1))
    if spec.cluster.role == "bootstrap" and facts.clustered and facts.formed_by == spec.lab:
        actions.append(Action("dissolve", "lxd cluster", f"lab {spec.lab} formed it (kept if it "
                              "holds anything else)", 2))
    return actions


def refuse_custom_daemon_dir(spec: Spec, facts: Facts) -> None:
    """distrilab starts only the system's daemon: with $LXD_DIR naming another directory where
    nothing answers, starting `lxd` would bring up a second, empty daemon next to the real one."""
    if spec.daemon and is_local(spec.endpoint) and not facts.lxd_answers and custom_lxd_dir() is not None:
        raise LxdUnreachableError(str(local_socket()), "nothing listens there", local_hint())


def dir_source(pool: str) -> str:
    return f"{DIR_POOL_ROOT}/{pool}"


def pool_request(name: str, driver: str, size: str) -> dict[str, Any]:
    """The POST /1.0/storage-pools body (pure)."""
    config = {"size": size} if driver == "btrfs" else {"source": dir_source(name)}
    return {"name": name, "driver": driver, "config": config, "description": "distrilab shared pool"}


# ---------------------------------------------------------------- nested hosts
#
# A host that is itself an unprivileged container (the testbed's "bare-metal" hosts, or a user's
# LXD container) sees only the uids its own map gives it. LXD maps its containers into root's
# subordinate range (/etc/subuid, default 1000000:1000000000 when root has none); the lxd package
# writes root:100000:10000001, and either can lie outside a container's map: then every container
# fails to start. And a container of this kernel's LXD may find its /sys/fs/cgroup empty (or, where
# the outer host mounts `cpu` and `cpuacct` apart, holding links to a `cpu,cpuacct` that does not
# exist): LXD then cannot set up its containers' cgroups. Each missing hierarchy is mounted (the
# container's cgroup namespace shows its own subtree), on a tmpfs when /sys/fs/cgroup is read-only.

LXD_DEFAULT_SUBID = (1_000_000, 1_000_000_000)
#: the smallest range worth giving LXD: one container's worth of ids
MIN_SUBID = 65_536
#: prints "dir options" for each hierarchy of /proc/self/cgroup not mounted at /sys/fs/cgroup/<dir>
#: (nothing on a pure cgroup2 host, whose /sys/fs/cgroup is the one hierarchy)
MISSING_CGROUPS = """
[ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] && exit 0
while IFS=: read -r n ctrls path; do
  case "$ctrls" in
    "") dir=unified; opts=cgroup2 ;;
    name=*) dir=${ctrls#name=}; opts=none,$ctrls ;;
    *) dir=$ctrls; opts=$ctrls ;;
  esac
  mountpoint -q "/sys/fs/cgroup/$dir" || echo "$dir $opts"
done < /proc/self/cgroup
"""


def mapped_ranges(uid_map: str) -> list[tuple[int, int]]:
    """(first, end) of each inside range of a /proc/<pid>/uid_map text."""
    ranges = []
    for line in uid_map.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            ranges.append((int(parts[0]), int(parts[0]) + int(parts[2])))
    return ranges


def is_nested(uid_map: str) -> bool:
    """Whether the host lives in a user namespace that does not map every uid (a container)."""
    return mapped_ranges(uid_map) != [(0, 4294967295)]


def root_subid(text: str) -> tuple[int, int] | None:
    """root's (start, count) in an /etc/subuid text, None when root has no entry."""
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == "root" and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
    return None


def fitted_subid(uid_map: str, subid_text: str) -> tuple[int, int] | None:
    """The root range to write so LXD's ids lie inside the host's map; None when the current one
    (or LXD's default, without an entry) already fits. Pure."""
    start, count = root_subid(subid_text) or LXD_DEFAULT_SUBID
    ranges = mapped_ranges(uid_map)
    if any(first <= start and start + count <= end for first, end in ranges):
        return None
    top = max((end for first, end in ranges if first <= LXD_DEFAULT_SUBID[0]), default=0)
    size = min(LXD_DEFAULT_SUBID[1], top - LXD_DEFAULT_SUBID[0])
    if size < MIN_SUBID:
        raise ReconcileError(
            OWNER,
            [("fit subordinate ids", f"the host maps only {top} uids (uid_map {uid_map!r})")],
            hint="give this host container a larger id map (LXD: security.idmap.size)",
        )
    return LXD_DEFAULT_SUBID[0], size


def fit_subids(shell: Shell) -> None:
    """Rewrite root's /etc/subuid and /etc/subgid entries when they do not fit the host's map."""
    uid_map = shell.run(["cat", "/proc/self/uid_map"]).stdout
    for path in ("/etc/subuid", "/etc/subgid"):
        text = shell.run(["cat", path], check=False).stdout
        fit = fitted_subid(uid_map, text)
        if fit is None:
            continue
        kept = "".join(line + "\n" for line in text.splitlines() if not line.startswith("root:"))
        shell.run(["sh", "-c", f"cat > {path}"], stdin=kept + f"root:{fit[0]}:{fit[1]}\n")
        log.info("%s: root:%d:%d (the host's own uid map holds no more)", path, *fit)


def mount_cgroups(shell: Shell, mounts: Sequence[str]) -> None:
    """Mount each "dir options" hierarchy under /sys/fs/cgroup (see MISSING_CGROUPS)."""
    # sysfs refuses new directories: give /sys/fs/cgroup a tmpfs of its own first
    root = "/sys/fs/cgroup"
    shell.run(["sh", "-c", f"mountpoint -q {root} || mount -t tmpfs -o mode=755 cgroup {root}"])
    for item in mounts:
        name, options = item.split()
        where = f"/sys/fs/cgroup/{name}"
        shell.run(["sh", "-c", f"[ -L {where} ] && rm -f {where}; mkdir -p {where}"])
        if options == "cgroup2":
            shell.run(["mount", "-t", "cgroup2", "cgroup2", where])
        else:
            shell.run(["mount", "-t", "cgroup", "-o", options, "cgroup", where])


# ---------------------------------------------------------------- execute


def install_packages(shell: Shell, packages: Sequence[str]) -> None:
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    cmd = [*env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if shell.run(cmd, check=False, timeout=1800).returncode != 0:
        shell.run([*env, "apt-get", "update", "-q"], timeout=900)  # stale package lists: refresh once
        shell.run(cmd, timeout=1800)


def set_sysctls(shell: Shell, values: dict[str, int], persist: dict[str, int]) -> None:
    """Raise `values` now; write `persist` to /etc/sysctl.d so a reboot keeps them."""
    for name, value in sorted(values.items()):
        # a container host may show a limit it cannot change (read-only there): say so, go on
        if shell.run(["sysctl", "-q", "-w", f"{name}={value}"], check=False).returncode != 0:
            log.warning("%s: cannot raise %s to %d (a container host?); kept as is", shell.name, name, value)
    text = "# written by distrilab (modules/lxd_host.py): limits containers need at scale\n"
    text += "".join(f"{k} = {v}\n" for k, v in sorted(persist.items()))
    shell.run(["sh", "-c", f"mkdir -p /etc/sysctl.d && cat > {SYSCTL_FILE}"], stdin=text)


#: the daemon distrilab started on a host without a service manager
LXD_PID_FILE = "/run/distrilab-lxd.pid"


def start_daemon(shell: Shell, systemd: bool) -> None:
    if systemd:
        shell.run(["systemctl", "start", "lxd"])
    else:
        # setsid + redirections: the daemon outlives this process and holds none of its pipes
        # (stderr kept: what the daemon says before its log is open)
        daemon = f"echo $$ > {LXD_PID_FILE}; exec lxd --group root --logfile {LXD_LOG}"
        line = f"setsid sh -c '{daemon}' </dev/null >/dev/null 2>>{LXD_LOG}.stderr &"
        shell.run(["sh", "-c", line])
    wait_ready(shell, alive=None if systemd else lambda: daemon_alive(shell))


#: a daemon that is alive but not ready is given this many minute-long waits: a cluster member
#: back from a restart waits for its peers' database before it opens its socket
READY_WAITS = 3


def wait_ready(shell: Shell, alive: Callable[[], bool] | None) -> None:
    """`lxd waitready`, a minute at a time while the daemon lives; the daemon's last words when not."""
    for _ in range(READY_WAITS):
        waited = shell.run(["lxd", "waitready", "--timeout=60"], timeout=90, check=False)
        if waited.returncode == 0:
            return
        if alive is not None and not alive():
            break
    # the shell's tail is that of the daemon's log: why it died or what it waits for
    tail = shell.run(["sh", "-c", f"tail -n 12 {LXD_LOG}.stderr {LXD_LOG}"], check=False).stdout
    raise ShellError(shell.name, "lxd waitready --timeout=60", waited.returncode,
                     f"{waited.stderr.strip()}\n{tail}")


def daemon_alive(shell: Shell) -> bool:
    return shell.run(["sh", "-c", f"kill -0 \"$(cat {LXD_PID_FILE})\""], check=False).returncode == 0


def wait_member_online(shell: Shell, member: str, timeout: float = 180) -> None:
    """A member that restarted (a host back from a reboot) is Offline to the cluster until its
    heartbeats resume; meanwhile the cluster lists its instances as null and cannot reach them,
    so the stages after this one would see half a lab."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = lxd_query(shell, f"/1.0/cluster/members/{member}") or {}
        except ShellError as err:
            if "not found" not in err.output.lower():
                raise
            # waiting cannot help: the cluster no longer lists this host (removed by hand, or its
            # LXD was reset while the others kept the cluster)
            raise ReconcileError(OWNER, [(f"cluster member {member}", "missing: the lab's cluster does not "
                                          "list it, though its LXD says it is clustered")],
                                 hint="run 'distrilab down' on the lab (it dissolves the cluster), then "
                                      "'distrilab up'") from err
        if state.get("status") == "Online":
            return
        if time.monotonic() > deadline:
            raise ReconcileError(OWNER, [(f"cluster member {member}", f"{state.get('status')} after "
                                          f"{timeout:.0f} s: {state.get('message', '')}")],
                                 hint=f"check the host's LXD log ({LXD_LOG}) and the underlay")
        time.sleep(2)


def kill_daemon(shell: Shell, systemd: bool) -> None:
    """Stop a daemon that may not answer (`lxd shutdown` would wait on it): SIGKILL."""
    if systemd:
        shell.run(["systemctl", "kill", "--signal=SIGKILL", "lxd"], check=False)
        shell.run(["systemctl", "stop", "lxd"], check=False, timeout=120)
    else:
        shell.run(["sh", "-c", f"kill -KILL $(cat {LXD_PID_FILE}) 2>/dev/null; sleep 1; true"], timeout=60)


def restart_hung_daemon(shell: Shell, systemd: bool) -> None:
    """Restart a daemon that stopped answering; its state on disk is kept."""
    kill_daemon(shell, systemd)
    start_daemon(shell, systemd)


def create_pool(shell: Shell, name: str, driver: str, size: str) -> None:
    existing = {p["name"] for p in lxd_query(shell, "/1.0/storage-pools?recursion=1") or []}
    if name in existing:  # created meanwhile (another lab's apply): reuse
        return
    if driver == "dir":
        shell.run(["mkdir", "-p", dir_source(name)])
    else:
        shell.run(["modprobe", "-q", "btrfs"], check=False)  # a no-op where btrfs is built in
    lxd_query(shell, "/1.0/storage-pools", "POST", pool_request(name, driver, size))


def delete_pool(shell: Shell, name: str) -> None:
    """Remove a pool (if present) and its dir source; only for pools nothing uses (tests, clean-up)."""
    existing = {p["name"] for p in lxd_query(shell, "/1.0/storage-pools?recursion=1") or []}
    if name in existing:
        lxd_query(shell, f"/1.0/storage-pools/{name}", "DELETE")
    if name != POOL:
        shell.run(["rm", "-rf", "--one-file-system", dir_source(name)], check=False)


# ---------------------------------------------------------------- remote hosts: the LXD cluster
#
# Multi-host labs form one LXD cluster so every later stage talks to one API (`target=` picks
# the member). The first host bootstraps it; each other host gets a join token from the first
# (`lxc cluster add`) and joins with a preseed. Tested end to end with three testbed machines
# as ssh hosts (tests/e2e/test_multi_host.py); single-host labs never take this path.


def member_address(endpoint: dict[str, Any]) -> str:
    # cluster traffic stays inside the hosts' network: an aws host's private (VPC) address, which
    # its security group opens to the lab's hosts only; other hosts have one address
    address = endpoint.get("private_address") or endpoint.get("address")
    if not address:
        raise DistrilabError(f"host {endpoint.get('name')}: a cluster member needs an address")
    return f"{address}:{LXD_PORT}"


def bootstrap_preseed(spec: Spec) -> dict[str, Any]:
    """`lxd init --preseed` for the first member: listen on the network, enable clustering."""
    return {
        "config": {"core.https_address": member_address(spec.endpoint)},
        "cluster": {"server_name": spec.host, "enabled": True},
    }


def join_preseed(spec: Spec, token: str, pool_driver: str) -> dict[str, Any]:
    """`lxd init --preseed` for a joining member; the shared pool gets this member's own source."""
    member_config: list[dict[str, str]] = []
    if spec.pool:
        key, value = (
            ("size", spec.pool.size) if pool_driver == "btrfs" else ("source", dir_source(spec.pool.name))
        )
        member_config.append({"entity": "storage-pool", "name": spec.pool.name, "key": key, "value": value})
    return {
        "cluster": {
            "enabled": True,
            "server_name": spec.host,
            "server_address": member_address(spec.endpoint),
            "cluster_token": token,
            "member_config": member_config,
        }
    }


CLUSTER_MARKER = "/var/lib/distrilab/cluster-formed-by"
#: how long a joining host waits for the first host to bootstrap the cluster (it may be installing)
LEADER_TIMEOUT = 1800.0
#: enabling clustering takes seconds; past this the daemon is taken as hung and restarted
BOOTSTRAP_TIMEOUT = 240.0
#: how long the first host waits, on destroy, for the members the lab joined to leave
LEAVE_TIMEOUT = 300.0
LXD_STATE = "/var/lib/lxd"
CLUSTER_CERTIFICATE = f"{LXD_STATE}/cluster.crt"


def trust_name(lab: str) -> str:
    return f"distrilab-{lab}"


def certificate_fingerprint(pem: str) -> str:
    body = "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def lab_client_certificate(lab: str) -> str:
    from modules.lxd_client import cert_dir, ensure_client_cert

    return ensure_client_cert(cert_dir(lab))[0].read_text()


def pinned_certificate(spec: Spec) -> Path:
    from modules.lxd_client import cert_dir

    return cert_dir(spec.lab) / "servers" / f"{spec.host}.crt"


def trust_client_cert(shell: Shell, cert_pem: str, name: str = "distrilab") -> None:
    """Let distrilab's TLS client (modules.lxd_client) in; idempotent (an existing trust is kept)."""
    body = "".join(line for line in cert_pem.splitlines() if "CERTIFICATE" not in line)
    der = base64.b64decode(body)
    known = lxd_query(shell, "/1.0/certificates?recursion=1") or []
    if any(base64.b64decode("".join(c["certificate"].splitlines()[1:-1]) or "") == der for c in known):
        return
    lxd_query(
        shell,
        "/1.0/certificates",
        "POST",
        {"type": "client", "name": name, "certificate": base64.b64encode(der).decode()},
    )


def untrust_client_cert(shell: Shell, lab: str) -> None:
    fingerprint = certificate_fingerprint(lab_client_certificate(lab))
    lxd_query(shell, f"/1.0/certificates/{fingerprint}", "DELETE")


def mark_formed(shell: Shell, lab: str) -> None:
    shell.run(["sh", "-c", f"mkdir -p {os.path.dirname(CLUSTER_MARKER)} && cat > {CLUSTER_MARKER}"],
              stdin=lab + "\n")


def already_clustered(shell: Shell) -> bool:
    """Planned before the daemon answered (a restarted host): it may be a member already."""
    return bool(lxd_query(shell, "/1.0").get("environment", {}).get("server_clustered"))


def bootstrap_cluster(shell: Shell, spec: Spec, systemd: bool = False) -> None:
    if already_clustered(shell):
        return
    preseed = json.dumps(bootstrap_preseed(spec))
    try:
        shell.run(["lxd", "init", "--preseed"], stdin=preseed, timeout=BOOTSTRAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        # seen once in ~20 runs (LXD 5.0.2 in a nested host): enabling clustering never finished
        # and the API stayed locked (GET /1.0/cluster hung) while the database was written
        print(f"[{OWNER}] {spec.host}: clustering did not finish in {BOOTSTRAP_TIMEOUT:.0f} s: "
              "restarting the daemon")
        restart_hung_daemon(shell, systemd)
        if not already_clustered(shell):
            shell.run(["lxd", "init", "--preseed"], stdin=preseed, timeout=BOOTSTRAP_TIMEOUT)
    mark_formed(shell, spec.lab)


def api_certificate(shell: Shell, server: dict[str, Any]) -> str:
    """The certificate the host's HTTPS API presents: a cluster member's is the cluster's
    (`cluster.crt`), which /1.0 over the unix socket does not show; else the server's own."""
    cluster = shell.run(["cat", CLUSTER_CERTIFICATE], check=False)
    if cluster.returncode == 0 and "BEGIN CERTIFICATE" in cluster.stdout:
        return cluster.stdout
    return str(server.get("environment", {}).get("certificate") or "")


def pin_server_certificate(shell: Shell, spec: Spec) -> None:
    """Keep the certificate the host's API answers with (the cluster's, the same on every member),
    read over ssh (a pinned host key): the reconcilers' TLS then verifies against it."""
    certificate = api_certificate(shell, lxd_query(shell, "/1.0"))
    path = pinned_certificate(spec)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(certificate)
    path.chmod(0o600)


def leave_cluster(shell: Shell, spec: Spec) -> None:
    """Undo a join this lab made: the first host drops the member, which then stops its daemon and
    clears LXD's state (it held nothing before the join: LXD joins only empty daemons)."""
    leader = host_shell(spec.cluster.bootstrap, spec.ssh_user)
    leader.run(["lxc", "cluster", "remove", spec.host, "--force", "--yes"], timeout=300)
    stop_and_wipe(shell, spec)


def stop_and_wipe(shell: Shell, spec: Spec) -> None:
    """Stop the daemon and drop everything it kept: it starts afresh next time, as before the
    lab clustered it. The lxd package stays."""
    shell.run(["sh", "-c", "lxd shutdown --timeout=60 || true"], timeout=120)
    wipe_state(shell, spec)


def wipe_state(shell: Shell, spec: Spec) -> None:
    """Everything a stopped daemon kept (database, certificates, pool, instance dirs) and the
    lab's claim on it."""
    # a daemon killed mid-join leaves its mounts (devlxd, shmounts, the pool): rm cannot remove
    # busy mount points (seen in CI: "Device or resource busy"), so they go first, deepest first
    shell.run(["sh", "-c", f"awk '$2 ~ \"^{LXD_STATE}/\" {{print $2}}' /proc/mounts | sort -r | "
                           "while read -r m; do umount -l \"$m\"; done; true"])
    shell.run(["sh", "-c", f"rm -rf --one-file-system {LXD_STATE}/* {CLUSTER_MARKER}"])
    if spec.pool:
        shell.run(["rm", "-rf", "--one-file-system", dir_source(spec.pool.name)], check=False)


def cluster_contents(shell: Shell, spec: Spec) -> list[str]:
    """What the daemon holds beyond an emptied lab's leftovers (its pool, the default profile):
    anything here is someone else's, and keeps the cluster."""
    held = [f"instance {url.rsplit('/', 1)[-1]}" for url in lxd_query(shell, "/1.0/instances") or []]
    held += [f"image {url.rsplit('/', 1)[-1][:12]}" for url in lxd_query(shell, "/1.0/images") or []]
    held += [f"network {n['name']}" for n in lxd_query(shell, "/1.0/networks?recursion=1") or []
             if n.get("managed")]
    ours = {spec.pool.name} if spec.pool else set()
    held += [f"pool {url.rsplit('/', 1)[-1]}" for url in lxd_query(shell, "/1.0/storage-pools") or []
             if url.rsplit("/", 1)[-1] not in ours]
    held += [f"profile {url.rsplit('/', 1)[-1]}" for url in lxd_query(shell, "/1.0/profiles") or []
             if url.rsplit("/", 1)[-1] != "default"]
    # members' own (type server) stay listed while the cluster exists; a client is someone's access
    held += [f"certificate {c.get('name')}" for c in lxd_query(shell, "/1.0/certificates?recursion=1") or []
             if c.get("type") == "client"]
    return held


def dissolve_cluster(shell: Shell, spec: Spec, timeout: float = LEAVE_TIMEOUT) -> None:
    """Undo the bootstrap this lab made once the members it joined have left (their destroy runs
    alongside this one), unless the cluster holds anything else: then it stays, and says why."""
    deadline = time.monotonic() + timeout
    while True:
        members = [m.get("server_name") for m in lxd_query(shell, "/1.0/cluster/members?recursion=1") or []]
        if len(members) <= 1:
            break
        if time.monotonic() > deadline:
            print(f"[{OWNER}] {spec.host}: the cluster stays: members {', '.join(members)} did not leave")
            return
        time.sleep(3)
    held = cluster_contents(shell, spec)
    if held:
        print(f"[{OWNER}] {spec.host}: the cluster stays: it holds {', '.join(held[:5])}"
              + (f" and {len(held) - 5} more" if len(held) > 5 else ""))
        return
    stop_and_wipe(shell, spec)


def wait_for_leader(leader: Shell, spec: Spec, timeout: float = LEADER_TIMEOUT) -> None:
    """The first host's cluster stage runs alongside this one (installing LXD takes minutes on
    every host): wait until it has bootstrapped the cluster and made the shared pool."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server = lxd_query(leader, "/1.0")
            pools = {p["name"] for p in lxd_query(leader, "/1.0/storage-pools?recursion=1") or []}
            if server.get("environment", {}).get("server_clustered") and (
                not spec.pool or spec.pool.name in pools
            ):
                return
        except (ShellError, ValueError, subprocess.TimeoutExpired):
            pass  # LXD not installed or not started there yet
        if time.monotonic() > deadline:
            raise ReconcileError(OWNER, [(f"join {spec.cluster.bootstrap.get('name')}'s cluster",
                                          f"not bootstrapped after {timeout:.0f} s")],
                                 hint="see the first host's cluster stage")
        time.sleep(3)


def join_cluster(shell: Shell, spec: Spec, systemd: bool = False) -> None:
    if already_clustered(shell):
        return
    leader = host_shell(spec.cluster.bootstrap, spec.ssh_user)
    wait_for_leader(leader, spec)
    driver = lxd_query(leader, f"/1.0/storage-pools/{spec.pool.name}")["driver"] if spec.pool else "dir"
    for attempt in (1, 2):
        # a token left by a join that failed half-way would block a new one for the same name
        leader.run(["lxc", "cluster", "revoke-token", spec.host], check=False)
        token = leader.run(["lxc", "cluster", "add", spec.host, "--quiet"]).stdout.strip()
        if driver == "dir" and spec.pool:
            shell.run(["mkdir", "-p", dir_source(spec.pool.name)])
        try:
            shell.run(["lxd", "init", "--preseed"], stdin=json.dumps(join_preseed(spec, token, driver)),
                      timeout=BOOTSTRAP_TIMEOUT)
            break
        except subprocess.TimeoutExpired:
            # seen in nested hosts (LXD 5.0.2): the joiner calls itself clustered while the leader
            # never added it ("No dqlite node has address ..."); it held nothing before the join
            # (LXD joins only empty daemons), so start it afresh and join once more
            if attempt == 2:
                raise ReconcileError(OWNER, [(f"join {spec.host} to the cluster",
                                              f"did not finish in {BOOTSTRAP_TIMEOUT:.0f} s, twice")],
                                     hint=f"see {LXD_LOG} on {spec.host} and on the first host") from None
            print(f"[{OWNER}] {spec.host}: joining did not finish in {BOOTSTRAP_TIMEOUT:.0f} s: "
                  "clearing its LXD state and joining again")
            leader.run(["lxc", "cluster", "remove", spec.host, "--force", "--yes"], check=False)
            kill_daemon(shell, systemd)
            wipe_state(shell, spec)
            start_daemon(shell, systemd)
    mark_formed(shell, spec.lab)


# ---------------------------------------------------------------- AWS hosts
#
# Synth writes this stage's spec before terraform creates the instances, so an aws host's spec has
# no address; the lab stack passes them to the provisioner in these variables (and in the
# resource's input/triggers_replace, so a replaced instance re-runs the stage). The instance's
# cloud-init installs LXD and writes READY_MARKER last; the apply waits for it. Like the rest of
# this section, tested at unit level only: it needs real instances.

HOST_ADDRESS_ENV = "DISTRILAB_HOST_ADDRESS"  # public: ssh from this machine
HOST_PRIVATE_ADDRESS_ENV = "DISTRILAB_HOST_PRIVATE_ADDRESS"  # VPC: LXD cluster traffic
BOOTSTRAP_ADDRESS_ENV = "DISTRILAB_BOOTSTRAP_ADDRESS"  # public address of the first host (joiners)
#: cloud-init's apt-get of LXD on a fresh instance takes minutes; boot itself ~1
READY_TIMEOUT = 900.0
READY_POLL = 10.0


def with_apply_time_addresses(spec: Spec, environ: Mapping[str, str]) -> Spec:
    """Fill in what synth could not know: addresses missing from the spec come from `environ`
    (addresses the spec has win); aws hosts are logged into as the image's user (cdk.aws.SSH_USER)
    unless the lab names one. Pure."""
    endpoint = dict(spec.endpoint)
    if not endpoint.get("address") and environ.get(HOST_ADDRESS_ENV):
        endpoint["address"] = environ[HOST_ADDRESS_ENV]
    if not endpoint.get("private_address") and environ.get(HOST_PRIVATE_ADDRESS_ENV):
        endpoint["private_address"] = environ[HOST_PRIVATE_ADDRESS_ENV]
    bootstrap = dict(spec.cluster.bootstrap)
    if bootstrap and not bootstrap.get("address") and environ.get(BOOTSTRAP_ADDRESS_ENV):
        bootstrap["address"] = environ[BOOTSTRAP_ADDRESS_ENV]
    ssh_user = spec.ssh_user or (SSH_USER if endpoint.get("kind") == "aws" else None)
    cluster = replace(spec.cluster, bootstrap=bootstrap)
    return replace(spec, endpoint=endpoint, ssh_user=ssh_user, cluster=cluster)


@dataclass(frozen=True)
class SudoShell:
    """Every command through `sudo -n` (non-interactive: fail rather than wait for a password):
    a cloud image's login user is not root, but may sudo."""

    name: str
    inner: Shell

    def run(
        self, cmd: Sequence[str], stdin: str | None = None, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        return self.inner.run(["sudo", "-n", *cmd], stdin=stdin, check=check, timeout=timeout)


def host_shell(endpoint: dict[str, Any] | None, ssh_user: str | None) -> Shell:
    """The shell of a host: `shell_for`, wrapped in `sudo -n` for remote hosts not logged into as root."""
    shell = shell_for(endpoint, ssh_user)
    needs_sudo = not is_local(endpoint) and ssh_user not in (None, "root")
    return SudoShell(shell.name, shell) if needs_sudo else shell


def wait_until_ready(
    shell: Shell,
    timeout: float = READY_TIMEOUT,
    poll: float = READY_POLL,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once READY_MARKER exists on the host; ssh failing meanwhile (the instance still
    booting) counts as not ready. ReconcileError after `timeout` seconds."""
    deadline = clock() + timeout
    while True:
        try:
            if shell.run(["test", "-f", READY_MARKER], check=False, timeout=60).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        if clock() >= deadline:
            raise ReconcileError(
                OWNER,
                [(f"wait for {READY_MARKER} on {shell.name}", f"not there after {timeout:.0f} s")],
                hint="cloud-init has not finished or failed: see /var/log/cloud-init-output.log there",
            )
        sleep(poll)


# ---------------------------------------------------------------- reconciler


class LxdHost(Reconciler[Spec, Facts]):
    name = OWNER

    def load_spec(self, data: dict[str, Any]) -> Spec:
        return with_apply_time_addresses(parse_spec(data), os.environ)

    def empty_spec(self, spec: Spec) -> Spec:
        # shared infrastructure: a lab's destroy leaves daemon, pool and sysctls in place, and
        # releases only what the lab's cluster needed (its trust, the members it joined)
        return replace(spec, daemon=False, sysctls={})

    def max_workers(self, spec: Spec) -> int:
        return 2  # at most two independent steps per phase (packages and sysctls)

    def connect(self, spec: Spec) -> Shell:
        shell = host_shell(spec.endpoint, spec.ssh_user)
        if spec.daemon and spec.endpoint.get("kind") == "aws":
            wait_until_ready(shell)  # cloud-init installs LXD; bootstrapping before that would race it
        return shell

    def observe(self, client: Shell, spec: Spec) -> Facts:
        return observe_host(client, sorted(spec.sysctls))

    def plan(self, spec: Spec, observed: Facts) -> list[Action]:
        refuse_custom_daemon_dir(spec, observed)
        if not spec.cluster.enabled:
            return plan_host(spec, observed)
        pin = pinned_certificate(spec)
        client = certificate_fingerprint(lab_client_certificate(spec.lab))
        return plan_host(spec, observed, client, pin.read_text() if pin.is_file() else "")

    def execute_action(self, client: Shell, spec: Spec, action: Action) -> None:
        if action.verb == "install":
            install_packages(client, action.data["packages"])
        elif action.verb == "set":
            set_sysctls(client, action.data["sysctls"], action.data["persist"])
        elif action.verb == "fit":
            fit_subids(client)
        elif action.verb == "mount":
            mount_cgroups(client, action.data["mounts"])
        elif action.verb == "start":
            start_daemon(client, action.data["systemd"])
            if spec.cluster.enabled and already_clustered(client):
                wait_member_online(client, spec.host)
        elif action.verb == "bootstrap":
            bootstrap_cluster(client, spec, systemd=action.data.get("systemd", False))
        elif action.verb == "join":
            join_cluster(client, spec, systemd=action.data.get("systemd", False))
        elif action.verb == "create":
            create_pool(client, action.data["name"], action.data["driver"], action.data["size"])
        elif action.verb == "trust":
            trust_client_cert(client, lab_client_certificate(spec.lab), trust_name(spec.lab))
        elif action.verb == "pin":
            pin_server_certificate(client, spec)
        elif action.verb == "leave":
            leave_cluster(client, spec)
        elif action.verb == "untrust":
            untrust_client_cert(client, spec.lab)
            client.run(["rm", "-f", CLUSTER_MARKER])  # a cluster that outlives the lab drops its claim
        elif action.verb == "dissolve":
            dissolve_cluster(client, spec)
        else:
            raise ValueError(f"unknown action {action}")

    def converge(self, spec: Spec, dry_run: bool = False, progress: Any = None) -> int:
        if not spec.daemon:
            print(f"[{self.name}] destroy: the LXD daemon, pool and sysctls stay (shared by every lab)")
        return super().converge(spec, dry_run, progress)

    def main(self, argv: Sequence[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        if args[:1] == ["ensure"]:
            return ensure_main(args[1:])
        return super().main(args)


def local_spec(pool: str = POOL, driver: str = "auto", size: str = "40GiB") -> Spec:
    """The spec `ensure` converges: this machine, the shared pool, the default sysctls."""
    return Spec(
        lab="-",
        host="local",
        endpoint={"name": "local", "kind": "local"},
        pool=PoolSpec(pool, driver, size),
        sysctls=dict(SYSCTLS),
    )


def ensure_main(argv: Sequence[str]) -> int:
    """`python -m modules.lxd_host ensure [--pool NAME] [--driver auto|btrfs|dir] [--size S] [--dry-run]`."""
    parser = argparse.ArgumentParser(
        prog="python -m modules.lxd_host ensure",
        description="Install, start and prepare LXD on this machine (idempotent).",
    )
    parser.add_argument("--pool", default=POOL)
    parser.add_argument("--driver", choices=DRIVERS, default="auto")
    parser.add_argument("--size", default="40GiB", help="btrfs loop file size (default 40GiB)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{OWNER}] %(message)s")
    try:
        LxdHost().converge(local_spec(args.pool, args.driver, args.size), dry_run=args.dry_run)
    except DistrilabError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(LxdHost().main())
