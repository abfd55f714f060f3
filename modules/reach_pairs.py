"""Which server pairs the reachability check pings (pure).

All pairs grow as n² (49,952 at 250 nodes, ~800,000 at 1000) and, run at once, lose pings to
their own load. A path through the fabric is decided by the racks at its two ends, so the
sampled set covers the fabric instead of every pair:
- every unordered pair of racks once (so every pair of pods too: a pod's racks are its servers'),
  the source and target server rotating through each rack so that no server does all the work,
  and the direction alternating so that every rack sends about as much as it receives;
- within each rack, a ring (each server pings the next), so every server sends and receives at
  least once and the top-of-rack switch's server ports are all used.
A ping is an echo and a reply, so one direction of a pair tests both. Servers that hang off no
rack (explicit topologies) are each their own rack: nothing is assumed about where they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdk.model import Node

Pair = tuple[str, str]  # (source server, target server)


@dataclass(frozen=True)
class Coverage:
    servers: int  # servers that send or receive at least one ping
    racks: int
    rack_pairs: int  # unordered pairs of different racks with a ping between them
    pods: int
    pod_pairs: int


def racks_of(servers: Sequence[Node]) -> list[list[Node]]:
    """Servers grouped by rack, racks and servers in topology order."""
    racks: dict[str, list[Node]] = {}
    for node in servers:
        racks.setdefault(node.rack if node.rack is not None else f"\0{node.name}", []).append(node)
    return list(racks.values())


def sampled_pairs(servers: Sequence[Node]) -> list[Pair]:
    """The deterministic sample described above, sorted by source then target."""
    racks = racks_of(servers)
    pairs: set[Pair] = set()
    for rack in racks:
        if len(rack) == 2:
            pairs.add((rack[0].name, rack[1].name))
        elif len(rack) > 2:
            pairs.update((a.name, b.name) for a, b in zip(rack, rack[1:] + rack[:1], strict=True))
    for i, here in enumerate(racks):
        for j in range(i + 1, len(racks)):
            there = racks[j]
            a, b = here[j % len(here)], there[i % len(there)]
            pairs.add((a.name, b.name) if (i + j) % 2 else (b.name, a.name))
    return sorted(pairs)


def all_pairs(servers: Sequence[Node]) -> list[Pair]:
    """Every ordered pair of different servers (`check --full`)."""
    return [(a.name, b.name) for a in servers for b in servers if a.name != b.name]


def coverage(servers: Sequence[Node], pairs: Sequence[Pair]) -> Coverage:
    """What `pairs` exercise: servers, rack pairs and pod pairs (for the report, and the tests)."""
    by_name = {n.name: n for n in servers}
    rack_index = {n.name: i for i, rack in enumerate(racks_of(servers)) for n in rack}
    touched: set[str] = set()
    rack_pairs: set[frozenset[int]] = set()
    pod_pairs: set[frozenset[int | None]] = set()
    for a, b in pairs:
        touched.update((a, b))
        if rack_index[a] != rack_index[b]:
            rack_pairs.add(frozenset((rack_index[a], rack_index[b])))
        pod_a, pod_b = by_name[a].pod, by_name[b].pod
        if pod_a is not None and pod_b is not None and pod_a != pod_b:
            pod_pairs.add(frozenset((pod_a, pod_b)))
    pods = {n.pod for n in servers if n.pod is not None}
    return Coverage(len(touched), len(set(rack_index.values())), len(rack_pairs), len(pods), len(pod_pairs))
