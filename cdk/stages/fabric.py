"""Desired state of the "fabric" stage on one host: what each node configures inside itself.

Pure. Switches: one bridge `br0` with every fabric port: Open vSwitch with RSTP (ports facing
servers are RSTP edge ports), or a Linux bridge with the kernel's STP (`fabric: {bridge: linux}`);
servers: their fabric address. Every node: its management address on eth0.
A routed fabric (`fabric: {mode: l3}`, cdk/routing.py): switches get a /31 per fabric link, a
loopback, their bgpd.conf and, on a rack switch, a plain bridge of its server ports holding the
rack's gateway; servers their rack address and a route to the other racks through that gateway.
"""

from __future__ import annotations

from typing import Any

from cdk.model import Host, Lab, Node
from cdk.routing import RACK_BRIDGE, Router, render_bgpd, routers
from cdk.stages import common
from cdk.stages.links import fabric_mtu
from cdk.stages.nodes import endpoint

#: RSTP bridge priority per role: the top tier wins the root election, leaves never do
_PRIORITY = {"core": 8192, "spine": 8192, "aggregation": 16384, "edge": 32768, "leaf": 32768, "switch": 32768}
#: the root bridge: lower than any tier, given to the first switch of the top tier
ROOT_PRIORITY = 4096


def rstp_priorities(lab: Lab) -> dict[str, int]:
    """Deterministic RSTP priorities: a fixed root (first switch of the top tier), then by tier."""
    switches = sorted((n for n in lab.topology.nodes if n.kind == "switch"), key=lambda n: n.name)
    priority = {n.name: _PRIORITY.get(n.role, 32768) for n in switches}
    if switches:
        root = min(switches, key=lambda n: (priority[n.name], n.name))
        priority[root.name] = ROOT_PRIORITY
    return priority


def _ports_by_node(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """Every node's fabric ports (name, RSTP edge when the far end is a server), in port order.
    One pass over the links: a scan per switch would be quadratic (0.25 s at 1000 nodes)."""
    kinds = {n.name: n.kind for n in lab.topology.nodes}
    ports: dict[str, list[dict[str, Any]]] = {}
    for link in lab.topology.links:
        for here, there in ((link.a, link.b), (link.b, link.a)):
            ports.setdefault(here.node, []).append(
                {"name": here.interface, "edge": kinds[there.node] == "server"}
            )
    for node_ports in ports.values():
        node_ports.sort(key=lambda p: (len(p["name"]), p["name"]))
    return ports


def _interfaces_by_node(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """Every server's fabric interface addresses, in addressing order (one pass)."""
    interfaces: dict[str, list[dict[str, Any]]] = {}
    for a in lab.addressing.servers:
        interfaces.setdefault(a.node, []).append({"name": a.interface, "address": a.address})
    return interfaces


def _routed_switch(router: Router, lab: Lab) -> dict[str, Any]:
    """A switch of a routed fabric: /31s on its fabric links, its loopback, its rack's bridge and
    gateway, and its bgpd configuration."""
    interfaces = [{"name": s.interface, "address": s.local} for s in router.sessions]
    spec: dict[str, Any] = {"loopback": router.loopback, "bgpd": render_bgpd(router, lab.name)}
    if router.rack:
        spec["bridge"] = {"name": RACK_BRIDGE, "type": "plain", "stp_priority": 32768,
                          "ports": [{"name": p, "edge": True} for p in router.rack.ports]}
        interfaces.append({"name": RACK_BRIDGE, "address": router.rack.gateway})
    spec["interfaces"] = interfaces
    return spec


def _node_spec(
    lab: Lab,
    node: Node,
    priorities: dict[str, int],
    ports: dict[str, list[dict[str, Any]]],
    interfaces: dict[str, list[dict[str, Any]]],
    routed: dict[str, Router] | None = None,
) -> dict[str, Any]:
    addressing = lab.addressing
    spec: dict[str, Any] = {
        "name": node.name,
        "instance": lab.instance_name(node.name),
        "kind": node.kind,
        "management": {
            "address": addressing.management[node.name],
            "gateway": addressing.management_gateway.split("/")[0],
        },
        "mtu": fabric_mtu(lab),  # the links' MTU: lowered for VXLAN when links cross hosts
    }
    if routed is not None:
        if node.kind == "switch":
            spec.update(_routed_switch(routed[node.name], lab))
        else:  # on-link in its rack only: the rest of the fabric through the rack switch
            spec["interfaces"] = interfaces.get(node.name, [])
            gateway = addressing.rack_gateways.get(node.rack or "")
            if gateway:
                spec["routes"] = [{"to": addressing.server_network, "via": gateway.split("/")[0]}]
    elif node.kind == "switch":
        spec["bridge"] = {
            "name": "br0",
            "type": lab.fabric.bridge,  # ovs (RSTP) or linux (the kernel's STP)
            "stp_priority": priorities[node.name],
            "ports": ports.get(node.name, []),
        }
    else:
        spec["interfaces"] = interfaces.get(node.name, [])
    return spec


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The fabric-stage spec for `host`; None when no node of the lab is placed there."""
    nodes = lab.nodes_on(host.name)
    if not nodes:
        return None
    priorities = rstp_priorities(lab)
    ports, interfaces = _ports_by_node(lab), _interfaces_by_node(lab)
    routed = routers(lab.topology, lab.addressing) if lab.fabric.mode == "l3" else None
    return {
        **common(lab, host),
        "endpoint": endpoint(host, lab.name),
        # "auto": the kernel datapath where the host has the openvswitch module, else userspace netdev
        "datapath": "auto",
        "nodes": [
            _node_spec(lab, n, priorities, ports, interfaces, routed)
            for n in sorted(nodes, key=lambda n: n.name)
        ],
    }
