"""The routed fabric (`fabric: {mode: l3}`): each switch's BGP, from the topology and its addresses.

Pure. The design of RFC 7938 (Use of BGP for Routing in Large-Scale Data Centers): every
switch-to-switch link is a /31 (cdk/addressing.py; the link's `a` end takes the even address) with
one eBGP session over it, each switch announces its loopback and a rack switch its rack's /24,
and `maximum-paths` installs every equal-cost path (ECMP). ASNs are private 4-byte ones (RFC 6996):
- the top tier (spine, core) shares one, ASN_BASE: a route that went up and came back down never
  climbs again, because the top tier's ASN is then on its AS path (RFC 7938, section 5.2.1);
- the aggregation switches of pod P share ASN_BASE + P, for the same reason inside a pod;
- every other switch (leaf, edge, the `switch` of explicit topologies) has its own, ASN_BASE +
  UNIQUE_BASE + the low 16 bits of its loopback: unique, and stable when the lab grows.
`bgp bestpath as-path multipath-relax` lets equal-length paths through different ASNs share the
traffic (explicit topologies, whose switches all have their own ASN).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from ipaddress import IPv4Interface

from cdk.addressing import p2p_ends
from cdk.errors import DistrilabError
from cdk.model import Addressing, Topology

#: RFC 6996's private 4-byte ASNs start here
ASN_BASE = 4_200_000_000
UNIQUE_BASE = 1_000_000
TOP_TIER = ("spine", "core")
POD_TIER = ("aggregation",)
#: ECMP width: more than any generated topology has uplinks
MAX_PATHS = 64
#: the Linux bridge of a rack switch that joins its server ports and holds the servers' gateway
RACK_BRIDGE = "br0"


@dataclass(frozen=True)
class Session:
    """One eBGP session of a switch: over `interface` (address `local`) to `peer`."""

    interface: str
    local: str  # "10.212.0.0/31"
    peer: str
    peer_interface: str
    address: str  # the peer's end of the /31: "10.212.0.1"
    asn: int  # the peer's


@dataclass(frozen=True)
class Rack:
    gateway: str  # "10.213.3.254/24" on RACK_BRIDGE
    ports: tuple[str, ...]  # the switch's interfaces to its servers


@dataclass(frozen=True)
class Router:
    name: str
    asn: int
    loopback: str  # "10.211.1.1/32"
    sessions: tuple[Session, ...]
    networks: tuple[str, ...]  # what it announces
    rack: Rack | None = None

    @property
    def router_id(self) -> str:
        return self.loopback.split("/")[0]


def asns(topology: Topology, addressing: Addressing) -> dict[str, int]:
    """switch -> its ASN (see the module's docstring)."""
    found: dict[str, int] = {}
    owners: dict[int, str] = {}
    for node in topology.nodes:
        if node.kind != "switch":
            continue
        if node.role in TOP_TIER:
            found[node.name] = ASN_BASE
        elif node.role in POD_TIER and node.pod is not None:
            found[node.name] = ASN_BASE + node.pod
        else:
            asn = ASN_BASE + UNIQUE_BASE + (int(IPv4Interface(addressing.loopbacks[node.name]).ip) & 0xFFFF)
            if asn in owners:  # only a loopback pool wider than /16 can do this
                raise DistrilabError(
                    f"{node.name} and {owners[asn]} would share ASN {asn}: their loopbacks differ only "
                    "above the low 16 bits; give addressing.loopbacks a /16 or smaller range"
                )
            owners[asn] = node.name
            found[node.name] = asn
    return found


def routers(topology: Topology, addressing: Addressing) -> dict[str, Router]:
    """switch -> its Router: sessions on every switch-to-switch link, what it announces."""
    kinds = {n.name: n.kind for n in topology.nodes}
    racks = {n.name: n.rack for n in topology.nodes if n.kind == "server"}
    asn = asns(topology, addressing)
    sessions: dict[str, list[Session]] = defaultdict(list)
    rack_ports: dict[str, list[str]] = defaultdict(list)
    for link in topology.links:
        a, b = link.a, link.b
        if kinds[a.node] == kinds[b.node] == "switch":
            ends = dict(zip((a, b), p2p_ends(addressing.p2p[link.id]), strict=True))
            for here, there in ((a, b), (b, a)):
                sessions[here.node].append(Session(here.interface, ends[here], there.node, there.interface,
                                                   ends[there].split("/")[0], asn[there.node]))
        for here, there in ((a, b), (b, a)):
            if kinds[here.node] == "switch" and racks.get(there.node) == here.node:
                rack_ports[here.node].append(here.interface)
    result = {}
    for node in sorted(asn):
        loopback = addressing.loopbacks[node]
        gateway = addressing.rack_gateways.get(node)
        networks = [loopback] + ([addressing.rack_subnets[node]] if gateway else [])
        result[node] = Router(
            name=node,
            asn=asn[node],
            loopback=loopback,
            sessions=tuple(sorted(sessions[node], key=lambda s: _ifkey(s.interface))),
            networks=tuple(networks),
            rack=Rack(gateway, tuple(sorted(rack_ports[node], key=_ifkey))) if gateway else None,
        )
    return result


def _ifkey(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else -1, name)


def render_bgpd(router: Router, lab: str) -> str:
    """The bgpd.conf of one switch (FRR, per-daemon configuration)."""
    lines = [
        f"! bgpd of {router.name} in lab {lab}: generated by distrilab (cdk/routing.py); `up` rewrites it",
        # BGP timers for a data center (keepalive 3 s, hold 9 s) and no policy needed for eBGP
        "frr defaults datacenter",
        f"hostname {router.name}",
        "!",
        f"router bgp {router.asn}",
        f" bgp router-id {router.router_id}",
        " no bgp ebgp-requires-policy",
        " bgp bestpath as-path multipath-relax",
    ]
    for s in router.sessions:
        lines += [f" neighbor {s.address} remote-as {s.asn}",
                  f" neighbor {s.address} description {s.peer} {s.peer_interface} via {s.interface}"]
    lines += [" !", " address-family ipv4 unicast"]
    lines += [f"  network {network}" for network in router.networks]
    lines += [f"  maximum-paths {MAX_PATHS}", " exit-address-family", "exit", "!"]
    return "\n".join(lines) + "\n"


def expected_next_hops(topology: Topology, addressing: Addressing) -> dict[str, dict[str, int]]:
    """rack switch -> {other rack's subnet: how many next hops its route must have}: the links to
    neighbours one hop closer to that rack along the switch graph's shortest paths (BGP's shortest
    AS paths in these designs; parallel links count once each)."""
    kinds = {n.name: n.kind for n in topology.nodes}
    adjacency: dict[str, list[str]] = defaultdict(list)
    for link in topology.links:
        if kinds[link.a.node] == kinds[link.b.node] == "switch":
            adjacency[link.a.node].append(link.b.node)
            adjacency[link.b.node].append(link.a.node)
    racks = sorted(addressing.rack_subnets)
    expected: dict[str, dict[str, int]] = {rack: {} for rack in racks}
    for target in racks:
        distance = _distances(adjacency, target)
        for rack in racks:
            if rack == target or rack not in distance:
                continue
            hops = sum(1 for n in adjacency[rack] if distance.get(n) == distance[rack] - 1)
            expected[rack][addressing.rack_subnets[target]] = hops
    return expected


def _distances(adjacency: dict[str, list[str]], start: str) -> dict[str, int]:
    distance = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for neighbour in adjacency[node]:
            if neighbour not in distance:
                distance[neighbour] = distance[node] + 1
                queue.append(neighbour)
    return distance
