"""The three-tier data-center layout shared by `clos` and `fat-tree`: core / aggregation / edge / servers.

Names: core-<c>, agg-<pod>-<a>, edge-<pod>-<e>, srv-<pod>-<e>-<n> (1-based, zero-padded).
Pods hold aggregation and edge switches and servers; cores belong to no pod. Inside a pod every
edge switch links to every aggregation switch, and each edge (top-of-rack) switch is the rack of
its servers. Only the core wiring differs between kinds, so it is a parameter.

Ports: an aggregation switch's uplinks to its cores come first (ascending core index), then its
edges; an edge switch's eth1.. go to the pod's aggregations in order, then its servers; a core's
ports follow (pod, aggregation) order; every server uses eth1.
"""

from __future__ import annotations

from collections.abc import Callable

from cdk.model import Topology
from cdk.topology.builder import TopologyBuilder, width

#: aggregation index (1-based, within its pod) -> the core indices (1-based) it links to
CoreWiring = Callable[[int], list[int]]


def build_three_tier(
    kind: str,
    *,
    pods: int,
    cores: int,
    aggregations_per_pod: int,
    edges_per_pod: int,
    servers_per_edge: int,
    core_wiring: CoreWiring,
) -> Topology:
    wc, wp = width(cores), width(pods)
    wa, we, wh = width(aggregations_per_pod), width(edges_per_pod), width(servers_per_edge)
    topo = TopologyBuilder(kind)
    core_names = [topo.add(f"core-{c:0{wc}d}", "core") for c in range(1, cores + 1)]
    for pod in range(1, pods + 1):
        aggs = []
        for a in range(1, aggregations_per_pod + 1):
            agg = topo.add(f"agg-{pod:0{wp}d}-{a:0{wa}d}", "aggregation", pod=pod)
            for c in sorted(core_wiring(a)):
                topo.connect(agg, core_names[c - 1])
            aggs.append(agg)
        for e in range(1, edges_per_pod + 1):
            edge = topo.add(f"edge-{pod:0{wp}d}-{e:0{we}d}", "edge", pod=pod)
            for agg in aggs:
                topo.connect(edge, agg)
            for h in range(1, servers_per_edge + 1):
                server = topo.add(f"srv-{pod:0{wp}d}-{e:0{we}d}-{h:0{wh}d}", "server", pod=pod, rack=edge)
                topo.connect(server, edge)
    return topo.build()


def node_count(pods: int, cores: int, aggregations: int, edges: int, servers_per_edge: int) -> int:
    return cores + pods * (aggregations + edges * (1 + servers_per_edge))
