"""modules/links.py and cdk/stages/links.py: plan fixtures, interface parsing, names, cross-host specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.labs import leaf_spine
from cdk.model import Host, Placement
from cdk.stages import links as stage
from modules.links import LinksReconciler, parse_interfaces, run_ip_batch
from modules.reconcile import Action
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
