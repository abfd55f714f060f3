"""cdk/routing.py: the routed fabric's ASNs, sessions, announcements, ECMP expectations and bgpd
configuration, per topology kind. The configurations are golden files (tests/cdk/routing/<lab>.conf):
after a deliberate change, rewrite them with `pytest tests/cdk --update-golden` and review the diff."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdk import routing
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from tests.cdk.golden import LABS_DIR

GOLDEN_DIR = Path(__file__).parent / "routing"
LABS = ("default", "dc-3tier", "fat-tree-k4")


def routed(lab_file: str, **changes: Any) -> Lab:
    data = yaml.safe_load((LABS_DIR / f"{lab_file}.yaml").read_text())
    data["fabric"] = {"mode": "l3"}
    data.update(changes)
    return lab_from_dict(data)


@pytest.mark.parametrize("lab_file", LABS)
def test_bgpd_configuration_golden(lab_file: str, request: pytest.FixtureRequest) -> None:
    lab = routed(lab_file)
    found = routing.routers(lab.topology, lab.addressing)
    text = "".join(routing.render_bgpd(r, lab.name) for r in found.values())
    golden = GOLDEN_DIR / f"{lab_file}.conf"
    if request.config.getoption("--update-golden"):
        golden.write_text(text)
    assert golden.exists(), f"no {golden.name}: run pytest with --update-golden and review it"
    assert text == golden.read_text()


@pytest.mark.parametrize("lab_file", LABS)
def test_every_switch_link_is_one_session_from_each_end_with_matching_addresses(lab_file: str) -> None:
    lab = routed(lab_file)
    found = routing.routers(lab.topology, lab.addressing)
    switches = {n.name for n in lab.topology.nodes if n.kind == "switch"}
    fabric_links = [link for link in lab.topology.links if {link.a.node, link.b.node} <= switches]
    assert sum(len(r.sessions) for r in found.values()) == 2 * len(fabric_links)
    for router in found.values():
        for s in router.sessions:
            peer = found[s.peer]
            back = next(p for p in peer.sessions if p.interface == s.peer_interface)
            assert back.peer == router.name and back.asn == router.asn
            assert IPv4Interface(back.local).ip == IPv4Interface(f"{s.address}/31").ip
            assert IPv4Interface(s.local).network == IPv4Interface(back.local).network  # one /31
            assert s.asn == peer.asn


def test_tiers_share_an_asn_and_rack_switches_have_their_own() -> None:
    lab = routed("dc-3tier")
    asn = routing.asns(lab.topology, lab.addressing)
    assert asn["core-01"] == asn["core-02"] == routing.ASN_BASE
    assert asn["agg-01-01"] == asn["agg-01-02"] == routing.ASN_BASE + 1  # pod 1
    assert asn["agg-02-01"] == routing.ASN_BASE + 2
    edges = [asn[n] for n in asn if n.startswith("edge-")]
    assert len(set(edges)) == len(edges) == 4
    assert all(routing.ASN_BASE + routing.UNIQUE_BASE <= a <= 4_294_967_294 for a in edges)  # RFC 6996


def test_rack_switches_announce_their_rack_and_servers_route_through_them() -> None:
    lab = routed("default")
    leaf = routing.routers(lab.topology, lab.addressing)["leaf-01"]
    rack = IPv4Network(lab.addressing.rack_subnets["leaf-01"])
    assert leaf.networks == (lab.addressing.loopbacks["leaf-01"], str(rack))
    assert leaf.rack is not None and IPv4Interface(leaf.rack.gateway).ip == rack.broadcast_address - 1
    assert leaf.rack.ports == ("eth3", "eth4", "eth5")  # its three servers
    spine = routing.routers(lab.topology, lab.addressing)["spine-01"]
    assert spine.rack is None and spine.networks == (lab.addressing.loopbacks["spine-01"],)
    servers = [a for a in lab.addressing.servers if a.node.startswith("srv-01-")]
    assert {IPv4Interface(a.address).network for a in servers} == {rack}  # a /24, not the pool's /16


@pytest.mark.parametrize(("lab_file", "paths"), [("default", 2), ("dc-3tier", 2), ("fat-tree-k4", 2)])
def test_each_rack_expects_a_path_through_every_uplink(lab_file: str, paths: int) -> None:
    lab = routed(lab_file)
    expected = routing.expected_next_hops(lab.topology, lab.addressing)
    assert set(expected) == set(lab.addressing.rack_subnets)
    for rack, routes in expected.items():
        others = {s for r, s in lab.addressing.rack_subnets.items() if r != rack}
        assert set(routes) == others and set(routes.values()) == {paths}, rack


def test_a_four_spine_leaf_spine_spreads_over_four_paths() -> None:
    lab = routed("default", topology={"kind": "leaf-spine", "spines": 4, "leaves": 3, "servers_per_leaf": 1})
    expected = routing.expected_next_hops(lab.topology, lab.addressing)
    assert {n for routes in expected.values() for n in routes.values()} == {4}


def test_the_l2_fabric_has_no_rack_gateways() -> None:
    data = yaml.safe_load((LABS_DIR / "default.yaml").read_text())
    lab = lab_from_dict(data)
    assert lab.addressing.rack_gateways == {}
    assert all(IPv4Interface(a.address).network.prefixlen == 16 for a in lab.addressing.servers)
