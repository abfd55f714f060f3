"""modules/links.py and cdk/stages/links.py: plan fixtures, interface parsing, names, cross-host specs."""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.labs import leaf_spine
from cdk.model import Host, Placement
from cdk.names import parse_interfaces
from cdk.stages import links as stage
from modules.host_shell import SshShell
from modules.links import (
    GROUP_BASE,
    LinksReconciler,
    batch_lines,
    delete_group,
    run_ip_batch,
)
from modules.reconcile import Action
from tests.fakes.lxd import FakeLxd
from tests.modules.plan_cases import HERE, cases, check_case

POOLS = {"management": "10.100.0.0/16", "loopbacks": "10.101.0.0/16", "p2p": "10.102.0.0/16",
         "servers": "10.103.0.0/16"}


@pytest.mark.parametrize("path", cases("links"))
def test_plan_fixture(path: Path) -> None:
    check_case(LinksReconciler(), path)


def test_names_fit_the_kernel_and_do_not_move_when_links_are_added() -> None:
    small = stage.build(leaf_spine("nm", 2, 2, 1, pools=POOLS, host_routes=[]), Host("local"))
    large = stage.build(leaf_spine("nm", 2, 3, 2, pools=POOLS, host_routes=[]), Host("local"))
    assert small and large
    names = {link["id"]: link["bridge"] for link in small["links"]}
    for link in large["links"]:
        assert len(link["bridge"]) <= 15 and all(len(e["veth"]) <= 15 for e in link["ends"])
        if link["id"] in names:
            assert names[link["id"]] == link["bridge"]


def test_cross_host_link_gets_a_vxlan_with_the_same_vni_on_both_sides() -> None:
    lab = leaf_spine("xh", 1, 1, 1, pools=POOLS, host_routes=[])
    h1, h2 = Host("h1", "ssh", "192.0.2.10"), Host("h2", "ssh", "192.0.2.11")
    where = {n.name: ("h1" if n.kind == "switch" else "h2") for n in lab.topology.nodes}
    lab = dataclasses.replace(lab, hosts=(h1, h2), placement=Placement("file", where, 1))
    one, two = stage.build(lab, h1), stage.build(lab, h2)
    assert one and two
    cross1 = next(link for link in one["links"] if link["vxlan"])
    cross2 = next(link for link in two["links"] if link["vxlan"])
    assert cross1["id"] == cross2["id"]
    assert cross1["vxlan"]["vni"] == cross2["vxlan"]["vni"]
    assert (cross1["vxlan"]["local"], cross1["vxlan"]["remote"]) == ("192.0.2.10", "192.0.2.11")
    assert (cross2["vxlan"]["local"], cross2["vxlan"]["remote"]) == ("192.0.2.11", "192.0.2.10")
    assert cross1["mtu"] == 1450 and [e["node"] for e in cross1["ends"]] == ["leaf-01"]
    plan = LinksReconciler().plan(LinksReconciler().load_spec(one), {"interfaces": {}, "instances": {}})
    vx = [a for a in plan if a.verb == "create-vxlan"]
    assert len(vx) == 1
    assert f"type vxlan id {cross1['vxlan']['vni']} remote 192.0.2.11 local 192.0.2.10 dstport 4789" in (
        vx[0].data["lines"][0]
    )


def test_parse_interfaces_keeps_only_the_labs_aliases() -> None:
    raw = [
        {"ifname": "eth0", "mtu": 1500, "flags": ["UP"]},
        {"ifname": "dlaaaal1", "ifalias": "distrilab:lab:x", "mtu": 1500, "flags": ["BROADCAST", "UP"],
         "linkinfo": {"info_kind": "bridge"}},
        {"ifname": "dlbbbbl1", "ifalias": "distrilab:lab2:x", "mtu": 1500, "flags": [],
         "linkinfo": {"info_kind": "bridge"}},
        {"ifname": "dlaaaax1", "ifalias": "distrilab:lab:x", "mtu": 1450, "flags": ["UP"],
         "master": "dlaaaal1", "linkinfo": {"info_kind": "vxlan", "info_data": {
             "id": 7, "remote": "192.0.2.2", "local": "192.0.2.1", "port": 4789}}},
    ]
    parsed = parse_interfaces(raw, "distrilab:lab:")
    assert sorted(parsed) == ["dlaaaal1", "dlaaaax1"]
    assert parsed["dlaaaax1"]["vxlan"] == {"id": 7, "remote": "192.0.2.2", "local": "192.0.2.1", "port": 4789}
    assert parsed["dlaaaal1"]["up"] is True


