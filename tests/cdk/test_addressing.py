"""Addressing: every address inside its pool, no collisions across pools, servers on-link from their
rack subnet, exhaustion detected up front and at assignment, determinism."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdk.addressing import (
    EXTRA_RESERVE,
    RACK_HOSTS,
    AddressPools,
    PoolExhausted,
    PoolOverlap,
    assign,
    capacity,
    free_addresses,
    node_home,
    overlaps,
    p2p_ends,
    parse_pool,
    pool_capacity_problems,
)
from cdk.model import Addressing, Topology, to_dict
from cdk.topology import GENERATORS

TOPOLOGIES = [
    ("leaf-spine", {}),
    ("leaf-spine", {"k": 8}),
    ("clos", {}),
    ("clos", {"pods": 3, "cores": 3, "aggregations_per_pod": 2, "edges_per_pod": 4, "servers_per_edge": 5}),
    ("fat-tree", {"k": 6}),
    ("linear", {"switches": 5, "servers_per_switch": 3}),
    (
        "explicit",
        {
            "nodes": [
                {"name": "s1", "role": "switch"},
                {"name": "s2", "role": "switch"},
                {"name": "h1", "role": "server"},
                {"name": "h2", "role": "server"},
            ],
            "links": [{"a": "s1", "b": "s2"}, {"a": "h1:eth4", "b": "s1"}, {"a": "h2", "b": "s2"}],
        },
    ),
]


def topology(kind: str, params: dict[str, Any]) -> Topology:
    return GENERATORS[kind].generate(params)


def all_addresses(addressing: Addressing) -> list[tuple[str, ipaddress.IPv4Address]]:
    """(what, address) for every address handed out, including the gateway and both ends of each /31."""
    found = [("gateway", ipaddress.IPv4Interface(addressing.management_gateway).ip)]
    found += [(f"mgmt {n}", ipaddress.IPv4Interface(a).ip) for n, a in addressing.management.items()]
    found += [(f"lo {n}", ipaddress.IPv4Interface(a).ip) for n, a in addressing.loopbacks.items()]
    for link, subnet in addressing.p2p.items():
        found += [(f"p2p {link}", ipaddress.IPv4Interface(end).ip) for end in p2p_ends(subnet)]
    found += [(f"srv {s.node}", ipaddress.IPv4Interface(s.address).ip) for s in addressing.servers]
    return found


@pytest.mark.parametrize(("kind", "params"), TOPOLOGIES)
def test_assign_covers_everything_without_collisions(kind: str, params: dict[str, Any]) -> None:
    topo = topology(kind, params)
    pools = AddressPools()
    addressing = assign(topo, pools)
    switches = [n.name for n in topo.nodes if n.kind == "switch"]
    servers = [n.name for n in topo.nodes if n.kind == "server"]
    kinds = {n.name: n.kind for n in topo.nodes}

    assert addressing.management_network == pools.management
    assert addressing.management_gateway == "10.210.0.1/16"
    assert sorted(addressing.management) == sorted(n.name for n in topo.nodes)
    assert sorted(addressing.loopbacks) == sorted(switches)
    fabric = [link.id for link in topo.links if kinds[link.a.node] == kinds[link.b.node] == "switch"]
    assert sorted(addressing.p2p) == sorted(fabric)
    assert [s.node for s in addressing.servers] == sorted(servers)
    assert sorted(addressing.rack_subnets) == sorted({topo.node(s).rack for s in servers})

    found = all_addresses(addressing)
    addresses = [a for _, a in found]
    assert len(set(addresses)) == len(addresses), "no address handed out twice, across all pools"
    pool_of = {
        "gateway": pools.management,
        "mgmt": pools.management,
        "lo": pools.loopbacks,
        "p2p": pools.p2p,
        "srv": pools.servers,
    }
    for what, address in found:
        network = ipaddress.ip_network(pool_of[what.split()[0]])
        assert address in network, f"{what} {address} outside {network}"
        if not what.startswith("p2p"):  # a /31 uses both its addresses (RFC 3021), even the pool's first
            assert address not in (network.network_address, network.broadcast_address), what

    assert all(a.endswith("/16") for a in addressing.management.values())
    assert all(a.endswith("/32") for a in addressing.loopbacks.values())
    assert all(s.endswith("/31") for s in addressing.p2p.values())
    server_pool = ipaddress.ip_network(pools.servers)
    for server in addressing.servers:
        interface = ipaddress.IPv4Interface(server.address)
        assert interface.network.prefixlen == server_pool.prefixlen, "on-link across the fabric"
        rack = topo.node(server.node).rack
        assert interface.ip in ipaddress.ip_network(addressing.rack_subnets[rack])
        link = next(link for link in topo.links if {link.a.node, link.b.node} == {server.node, rack})
        assert server.interface == (link.a if link.a.node == server.node else link.b).interface
    subnets = [ipaddress.ip_network(s) for s in addressing.rack_subnets.values()]
    assert all(s.prefixlen == 24 and s.subnet_of(server_pool) for s in subnets)
    assert len(set(subnets)) == len(subnets)


def test_explicit_server_uses_its_named_interface() -> None:
    addressing = assign(topology(*TOPOLOGIES[-1]), AddressPools())
    assert {s.node: s.interface for s in addressing.servers} == {"h1": "eth4", "h2": "eth1"}


def test_clos_golden_addresses() -> None:
    """Homes follow the names: page 0 tier-1, 16.x aggregations, 24.x edges, servers by rack."""
    addressing = assign(topology("clos", {}), AddressPools(), mtu=1450)
    assert addressing.mtu == 1450
    assert addressing.management["core-02"] == "10.210.0.3/16"  # 1 + index, after the gateway
    assert addressing.management["agg-01-01"] == "10.210.16.1/16"
    assert addressing.management["edge-02-02"] == "10.210.24.130/16"  # 6144 + 128 + 2
    assert addressing.management["srv-02-01-02"] == "10.210.64.2/16"  # rack 33 -> 14336 + 32 * 64 + 2
    assert addressing.loopbacks["agg-01-01"] == "10.211.16.1/32"
    assert addressing.p2p["agg-01-01:eth1--core-01:eth1"] == "10.212.128.0/31"
    assert addressing.rack_subnets == {
        "edge-01-01": "10.213.0.0/24",
        "edge-01-02": "10.213.1.0/24",
        "edge-02-01": "10.213.16.0/24",
        "edge-02-02": "10.213.17.0/24",
    }
    assert {s.node: s.address for s in addressing.servers}["srv-02-01-02"] == "10.213.16.2/16"


@pytest.mark.parametrize(("kind", "params"), TOPOLOGIES)
def test_assign_is_deterministic(kind: str, params: dict[str, Any]) -> None:
    first = json.dumps(to_dict(assign(topology(kind, params), AddressPools())))
    second = json.dumps(to_dict(assign(topology(kind, json.loads(json.dumps(params))), AddressPools())))
    assert first == second


EXHAUSTION = [
    # pools, pool name, needed, available -- for the default 18-node clos (10 switches, 16 fabric links,
    # 4 racks)
    (AddressPools(management="10.210.0.0/28"), "management", 18, 13),
    (AddressPools(loopbacks="10.211.0.0/29"), "loopbacks", 10, 6),
    (AddressPools(p2p="10.212.0.0/28"), "p2p", 16, 8),
    (AddressPools(servers="10.213.0.0/23"), "servers", 4, 2),
    (AddressPools(servers="10.213.0.0/25"), "servers", 4, 0),
]


@pytest.mark.parametrize(("pools", "pool", "needed", "available"), EXHAUSTION)
def test_pool_exhaustion(pools: AddressPools, pool: str, needed: int, available: int) -> None:
    topo = topology("clos", {})
    problems = pool_capacity_problems(topo, pools)
    assert [p[0] for p in problems] == [pool]
    assert f"needs {needed}" in problems[0][1] and f"has {available}" in problems[0][1]
    assert problems[0][2] == getattr(pools, pool)
    # the hint names the longest prefix that fits: one bit longer would not
    prefix = int(str(problems[0][3]).split("/")[1].split()[0])
    network = ipaddress.ip_network(getattr(pools, pool))
    assert capacity(pool, ipaddress.IPv4Network((network.network_address, prefix))) >= needed
    assert capacity(pool, ipaddress.IPv4Network((network.network_address, prefix + 1))) < needed
    with pytest.raises(PoolExhausted) as caught:
        assign(topo, pools)
    assert (caught.value.pool_name, caught.value.needed, caught.value.available) == (pool, needed, available)
    assert isinstance(caught.value, ValueError)


def test_exact_fit_is_not_exhaustion() -> None:
    topo = topology("clos", {})  # 18 nodes + gateway = 19 host addresses; a /27 has 30
    pools = AddressPools(
        management="10.210.0.0/27", loopbacks="10.211.0.0/28", p2p="10.212.0.0/27", servers="10.213.0.0/22"
    )
    assert pool_capacity_problems(topo, pools) == []
    assert len(assign(topo, pools).rack_subnets) == 4


def test_rack_larger_than_a_slash_24() -> None:
    nodes = [{"name": "tor", "role": "leaf"}] + [{"name": f"h{i}", "role": "server"} for i in range(255)]
    links = [{"a": f"h{i}", "b": "tor"} for i in range(255)]
    topo = GENERATORS["explicit"].generate({"nodes": nodes, "links": links})
    problems = pool_capacity_problems(topo, AddressPools())
    assert [(p[0], p[2]) for p in problems] == [("servers", 255)]
    with pytest.raises(PoolExhausted) as caught:
        assign(topo, AddressPools())
    assert (caught.value.needed, caught.value.available) == (255, RACK_HOSTS)


def test_full_rack_of_254_fits() -> None:
    topo = GENERATORS["leaf-spine"].generate({"spines": 1, "leaves": 1, "servers_per_leaf": 254})
    addresses = {s.node: s.address for s in assign(topo, AddressPools()).servers}
    assert addresses["srv-01-254"] == "10.213.0.254/16"


def test_malformed_pools_are_reported() -> None:
    pools = AddressPools(management="10.210.0.1/16", p2p="fd00::/64", servers="banana")
    assert [p[0] for p in pool_capacity_problems(topology("clos", {}), pools)] == [
        "management",
        "p2p",
        "servers",
    ]
    with pytest.raises(ValueError):
        assign(topology("clos", {}), pools)


def test_overlaps() -> None:
    assert overlaps(AddressPools()) == []
    pools = AddressPools(loopbacks="10.210.128.0/24", servers="10.0.0.0/8")
    assert overlaps(pools) == [
        ("management", "loopbacks"),
        ("management", "servers"),
        ("loopbacks", "servers"),
        ("p2p", "servers"),
    ]
    with pytest.raises(PoolOverlap):
        assign(topology("clos", {}), pools)


def test_bad_mtu() -> None:
    with pytest.raises(ValueError, match="mtu"):
        assign(topology("clos", {}), AddressPools(), mtu=100)


@settings(max_examples=30, deadline=None)
@given(
    mgmt=st.integers(20, 30),
    lo=st.integers(24, 32),
    p2p=st.integers(20, 31),
    srv=st.integers(16, 26),
    pods=st.integers(1, 3),
    edges=st.integers(1, 3),
)
def test_capacity_check_agrees_with_assign(
    mgmt: int, lo: int, p2p: int, srv: int, pods: int, edges: int
) -> None:
    """pool_capacity_problems is empty exactly when assign succeeds; then addresses never collide."""
    topo = topology("clos", {"pods": pods, "edges_per_pod": edges, "servers_per_edge": 3})
    pools = AddressPools(
        management=f"10.210.0.0/{mgmt}",
        loopbacks=f"10.211.0.0/{lo}",
        p2p=f"10.212.0.0/{p2p}",
        servers=f"10.213.0.0/{srv}",
    )
    problems = pool_capacity_problems(topo, pools)
    try:
        addressing = assign(topo, pools)
    except PoolExhausted as err:
        assert problems and err.pool_name in {p[0] for p in problems}
        return
    assert problems == []
    addresses = [a for _, a in all_addresses(addressing)]
    assert len(set(addresses)) == len(addresses)


# ---------------------------------------------------------------- stability under lab edits


def flat(addressing: Addressing) -> dict[str, str]:
    """Every address keyed by what it belongs to, so two addressings can be compared entry by entry."""
    found = {f"mgmt {n}": a for n, a in addressing.management.items()}
    found |= {f"lo {n}": a for n, a in addressing.loopbacks.items()}
    found |= {f"p2p {link}": a for link, a in addressing.p2p.items()}
    found |= {f"rack {rack}": a for rack, a in addressing.rack_subnets.items()}
    found |= {f"srv {s.node}": f"{s.interface}={s.address}" for s in addressing.servers}
    return found


def assert_grown_keeps(before: Topology, after: Topology) -> None:
    """Everything `before` addressed keeps its address in `after`, and `after` is collision-free."""
    old, new = flat(assign(before, AddressPools())), flat(assign(after, AddressPools()))
    assert set(old) <= set(new)
    moved = {key: (old[key], new[key]) for key in old if old[key] != new[key]}
    assert moved == {}
    addresses = [a for _, a in all_addresses(assign(after, AddressPools()))]
    assert len(set(addresses)) == len(addresses)


@settings(max_examples=15, deadline=None)
@given(spines=st.integers(1, 6), leaves=st.integers(1, 40), servers=st.integers(0, 12))
def test_adding_a_leaf_a_spine_or_a_server_moves_nothing(spines: int, leaves: int, servers: int) -> None:
    base = {"spines": spines, "leaves": leaves, "servers_per_leaf": servers}
    before = topology("leaf-spine", base)
    for grown in ({"leaves": leaves + 1}, {"spines": spines + 1}, {"servers_per_leaf": servers + 1}):
        assert_grown_keeps(before, topology("leaf-spine", base | grown))


@settings(max_examples=10, deadline=None)
@given(
    pods=st.integers(1, 9),
    cores=st.integers(1, 4),
    aggs=st.integers(1, 4),
    edges=st.integers(1, 9),
    servers=st.integers(0, 15),
)
def test_adding_a_pod_an_edge_or_a_server_moves_nothing(
    pods: int, cores: int, aggs: int, edges: int, servers: int
) -> None:
    base = {
        "pods": pods,
        "cores": cores,
        "aggregations_per_pod": aggs,
        "edges_per_pod": edges,
        "servers_per_edge": servers,
    }
    before = topology("clos", base)
    for grown in ({"pods": pods + 1}, {"edges_per_pod": edges + 1}, {"servers_per_edge": servers + 1}):
        assert_grown_keeps(before, topology("clos", base | grown))


def test_adding_a_switch_to_a_chain_moves_nothing() -> None:
    assert_grown_keeps(
        topology("linear", {"switches": 9, "servers_per_switch": 3}),
        topology("linear", {"switches": 10, "servers_per_switch": 3}),
    )


def without(topo: Topology, node: str) -> Topology:
    """`topo` minus one node and its links (what deleting it from an explicit lab file gives)."""
    return Topology(
        kind=topo.kind,
        nodes=tuple(n for n in topo.nodes if n.name != node),
        links=tuple(link for link in topo.links if node not in (link.a.node, link.b.node)),
    )


@pytest.mark.parametrize(
    ("kind", "params", "server"),
    [
        ("leaf-spine", {"spines": 2, "leaves": 5, "servers_per_leaf": 4}, "srv-03-02"),
        ("clos", {"pods": 3, "edges_per_pod": 3, "servers_per_edge": 4}, "srv-02-01-01"),
        ("fat-tree", {"k": 6}, "srv-06-03-01"),
    ],
)
def test_removing_a_server_frees_its_address_and_moves_nothing_else(
    kind: str, params: dict[str, Any], server: str
) -> None:
    full = topology(kind, params)
    before, after = flat(assign(full, AddressPools())), flat(assign(without(full, server), AddressPools()))
    gone = {key for key in before if key.endswith(f" {server}")}
    assert gone == {f"mgmt {server}", f"srv {server}"}
    assert after == {key: address for key, address in before.items() if key not in gone}


def explicit_rack(servers: list[str]) -> Topology:
    nodes = [{"name": "tor", "role": "leaf"}, {"name": "spine", "role": "spine"}]
    nodes += [{"name": name, "role": "server"} for name in servers]
    links = [{"a": "tor", "b": "spine"}] + [{"a": name, "b": "tor"} for name in servers]
    return GENERATORS["explicit"].generate({"nodes": nodes, "links": links})


def test_explicit_names_are_hashed_and_stable() -> None:
    """Arbitrary names have no home: their hashed slot does not depend on the other nodes."""
    names = [f"web{i}" for i in range(1, 9)] + ["db", "cache"]
    full = assign(explicit_rack(names), AddressPools())
    smaller = assign(explicit_rack([n for n in names if n != "web3"]), AddressPools())
    assert {n: a for n, a in full.management.items() if n != "web3"} == smaller.management
    assert {s.node: s.address for s in full.servers if s.node != "web3"} == {
        s.node: s.address for s in smaller.servers
    }
    # servers named with a trailing number take that host of their rack's (hashed) /24
    rack = ipaddress.IPv4Network(full.rack_subnets["tor"])
    assert {s.node: s.address for s in full.servers}["web7"] == f"{rack.network_address + 7}/16"


GENERATED = [
    (
        "leaf-spine",
        {"spines": st.integers(1, 20), "leaves": st.integers(1, 60), "servers_per_leaf": st.integers(0, 80)},
    ),
    ("linear", {"switches": st.integers(1, 300), "servers_per_switch": st.integers(0, 70)}),
    (
        "clos",
        {
            "pods": st.integers(1, 12),
            "cores": st.integers(1, 10),
            "aggregations_per_pod": st.integers(1, 10),
            "edges_per_pod": st.integers(1, 20),
            "servers_per_edge": st.integers(0, 70),
        },
    ),
    ("fat-tree", {"k": st.sampled_from([2, 4, 6, 8, 10, 12, 14, 16, 18, 20])}),
]


@pytest.mark.parametrize(("kind", "strategies"), GENERATED, ids=[g[0] for g in GENERATED])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_no_collisions_for_any_generator_size(
    kind: str, strategies: dict[str, Any], data: st.DataObject
) -> None:
    """Past the home ranges (many uplinks, wide racks) objects fall back to hashing: still unique."""
    params = {name: data.draw(strategy, label=name) for name, strategy in strategies.items()}
    module = GENERATORS[kind]
    if module.constraints(params):
        return  # too many nodes for a lab: the loader rejects it before addressing
    topo = module.generate(params)
    if pool_capacity_problems(topo, AddressPools()):
        return  # the default pools are too small for it: the loader says so before addressing
    addressing = assign(topo, AddressPools())
    addresses = [a for _, a in all_addresses(addressing)]
    assert len(set(addresses)) == len(addresses)
    assert len(addressing.management) == len(topo.nodes)


def test_clos_1000_lab_fits_its_homes() -> None:
    """The 996-node lab: every node sits at its name's home, so lab edits never move it."""
    params = {"pods": 8, "cores": 4, "aggregations_per_pod": 4, "edges_per_pod": 8, "servers_per_edge": 14}
    topo = topology("clos", params)
    addressing = assign(topo, AddressPools())
    network = parse_pool(AddressPools().management)
    for node in topo.nodes:
        home = node_home(node.name)
        assert home is not None
        assert addressing.management[node.name] == f"{network.network_address + home}/16"
    top = max(ipaddress.IPv4Interface(a).ip for a in addressing.management.values())
    assert top < network.broadcast_address - EXTRA_RESERVE


