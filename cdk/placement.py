"""Placement: which host runs which node. Pure except for reading/writing a placement file.

Strategies:
- "round-robin": servers, then switches (each in name order) dealt to the hosts in turn, the way
  Distrinet's `RoundRobinMapper` deals `hosts() + switches()` (mininet/mininet/mapper/mapper.py);
  a full host is skipped.
- "partition": a graph partition with few cross-host links. Each host gets a share of the nodes
  proportional to its capacity (like the target weights Distrinet hands to gpmetis in its
  `MaxinetMapper`), filled along a locality order that keeps pods and racks (a top-of-rack switch
  and its servers) together; then Kernighan-Lin passes between every pair of hosts swap nodes
  while that lowers the number of links between them. Swaps keep every host's node count, so
  capacity holds by construction.
- "file": replay a placement written by `placement_text` (YAML or JSON); every node of the
  topology must be assigned to a known host, within capacity.

All strategies are deterministic: the same topology and hosts give the same assignment.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cdk.errors import DistrilabError
from cdk.model import Host, Placement, Topology

if TYPE_CHECKING:  # imported where used: networkx costs ~0.5 s and only multi-host partitions need it
    import networkx as nx

STRATEGIES = ("round-robin", "partition", "file")
#: Kernighan-Lin sweeps per host pair, and rounds over all pairs, before settling
KL_MAX_ITER = 10
REFINE_ROUNDS = 3
FILE_VERSION = 1


class PlacementError(DistrilabError):
    """A placement that cannot be made or replayed: over capacity, bad file, unknown node or host."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


def place(
    topology: Topology,
    hosts: Sequence[Host],
    strategy: str = "partition",
    placement_file: str | Path | None = None,
) -> Placement:
    """Assign every node of `topology` to one of `hosts` without exceeding any host's capacity."""
    hosts = tuple(hosts)
    check_hosts(topology, hosts)
    if strategy == "round-robin":
        assignment = round_robin(topology, hosts)
    elif strategy == "partition":
        assignment = partition(topology, hosts)
    elif strategy == "file":
        if placement_file is None:
            raise PlacementError("strategy 'file' needs a placement file", "set placement.file")
        assignment = replay(read_placement(placement_file).assignment, topology, hosts, str(placement_file))
    else:
        raise PlacementError(
            f"unknown placement strategy {strategy!r} (supported: {', '.join(STRATEGIES)})",
            "use partition unless you need a fixed layout",
        )
    ordered = {name: assignment[name] for name in sorted(assignment)}
    return Placement(
        strategy=strategy, assignment=ordered, cross_host_links=cross_host_links(topology, ordered)
    )


def cross_host_links(topology: Topology, assignment: dict[str, str]) -> int:
    """Links whose two ends run on different hosts (each needs a VXLAN tunnel)."""
    return sum(1 for link in topology.links if assignment[link.a.node] != assignment[link.b.node])


def check_hosts(topology: Topology, hosts: tuple[Host, ...]) -> None:
    if not hosts:
        raise PlacementError("no hosts to place nodes on", "list at least one host under 'hosts'")
    duplicates = sorted(name for name, n in Counter(h.name for h in hosts).items() if n > 1)
    if duplicates:
        raise PlacementError(
            f"duplicate host names: {', '.join(duplicates)}", "give every host a unique name"
        )
    negative = [h.name for h in hosts if h.capacity < 0]
    if negative:
        raise PlacementError(
            f"negative capacity on host(s) {', '.join(negative)}", "capacity counts nodes, >= 0"
        )
    total = sum(h.capacity for h in hosts)
    if len(topology.nodes) > total:
        raise PlacementError(
            f"{len(topology.nodes)} nodes do not fit: the hosts hold {total} in all "
            f"({', '.join(f'{h.name}: {h.capacity}' for h in hosts)})",
            "raise a host's capacity, add hosts, or shrink the topology",
        )


# ---------------------------------------------------------------- round-robin


def round_robin(topology: Topology, hosts: tuple[Host, ...]) -> dict[str, str]:
    order = [n.name for n in topology.nodes if n.kind == "server"]
    order += [n.name for n in topology.nodes if n.kind != "server"]
    load = dict.fromkeys((h.name for h in hosts), 0)
    turn = itertools.cycle(hosts)
    assignment: dict[str, str] = {}
    for name in order:
        host = next(turn)
        while load[host.name] >= host.capacity:  # check_hosts guarantees a free slot somewhere
            host = next(turn)
        assignment[name] = host.name
        load[host.name] += 1
    return assignment


# ---------------------------------------------------------------- partition


