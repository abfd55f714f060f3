"""What labs need on a host, checked and, on request, set: the engine of `distrilab doctor`.

`observe` reads a host through its shell (one pass, the same facts the cluster stage reads:
modules/lxd_host.observe_host), `diagnose` turns them into findings (pure, tested on captured
facts), `fix` sets what can be set. A finding that `blocks` would break `up` even after the
cluster stage ran (that stage installs packages, raises the sysctls, starts LXD and fits a nested
host's subids itself): `up` refuses to start on it, with this advice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cdk.errors import ReconcileError
from cdk.stages.cluster import POOL, SYSCTLS
from modules.host_shell import Shell, ShellError, lxd_query
from modules.lxd_host import (
    LXD_PID_FILE,
    Facts,
    fit_subids,
    fitted_subid,
    install_packages,
    is_nested,
    mount_cgroups,
    observe_host,
    set_sysctls,
)

#: open files the LXD daemon needs per node (a container's monitor, console, log and network fds;
#: Distrinet's standalone LXDs failed with "too many open files" near 90 nodes at 1024), and the floor
FDS_PER_NODE = 16
FDS_FLOOR = 16384
#: disk a node's container takes on the pool beyond its image (copy-on-write: logs, apt state, OVS db)
DISK_PER_NODE = 20 * 2**20
DISK_FLOOR = 2 * 2**30
#: the tun device's numbers are fixed by the kernel (Documentation/admin-guide/devices.txt: 10, 200)
MAKE_TUN = "mknod -m 666 /dev/net/tun c 10 200"
#: the sysctls the cluster stage raises, in the groups the doctor reports
SYSCTL_GROUPS = {
    "inotify limits": ("fs.inotify.max_user_instances", "fs.inotify.max_user_watches"),
    "neighbour tables": tuple(k for k in SYSCTLS if ".neigh." in k),
    "kernel keys": ("kernel.keys.maxkeys",),
}


@dataclass(frozen=True)
class Observed:
    """One host's facts as the doctor reads them."""

    host: str
    facts: Facts
    tun: bool  # /dev/net/tun is a character device (OVS's userspace datapath needs it)
    ovs_module: bool  # the openvswitch kernel module is loaded or loadable
    firewall: str  # LXD's firewall driver ("nftables", "xtables"; "" when LXD does not answer)
    daemon_nofile: int | None  # the LXD daemon's open-file limit (None: not ours or not running)
    daemon_pid: int | None
    pool_space: tuple[int, int] | None  # (used, total) bytes of the lab's storage pool
    subuid: str = ""  # /etc/subuid (read on a nested host: root's range must fit its uid map)


@dataclass(frozen=True)
class Finding:
    check: str
    host: str
    state: str  # pass | fail | fixed | skip
    detail: str
    fix: str = ""  # what --fix does (or what the user must do when it cannot)
    blocks: bool = False  # `up` would break on it even after the cluster stage
    action: Callable[[Shell], None] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "host": self.host, "state": self.state, "detail": self.detail,
                "fix": self.fix}


@dataclass(frozen=True)
class Needs:
    """What the lab asks of the host (the defaults: a lab of a few nodes on distrilab's pool)."""

    nodes: int = 10
    pool: str = POOL
    tun: bool = True  # a node runs Open vSwitch (its userspace datapath needs /dev/net/tun)


