"""modules/reach_pairs.py: the sample covers every rack pair, pod pair and server, and stays small."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from cdk.model import Node
from cdk.pipeline import lab_from_dict
from modules.reach_pairs import all_pairs, coverage, racks_of, sampled_pairs

POOLS = {"management": "10.100.0.0/16", "loopbacks": "10.101.0.0/16", "p2p": "10.102.0.0/16",
         "servers": "10.103.0.0/16"}


def clos_servers(pods: int, edges: int, per_edge: int) -> list[Node]:
    lab = lab_from_dict({"name": "rp", "addressing": POOLS, "topology": {
        "kind": "clos", "pods": pods, "cores": 2, "aggregations_per_pod": 2, "edges_per_pod": edges,
        "servers_per_edge": per_edge}}, host_routes=[])
    return [n for n in lab.topology.nodes if n.kind == "server"]


@pytest.mark.parametrize(("pods", "edges", "per_edge"), [(8, 8, 14), (4, 4, 14), (2, 2, 1), (3, 2, 2)])
def test_the_sample_covers_every_rack_pair_pod_pair_and_server(pods: int, edges: int, per_edge: int) -> None:
    servers = clos_servers(pods, edges, per_edge)
    pairs = sampled_pairs(servers)
    racks = pods * edges
    cover = coverage(servers, pairs)
    assert cover.servers == len(servers)
    assert (cover.racks, cover.rack_pairs) == (racks, racks * (racks - 1) // 2)
    assert (cover.pods, cover.pod_pairs) == (pods, pods * (pods - 1) // 2)
    # every server sends and receives (the ring) when its rack has three or more
    senders, receivers = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    if per_edge > 2:
        assert set(senders) == set(receivers) == {n.name for n in servers}
    assert len(set(pairs)) == len(pairs) and all(a != b for a, b in pairs)


def test_the_996_node_clos_sends_a_few_pings_per_server_not_hundreds() -> None:
    servers = clos_servers(8, 8, 14)  # labs/clos-1000.yaml: 896 servers in 64 racks
    pairs = sampled_pairs(servers)
    assert len(pairs) == 64 * 63 // 2 + 896  # each rack pair once, plus the rings
    assert len(all_pairs(servers)) == 896 * 895
    per_server = Counter(a for a, _ in pairs) + Counter(b for _, b in pairs)
    assert max(per_server.values()) <= 10  # rotation and alternation spread the work


def test_the_sample_is_deterministic_and_follows_topology_order() -> None:
    servers = clos_servers(3, 2, 2)
    assert sampled_pairs(servers) == sampled_pairs(list(servers))
    assert sampled_pairs(servers) == sorted(sampled_pairs(servers))


def test_servers_without_a_rack_are_each_their_own() -> None:
    loose = [Node(f"s{i}", "server", "server") for i in range(4)]
    assert len(racks_of(loose)) == 4
    pairs = sampled_pairs(loose)
    everyone = itertools.combinations([n.name for n in loose], 2)
    assert {frozenset(p) for p in pairs} == {frozenset(p) for p in everyone}