def test_free_addresses_come_from_the_top_and_skip_taken_ones() -> None:
    network = ipaddress.IPv4Network("10.210.0.0/28")
    taken = [ipaddress.IPv4Address("10.210.0.14"), ipaddress.IPv4Address("10.210.0.12")]
    free = list(free_addresses(network, taken))
    assert free[:3] == [ipaddress.IPv4Address(a) for a in ("10.210.0.13", "10.210.0.11", "10.210.0.10")]
    assert free[-1] == ipaddress.IPv4Address("10.210.0.1") and len(free) == 12


@settings(max_examples=25, deadline=None)
@given(mgmt=st.integers(22, 30), lo=st.integers(24, 32), p2p=st.integers(22, 31), extra=st.integers(0, 40))
def test_capacity_check_agrees_with_assign_for_explicit_names(
    mgmt: int, lo: int, p2p: int, extra: int
) -> None:
    """Hash probing fills a pool to the last slot: assign fails exactly when the prediction says so."""
    topo = explicit_rack([f"h{i}" for i in range(extra)])
    pools = AddressPools(
        management=f"10.210.0.0/{mgmt}", loopbacks=f"10.211.0.0/{lo}", p2p=f"10.212.0.0/{p2p}"
    )
    problems = pool_capacity_problems(topo, pools)
    try:
        addressing = assign(topo, pools)
    except PoolExhausted as err:
        assert err.pool_name in {p[0] for p in problems}
        return
    assert problems == []
    addresses = [a for _, a in all_addresses(addressing)]
    assert len(set(addresses)) == len(addresses)


def test_a_full_pool_is_filled_to_the_last_address() -> None:
    topo = explicit_rack([f"h{i}" for i in range(27)])  # 29 nodes; a /27 offers 30 hosts - gateway
    addressing = assign(topo, AddressPools(management="10.210.0.0/27"))
    expected = {f"10.210.0.{i}/27" for i in range(2, 31)}
    assert set(addressing.management.values()) == expected
    with pytest.raises(PoolExhausted):
        assign(explicit_rack([f"h{i}" for i in range(28)]), AddressPools(management="10.210.0.0/27"))