def observe(shell: Shell, pool: str = POOL) -> Observed:
    facts = observe_host(shell, list(SYSCTLS))

    def ok(*cmd: str) -> bool:
        return shell.run(list(cmd), check=False).returncode == 0

    firewall, pid, nofile, space = "", None, None, None
    if facts.lxd_answers:
        firewall = str(lxd_query(shell, "/1.0").get("environment", {}).get("firewall") or "")
        try:
            res = lxd_query(shell, f"/1.0/storage-pools/{pool}/resources") or {}
            space = (int(res["space"]["used"]), int(res["space"]["total"]))
        except (ShellError, KeyError, ValueError):
            space = None  # no such pool yet: the cluster stage creates it
        pid, nofile = daemon_limit(shell)
    subuid = shell.run(["cat", "/etc/subuid"], check=False).stdout if is_nested(facts.uid_map) else ""
    ovs = ok("test", "-d", "/sys/module/openvswitch") or ok("modinfo", "-n", "openvswitch")
    return Observed(shell.name, facts, tun=ok("test", "-c", "/dev/net/tun"), ovs_module=ovs,
                    firewall=firewall, daemon_nofile=nofile, daemon_pid=pid, pool_space=space,
                    subuid=subuid)


def daemon_limit(shell: Shell) -> tuple[int | None, int | None]:
    """(pid, soft open-file limit) of the LXD daemon distrilab started (a service manager's
    daemon has its own unit limits: not ours to judge)."""
    pid = shell.run(["cat", LXD_PID_FILE], check=False).stdout.strip()
    if not pid.isdigit():
        return None, None
    for line in shell.run(["cat", f"/proc/{pid}/limits"], check=False).stdout.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(pid), (1 << 62 if soft == "unlimited" else int(soft))
    return None, None


def diagnose(seen: Observed, needs: Needs = Needs()) -> list[Finding]:
    """Every check on one host (pure)."""
    host, facts = seen.host, seen.facts
    out: list[Finding] = []

    def add(check: str, passed: bool, detail: str, fix: str = "", blocks: bool = False,
            action: Callable[[Shell], None] | None = None) -> None:
        out.append(Finding(check, host, "pass" if passed else "fail", detail, "" if passed else fix,
                           blocks and not passed, None if passed else action))

    packages = sorted(facts.missing_packages)
    add("programs", not packages, "every program distrilab runs is installed" if not packages
        else f"missing Debian packages: {' '.join(packages)}", f"apt-get install {' '.join(packages)}",
        action=lambda shell: install_packages(shell, packages))
    for group, names in SYSCTL_GROUPS.items():
        low = {n: SYSCTLS[n] for n in names if n in facts.sysctls and facts.sysctls[n] < SYSCTLS[n]}
        shown = ", ".join(f"{n}={facts.sysctls.get(n, '(not visible)')}" for n in names)
        add(group, not low, shown, "raise " + ", ".join(f"{n} to {v}" for n, v in low.items())
            + " (and persist in /etc/sysctl.d)",
            action=lambda shell, low=low: set_sysctls(shell, low, _persisted(facts)))
    need_fds = max(FDS_FLOOR, FDS_PER_NODE * needs.nodes)
    if seen.daemon_nofile is None:
        out.append(Finding("open files", host, "skip", "LXD's open-file limit: not a daemon distrilab "
                           "started (or not running)"))
    else:
        pid = seen.daemon_pid
        add("open files", seen.daemon_nofile >= need_fds,
            f"LXD daemon (pid {pid}) may open {seen.daemon_nofile} files; "
            f"{needs.nodes} nodes need {need_fds}",
            f"prlimit --pid {pid} --nofile={need_fds}",
            action=lambda shell: shell.run(["prlimit", f"--pid={pid}", f"--nofile={need_fds}:{need_fds}"]))
    nft = "nftables" not in facts.missing_packages
    add("firewall", nft and seen.firewall in ("", "nftables"),
        f"LXD firewall driver {seen.firewall or '(LXD not running)'}; nft {'present' if nft else 'missing'}",
        "install nftables, then restart LXD (it picks its firewall backend when it starts)",
        # a running daemon keeps the backend it started with: only installing nft is ours to do
        action=None if nft else lambda shell: install_packages(shell, ["nftables"]))
    if seen.pool_space is None:
        out.append(Finding("storage", host, "skip",
                           f"pool {needs.pool}: absent (the cluster stage creates it)"))
    else:
        used, total = seen.pool_space
        need = DISK_FLOOR + DISK_PER_NODE * needs.nodes
        driver = facts.pools.get(needs.pool, "?")
        # the estimate warns; below the floor, creating any container fails (and a re-apply's
        # nodes already hold their share, so only the floor stops `up`)
        add("storage", total - used >= need,
            f"pool {needs.pool} ({driver}): {(total - used) / 2**30:.1f} GiB free of {total / 2**30:.1f}; "
            f"{needs.nodes} nodes need {need / 2**30:.1f}",
            "free space on the pool (distrilab image rm, other labs' down) or a larger lxd.storage_size",
            blocks=total - used < DISK_FLOOR)
    add("/dev/net/tun", seen.tun, "present" if seen.tun else "absent: OVS's userspace datapath cannot start",
        MAKE_TUN, blocks=needs.tun,
        action=lambda shell: shell.run(["sh", "-c", f"mkdir -p /dev/net && {MAKE_TUN}"]))
    out.append(Finding("openvswitch", host, "pass",
                       "kernel module: switches may use the kernel datapath" if seen.ovs_module
                       else "no kernel module: switches use the userspace (netdev) datapath"))
    if is_nested(facts.uid_map):
        subids = _subid_verdict(facts.uid_map, seen.subuid)
        add("nesting", not subids and not facts.missing_cgroups,
            "a nested host: " + (subids or "root's subordinate ids fit its uid map")
            + (f"; cgroups not mounted: {', '.join(facts.missing_cgroups)}" if facts.missing_cgroups else ""),
            "fit /etc/subuid and /etc/subgid, mount the cgroups, then restart LXD",
            action=lambda shell: (fit_subids(shell), mount_cgroups(shell, facts.missing_cgroups)))
    else:
        out.append(Finding("nesting", host, "pass", "not a nested host"))
    add("lxd", facts.lxd_answers, "the daemon answers" if facts.lxd_answers else "the daemon does not answer",
        "python -m modules.lxd_host ensure (or .ci/setup)")
    return out


