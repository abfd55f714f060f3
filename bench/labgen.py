"""Labs built in code (no lab file, no pipeline): a 2-tier leaf-spine fabric with servers.

Used by the synth benchmark when labs/clos-1000.yaml is absent and by the stack tests, which
need labs of known shape. Addresses follow the default pools of the lab files.
"""

from __future__ import annotations

import ipaddress

from cdk.lab import recipe_packages
from cdk.model import (
    Addressing,
    Endpoint,
    Host,
    InterfaceAddress,
    Lab,
    Limits,
    Link,
    LxdSettings,
    Node,
    Placement,
    Topology,
)


def leaf_spine_lab(
    name: str,
    spines: int = 2,
    leaves: int = 2,
    servers_per_leaf: int = 1,
    hosts: tuple[str, ...] = ("local",),
    source: str = "<python>",
) -> Lab:
    """Every leaf connects to every spine; servers hang off their leaf; nodes placed round-robin."""
    w = max(2, len(str(max(spines, leaves, servers_per_leaf))))
    spine_names = [f"spine-{i:0{w}d}" for i in range(1, spines + 1)]
    leaf_names = [f"leaf-{i:0{w}d}" for i in range(1, leaves + 1)]
    nodes = [Node(s, "spine", "switch") for s in spine_names]
    nodes += [Node(lf, "leaf", "switch", pod=1) for lf in leaf_names]
    ports: dict[str, int] = {}

    def port(node: str) -> str:
        ports[node] = ports.get(node, 0) + 1
        return f"eth{ports[node]}"

    links = []
    for lf in leaf_names:
        for sp in spine_names:
            a, b = sorted([Endpoint(lf, port(lf)), Endpoint(sp, port(sp))], key=lambda e: e.node)
            links.append(Link(a, b))
    servers = []
    for li, lf in enumerate(leaf_names, 1):
        for si in range(1, servers_per_leaf + 1):
            srv = f"srv-{li:0{w}d}-{si:0{w}d}"
            servers.append(Node(srv, "server", "server", pod=1, rack=lf))
            a, b = sorted([Endpoint(lf, port(lf)), Endpoint(srv, port(srv))], key=lambda e: e.node)
            links.append(Link(a, b))
    nodes = sorted(nodes + servers, key=lambda n: n.name)
    links.sort(key=lambda link: (link.a.node, link.a.interface, link.b.node, link.b.interface))

    mgmt = ipaddress.ip_network("10.210.0.0/16").hosts()
    next(mgmt)  # .1 is the bridge
    management = {n.name: f"{next(mgmt)}/16" for n in nodes}
    loopback = ipaddress.ip_network("10.211.0.0/16").hosts()
    loopbacks = {n.name: f"{next(loopback)}/32" for n in nodes if n.kind == "switch"}
    p2p_pool = ipaddress.ip_network("10.212.0.0/16").subnets(new_prefix=31)
    p2p = {
        link.id: str(next(p2p_pool))
        for link in links
        if link.a.node not in {s.name for s in servers} and link.b.node not in {s.name for s in servers}
    }
    rack_pool = ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24)
    rack_subnets = {lf: str(next(rack_pool)) for lf in leaf_names}
    server_addresses = []
    for srv in servers:
        net = ipaddress.ip_network(rack_subnets[srv.rack or ""])
        index = int(srv.name.rsplit("-", 1)[1]) + 1
        server_addresses.append(InterfaceAddress(srv.name, "eth1", f"{net[index]}/16"))
    addressing = Addressing(
        management_network="10.210.0.0/16",
        management_gateway="10.210.0.1/16",
        management=management,
        loopbacks=loopbacks,
        p2p=p2p,
        server_network="10.213.0.0/16",
        servers=tuple(server_addresses),
        rack_subnets=rack_subnets,
        mtu=1450 if len(hosts) > 1 else 1500,
    )
    assignment = {n.name: hosts[i % len(hosts)] for i, n in enumerate(nodes)}
    cross = sum(1 for link in links if assignment[link.a.node] != assignment[link.b.node])
    return Lab(
        name=name,
        source=source,
        hosts=tuple(Host(h) for h in hosts),
        topology=Topology("leaf-spine", tuple(nodes), tuple(links)),
        addressing=addressing,
        placement=Placement("round-robin", assignment, cross),
        images={"switch": "switch", "server": "server"},
        limits={"server": Limits(memory="256MiB")},
        lxd=LxdSettings(),
        image_packages=recipe_packages(("switch", "server")),  # what the load stage reads for a file
    )
