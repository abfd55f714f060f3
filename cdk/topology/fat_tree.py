"""fat-tree: the k-ary fat tree (Al-Fares et al.), a three-tier Clos of identical k-port switches.

Follows Distrinet's `FatTreeTopo(k)` (mininet/mininet/topodc.py): k must be even; k pods, each
with k/2 aggregation and k/2 edge switches; (k/2)^2 core switches; k/2 servers per edge switch,
so k^3/4 servers and 5k^2/4 switches. Inside a pod every edge links to every aggregation.
Core wiring as in Distrinet: aggregation switch j (1-based, in every pod) links to the k/2 cores
j, k/2 + j, 2*k/2 + j, ..., so each core links to exactly one aggregation per pod and every
switch uses k ports. Links: k^3/4 core-aggregation + k^3/4 aggregation-edge + k^3/4 server.

Default k=4 (16 servers, 20 switches). Names, pods, racks and port order:
cdk/topology/three_tier.py (core c's port p goes to pod p).
"""

from __future__ import annotations

from typing import Any

from cdk.model import Topology
from cdk.topology.builder import ProblemTuple, too_many_nodes, with_defaults
from cdk.topology.three_tier import build_three_tier, node_count

KIND = "fat-tree"
DEFAULTS: dict[str, Any] = {"k": 4}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "k-ary fat tree (Distrinet FatTreeTopo): k pods of k/2 aggregation + k/2 edge "
    "switches, (k/2)^2 cores, k^3/4 servers",
    "additionalProperties": False,
    "properties": {
        "k": {
            "type": "integer",
            "minimum": 2,
            "maximum": 64,
            "description": "switch port count, even (2..64, default 4); k >= 26 exceeds 5000 nodes",
        },
    },
}


def counts(k: int) -> dict[str, int]:
    half = k // 2
    return {
        "pods": k,
        "cores": half * half,
        "aggregations_per_pod": half,
        "edges_per_pod": half,
        "servers_per_edge": half,
    }


def constraints(params: dict[str, Any], prefix: str = "topology") -> list[ProblemTuple]:
    """Checks JSON schema cannot express: k even, total node count. Takes the section as written."""
    k = with_defaults(params, DEFAULTS)["k"]
    if not isinstance(k, int) or k < 2:
        return []  # the schema reports it
    if k % 2:
        return [
            (
                f"{prefix}.k",
                "must be even (k pods of k/2 aggregation and k/2 edge switches)",
                k,
                f"use k={k + 1} or k={k - 1}",
            )
        ]
    c = counts(k)
    total = node_count(
        c["pods"], c["cores"], c["aggregations_per_pod"], c["edges_per_pod"], c["servers_per_edge"]
    )
    return too_many_nodes(total, f"{prefix}.k", f"5k^2/4 switches + k^3/4 servers with k={k}")


def generate(params: dict[str, Any]) -> Topology:
    """Pure and deterministic: the same parameters always give an identical Topology."""
    k = with_defaults(params, DEFAULTS)["k"]
    half = k // 2
    return build_three_tier(
        KIND,
        **counts(k),
        core_wiring=lambda agg: [(m - 1) * half + agg for m in range(1, half + 1)],
    )
