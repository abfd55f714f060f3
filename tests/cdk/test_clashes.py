"""A lab sharing a machine with others: VXLAN ids and names that would collide (pure rules, and
the reader of `ip -j -d link` output)."""

from __future__ import annotations

from bench.labgen import leaf_spine_lab
from cdk.clashes import lab_vnis, name_clash, vni_clashes
from cdk.names import vni
from stacks.clashes import taken_vnis

LAB = leaf_spine_lab("cl-a", hosts=("a", "b"))  # round-robin: every spine-leaf link crosses hosts


def test_the_tunnels_of_a_host_are_the_links_that_leave_it() -> None:
    where = LAB.placement.assignment
    crossing = {link.id for link in LAB.topology.links if where[link.a.node] != where[link.b.node]}
    assert crossing and set(lab_vnis(LAB, "a").values()) == crossing == set(lab_vnis(LAB, "b").values())
    assert all(number == vni("cl-a", link) for number, link in lab_vnis(LAB, "a").items())


def test_an_id_another_labs_tunnel_holds_is_named_with_that_lab() -> None:
    number, link = next(iter(lab_vnis(LAB, "a").items()))
    assert vni_clashes(LAB, "a", {number: "other"}) == [
        f"link {link} needs VXLAN id {number}, which lab other uses on host a"]
    assert vni_clashes(LAB, "a", {number: "cl-a"}) == []  # its own tunnel, from its last up
    assert vni_clashes(LAB, "a", {number + 1 if number + 1 not in lab_vnis(LAB, "a") else 1: "x"}) == []


def test_a_same_named_lab_without_state_here_is_another_checkouts() -> None:
    assert "another checkout deployed it" in (name_clash("web", 12, 0) or "")
    assert name_clash("web", 12, 9) is None  # this checkout's own lab, re-applied
    assert name_clash("web", 0, 0) is None  # a new lab


def test_tunnel_ids_are_read_from_ip_link_json() -> None:
    links = [
        {"ifname": "dlab12x34", "ifalias": "distrilab:other:link/x", "flags": ["UP"], "mtu": 1450,
         "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 4242, "remote": "192.0.2.9", "port": 4789}}},
        {"ifname": "vxlan0", "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 7}}},  # not a lab's
        {"ifname": "dlm-other", "ifalias": "distrilab:other:mgmt", "linkinfo": {"info_kind": "bridge"}},
    ]
    assert taken_vnis(links) == {4242: "other"}
