"""linear: a chain of switches, each with its own servers.

Follows Mininet's `LinearTopo(k, n)` as shipped in Distrinet (mininet/mininet/topo.py; Distrinet's
`dmn --topo linear,k` and its scaling report's "linear,41"): k switches, switch i linked to switch
i-1, n hosts per switch; k-1 + k*n links.

Names: sw-01.., srv-<switch>-<n>. Ports: a switch's link to its predecessor comes first, then the
one to its successor, then its servers; every server uses eth1. A server's rack is its switch.
Defaults: 2 switches, 1 server each (Mininet's LinearTopo defaults).
"""

from __future__ import annotations

import itertools
from typing import Any

from cdk.model import Topology
from cdk.topology.builder import (
    ProblemTuple,
    TopologyBuilder,
    count_schema,
    too_many_nodes,
    width,
    with_defaults,
)

KIND = "linear"
DEFAULTS: dict[str, Any] = {"switches": 2, "servers_per_switch": 1}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a chain of switches (Mininet/Distrinet LinearTopo), servers hang off each switch",
    "additionalProperties": False,
    "properties": {
        "switches": count_schema("switches in the chain", 1, 2500, DEFAULTS["switches"]),
        "servers_per_switch": count_schema(
            "servers below each switch", 0, 254, DEFAULTS["servers_per_switch"]
        ),
    },
}


def constraints(params: dict[str, Any], prefix: str = "topology") -> list[ProblemTuple]:
    """Checks JSON schema cannot express: the total node count. Takes the section as written."""
    p = with_defaults(params, DEFAULTS)
    if not all(isinstance(p[name], int) for name in DEFAULTS):
        return []  # the schema reports wrong types
    total = p["switches"] * (1 + p["servers_per_switch"])
    return too_many_nodes(
        total, prefix, f"{p['switches']} switches x (1 + {p['servers_per_switch']} servers)"
    )


def generate(params: dict[str, Any]) -> Topology:
    """Pure and deterministic: the same parameters always give an identical Topology."""
    p = with_defaults(params, DEFAULTS)
    switches, per_switch = p["switches"], p["servers_per_switch"]
    wsw, wh = width(switches), width(per_switch)
    topo = TopologyBuilder(KIND)
    names = [topo.add(f"sw-{i:0{wsw}d}", "switch") for i in range(1, switches + 1)]
    # chain first: a switch's port to its predecessor is eth1, to its successor the next one
    for west, east in itertools.pairwise(names):
        topo.connect(west, east)
    for i, switch in enumerate(names, start=1):
        for h in range(1, per_switch + 1):
            server = topo.add(f"srv-{i:0{wsw}d}-{h:0{wh}d}", "server", rack=switch)
            topo.connect(server, switch)
    return topo.build()