def test_ip_batch_failures_are_mapped_to_their_action() -> None:
    fine = Action("noop", "lo", "test", data={"lines": ["link show dev lo"]})
    broken = Action("delete", "dl-nonexistent0", "test", data={"lines": ["link del dev dl-nonexist0"]})
    errors = run_ip_batch([fine, broken])
    assert list(errors) == [broken]
    assert "dl-nonexist0" in errors[broken]


def destroy_plan(observed_extra: dict[str, object] | None = None) -> list[Action]:
    case = json.loads((HERE / "links" / "destroy_everything.json").read_text())
    r = LinksReconciler()
    return r.plan(r.load_spec(case["spec"]), {**case["observed"], **(observed_extra or {})})


def test_destroy_is_one_batch_that_groups_every_interface_then_deletes_the_group() -> None:
    actions = destroy_plan()
    group = delete_group("distrilab:fx:", set())
    lines, owners = batch_lines(actions)
    assert lines == [f"link set dev {a.target} group {group}" for a in actions] + [f"link del group {group}"]
    assert owners[:-1] == [[a] for a in actions]
    assert owners[-1] == actions  # the one delete is every action's


def test_the_delete_group_is_the_labs_and_never_one_another_interface_is_in() -> None:
    mine, other = delete_group("distrilab:fx:", set()), delete_group("distrilab:fy:", set())
    assert mine != other and mine >= GROUP_BASE
    assert delete_group("distrilab:fx:", set()) == mine  # stable: a re-run empties the same group
    # a foreign interface, or one the lab keeps, in that group: the next free one
    actions = destroy_plan({"groups": ["0", str(mine)]})
    assert {a.data["after"][0] for a in actions} == {f"link del group {mine + 1}"}
    case = json.loads((HERE / "links" / "removed_link_is_deleted.json").read_text())
    kept = next(n for n, i in case["observed"]["interfaces"].items() if n.startswith("dl6956l23"))
    case["observed"]["interfaces"][kept]["group"] = str(mine)
    r = LinksReconciler()
    deletes = [a for a in r.plan(r.load_spec(case["spec"]), case["observed"]) if a.verb == "delete"]
    assert deletes and {a.data["after"][0] for a in deletes} == {f"link del group {mine + 1}"}


