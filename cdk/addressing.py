"""Every address of a lab, carved from four IPv4 pools; pure, deterministic, collision-free.

- management: the lab's management bridge network. The gateway (host side of the bridge) takes the
  pool's first host address, nodes follow in node-name order (eth0, pool prefix length).
- loopbacks: one /32 per switch, in switch-name order, from the pool's first host address on.
- p2p: one /31 per switch-to-switch link, in link order (the link's `a` end takes the even address).
- servers: one /24 rack subnet per rack switch (the switches servers hang off), in rack-name
  order from the start of the pool; a rack's servers take .1, .2, ... in server-name order, with
  the pool's prefix length, because servers are on-link with each other across the L2 fabric.
  Host numbers 1..254 of a /24 are never the pool's network or broadcast address.

Everything follows from the topology and the pools alone, so a lab file always gets the same
addresses. Addresses come from `ipaddress` arithmetic only.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, fields
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from cdk.model import Addressing, InterfaceAddress, Topology
from cdk.topology.builder import ProblemTuple, natural_key

RACK_PREFIX = 24
#: host numbers .1 .. .254 of a rack /24
RACK_HOSTS = 2 ** (32 - RACK_PREFIX) - 2
MTU_MIN, MTU_MAX = 576, 9216


@dataclass(frozen=True)
class AddressPools:
    """The lab's four IPv4 pools (defaults avoid the host's uplink and resolver networks)."""

    management: str = "10.210.0.0/16"
    loopbacks: str = "10.211.0.0/16"
    p2p: str = "10.212.0.0/16"
    servers: str = "10.213.0.0/16"

    def items(self) -> list[tuple[str, str]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


class PoolExhausted(ValueError):
    """A pool has fewer addresses (or subnets) than the topology needs."""

    def __init__(self, pool_name: str, needed: int, available: int, what: str = "addresses"):
        self.pool_name = pool_name
        self.needed = needed
        self.available = available
        super().__init__(f"address pool {pool_name!r} too small: needs {needed} {what}, has {available}")


class PoolOverlap(ValueError):
    """Two pools overlap, so their addresses could collide."""


@dataclass(frozen=True)
class Demand:
    """How much of each pool a topology needs."""

    management: int  # node addresses (the gateway comes on top)
    loopbacks: int  # switches
    p2p: int  # switch-to-switch links
    racks: int  # rack switches, one /24 each
    largest_rack: tuple[str, int] | None  # (rack switch, its server count)


def demand(topology: Topology) -> Demand:
    kinds = {n.name: n.kind for n in topology.nodes}
    per_rack = servers_by_rack(topology)
    largest = max(per_rack.items(), key=lambda kv: (len(kv[1]), kv[0]), default=None)
    return Demand(
        management=len(topology.nodes),
        loopbacks=sum(1 for n in topology.nodes if n.kind == "switch"),
        p2p=sum(1 for link in topology.links if kinds[link.a.node] == kinds[link.b.node] == "switch"),
        racks=len(per_rack),
        largest_rack=(largest[0], len(largest[1])) if largest else None,
    )


def servers_by_rack(topology: Topology) -> dict[str, list[str]]:
    """rack switch -> its servers, both sorted by name (servers without a rack are left out)."""
    racks: dict[str, list[str]] = defaultdict(list)
    for node in topology.nodes:
        if node.kind == "server" and node.rack is not None:
            racks[node.rack].append(node.name)
    return {rack: sorted(servers) for rack, servers in sorted(racks.items())}


def parse_pool(text: str) -> IPv4Network:
    """The pool as a network; ValueError when it is not an IPv4 network (host bits must be zero)."""
    network = ipaddress.ip_network(text, strict=True)
    if not isinstance(network, IPv4Network):
        raise ValueError(f"{text!r} is not an IPv4 network")
    return network


def host_capacity(network: IPv4Network) -> int:
    """Usable host addresses (all of them for /31 and /32)."""
    return network.num_addresses - 2 if network.prefixlen < 31 else network.num_addresses


def first_host(network: IPv4Network) -> IPv4Address:
    return network.network_address + (1 if network.prefixlen < 31 else 0)


def capacities(pools: AddressPools) -> dict[str, int]:
    """What each pool offers, in the unit the topology needs: addresses, /31s, or /24s."""
    management = parse_pool(pools.management)
    servers = parse_pool(pools.servers)
    return {
        "management": max(host_capacity(management) - 1, 0),  # minus the gateway
        "loopbacks": host_capacity(parse_pool(pools.loopbacks)),
        "p2p": parse_pool(pools.p2p).num_addresses // 2,
        "servers": 2 ** (RACK_PREFIX - servers.prefixlen) if servers.prefixlen <= RACK_PREFIX else 0,
    }


def pool_capacity_problems(topology: Topology, pools: AddressPools) -> list[ProblemTuple]:
    """Every reason `assign` would fail, as (pool, message, value, hint).

    `pool` is the AddressPools field name ("management", ...); the loader prefixes the lab-file path.
    """
    problems: list[ProblemTuple] = []
    for name, text in pools.items():
        try:
            parse_pool(text)
        except ValueError as err:
            problems.append(
                (
                    name,
                    f"must be an IPv4 network in CIDR form ({err})",
                    text,
                    "for example 10.210.0.0/16; the host bits must be zero",
                )
            )
    if problems:
        return problems
    need = demand(topology)
    have = capacities(pools)
    units = {
        "management": (need.management, "node addresses (plus the gateway)"),
        "loopbacks": (need.loopbacks, "switch loopback /32s"),
        "p2p": (need.p2p, "switch-to-switch /31s"),
        "servers": (need.racks, f"rack /{RACK_PREFIX} subnets"),
    }
    for name, (needed, what) in units.items():
        if needed > have[name]:
            problems.append(
                (
                    name,
                    f"too small: the topology needs {needed} {what}, the pool has {have[name]}",
                    getattr(pools, name),
                    f"use a larger pool (shorter prefix) than {getattr(pools, name)}",
                )
            )
    if need.largest_rack and need.largest_rack[1] > RACK_HOSTS:
        rack, count = need.largest_rack
        problems.append(
            (
                "servers",
                f"rack {rack} has {count} servers; a rack /{RACK_PREFIX} holds at most {RACK_HOSTS}",
                count,
                "spread the servers over more switches",
            )
        )
    return problems


def overlaps(pools: AddressPools) -> list[tuple[str, str]]:
    """Pairs of AddressPools field names whose networks overlap, in field order (unparsable pools skipped)."""
    parsed: list[tuple[str, IPv4Network]] = []
    for name, text in pools.items():
        try:
            parsed.append((name, parse_pool(text)))
        except ValueError:
            continue
    return [
        (field_a, field_b)
        for i, (field_a, net_a) in enumerate(parsed)
        for field_b, net_b in parsed[i + 1 :]
        if net_a.overlaps(net_b)
    ]


def _consecutive(pool_name: str, start: IPv4Address, count: int, available: int) -> list[IPv4Address]:
    """`count` addresses from `start` on; PoolExhausted when the pool offers fewer."""
    if count > available:
        raise PoolExhausted(pool_name, count, available)
    return [start + i for i in range(count)]


def assign(topology: Topology, pools: AddressPools, mtu: int = 1500) -> Addressing:
    """Address every node, switch, switch link and server of `topology`.

    Pure and deterministic. Raises PoolExhausted when a pool is too small, PoolOverlap when two
    pools overlap, ValueError for a malformed pool or an MTU outside 576..9216.
    """
    if not MTU_MIN <= mtu <= MTU_MAX:
        raise ValueError(f"mtu must be between {MTU_MIN} and {MTU_MAX} (got {mtu})")
    if clashes := overlaps(pools):
        raise PoolOverlap("address pools overlap: " + ", ".join(f"{a} and {b}" for a, b in clashes))
    have = capacities(pools)
    need = demand(topology)

    management = parse_pool(pools.management)
    gateway = first_host(management)
    node_names = [n.name for n in topology.nodes]
    node_addresses = _consecutive("management", gateway + 1, len(node_names), have["management"])

    loopback_pool = parse_pool(pools.loopbacks)
    switches = [n.name for n in topology.nodes if n.kind == "switch"]
    loopbacks = _consecutive("loopbacks", first_host(loopback_pool), len(switches), have["loopbacks"])

    kinds = {n.name: n.kind for n in topology.nodes}
    fabric_links = [link for link in topology.links if kinds[link.a.node] == kinds[link.b.node] == "switch"]
    if len(fabric_links) > have["p2p"]:
        raise PoolExhausted("p2p", len(fabric_links), have["p2p"], "/31 subnets")
    p2p_subnets = parse_pool(pools.p2p).subnets(new_prefix=31)

    server_pool = parse_pool(pools.servers)
    racks = servers_by_rack(topology)
    if need.racks > have["servers"]:
        raise PoolExhausted("servers", need.racks, have["servers"], f"/{RACK_PREFIX} rack subnets")
    if need.largest_rack and need.largest_rack[1] > RACK_HOSTS:
        rack, count = need.largest_rack
        raise PoolExhausted("servers", count, RACK_HOSTS, f"addresses in the /{RACK_PREFIX} of rack {rack}")
    rack_subnets = dict(zip(racks, server_pool.subnets(new_prefix=RACK_PREFIX), strict=False))
    facing = rack_interfaces(topology)
    server_addresses = [
        InterfaceAddress(
            node=server,
            interface=facing[server],
            address=str(IPv4Interface((rack_subnets[rack].network_address + host, server_pool.prefixlen))),
        )
        for rack, servers in racks.items()
        for host, server in enumerate(servers, start=1)
    ]

    return Addressing(
        management_network=str(management),
        management_gateway=str(IPv4Interface((gateway, management.prefixlen))),
        management={
            name: str(IPv4Interface((address, management.prefixlen)))
            for name, address in zip(node_names, node_addresses, strict=True)
        },
        loopbacks={name: str(IPv4Interface((a, 32))) for name, a in zip(switches, loopbacks, strict=True)},
        p2p={link.id: str(subnet) for link, subnet in zip(fabric_links, p2p_subnets, strict=False)},
        server_network=str(server_pool),
        servers=tuple(sorted(server_addresses, key=lambda s: s.node)),
        rack_subnets={rack: str(subnet) for rack, subnet in rack_subnets.items()},
        mtu=mtu,
    )


def rack_interfaces(topology: Topology) -> dict[str, str]:
    """server -> its interface on the link to its rack switch (the lowest-numbered if several)."""
    racks = {n.name: n.rack for n in topology.nodes if n.kind == "server" and n.rack}
    facing: dict[str, str] = {}
    for link in topology.links:
        for mine, other in ((link.a, link.b), (link.b, link.a)):
            if racks.get(mine.node) != other.node:
                continue
            current = facing.get(mine.node)
            if current is None or natural_key(mine.interface) < natural_key(current):
                facing[mine.node] = mine.interface
    missing = sorted(set(racks) - set(facing))
    if missing:
        raise ValueError(f"servers not linked to their rack switch: {', '.join(missing)}")
    return facing


def p2p_ends(subnet: str) -> tuple[str, str]:
    """The two interface addresses of a link's /31: (`a` end, `b` end)."""
    network = parse_pool(subnet)
    return (
        str(IPv4Interface((network.network_address, 31))),
        str(IPv4Interface((network.network_address + 1, 31))),
    )
