"""The doctor: findings from host facts (pure), its JSON document, and a real fix on this machine (e2e)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from typing import Any

import pytest

from cdk.stages.cluster import POOL, SYSCTLS
from modules.doctor import DISK_FLOOR, FDS_FLOOR, Finding, Needs, Observed, diagnose
from modules.lxd_host import Facts
from stacks import cli
from tests.json_schema import valid_document

GiB = 2**30
READY_FACTS = Facts(missing_packages=(), kernel_btrfs=True, loop_devices=True, systemd=False,
                    lxd_answers=True, daemon_drivers=("btrfs", "dir"), pools={POOL: "btrfs"},
                    sysctls=dict(SYSCTLS))
READY = Observed("h1", READY_FACTS, tun=True, ovs_module=False, firewall="nftables", daemon_nofile=20000,
                 daemon_pid=42, pool_space=(1 * GiB, 40 * GiB))
#: the uid map of an LXD container (an unprivileged nested host)
CONTAINER_MAP = "         0     100000   10000001"


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def facts(**changes: object) -> Observed:
    return replace(READY, facts=replace(READY_FACTS, **changes))


def test_a_ready_host_passes_every_check_and_blocks_nothing() -> None:
    found = diagnose(READY)
    assert {f.state for f in found} == {"pass"}
    assert [f.check for f in found] == ["programs", "inotify limits", "neighbour tables", "kernel keys",
                                        "open files", "firewall", "storage", "/dev/net/tun", "openvswitch",
                                        "nesting", "lxd"]
    assert not any(f.fix or f.blocks or f.action for f in found)


def test_low_inotify_limits_fail_with_the_values_to_set() -> None:
    low = dict(SYSCTLS) | {"fs.inotify.max_user_instances": 128, "fs.inotify.max_user_watches": 8192}
    found = by_check(diagnose(facts(sysctls=low)))
    inotify = found["inotify limits"]
    assert inotify.state == "fail" and not inotify.blocks and inotify.action is not None
    assert "fs.inotify.max_user_instances=128" in inotify.detail
    assert "fs.inotify.max_user_instances to 1024" in inotify.fix
    assert "fs.inotify.max_user_watches to 1048576" in inotify.fix
    assert found["neighbour tables"].state == "pass"


def test_a_limit_the_host_does_not_show_is_not_judged() -> None:
    # a nested host sees no neighbour-table sysctls: nothing to raise there
    hidden = {k: v for k, v in SYSCTLS.items() if ".neigh." not in k}
    neighbour = by_check(diagnose(facts(sysctls=hidden)))["neighbour tables"]
    assert neighbour.state == "pass" and "(not visible)" in neighbour.detail


def test_missing_packages_are_named_with_the_install_that_brings_them() -> None:
    found = by_check(diagnose(facts(missing_packages=("lxd", "kmod", "dnsmasq-base"))))
    assert found["programs"].state == "fail"
    assert found["programs"].fix == "apt-get install dnsmasq-base kmod lxd"
    assert found["firewall"].state == "pass"  # nftables is not among the missing


def test_no_nft_fails_the_firewall_and_an_xtables_daemon_cannot_be_fixed_in_place() -> None:
    no_nft = by_check(diagnose(facts(missing_packages=("nftables",))))["firewall"]
    assert no_nft.state == "fail" and no_nft.action is not None
    xtables = by_check(diagnose(replace(READY, firewall="xtables")))["firewall"]
    assert xtables.state == "fail" and xtables.action is None and "restart LXD" in xtables.fix


def test_open_files_scale_with_the_lab_and_a_foreign_daemon_is_skipped() -> None:
    assert by_check(diagnose(READY, Needs(nodes=1000)))["open files"].state == "pass"  # 16000 < floor
    big = by_check(diagnose(READY, Needs(nodes=2000)))["open files"]
    assert big.state == "fail" and big.fix == "prlimit --pid 42 --nofile=32000"
    assert "2000 nodes need 32000" in big.detail
    low = by_check(diagnose(replace(READY, daemon_nofile=1024)))["open files"]
    assert low.state == "fail" and str(FDS_FLOOR) in low.fix
    foreign = by_check(diagnose(replace(READY, daemon_nofile=None, daemon_pid=None)))["open files"]
    assert foreign.state == "skip"


def test_storage_warns_on_the_estimate_and_blocks_only_below_the_floor() -> None:
    assert by_check(diagnose(replace(READY, pool_space=None)))["storage"].state == "skip"
    tight = by_check(diagnose(replace(READY, pool_space=(37 * GiB, 40 * GiB)), Needs(nodes=100)))["storage"]
    assert tight.state == "fail" and not tight.blocks  # 3 GiB free, 100 nodes estimated at 3.95
    full = by_check(diagnose(replace(READY, pool_space=(40 * GiB - DISK_FLOOR + 1, 40 * GiB))))["storage"]
    assert full.state == "fail" and full.blocks


def test_a_missing_tun_device_blocks_only_labs_that_run_ovs() -> None:
    no_tun = replace(READY, tun=False)
    assert by_check(diagnose(no_tun))["/dev/net/tun"].blocks
    assert by_check(diagnose(no_tun))["/dev/net/tun"].fix == "mknod -m 666 /dev/net/tun c 10 200"
    plain = by_check(diagnose(no_tun, Needs(tun=False)))["/dev/net/tun"]
    assert plain.state == "fail" and not plain.blocks


def test_a_nested_host_with_subids_outside_its_map_fails_and_names_the_fit() -> None:
    nested = replace(READY, facts=replace(READY_FACTS, uid_map=CONTAINER_MAP),
                     subuid="root:100000:10000001\n")
    bad = by_check(diagnose(nested))["nesting"]
    assert bad.state == "fail" and "root:1000000:9000001" in bad.detail
    good = by_check(diagnose(replace(nested, subuid="root:1000000:1000000\n")))["nesting"]
    assert good.state == "pass"
    tiny = replace(nested, facts=replace(READY_FACTS, uid_map="0 100000 65536"))
    assert "maps only" in by_check(diagnose(tiny))["nesting"].detail
    cgroups = replace(nested, subuid="root:1000000:1000000\n",
                      facts=replace(READY_FACTS, uid_map=CONTAINER_MAP, missing_cgroups=("cpu cpu",)))
    assert "cgroups not mounted: cpu cpu" in by_check(diagnose(cgroups))["nesting"].detail


def test_a_silent_daemon_fails_the_lxd_check() -> None:
    found = by_check(diagnose(facts(lxd_answers=False)))
    assert found["lxd"].state == "fail" and "ensure" in found["lxd"].fix


def test_doctor_json_is_one_valid_document(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["doctor", "--json"])
    doc = valid_document(capsys.readouterr().out, "distrilab-doctor")
    assert rc == (0 if doc["ok"] else 1)
    assert doc["lab"] is None and {c["host"] for c in doc["checks"]} == {"local"}
    assert {r["state"] for r in doc["programs"]} <= {"ok", "missing", "optional"}


INOTIFY = "fs.inotify.max_user_instances"


def sysctl(name: str) -> int:
    return int(subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, check=True).stdout)


@pytest.mark.e2e
def test_doctor_finds_a_lowered_limit_and_fix_raises_it(capsys: pytest.CaptureFixture[str]) -> None:
    """A real limit on this machine, lowered below what labs need: the doctor reports it, --fix raises it."""
    before = sysctl(INOTIFY)
    try:
        subprocess.run(["sysctl", "-q", "-w", f"{INOTIFY}={SYSCTLS[INOTIFY] - 1}"], check=True)
        assert cli.main(["doctor", "--json"]) == 1
        seen = by_name(valid_document(capsys.readouterr().out, "distrilab-doctor"))
        assert seen["inotify limits"]["state"] == "fail"
        assert f"{INOTIFY}={SYSCTLS[INOTIFY] - 1}" in seen["inotify limits"]["detail"]
        cli.main(["doctor", "--fix", "--json"])
        fixed = by_name(valid_document(capsys.readouterr().out, "distrilab-doctor"))
        assert fixed["inotify limits"]["state"] == "fixed", fixed["inotify limits"]
        assert sysctl(INOTIFY) >= SYSCTLS[INOTIFY]
    finally:
        subprocess.run(["sysctl", "-q", "-w", f"{INOTIFY}={max(before, sysctl(INOTIFY))}"], check=True)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["check"]: c for c in doc["checks"]}
