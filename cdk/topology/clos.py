"""clos: a three-tier data center (core / aggregation / edge / servers) built from pods.

Wiring: every aggregation switch links to every core switch; inside a pod every edge (top-of-rack)
switch links to every aggregation switch of that pod; each server links to one edge switch.

This is the rule of Distrinet's 3-tier DC topology (futurewei-cloud/Distrinet PR 21,
mininet/custom/dc_topo.py, `MyTopo`): 2 cores, 4 aggregations, 4 edges, 2 hosts per edge (8 hosts);
each core links to all 4 aggregations, and aggregations and edges are wired in pairs (a1,a2 with
e1,e2; a3,a4 with e3,e4), i.e. two pods of 2 aggregations x 2 edges, full mesh inside a pod.
The defaults reproduce exactly that lab: pods=2, cores=2, aggregations_per_pod=2,
edges_per_pod=2, servers_per_edge=2 (18 nodes, 24 links).

Names, pods, racks and port order: see cdk/topology/three_tier.py.
"""

from __future__ import annotations

from typing import Any

from cdk.model import Topology
from cdk.topology.builder import ProblemTuple, count_schema, too_many_nodes, with_defaults
from cdk.topology.three_tier import build_three_tier, node_count

KIND = "clos"
DEFAULTS: dict[str, Any] = {
    "pods": 2,
    "cores": 2,
    "aggregations_per_pod": 2,
    "edges_per_pod": 2,
    "servers_per_edge": 2,
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "three-tier data center: every aggregation links to every core, every edge to "
    "every aggregation of its pod, servers hang off edges (defaults: Distrinet PR 21's 3-tier DC)",
    "additionalProperties": False,
    "properties": {
        "pods": count_schema("pods", 1, 64, DEFAULTS["pods"]),
        "cores": count_schema("core switches, each linked to every aggregation", 1, 64, DEFAULTS["cores"]),
        "aggregations_per_pod": count_schema(
            "aggregation switches per pod", 1, 32, DEFAULTS["aggregations_per_pod"]
        ),
        "edges_per_pod": count_schema(
            "edge (top-of-rack) switches per pod", 1, 128, DEFAULTS["edges_per_pod"]
        ),
        "servers_per_edge": count_schema(
            "servers below each edge switch", 0, 254, DEFAULTS["servers_per_edge"]
        ),
    },
}


def constraints(params: dict[str, Any], prefix: str = "topology") -> list[ProblemTuple]:
    """Checks JSON schema cannot express: the total node count. Takes the section as written."""
    p = with_defaults(params, DEFAULTS)
    if not all(isinstance(p[name], int) for name in DEFAULTS):
        return []  # the schema reports wrong types
    total = node_count(
        p["pods"], p["cores"], p["aggregations_per_pod"], p["edges_per_pod"], p["servers_per_edge"]
    )
    detail = (
        f"{p['cores']} cores + {p['pods']} pods x ({p['aggregations_per_pod']} aggregations + "
        f"{p['edges_per_pod']} edges x (1 + {p['servers_per_edge']} servers))"
    )
    return too_many_nodes(total, prefix, detail)


def generate(params: dict[str, Any]) -> Topology:
    """Pure and deterministic: the same parameters always give an identical Topology."""
    p = with_defaults(params, DEFAULTS)
    cores = p["cores"]
    return build_three_tier(
        KIND,
        pods=p["pods"],
        cores=cores,
        aggregations_per_pod=p["aggregations_per_pod"],
        edges_per_pod=p["edges_per_pod"],
        servers_per_edge=p["servers_per_edge"],
        core_wiring=lambda _agg: list(range(1, cores + 1)),
    )
