"""The host reconciler: planning from host facts (pure), cluster preseeds, and the real daemon (e2e)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from cdk.errors import DistrilabError, ReconcileError
from cdk.stages.cluster import POOL, SYSCTLS
from modules.host_shell import LocalShell, ShellError, SshShell, lxd_query, shell_for
from modules.lxd_host import (
    READY_WAITS,
    ClusterSpec,
    Facts,
    LxdHost,
    PoolSpec,
    Spec,
    bootstrap_preseed,
    create_pool,
    delete_pool,
    dir_source,
    fitted_subid,
    install_packages,
    is_nested,
    join_preseed,
    observe_host,
    parse_spec,
    plan_host,
    pool_request,
    set_sysctls,
    start_daemon,
    wait_member_online,
)

#: what a fresh Debian machine lacks (the probe script of cdk/programs.py names them)
FRESH_MISSING = ("lxd", "lxd-client", "dnsmasq-base", "nftables", "btrfs-progs", "kmod")
FRESH = Facts(
    missing_packages=FRESH_MISSING,
    kernel_btrfs=True,
    loop_devices=True,
    systemd=False,
    lxd_answers=False,
    sysctls={"fs.inotify.max_user_instances": 128, "fs.inotify.max_user_watches": 8192},
)
READY = Facts(
    missing_packages=(),
    kernel_btrfs=True,
    loop_devices=True,
    systemd=False,
    lxd_answers=True,
    daemon_drivers=("btrfs", "dir"),
    pools={POOL: "btrfs"},
    sysctls={k: v for k, v in SYSCTLS.items()},
)


def spec(**kw: Any) -> Spec:
    base = Spec(
        lab="t",
        host="local",
        endpoint={"name": "local", "kind": "local"},
        pool=PoolSpec(POOL, "auto", "20GiB"),
        sysctls=dict(SYSCTLS),
    )
    return replace(base, **kw)


def verbs(actions: list) -> list[str]:
    return [f"{a.phase}:{a.verb} {a.target}" for a in actions]


def test_fresh_host_installs_before_starting_then_makes_a_btrfs_pool() -> None:
    actions = plan_host(spec(), FRESH)
    assert verbs(actions) == [
        "0:install lxd lxd-client dnsmasq-base nftables btrfs-progs kmod",
        "0:set sysctls",
        "2:start lxd daemon",
        f"4:create pool {POOL}",
    ]
    assert actions[-1].data["driver"] == "btrfs"
    assert "fs.inotify.max_user_instances 128->1024" in actions[1].reason


def test_converged_host_plans_nothing() -> None:
    assert plan_host(spec(), READY) == []


def test_running_daemon_with_its_pool_is_reused_and_sysctls_only_raised() -> None:
    higher = replace(READY, sysctls={**READY.sysctls, "fs.inotify.max_user_instances": 8192})
    assert plan_host(spec(), higher) == []  # never lowered


def test_without_kernel_btrfs_auto_means_dir() -> None:
    facts = replace(READY, kernel_btrfs=False, pools={})
    (action,) = plan_host(spec(), facts)
    assert action.data["driver"] == "dir"
    assert dir_source(POOL) in action.reason


def test_daemon_without_btrfs_driver_auto_falls_back_but_explicit_btrfs_fails() -> None:
    facts = replace(READY, daemon_drivers=("dir",), pools={})
    assert plan_host(spec(), facts)[0].data["driver"] == "dir"
    with pytest.raises(ReconcileError, match="offers no btrfs driver") as err:
        plan_host(spec(pool=PoolSpec(POOL, "btrfs", "1GiB")), facts)
    assert "lxd.storage: dir" in str(err.value)


def test_existing_pool_of_another_driver_is_kept() -> None:
    facts = replace(READY, pools={POOL: "dir"})
    assert plan_host(spec(pool=PoolSpec(POOL, "btrfs", "1GiB")), facts) == []


def test_destroy_leaves_the_shared_host_alone() -> None:
    empty = LxdHost().empty_spec(spec())
    assert plan_host(empty, FRESH) == []


def test_systemd_hosts_start_lxd_through_it() -> None:
    actions = plan_host(spec(), replace(FRESH, systemd=True))
    start = next(a for a in actions if a.verb == "start")
    assert start.data == {"systemd": True}


def test_pool_requests() -> None:
    assert pool_request("p", "btrfs", "8GiB")["config"] == {"size": "8GiB"}
    assert pool_request("p", "dir", "8GiB")["config"] == {"source": dir_source("p")}


def test_spec_from_the_stage_builder_json() -> None:
    data = {
        "lab": "l",
        "host": "h1",
        "max_workers": 8,
        "endpoint": {"name": "h1", "kind": "ssh", "address": "198.51.100.7"},
        "ssh_user": "admin",
        "pool": {"name": POOL, "driver": "dir", "size": "5GiB"},
        "sysctls": SYSCTLS,
        "cluster": {
            "enabled": True,
            "role": "join",
            "bootstrap": {"name": "h0", "kind": "ssh", "address": "198.51.100.6"},
        },
    }
    s = parse_spec(json.loads(json.dumps(data)))
    assert s.pool == PoolSpec(POOL, "dir", "5GiB") and s.cluster.role == "join"
    shell = shell_for(s.endpoint, s.ssh_user)
    assert isinstance(shell, SshShell)
    assert shell.argv(["lxc", "query", "/1.0"])[-3:] == ["admin@198.51.100.7", "--", "lxc query /1.0"]
    with pytest.raises(DistrilabError, match=r"pool\.driver: must be one of auto, btrfs, dir"):
        parse_spec({**data, "pool": {"driver": "zfs"}})


# ---------------------------------------------------------------- remote hosts (unit level only)


def remote_spec(role: str) -> Spec:
    return spec(
        host="h2",
        endpoint={"name": "h2", "kind": "ssh", "address": "198.51.100.8"},
        cluster=ClusterSpec(True, role, {"name": "h1", "kind": "ssh", "address": "198.51.100.7"}),
    )


def test_joining_member_joins_and_gets_the_pool_through_the_preseed() -> None:
    facts = replace(READY, pools={})
    assert verbs(plan_host(remote_spec("join"), facts)) == ["3:join lxd cluster", "5:pin server certificate"]
    preseed = join_preseed(remote_spec("join"), "TOKEN", "btrfs")
    assert preseed["cluster"]["cluster_token"] == "TOKEN"
    assert preseed["cluster"]["server_address"] == "198.51.100.8:8443"
    assert preseed["cluster"]["member_config"] == [
        {"entity": "storage-pool", "name": POOL, "key": "size", "value": "20GiB"}
    ]
    assert join_preseed(remote_spec("join"), "T", "dir")["cluster"]["member_config"][0]["key"] == "source"


def test_bootstrap_member_enables_clustering_then_creates_the_pool() -> None:
    facts = replace(READY, pools={})
    assert verbs(plan_host(remote_spec("bootstrap"), facts, "c0ffee")) == [
        "3:bootstrap lxd cluster",
        f"4:create pool {POOL}",
        "5:trust certificate distrilab-t",
        "5:pin server certificate",
    ]
    # a re-run finds the lab's certificate trusted and the cluster's pinned: nothing to do
    settled = replace(READY, clustered=True, trusted=("c0ffee",), server_certificate="PEM")
    assert verbs(plan_host(remote_spec("bootstrap"), settled, "c0ffee", "PEM\n")) == []
    assert bootstrap_preseed(remote_spec("bootstrap")) == {
        "config": {"core.https_address": "198.51.100.8:8443"},
        "cluster": {"server_name": "h2", "enabled": True},
    }


def test_destroy_releases_what_the_lab_set_up_and_nothing_else() -> None:
    from modules.lxd_host import LxdHost

    joined = replace(READY, clustered=True, formed_by="t", trusted=("c0ffee",))
    release = LxdHost().empty_spec(remote_spec("join"))
    assert verbs(plan_host(release, joined, "c0ffee")) == ["0:leave lxd cluster"]
    assert verbs(plan_host(release, replace(joined, formed_by="other-lab"), "c0ffee")) == []
    first = LxdHost().empty_spec(remote_spec("bootstrap"))
    assert verbs(plan_host(first, joined, "c0ffee")) == ["1:untrust certificate distrilab-t",
                                                         "2:dissolve lxd cluster"]
    # a cluster another lab formed only loses this lab's trust
    assert verbs(plan_host(first, replace(joined, formed_by="other-lab"), "c0ffee")) == [
        "1:untrust certificate distrilab-t"]
    # a single-host lab's destroy leaves the shared daemon alone
    assert plan_host(LxdHost().empty_spec(spec()), READY) == []


# ---------------------------------------------------------------- the real daemon


@pytest.mark.e2e
def test_running_daemon_and_shared_pool_are_detected_and_reused() -> None:
    facts = observe_host(LocalShell(), sorted(SYSCTLS))
    assert facts.lxd_answers and POOL in facts.pools
    actions = plan_host(spec(), facts)
    assert not [a for a in actions if a.verb in ("install", "start", "create")]


@pytest.mark.e2e
@pytest.mark.parametrize("driver", ["btrfs", "dir"])
def test_extra_pool_is_created_once_and_removed(driver: str) -> None:
    shell = LocalShell()
    name = f"dl-t{uuid.uuid4().hex[:8]}-{driver}"
    test_spec = spec(pool=PoolSpec(name, driver, "1GiB"))
    try:
        assert LxdHost().converge(test_spec) >= 1
        pool = lxd_query(shell, f"/1.0/storage-pools/{name}")
        assert pool["driver"] == driver and pool["status"] == "Created"
        assert LxdHost().converge(test_spec) == 0  # idempotent: the second run changes nothing
    finally:
        delete_pool(shell, name)
    assert name not in {p["name"] for p in lxd_query(shell, "/1.0/storage-pools?recursion=1")}


# ---------------------------------------------------------------- execution, through a recording shell


class RecordingShell:
    """Answers commands from a script of (prefix -> (code, stdout)); records every command."""

    name = "fake"

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.answers = answers or {}
        self.commands: list[tuple[str, str | None]] = []

    def run(
        self, cmd: list[str], stdin: str | None = None, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        line = " ".join(cmd)
        self.commands.append((line, stdin))
        code, out = next((v for k, v in self.answers.items() if line.startswith(k)), (0, ""))
        if check and code:
            raise ShellError(self.name, line, code, out)
        return subprocess.CompletedProcess(cmd, code, out, "")


def test_install_refreshes_package_lists_once_when_apt_fails() -> None:
    shell = RecordingShell(
        {"env DEBIAN_FRONTEND=noninteractive apt-get install": (100, "E: Unable to locate")}
    )
    with pytest.raises(ShellError):
        install_packages(shell, ["lxd", "nftables"])
    lines = [c for c, _ in shell.commands]
    assert [line.split()[2:4] for line in lines] == [
        ["apt-get", "install"],
        ["apt-get", "update"],
        ["apt-get", "install"],
    ]


def test_daemon_starts_detached_without_systemd_and_waits() -> None:
    shell = RecordingShell()
    start_daemon(shell, systemd=False)
    (start, _), (wait, _) = shell.commands
    assert start.startswith("sh -c setsid sh -c 'echo $$ > /run/distrilab-lxd.pid; "
                            "exec lxd --group root --logfile /var/log/lxd-distrilab.log'")
    assert start.endswith("&") and wait == "lxd waitready --timeout=60"
    shell = RecordingShell()
    start_daemon(shell, systemd=True)
    assert shell.commands[0][0] == "systemctl start lxd"


def test_a_daemon_slow_to_get_ready_is_waited_for_and_a_dead_one_reported_with_its_log() -> None:
    slow = RecordingShell({"lxd waitready": (1, "")})  # alive (kill -0 answers 0) but never ready
    with pytest.raises(ShellError) as err:
        start_daemon(slow, systemd=False)
    waits = [c for c, _ in slow.commands if c.startswith("lxd waitready")]
    assert len(waits) == READY_WAITS == 3

    dead = RecordingShell({"lxd waitready": (1, ""), "sh -c kill -0": (1, ""),
                           "sh -c tail -n 12": (0, "Error: failed to open cluster database")})
    with pytest.raises(ShellError) as err:
        start_daemon(dead, systemd=False)
    assert len([c for c, _ in dead.commands if c.startswith("lxd waitready")]) == 1  # no point waiting
    assert "failed to open cluster database" in str(err.value)
    assert "/var/log/lxd-distrilab.log" in next(c for c, _ in dead.commands if "tail" in c)


class HangingInit(RecordingShell):
    """`lxd init --preseed` hangs the first time (the daemon's API locked), then works."""

    def __init__(self) -> None:
        super().__init__({"lxc query --wait -X GET /1.0": (0, "{}")})
        self.hung = False

    def run(self, cmd: list[str], stdin: str | None = None, check: bool = True,
            timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        if cmd[:2] == ["lxd", "init"] and not self.hung:
            self.hung = True
            self.commands.append((" ".join(cmd), stdin))
            raise subprocess.TimeoutExpired(cmd, timeout or 0)
        return super().run(cmd, stdin, check, timeout)


def test_a_bootstrap_that_hangs_restarts_the_daemon_and_tries_once_more() -> None:
    from modules.lxd_host import bootstrap_cluster

    shell = HangingInit()
    bootstrap_cluster(shell, remote_spec("bootstrap"))
    lines = [line for line, _ in shell.commands if not line.startswith("lxc query")]
    assert lines[0] == "lxd init --preseed" and "kill -KILL" in lines[1]
    assert "setsid" in lines[2] and lines[3] == "lxd waitready --timeout=60"
    assert lines[4] == "lxd init --preseed" and "cluster-formed-by" in lines[5]


def test_sysctls_are_raised_and_persisted() -> None:
    shell = RecordingShell()
    set_sysctls(
        shell,
        {"fs.inotify.max_user_instances": 1024},
        {"fs.inotify.max_user_instances": 1024, "fs.inotify.max_user_watches": 2097152},
    )
    assert shell.commands[0][0] == "sysctl -q -w fs.inotify.max_user_instances=1024"
    persisted = shell.commands[1][1] or ""
    assert (
        "fs.inotify.max_user_watches = 2097152" in persisted
        and "/etc/sysctl.d/60-distrilab.conf" in shell.commands[1][0]
    )


def test_dir_pool_gets_its_source_folder_before_the_request() -> None:
    shell = RecordingShell({"lxc query --wait -X GET /1.0/storage-pools": (0, "[]")})
    create_pool(shell, "p1", "dir", "1GiB")
    lines = [c for c, _ in shell.commands]
    assert lines[1] == f"mkdir -p {dir_source('p1')}"
    assert lines[2].startswith("lxc query --wait -d") and lines[2].endswith("-X POST /1.0/storage-pools")


def test_pool_created_meanwhile_is_reused() -> None:
    shell = RecordingShell(
        {"lxc query --wait -X GET /1.0/storage-pools": (0, '[{"name": "p1", "driver": "btrfs"}]')}
    )
    create_pool(shell, "p1", "btrfs", "1GiB")
    assert len(shell.commands) == 1


# ---------------------------------------------------------------- nested hosts (a host that is a container)

#: the uid map LXD gives an unprivileged container here (root's range of the outer /etc/subuid)
CONTAINER_MAP = "         0     100000   10000001"


def test_a_bare_machine_is_not_nested_and_keeps_its_subids() -> None:
    assert not is_nested("         0          0 4294967295")
    assert fitted_subid("0 0 4294967295", "root:100000:10000001\n") is None
    assert fitted_subid("0 0 4294967295", "") is None  # LXD's default fits an unnamespaced host


def test_a_nested_host_gets_a_range_inside_its_own_map() -> None:
    assert is_nested(CONTAINER_MAP)
    # the lxd package's entry (100000 + 10000001 > 10000001 mapped) and LXD's default do not fit
    assert fitted_subid(CONTAINER_MAP, "_lxd:100000:10000001\nroot:100000:10000001\n") == (1000000, 9000001)
    assert fitted_subid(CONTAINER_MAP, "") == (1000000, 9000001)
    assert fitted_subid(CONTAINER_MAP, "root:1000000:1000000\n") is None  # already fits: untouched


def test_a_host_too_small_for_any_container_is_refused() -> None:
    with pytest.raises(ReconcileError, match="maps only"):
        fitted_subid("0 100000 65536", "")


def test_nested_host_fixes_ids_and_cgroups_before_the_daemon_starts_and_uses_dir() -> None:
    mounts = ("cpu cpu", "systemd none,name=systemd")
    facts = replace(FRESH, uid_map=CONTAINER_MAP, loop_devices=False, missing_cgroups=mounts)
    actions = plan_host(spec(), facts)
    assert [v for v in verbs(actions) if not v.startswith("0:")] == [
        "1:fit subordinate ids",
        "1:mount cgroup cpu,systemd",
        "2:start lxd daemon",
        f"4:create pool {POOL}",
    ]
    assert actions[-1].data["driver"] == "dir"  # no loop devices in a container: no btrfs loop file


def test_a_running_nested_daemon_keeps_its_ids() -> None:
    facts = replace(READY, uid_map=CONTAINER_MAP)
    assert verbs(plan_host(spec(), facts)) == []


def test_a_join_that_hangs_is_undone_on_both_sides_and_tried_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modules import lxd_host

    leader = RecordingShell({"lxc query --wait -X GET /1.0/storage-pools/": (0, '{"driver": "dir"}'),
                             "lxc cluster add": (0, "TOKEN\n")})
    monkeypatch.setattr(lxd_host, "host_shell", lambda endpoint, user=None: leader)
    monkeypatch.setattr(lxd_host, "wait_for_leader", lambda shell, spec: None)
    joiner = HangingInit()
    lxd_host.join_cluster(joiner, remote_spec("join"))
    ran = [line for line, _ in joiner.commands if not line.startswith("lxc query")]
    inits = [i for i, line in enumerate(ran) if line == "lxd init --preseed"]
    assert len(inits) == 2 and "kill -KILL" in ran[inits[0] + 1]
    wiped = "sh -c rm -rf --one-file-system /var/lib/lxd/*"
    assert any(line.startswith(wiped) for line in ran[inits[0] : inits[1]])
    on_leader = [line for line, _ in leader.commands]
    assert "lxc cluster remove h2 --force --yes" in on_leader  # the half-made member, if listed
    assert sum(line == "lxc cluster add h2 --quiet" for line in on_leader) == 2  # a fresh token


class NoSuchMember:
    """A host whose cluster no longer lists it: `lxc query` answers 404."""

    name = "h3"

    def run(self, cmd: Any, stdin: str | None = None, check: bool = True,
            timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        raise ShellError(self.name, " ".join(cmd), 1, "Error: Cluster member not found\n")


def test_a_member_the_cluster_no_longer_lists_is_reported_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ReconcileError) as err:
        wait_member_online(NoSuchMember(), "h3", timeout=60)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5  # waiting cannot bring it back
    assert "cluster member h3: missing: the lab's cluster does not list it" in str(err.value)
    assert "distrilab down" in str(err.value)
