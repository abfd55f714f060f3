"""modules/links.py and cdk/stages/links.py: plan fixtures, interface parsing, names, cross-host specs."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.labs import leaf_spine
from cdk.model import Host, Placement
from cdk.stages import links as stage
from modules.host_shell import SshShell
from modules.links import LinksReconciler, parse_interfaces, run_ip_batch
from modules.reconcile import Action
from tests.fakes.lxd import FakeLxd
from tests.modules.plan_cases import cases, check_case

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