def blockers(shell: Shell, needs: Needs) -> list[Finding]:
    """The findings that would break `up` on this host (it checks these before anything is created)."""
    return [f for f in diagnose(observe(shell, needs.pool), needs) if f.blocks]


def _persisted(facts: Facts) -> dict[str, int]:
    """What /etc/sysctl.d keeps: every distrilab sysctl at no less than it is now."""
    return {k: max(v, facts.sysctls.get(k, 0)) for k, v in SYSCTLS.items()}


def _subid_verdict(uid_map: str, subuid: str) -> str:
    """"" when root's subordinate ids (or LXD's default) lie inside the host's uid map, else why not."""
    try:
        fit = fitted_subid(uid_map, subuid)
    except ReconcileError as err:
        return str(err)
    if fit is None:
        return ""
    return f"root's subordinate ids lie outside its uid map (fits: root:{fit[0]}:{fit[1]})"


def fix(shell: Shell, needs: Needs = Needs()) -> list[Finding]:
    """Check, run the fix of every failed check that has one, and check again: a check that now
    passes is `fixed`; one that still fails says why (a fix that failed, or a limit the host
    refused to raise)."""
    before = diagnose(observe(shell, needs.pool), needs)
    errors: dict[str, str] = {}
    for finding in before:
        if finding.state == "fail" and finding.action is not None:
            try:
                finding.action(shell)
            except (ShellError, ReconcileError) as err:
                errors[finding.check] = str(err)
    failed = {f.check for f in before if f.state == "fail"}
    after = []
    for finding in diagnose(observe(shell, needs.pool), needs):
        if finding.check in failed and finding.state == "pass":
            finding = replace(finding, state="fixed")
        elif finding.check in errors:
            finding = replace(finding, detail=f"{finding.detail}; the fix failed: {errors[finding.check]}")
        after.append(finding)
    return after
