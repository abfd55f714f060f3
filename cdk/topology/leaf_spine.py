"""leaf-spine: a two-tier Clos fabric; every leaf connects to every spine, servers hang off leaves.

Follows Distrinet's `SpineAndLeafTopo(k)` (mininet/mininet/topodc.py): k must be even and gives
k/2 spines, k leaves, each leaf linked once to every spine, and k/2 hosts per leaf. Here the three
counts can also be set independently; `k` is accepted as that shorthand (and then the counts must
not be given too). Defaults are the k=4 fabric: 2 spines, 4 leaves, 2 servers per leaf.

Names: spine-01.., leaf-01.., srv-<leaf>-<n> (server n of leaf <leaf>), all 1-based and
zero-padded. Ports: a leaf's eth1..ethS go to spine-01..spine-S, then its servers in order; spine
port ethL goes to leaf L; every server uses eth1. A server's rack is its leaf; there are no pods.
"""

from __future__ import annotations

from typing import Any

from cdk.model import Topology
from cdk.topology.builder import ProblemTuple, TopologyBuilder, count_schema, too_many_nodes, width

KIND = "leaf-spine"
DEFAULTS: dict[str, Any] = {"spines": 2, "leaves": 4, "servers_per_leaf": 2}
COUNT_FIELDS = ("spines", "leaves", "servers_per_leaf")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "leaf-spine fabric: every leaf links to every spine; servers hang off leaves",
    "additionalProperties": False,
    "properties": {
        "spines": count_schema("spine switches", 1, 128, DEFAULTS["spines"]),
        "leaves": count_schema("leaf (top-of-rack) switches", 1, 1024, DEFAULTS["leaves"]),
        "servers_per_leaf": count_schema("servers below each leaf", 0, 254, DEFAULTS["servers_per_leaf"]),
        "k": {
            "type": "integer",
            "minimum": 2,
            "maximum": 128,
            "description": (
                "Distrinet SpineAndLeafTopo(k) shorthand (2..128, even): k/2 spines, k leaves, "
                "k/2 servers per leaf; do not combine with the explicit counts"
            ),
        },
    },
}


def resolve(params: dict[str, Any]) -> dict[str, int]:
    """The three counts, from `k` when given, else from the lab's values over DEFAULTS."""
    if "k" in params:
        k = int(params["k"])
        return {"spines": k // 2, "leaves": k, "servers_per_leaf": k // 2}
    return {name: int(params.get(name, DEFAULTS[name])) for name in COUNT_FIELDS}


def constraints(params: dict[str, Any], prefix: str = "topology") -> list[ProblemTuple]:
    """Checks JSON schema cannot express; fields are full lab-file paths under `prefix`.

    Takes the topology section as written (without `kind`), before DEFAULTS are merged in.
    """
    problems: list[ProblemTuple] = []
    if "k" in params:
        k = params["k"]
        given = [name for name in COUNT_FIELDS if name in params]
        if given:
            problems.append(
                (
                    f"{prefix}.k",
                    f"is a shorthand for {', '.join(COUNT_FIELDS)}; "
                    f"do not combine it with {', '.join(given)}",
                    k,
                    "remove k, or remove the explicit counts",
                )
            )
        if isinstance(k, int) and k % 2:
            problems.append(
                (
                    f"{prefix}.k",
                    "must be even (k/2 spines, k leaves, k/2 servers per leaf)",
                    k,
                    f"use k={k + 1}" + (f" or k={k - 1}" if k > 2 else ""),
                )
            )
        if problems or not isinstance(k, int):
            return problems  # the schema reports a wrong type
    counts = resolve(params) if "k" in params else {n: params.get(n, DEFAULTS[n]) for n in COUNT_FIELDS}
    if not all(isinstance(v, int) for v in counts.values()):
        return problems  # the schema reports wrong types
    total = counts["spines"] + counts["leaves"] * (1 + counts["servers_per_leaf"])
    problems += too_many_nodes(
        total,
        prefix,
        f"{counts['spines']} spines + {counts['leaves']} leaves x (1 + {counts['servers_per_leaf']} servers)",
    )
    return problems


def generate(params: dict[str, Any]) -> Topology:
    """Pure and deterministic: the same parameters always give an identical Topology."""
    counts = resolve(params)
    spines, leaves, per_leaf = counts["spines"], counts["leaves"], counts["servers_per_leaf"]
    ws, wl, wh = width(spines), width(leaves), width(per_leaf)
    topo = TopologyBuilder(KIND)
    spine_names = [topo.add(f"spine-{s:0{ws}d}", "spine") for s in range(1, spines + 1)]
    for leaf in range(1, leaves + 1):
        leaf_name = topo.add(f"leaf-{leaf:0{wl}d}", "leaf")
        for spine_name in spine_names:
            topo.connect(leaf_name, spine_name)
        for h in range(1, per_leaf + 1):
            server = topo.add(f"srv-{leaf:0{wl}d}-{h:0{wh}d}", "server", rack=leaf_name)
            topo.connect(server, leaf_name)
    return topo.build()
