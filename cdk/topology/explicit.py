"""explicit: nodes and links listed one by one in the lab file.

    topology:
      kind: explicit
      nodes:
        - {name: s1, role: switch}
        - {name: h1, role: server}
      links:
        - {a: "h1", b: "s1:eth5"}     # "node" or "node:interface"

A node's `kind` follows its role (`server` -> server, any switch role -> switch). An endpoint
without an interface gets the node's lowest free fabric port (eth1, eth2, ...) in link order,
after every explicitly named interface has been reserved. eth0 is the management interface and
cannot be used in links. Each server must be linked to at least one switch: its rack is the switch
on its lowest-numbered such interface, unless the node sets `rack` to one of its switches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cdk.model import SERVER_ROLES, SWITCH_ROLES, Topology
from cdk.topology.builder import (
    IFNAME_PATTERN,
    MANAGEMENT_IFNAME,
    MAX_NODES,
    NODE_NAME_MAX,
    NODE_NAME_PATTERN,
    ProblemTuple,
    TopologyBuilder,
    kind_of,
    natural_key,
)

KIND = "explicit"
DEFAULTS: dict[str, Any] = {"links": []}

_NODE = NODE_NAME_PATTERN.pattern.strip("^$")
_IF = IFNAME_PATTERN.pattern.strip("^$")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "nodes and links listed one by one",
    "additionalProperties": False,
    "required": ["nodes"],
    "properties": {
        "nodes": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_NODES,
            "description": f"the lab's nodes (1..{MAX_NODES})",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "role"],
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": NODE_NAME_PATTERN.pattern,
                        "maxLength": NODE_NAME_MAX,
                        "description": f"unique node name: lowercase letters, digits, '-' "
                        f"(at most {NODE_NAME_MAX} characters, starts with a letter)",
                    },
                    "role": {
                        "enum": [*SWITCH_ROLES, *SERVER_ROLES],
                        "description": "server, or a switch role: " + ", ".join(SWITCH_ROLES),
                    },
                    "pod": {"type": "integer", "minimum": 1, "description": "pod index (optional, >= 1)"},
                    "rack": {
                        "type": "string",
                        "description": "servers only: the switch whose rack subnet it uses "
                        "(default: the switch on its lowest-numbered linked interface)",
                    },
                },
            },
        },
        "links": {
            "type": "array",
            "description": "point-to-point links (default none)",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["a", "b"],
                "properties": {
                    end: {
                        "type": "string",
                        "pattern": f"^{_NODE}(:{_IF})?$",
                        "description": "'node' or 'node:interface' (interface <= 15 chars, not eth0)",
                    }
                    for end in ("a", "b")
                },
            },
        },
    },
}


def parse_endpoint(text: str) -> tuple[str, str | None]:
    node, _, interface = text.partition(":")
    return node, interface or None


def constraints(params: dict[str, Any], prefix: str = "topology") -> list[ProblemTuple]:
    """Cross-field checks: unique names, links between declared nodes, no reused interface,
    no eth0, no self-loop, racks that exist, every server linked to a switch."""
    nodes = [n if isinstance(n, dict) else {} for n in params.get("nodes") or []]  # schema reports types
    links = [link if isinstance(link, dict) else {} for link in params.get("links") or []]
    problems, declared = _name_problems(nodes, prefix)
    roles = {name: nodes[i].get("role", "") for name, i in declared.items()}
    link_problems, switch_neighbours = _link_problems(links, roles, prefix)
    return problems + link_problems + _rack_problems(nodes, declared, switch_neighbours, prefix)


def _name_problems(nodes: list[dict[str, Any]], prefix: str) -> tuple[list[ProblemTuple], dict[str, int]]:
    """Duplicate names; returns them and name -> index of its first declaration."""
    problems: list[ProblemTuple] = []
    declared: dict[str, int] = {}
    for i, node in enumerate(nodes):
        name = node.get("name")
        if name is None:
            continue
        if name in declared:
            problems.append(
                (
                    f"{prefix}.nodes[{i}].name",
                    f"duplicate node name (first at nodes[{declared[name]}])",
                    name,
                    "give every node a unique name",
                )
            )
        else:
            declared[name] = i
    return problems, declared


def _link_problems(
    links: list[dict[str, Any]], roles: dict[str, str], prefix: str
) -> tuple[list[ProblemTuple], dict[str, set[str]]]:
    """Unknown nodes, eth0, reused interfaces, self-loops; returns them and node -> linked switches."""
    problems: list[ProblemTuple] = []
    known = ", ".join(sorted(roles)[:8]) + (", ..." if len(roles) > 8 else "")
    first_use: dict[tuple[str, str], str] = {}
    switch_neighbours: dict[str, set[str]] = {name: set() for name in roles}
    for i, link in enumerate(links):
        ends = []
        for end in ("a", "b"):
            field, text = f"{prefix}.links[{i}].{end}", link.get(end)
            node, interface = parse_endpoint(str(text or ""))
            if node not in roles:
                problems.append((field, "unknown node", text, f"declared nodes: {known}"))
                continue
            ends.append(node)
            if interface == MANAGEMENT_IFNAME:
                problems.append(
                    (
                        field,
                        f"{MANAGEMENT_IFNAME} is the management interface",
                        text,
                        "use eth1 or higher, or leave the interface out to auto-assign one",
                    )
                )
            elif interface is not None and first_use.setdefault((node, interface), field) != field:
                problems.append(
                    (
                        field,
                        f"interface already used by {first_use[(node, interface)]}",
                        text,
                        "each interface takes one link; leave it out to auto-assign one",
                    )
                )
        if len(ends) < 2:
            continue
        a, b = ends
        if a == b:
            problems.append(
                (f"{prefix}.links[{i}]", "links a node to itself", a, "a link joins two different nodes")
            )
        if kind_of(roles[b]) == "switch":
            switch_neighbours[a].add(b)
        if kind_of(roles[a]) == "switch":
            switch_neighbours[b].add(a)
    return problems, switch_neighbours


def _rack_problems(
    nodes: list[dict[str, Any]], declared: dict[str, int], switch_neighbours: dict[str, set[str]], prefix: str
) -> list[ProblemTuple]:
    """Every server hangs off a switch; `rack`, when given, is on a server and names a linked switch."""
    problems: list[ProblemTuple] = []
    for name, i in declared.items():
        node, field = nodes[i], f"{prefix}.nodes[{i}]"
        rack = node.get("rack")
        if kind_of(node.get("role", "")) == "switch":
            if rack is not None:
                problems.append(
                    (f"{field}.rack", "only servers have a rack", rack, "remove 'rack' from this switch")
                )
        elif rack is not None and rack not in switch_neighbours[name]:
            problems.append(
                (
                    f"{field}.rack",
                    f"must be a switch linked to {name}",
                    rack,
                    "link the server to that switch, or remove 'rack'",
                )
            )
        elif not switch_neighbours[name]:
            problems.append(
                (
                    field,
                    f"server {name!r} is not linked to any switch",
                    name,
                    "add a link from the server to its top-of-rack switch",
                )
            )
    return problems


def generate(params: dict[str, Any]) -> Topology:
    """Pure and deterministic; expects parameters that passed SCHEMA and constraints()."""
    p = {**DEFAULTS, **params}
    topo = TopologyBuilder(KIND)
    for node in p["nodes"]:
        topo.add(node["name"], node["role"], pod=node.get("pod"))
    parsed = [(parse_endpoint(link["a"]), parse_endpoint(link["b"])) for link in p["links"]]
    for ends in parsed:
        for node, interface in ends:
            if interface is not None:
                topo.reserve(node, interface)
    for (a, a_if), (b, b_if) in parsed:
        topo.connect(a, b, a_if, b_if)
    topology = topo.build()
    explicit_racks = {node["name"]: node["rack"] for node in p["nodes"] if "rack" in node}
    racks = default_racks(topology)
    nodes = tuple(
        dataclasses.replace(n, rack=explicit_racks.get(n.name, racks.get(n.name)))
        if n.kind == "server"
        else n
        for n in topology.nodes
    )
    return dataclasses.replace(topology, nodes=nodes)


def default_racks(topology: Topology) -> dict[str, str]:
    """server -> the switch on its lowest-numbered interface that leads to a switch."""
    kinds = {n.name: n.kind for n in topology.nodes}
    best: dict[str, tuple[Any, str]] = {}
    for link in topology.links:
        for mine, other in ((link.a, link.b), (link.b, link.a)):
            if kinds[mine.node] == "server" and kinds[other.node] == "switch":
                key = natural_key(mine.interface)
                if mine.node not in best or key < best[mine.node][0]:
                    best[mine.node] = (key, other.node)
    return {server: switch for server, (_, switch) in best.items()}
