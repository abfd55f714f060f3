"""Shared machinery of the topology generators: node registry, port allocation, canonical output.

Every generator adds nodes and connects them through a `TopologyBuilder`; `build()` returns a
`Topology` whose nodes are sorted by name and whose links are canonical (the `a` endpoint sorts
before `b`) and sorted, so the result never depends on the order in which a generator made calls
other than through the port numbers, which are allocated in call order on purpose.
"""

from __future__ import annotations

import re
from typing import Any

from cdk.model import IFNAME_MAX, SERVER_ROLES, Endpoint, Link, Node, NodeKind, Topology

#: eth0 is the management interface of every node; fabric ports start at eth1
MANAGEMENT_IFNAME = "eth0"
#: what the lab file may use as an explicit interface name (Linux IFNAMSIZ - 1)
IFNAME_PATTERN = re.compile(rf"^[A-Za-z0-9_.-]{{1,{IFNAME_MAX}}}$")
#: node names become part of LXD instance names `dl-<lab>-<node>` (63 chars, lab names <= 20)
NODE_NAME_MAX = 39
NODE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*$")
#: upper bound on the nodes of one lab (the loader reports it as a topology error)
MAX_NODES = 5000

#: a constraint violation: (field path, message, bad value, hint)
ProblemTuple = tuple[str, str, object, str | None]


def kind_of(role: str) -> NodeKind:
    return "server" if role in SERVER_ROLES else "switch"


def width(count: int) -> int:
    """Digits of the zero-padded indices of `count` items: at least 2, so names sort numerically."""
    return max(2, len(str(count)))


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders eth2 before eth10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def endpoint_key(endpoint: Endpoint) -> tuple[Any, ...]:
    return (endpoint.node, natural_key(endpoint.interface))


def with_defaults(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The generator's parameters: the lab file's values over the kind's defaults."""
    return {**defaults, **params}


def too_many_nodes(total: int, field: str, detail: str) -> list[ProblemTuple]:
    if total <= MAX_NODES:
        return []
    return [
        (
            field,
            f"expands to {total} nodes, more than the supported {MAX_NODES} ({detail})",
            total,
            "lower the counts, or split the lab into several labs",
        )
    ]


class TopologyBuilder:
    """Collects nodes and links; allocates fabric ports eth1, eth2, ... per node in call order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._nodes: dict[str, Node] = {}
        self._used: dict[str, set[str]] = {}
        self._next_port: dict[str, int] = {}
        self._links: list[Link] = []

    def add(self, name: str, role: str, pod: int | None = None, rack: str | None = None) -> str:
        if name in self._nodes:
            raise ValueError(f"duplicate node name {name!r}")
        self._nodes[name] = Node(name=name, role=role, kind=kind_of(role), pod=pod, rack=rack)
        self._used[name] = {MANAGEMENT_IFNAME}
        self._next_port[name] = 1
        return name

    def reserve(self, node: str, interface: str) -> None:
        """Mark an explicitly named interface as taken before auto-assignment runs."""
        self._used[node].add(interface)

    def port(self, node: str) -> str:
        """The lowest free ethN (N >= 1) of `node`."""
        n = self._next_port[node]
        while f"eth{n}" in self._used[node]:
            n += 1
        self._next_port[node] = n + 1
        name = f"eth{n}"
        self._used[node].add(name)
        return name

    def connect(self, a: str, b: str, a_if: str | None = None, b_if: str | None = None) -> Link:
        """Link `a` to `b`; an interface left as None gets the node's next free fabric port."""
        if a == b:
            raise ValueError(f"self-loop on {a!r}")
        ends = []
        for node, ifname in ((a, a_if), (b, b_if)):
            if node not in self._nodes:
                raise KeyError(node)
            if ifname is None:
                ifname = self.port(node)
            else:
                self._used[node].add(ifname)
            ends.append(Endpoint(node, ifname))
        first, second = sorted(ends, key=endpoint_key)
        link = Link(first, second)
        self._links.append(link)
        return link

    def build(self) -> Topology:
        nodes = tuple(self._nodes[name] for name in sorted(self._nodes))
        links = tuple(sorted(self._links, key=lambda link: (endpoint_key(link.a), endpoint_key(link.b))))
        return Topology(kind=self.kind, nodes=nodes, links=links)


def count_schema(description: str, minimum: int, maximum: int, default: int | None) -> dict[str, Any]:
    """A JSON-schema integer property whose description states its range and default."""
    text = f"{description} ({minimum}..{maximum}"
    text += f", default {default})" if default is not None else ")"
    return {"type": "integer", "minimum": minimum, "maximum": maximum, "description": text}