@dataclasses.dataclass
class FailingShell:
    """`ip -batch` that reports the given 1-based lines failed, as ip does reading stdin."""

    failed: dict[int, str]

    def run(self, cmd: Sequence[str], stdin: str | None = None, check: bool = True,
            timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        stderr = "".join(f"{msg}\nCommand failed -:{n}\n" for n, msg in sorted(self.failed.items()))
        return subprocess.CompletedProcess(list(cmd), 1 if self.failed else 0, "", stderr)


def test_a_failed_group_line_is_its_interfaces_and_a_failed_delete_is_everyones() -> None:
    actions = destroy_plan()
    # the second interface vanished before its line ran: only its action failed
    errors = run_ip_batch(actions, FailingShell({2: "Cannot find device \"dl6956a758a298f\""}))
    assert list(errors) == [actions[1]] and "dl6956a758a298f" in errors[actions[1]]
    # the group delete failed: nothing was deleted, every action reports it (its own error first)
    unsupported = "RTNETLINK answers: Operation not supported"
    errors = run_ip_batch(actions, FailingShell({2: "Cannot find device", len(actions) + 1: unsupported}))
    assert set(errors) == set(actions)
    assert "Cannot find device" in errors[actions[1]]
    others = [errors[a] for a in actions if a != actions[1]]
    assert all("link del group" in e and "not supported" in e for e in others)


@pytest.mark.e2e
def test_destroy_deletes_the_labs_interfaces_in_one_group_and_nothing_else() -> None:
    """Against this host's kernel: the bridges, veth pairs and VXLAN of a made-up lab go, a foreign
    bridge in the lab's delete group stays (the plan picks another group)."""
    lab = f"e2e{secrets.token_hex(3)}"
    prefix = f"distrilab:{lab}:"
    tag = lab[-6:]
    bridges, veths, peers = ([f"dlt{tag}{k}{i}" for i in range(3)] for k in "bvp")
    vxlan, foreign = f"dlt{tag}x0", f"dlt{tag}f0"
    group = delete_group(prefix, set())
    setup = [f"link add {foreign} type bridge", f"link set dev {foreign} group {group}"]
    for bridge, veth, peer in zip(bridges, veths, peers, strict=True):
        setup += [f"link add {bridge} type bridge", f"link set dev {bridge} alias {prefix}{bridge}",
                  f"link add {veth} type veth peer name {peer}",
                  f"link set dev {veth} alias {prefix}{bridge}:n:eth1 master {bridge}"]
    setup += [f"link add {vxlan} type vxlan id {1 + secrets.randbelow(2**23)} dstport 4789 local 127.0.0.1"
              " remote 127.0.0.2", f"link set dev {vxlan} alias {prefix}{bridges[0]} master {bridges[0]}"]
    try:
        subprocess.run(["ip", "-batch", "-"], input="\n".join(setup) + "\n", text=True, check=True)
        r = LinksReconciler()
        spec = r.load_spec({"lab": lab, "host": "local", "links": []})
        actions = r.plan(spec, r.observe(None, spec))
        assert sorted(a.target for a in actions) == sorted([*bridges, *veths, vxlan])
        assert r.execute(None, spec, actions) == []
        left = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
        assert not [n for n in [*bridges, *veths, *peers, vxlan] if f" {n}:" in left or f" {n}@" in left]
        assert f" {foreign}:" in left
        assert r.plan(spec, r.observe(None, spec)) == []
    finally:
        for name in [*bridges, *veths, vxlan, foreign]:
            subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, check=False)


@dataclasses.dataclass
class RecordingShell:
    """Stands in for the ssh shell of a remote host: records what would run there."""

    name: str = "h2"
    calls: list[tuple[list[str], str | None]] = dataclasses.field(default_factory=list)

    def run(self, cmd: Sequence[str], stdin: str | None = None, check: bool = True,
            timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(cmd), stdin))
        out = "[]" if list(cmd)[:3] == ["ip", "-j", "-d"] else ""
        return subprocess.CompletedProcess(list(cmd), 0, out, "")


def test_a_remote_hosts_links_are_made_on_that_host_with_pids_from_its_lxd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = leaf_spine("rh", 1, 1, 1, pools=POOLS, host_routes=[])
    h2 = Host("h2", "ssh", "192.0.2.11", ssh_user="lab")
    lab = dataclasses.replace(lab, hosts=(h2,), placement=Placement("file", {n.name: "h2" for n in
                                                                              lab.topology.nodes}, 1))
    data = stage.build(lab, h2)
    assert data and data["ssh_user"] == "lab"
    r = LinksReconciler()
    spec = r.load_spec(data)
    assert isinstance(spec.shell, SshShell) and "lab@192.0.2.11" in spec.shell.argv(["true"])
    shell = RecordingShell()
    monkeypatch.setattr(LinksReconciler, "connect", lambda self, spec: fake)
    monkeypatch.setattr(type(spec), "shell", property(lambda self: shell))
    monkeypatch.setattr("modules.links.container_init_pids", lambda names: pytest.fail("read local /proc"))
    fake = FakeLxd()
    for node in lab.topology.nodes:
        fake.add_instance(lab.instance_name(node.name), config={"user.distrilab.lab": "rh"})
    assert r.converge(spec) == 2 + 2 * 2  # two bridges, four ends
    observe, *batches = shell.calls
    assert observe[0] == ["ip", "-j", "-d", "link", "show"]
    assert [cmd for cmd, _ in batches] == [["ip", "-force", "-batch", "-"]] * 2
    ends = batches[1][1] or ""
    # the veth peers go into the namespace of the pid the host's LXD reported (the fake's pid)
    pid = 1000 + len(lab.instance_name("srv-01-01"))
    assert f"netns {pid}" in ends and "{pid}" not in ends