def targets(node_count: int, hosts: tuple[Host, ...]) -> dict[str, int]:
    """Node count per host, proportional to capacity (largest remainder), never above capacity."""
    total = sum(h.capacity for h in hosts)
    if total == 0:
        return dict.fromkeys((h.name for h in hosts), 0)
    exact = {h.name: node_count * h.capacity / total for h in hosts}
    share = {name: int(value) for name, value in exact.items()}
    spare = node_count - sum(share.values())
    by_remainder = sorted(hosts, key=lambda h: (-(exact[h.name] - share[h.name]), -h.capacity, h.name))
    for host in by_remainder:
        if spare == 0:
            break
        if share[host.name] < host.capacity:
            share[host.name] += 1
            spare -= 1
    return share


def locality_order(topology: Topology) -> list[str]:
    """Nodes ordered so that neighbours in the fabric tend to be neighbours in the list:
    pod by pod (pod-less nodes last), inside a pod the non-rack switches first, then each rack
    switch followed by its servers."""
    rack_switches = {n.rack for n in topology.nodes if n.rack is not None}

    def key(node: Any) -> tuple[Any, ...]:
        rack = node.rack if node.kind == "server" else (node.name if node.name in rack_switches else None)
        return (
            node.pod is None,
            node.pod or 0,
            rack is not None,
            rack or "",
            node.kind == "server",
            node.name,
        )

    return [n.name for n in sorted(topology.nodes, key=key)]


def fabric_graph(topology: Topology) -> nx.Graph:
    """Undirected graph in a fixed insertion order (networkx iterates in insertion order);
    parallel links add to the edge weight."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(n.name for n in topology.nodes)
    for link in topology.links:
        a, b = link.a.node, link.b.node
        weight = graph[a][b]["weight"] + 1 if graph.has_edge(a, b) else 1
        graph.add_edge(a, b, weight=weight)
    return graph


def partition(topology: Topology, hosts: tuple[Host, ...]) -> dict[str, str]:
    """Fill the hosts along the locality order, refine, keep the start that cuts fewest links.

    Two starts: the hosts in the lab's order, and largest share first. KL only swaps, so a small
    host that starts with switches in the middle of a pod stays costly (capacities 2, 17, 3: 11
    links cut against 5); filled last, a small host gets the tail of the last rack: servers."""
    share = targets(len(topology.nodes), hosts)
    order = locality_order(topology)
    if len(hosts) == 1:
        return dict.fromkeys(order, hosts[0].name)
    graph = fabric_graph(topology)
    names = tuple(h.name for h in hosts)
    largest_first = tuple(sorted(names, key=lambda name: -share[name]))
    best: dict[str, str] = {}
    best_cut = -1
    for host_order in dict.fromkeys((names, largest_first)):  # the same order once
        assignment: dict[str, str] = {}
        start = 0
        for host in host_order:
            for name in order[start : start + share[host]]:
                assignment[name] = host
            start += share[host]
        refine(graph, assignment, list(names))
        cut = sum(pair_cuts(graph, assignment).values())
        if best_cut < 0 or cut < best_cut:
            best, best_cut = assignment, cut
    return best


def pair_cuts(graph: nx.Graph, assignment: dict[str, str]) -> Counter[tuple[str, str]]:
    """Weight of the links between each pair of hosts (pairs as sorted tuples)."""
    cuts: Counter[tuple[str, str]] = Counter()
    for u, v, weight in graph.edges(data="weight"):
        first, second = assignment[u], assignment[v]
        if first != second:
            cuts[(min(first, second), max(first, second))] += weight
    return cuts


def refine(graph: nx.Graph, assignment: dict[str, str], host_names: list[str]) -> None:
    """Kernighan-Lin between each pair of linked hosts, keeping every host's node count; in place."""
    import networkx as nx

    for _ in range(REFINE_ROUNDS):
        improved = False
        linked = pair_cuts(graph, assignment)
        for first, second in itertools.combinations(host_names, 2):
            if not linked[(min(first, second), max(first, second))]:
                continue  # nothing to gain between hosts without links
            side_a = [n for n in graph if assignment[n] == first]
            side_b = [n for n in graph if assignment[n] == second]
            sub = induced(graph, side_a + side_b)
            old_a = set(side_a)
            part_1, part_2 = nx.community.kernighan_lin_bisection(
                sub, partition=(old_a, set(side_b)), max_iter=KL_MAX_ITER, weight="weight"
            )
            new_a, _ = orient(part_1, part_2, old_a)
            before = sum(w for u, v, w in sub.edges(data="weight") if (u in old_a) != (v in old_a))
            after = sum(w for u, v, w in sub.edges(data="weight") if (u in new_a) != (v in new_a))
            if after < before:
                for node in sub:
                    assignment[node] = first if node in new_a else second
                improved = True
        if not improved:
            return


def induced(graph: nx.Graph, nodes: list[str]) -> nx.Graph:
    """The subgraph on `nodes`, as a plain graph in `nodes` order (KL is slow on subgraph views)."""
    import networkx as nx

    members = set(nodes)
    sub = nx.Graph()
    sub.add_nodes_from(nodes)
    sub.add_weighted_edges_from(
        (u, v, data["weight"]) for u in nodes for v, data in graph.adj[u].items() if v in members and u < v
    )
    return sub


def orient(part_1: set[str], part_2: set[str], old_a: set[str]) -> tuple[set[str], set[str]]:
    """Which returned half replaces side A: the one of A's size (KL swaps pairs, so sizes hold),
    sharing most with A; side A unchanged if neither has its size."""
    candidates = [(part_1, part_2), (part_2, part_1)]
    fitting = [c for c in candidates if len(c[0]) == len(old_a)]
    if not fitting:
        return old_a, (part_1 | part_2) - old_a
    return max(fitting, key=lambda c: len(c[0] & old_a))


# ---------------------------------------------------------------- placement files


def placement_text(placement: Placement, suffix: str = ".yaml") -> str:
    """A placement as YAML (.yaml/.yml) or JSON (any other suffix), for the `file` strategy to
    replay (pure: `distrilab validate LAB --save-placement FILE` writes it)."""
    data = {
        "version": FILE_VERSION,
        "strategy": placement.strategy,
        "cross_host_links": placement.cross_host_links,
        "assignment": dict(sorted(placement.assignment.items())),
    }
    if suffix in (".yaml", ".yml"):
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return json.dumps(data, indent=2) + "\n"


def read_placement(path: str | Path) -> Placement:
    """The placement stored in `path`, as written (its recorded strategy and cross-host links)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PlacementError(
            f"{path}: cannot read placement file ({err.strerror})", "check placement.file"
        ) from err
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON: one parser for both
    except yaml.YAMLError as err:
        raise PlacementError(f"{path}: not valid YAML/JSON ({err})",
                             "write it with distrilab validate LAB --save-placement FILE") from err
    if not isinstance(data, dict) or not isinstance(data.get("assignment"), dict):
        raise PlacementError(
            f"{path}: assignment: missing or not a mapping of node -> host",
            "expected {version: 1, assignment: {node: host, ...}}",
        )
    bad = [(k, v) for k, v in data["assignment"].items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        node, host = bad[0]
        raise PlacementError(f"{path}: assignment.{node}: host must be a name (got {host!r})")
    assignment = {node: data["assignment"][node] for node in sorted(data["assignment"])}
    return Placement(
        strategy=str(data.get("strategy", "file")),
        assignment=assignment,
        cross_host_links=int(data.get("cross_host_links", 0)),
    )


def replay(
    assignment: dict[str, str], topology: Topology, hosts: tuple[Host, ...], source: str
) -> dict[str, str]:
    """Check a stored assignment against the topology and hosts; return it unchanged."""
    nodes = {n.name for n in topology.nodes}
    capacity = {h.name: h.capacity for h in hosts}
    unknown_nodes = sorted(set(assignment) - nodes)
    if unknown_nodes:
        raise PlacementError(
            f"{source}: assignment.{unknown_nodes[0]}: unknown node ({len(unknown_nodes)} unknown: "
            f"{_few(unknown_nodes)})",
            "the topology changed since the file was written; regenerate it or edit the names",
        )
    missing = sorted(nodes - set(assignment))
    if missing:
        raise PlacementError(
            f"{source}: assignment: {len(missing)} node(s) not placed: {_few(missing)}",
            "every node of the topology needs a host; regenerate the file",
        )
    unknown_hosts = sorted({h for h in assignment.values() if h not in capacity})
    if unknown_hosts:
        node = next(n for n in sorted(assignment) if assignment[n] == unknown_hosts[0])
        raise PlacementError(
            f"{source}: assignment.{node}: unknown host {unknown_hosts[0]!r} (hosts: {', '.join(capacity)})",
            "use one of the lab's host names",
        )
    load = Counter(assignment.values())
    over = [(h, load[h], capacity[h]) for h in capacity if load[h] > capacity[h]]
    if over:
        host, count, cap = over[0]
        raise PlacementError(
            f"{source}: host {host!r} gets {count} nodes, over its capacity of {cap}",
            "move nodes to other hosts or raise the host's capacity",
        )
    return dict(assignment)


def _few(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
