"""Topology generators: counts against the formulas, structural invariants, Distrinet fidelity,
determinism, parameter schemas and cross-field constraints."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cdk.model import IFNAME_MAX, SERVER_ROLES, SWITCH_ROLES, Topology, to_dict
from cdk.topology import GENERATORS, MAX_NODES
from cdk.topology.builder import NODE_NAME_MAX, NODE_NAME_PATTERN, endpoint_key, natural_key

EXPLICIT_SMALL: dict[str, Any] = {
    "nodes": [
        {"name": "s1", "role": "switch"},
        {"name": "s2", "role": "switch"},
        {"name": "h1", "role": "server"},
        {"name": "h2", "role": "server"},
        {"name": "h3", "role": "server"},
    ],
    "links": [
        {"a": "s1:eth3", "b": "s2"},
        {"a": "h1", "b": "s1"},
        {"a": "h2", "b": "s1"},
        {"a": "h3:eth2", "b": "s2:eth1"},
    ],
}


def neighbours(topo: Topology, name: str) -> list[str]:
    return sorted(
        [link.b.node for link in topo.links if link.a.node == name]
        + [link.a.node for link in topo.links if link.b.node == name]
    )


def by_role(topo: Topology) -> Counter[str]:
    return Counter(n.role for n in topo.nodes)


def assert_well_formed(topo: Topology) -> None:
    """Invariants every generator guarantees, whatever the kind and parameters."""
    names = [n.name for n in topo.nodes]
    assert names == sorted(names), "nodes sorted by name"
    assert len(set(names)) == len(names), "node names unique"
    assert len(names) <= MAX_NODES
    for node in topo.nodes:
        assert NODE_NAME_PATTERN.match(node.name) and len(node.name) <= NODE_NAME_MAX, node.name
        assert node.role in SWITCH_ROLES + SERVER_ROLES
        assert node.kind == ("server" if node.role in SERVER_ROLES else "switch")
    keys = [(endpoint_key(link.a), endpoint_key(link.b)) for link in topo.links]
    assert keys == sorted(keys), "links sorted"
    interfaces: Counter[tuple[str, str]] = Counter()
    for link in topo.links:
        assert endpoint_key(link.a) < endpoint_key(link.b), f"{link.id}: a must sort before b"
        assert link.a.node != link.b.node, f"{link.id}: self-loop"
        for end in (link.a, link.b):
            assert end.node in names, f"{link.id}: unknown node"
            assert end.interface != "eth0", f"{link.id}: eth0 is management"
            assert 1 <= len(end.interface) <= IFNAME_MAX, end.interface
            interfaces[(end.node, end.interface)] += 1
    assert max(interfaces.values(), default=1) == 1, "interface names unique per node"
    graph = nx.Graph()
    graph.add_nodes_from(names)
    graph.add_edges_from((link.a.node, link.b.node) for link in topo.links)
    assert nx.is_connected(graph), "fabric connected"
    kinds = {n.name: n.kind for n in topo.nodes}
    for node in topo.nodes:
        if node.kind == "server":
            assert node.rack is not None and kinds[node.rack] == "switch", f"{node.name}: rack"
            assert node.rack in neighbours(topo, node.name), f"{node.name} hangs off its rack"
        else:
            assert node.rack is None


def assert_fabric_ports_dense(topo: Topology) -> None:
    """Generated kinds number fabric ports eth1..ethN without gaps."""
    ports: dict[str, list[str]] = {n.name: [] for n in topo.nodes}
    for link in topo.links:
        ports[link.a.node].append(link.a.interface)
        ports[link.b.node].append(link.b.interface)
    for node, names in ports.items():
        assert sorted(names, key=natural_key) == [f"eth{i}" for i in range(1, len(names) + 1)], node


# ---------------------------------------------------------------- counts against formulas


def leaf_spine_counts(spines: int, leaves: int, per_leaf: int) -> tuple[int, int]:
    return spines + leaves * (1 + per_leaf), leaves * spines + leaves * per_leaf


def clos_counts(pods: int, cores: int, aggs: int, edges: int, per_edge: int) -> tuple[int, int]:
    nodes = cores + pods * (aggs + edges * (1 + per_edge))
    links = pods * aggs * cores + pods * edges * aggs + pods * edges * per_edge
    return nodes, links


COUNT_TABLE = [
    # kind, params, (nodes, links), roles
    ("leaf-spine", {}, leaf_spine_counts(2, 4, 2), {"spine": 2, "leaf": 4, "server": 8}),
    (
        "leaf-spine",
        {"spines": 4, "leaves": 8, "servers_per_leaf": 3},
        leaf_spine_counts(4, 8, 3),
        {"spine": 4},
    ),
    ("leaf-spine", {"spines": 1, "leaves": 1, "servers_per_leaf": 0}, (2, 1), {"spine": 1, "leaf": 1}),
    ("leaf-spine", {"k": 2}, (5, 4), {"spine": 1, "leaf": 2, "server": 2}),  # Distrinet's default k
    ("leaf-spine", {"k": 6}, leaf_spine_counts(3, 6, 3), {"spine": 3, "leaf": 6, "server": 18}),
    ("clos", {}, (18, 24), {"core": 2, "aggregation": 4, "edge": 4, "server": 8}),
    (
        "clos",
        {"pods": 3, "cores": 4, "aggregations_per_pod": 2, "edges_per_pod": 5, "servers_per_edge": 7},
        clos_counts(3, 4, 2, 5, 7),
        {"core": 4, "aggregation": 6, "edge": 15, "server": 105},
    ),
    (
        "clos",
        {"pods": 1, "cores": 1, "aggregations_per_pod": 1, "edges_per_pod": 1, "servers_per_edge": 0},
        (3, 2),
        {"core": 1},
    ),
    ("fat-tree", {"k": 2}, (2 + 1 + 2 + 2, 6), {"core": 1, "aggregation": 2, "edge": 2, "server": 2}),
    ("fat-tree", {}, (36, 48), {"core": 4, "aggregation": 8, "edge": 8, "server": 16}),
    ("fat-tree", {"k": 6}, (45 + 54, 3 * 54), {"core": 9, "aggregation": 18, "edge": 18, "server": 54}),
    ("fat-tree", {"k": 8}, (80 + 128, 3 * 128), {"core": 16, "server": 128}),
    ("linear", {}, (4, 3), {"switch": 2, "server": 2}),
    ("linear", {"switches": 41, "servers_per_switch": 1}, (82, 40 + 41), {"switch": 41}),  # Distrinet's 82
    ("linear", {"switches": 1, "servers_per_switch": 3}, (4, 3), {"switch": 1, "server": 3}),
    ("explicit", EXPLICIT_SMALL, (5, 4), {"switch": 2, "server": 3}),
]


@pytest.mark.parametrize(("kind", "params", "counts", "roles"), COUNT_TABLE)
def test_counts_match_formulas(
    kind: str, params: dict[str, Any], counts: tuple[int, int], roles: dict
) -> None:
    topo = GENERATORS[kind].generate(params)
    assert topo.kind == kind
    assert (len(topo.nodes), len(topo.links)) == counts
    assert {role: by_role(topo)[role] for role in roles} == roles
    assert GENERATORS[kind].constraints(params) == []
    assert_well_formed(topo)
    if kind != "explicit":
        assert_fabric_ports_dense(topo)


@pytest.mark.parametrize(("kind", "params"), [(kind, params) for kind, params, _, _ in COUNT_TABLE])
def test_generate_is_deterministic(kind: str, params: dict[str, Any]) -> None:
    first = GENERATORS[kind].generate(params)
    second = GENERATORS[kind].generate(json.loads(json.dumps(params)))
    assert first == second
    assert json.dumps(to_dict(first), sort_keys=False) == json.dumps(to_dict(second), sort_keys=False)


small = st.integers(min_value=1, max_value=5)


@settings(max_examples=25, deadline=None)
@given(spines=small, leaves=small, per_leaf=st.integers(0, 4))
def test_leaf_spine_any_size(spines: int, leaves: int, per_leaf: int) -> None:
    topo = GENERATORS["leaf-spine"].generate(
        {"spines": spines, "leaves": leaves, "servers_per_leaf": per_leaf}
    )
    assert (len(topo.nodes), len(topo.links)) == leaf_spine_counts(spines, leaves, per_leaf)
    assert_well_formed(topo)
    assert_fabric_ports_dense(topo)
    for leaf in (n.name for n in topo.nodes if n.role == "leaf"):
        assert sum(1 for n in neighbours(topo, leaf) if n.startswith("spine-")) == spines


@settings(max_examples=25, deadline=None)
@given(pods=small, cores=small, aggs=st.integers(1, 3), edges=st.integers(1, 3), per_edge=st.integers(0, 3))
def test_clos_any_size(pods: int, cores: int, aggs: int, edges: int, per_edge: int) -> None:
    params = {
        "pods": pods,
        "cores": cores,
        "aggregations_per_pod": aggs,
        "edges_per_pod": edges,
        "servers_per_edge": per_edge,
    }
    topo = GENERATORS["clos"].generate(params)
    assert (len(topo.nodes), len(topo.links)) == clos_counts(pods, cores, aggs, edges, per_edge)
    assert_well_formed(topo)
    assert_fabric_ports_dense(topo)
    pod_of = {n.name: n.pod for n in topo.nodes}
    for node in topo.nodes:
        if node.role == "edge":  # every edge links to every aggregation of its pod and nothing else upward
            uplinks = [n for n in neighbours(topo, node.name) if n.startswith("agg-")]
            assert len(uplinks) == aggs and {pod_of[n] for n in uplinks} == {node.pod}


@settings(max_examples=20, deadline=None)
@given(switches=st.integers(1, 30), per_switch=st.integers(0, 4))
def test_linear_any_size(switches: int, per_switch: int) -> None:
    topo = GENERATORS["linear"].generate({"switches": switches, "servers_per_switch": per_switch})
    assert (len(topo.nodes), len(topo.links)) == (
        switches * (1 + per_switch),
        switches - 1 + switches * per_switch,
    )
    assert_well_formed(topo)
    assert_fabric_ports_dense(topo)
    chain = nx.Graph(
        [
            (link.a.node, link.b.node)
            for link in topo.links
            if link.a.node.startswith("sw-") and link.b.node.startswith("sw-")
        ]
    )
    if switches > 1:
        assert nx.is_isomorphic(chain, nx.path_graph(switches))


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_fat_tree_follows_distrinet_wiring(k: int) -> None:
    """Distrinet FatTreeTopo: aggregation j links to cores (m-1)*k/2 + j; every switch has k ports."""
    half = k // 2
    topo = GENERATORS["fat-tree"].generate({"k": k})
    assert_well_formed(topo)
    assert len([n for n in topo.nodes if n.kind == "server"]) == k**3 // 4
    assert len([n for n in topo.nodes if n.kind == "switch"]) == 5 * k * k // 4
    width = max(2, len(str(half * half)))
    for node in topo.nodes:
        if node.role == "aggregation":
            j = int(node.name.rsplit("-", 1)[1])
            cores = [n for n in neighbours(topo, node.name) if n.startswith("core-")]
            assert cores == [f"core-{(m - 1) * half + j:0{width}d}" for m in range(1, half + 1)]
        if node.role == "core":  # one aggregation per pod, port p -> pod p
            pods = [topo.node(n).pod for n in neighbours(topo, node.name)]
            assert sorted(pods) == list(range(1, k + 1))
        if node.kind == "switch":
            assert len(neighbours(topo, node.name)) == k, node.name


def test_clos_defaults_are_distrinet_pr21_three_tier_dc() -> None:
    """Golden: futurewei-cloud/Distrinet PR 21 (mininet/custom/dc_topo.py): 2 core, 4 aggregation,
    4 edge switches, 8 hosts; every core to every aggregation; aggregations and edges in pairs."""
    topo = GENERATORS["clos"].generate({})
    assert by_role(topo) == Counter({"core": 2, "aggregation": 4, "edge": 4, "server": 8})
    assert len(topo.links) == 24  # 2x4 core-aggregation + 2 pods x 2x2 aggregation-edge + 8 servers
    for core in ("core-01", "core-02"):
        assert neighbours(topo, core) == ["agg-01-01", "agg-01-02", "agg-02-01", "agg-02-02"]
    assert neighbours(topo, "agg-01-02") == ["core-01", "core-02", "edge-01-01", "edge-01-02"]
    assert neighbours(topo, "edge-02-01") == ["agg-02-01", "agg-02-02", "srv-02-01-01", "srv-02-01-02"]
    ids = {link.id for link in topo.links}
    assert {
        "agg-01-01:eth1--core-01:eth1",
        "agg-02-02:eth2--core-02:eth4",
        "agg-01-02:eth4--edge-01-02:eth2",
        "edge-02-02:eth4--srv-02-02-02:eth1",
    } <= ids
    assert topo.node("srv-02-02-02").rack == "edge-02-02" and topo.node("srv-02-02-02").pod == 2
    assert topo.node("core-01").pod is None


def test_leaf_spine_k_is_distrinet_spine_and_leaf() -> None:
    """Distrinet SpineAndLeafTopo(k): k/2 spines, k leaves (each to every spine), k/2 hosts per leaf."""
    assert GENERATORS["leaf-spine"].generate({"k": 4}) == GENERATORS["leaf-spine"].generate(
        {"spines": 2, "leaves": 4, "servers_per_leaf": 2}
    )


def test_leaf_ports_spines_first_then_servers() -> None:
    topo = GENERATORS["leaf-spine"].generate({"spines": 3, "leaves": 2, "servers_per_leaf": 2})
    ids = {link.id for link in topo.links}
    assert "leaf-02:eth3--spine-03:eth2" in ids
    assert "leaf-02:eth5--srv-02-02:eth1" in ids


def test_names_widen_past_99() -> None:
    topo = GENERATORS["leaf-spine"].generate({"spines": 1, "leaves": 100, "servers_per_leaf": 1})
    names = [n.name for n in topo.nodes]
    assert "leaf-001" in names and "leaf-100" in names and "srv-100-01" in names


# ---------------------------------------------------------------- explicit


def test_explicit_interfaces_named_and_auto_assigned() -> None:
    topo = GENERATORS["explicit"].generate(EXPLICIT_SMALL)
    assert {link.id for link in topo.links} == {
        "s1:eth3--s2:eth2",  # s2:eth1 is reserved by the last link, so auto-assignment skips it
        "h1:eth1--s1:eth1",
        "h2:eth1--s1:eth2",
        "h3:eth2--s2:eth1",
    }
    assert topo.node("h3").rack == "s2"


def test_explicit_rack_override_and_pods() -> None:
    params = {
        "nodes": [
            {"name": "a", "role": "leaf", "pod": 1},
            {"name": "b", "role": "leaf", "pod": 2},
            {"name": "h", "role": "server", "rack": "b", "pod": 2},
        ],
        "links": [{"a": "h", "b": "a"}, {"a": "h", "b": "b"}, {"a": "a", "b": "b"}],
    }
    assert GENERATORS["explicit"].constraints(params) == []
    topo = GENERATORS["explicit"].generate(params)
    assert topo.node("h").rack == "b" and topo.node("h").pod == 2
    params["nodes"][2].pop("rack")
    assert GENERATORS["explicit"].generate(params).node("h").rack == "a"  # lowest interface: eth1 -> a


def bad_explicit(**changes: Any) -> dict[str, Any]:
    params = json.loads(json.dumps(EXPLICIT_SMALL))
    for key, value in changes.items():
        params[key] = value
    return params


EXPLICIT_ERRORS = [
    # params, field, message fragment
    (bad_explicit(links=[{"a": "h1", "b": "nosuch"}]), "topology.links[0].b", "unknown node"),
    (
        bad_explicit(links=[{"a": "h1:eth1", "b": "s1"}, {"a": "h1:eth1", "b": "s2"}]),
        "topology.links[1].a",
        "already used by topology.links[0].a",
    ),
    (bad_explicit(links=[{"a": "h1:eth0", "b": "s1"}]), "topology.links[0].a", "management"),
    (bad_explicit(links=[{"a": "s1", "b": "s1"}]), "topology.links[0]", "itself"),
    (
        bad_explicit(nodes=[*EXPLICIT_SMALL["nodes"], {"name": "s1", "role": "leaf"}]),
        "topology.nodes[5].name",
        "duplicate",
    ),
    (
        bad_explicit(
            links=[
                {"a": "s1", "b": "s2"},
                {"a": "h1", "b": "s1"},
                {"a": "h2", "b": "s1"},
                {"a": "h3", "b": "h1"},
            ]
        ),
        "topology.nodes[4]",
        "not linked to any switch",
    ),
    (
        bad_explicit(nodes=[{"name": "s1", "role": "switch", "rack": "s2"}, *EXPLICIT_SMALL["nodes"][1:]]),
        "topology.nodes[0].rack",
        "only servers",
    ),
    (
        bad_explicit(
            nodes=[
                *EXPLICIT_SMALL["nodes"][:2],
                {"name": "h1", "role": "server", "rack": "s2"},
                *EXPLICIT_SMALL["nodes"][3:],
            ]
        ),
        "topology.nodes[2].rack",
        "must be a switch linked",
    ),
]


@pytest.mark.parametrize(("params", "field", "fragment"), EXPLICIT_ERRORS)
def test_explicit_constraints(params: dict[str, Any], field: str, fragment: str) -> None:
    problems = GENERATORS["explicit"].constraints(params)
    assert any(f == field and fragment in message for f, message, _value, _hint in problems), problems
    assert all(hint for _f, _m, _v, hint in problems)


# ---------------------------------------------------------------- constraints of generated kinds


CONSTRAINT_TABLE = [
    ("fat-tree", {"k": 5}, "topology.k", "even"),
    ("fat-tree", {"k": 26}, "topology.k", "5000"),
    ("leaf-spine", {"k": 3}, "topology.k", "even"),
    ("leaf-spine", {"k": 4, "spines": 2}, "topology.k", "do not combine"),
    (
        "leaf-spine",
        {"spines": 128, "leaves": 1024, "servers_per_leaf": 4},
        "topology",
        "more than the supported",
    ),
    (
        "clos",
        {"pods": 64, "edges_per_pod": 16, "servers_per_edge": 10},
        "topology",
        "more than the supported",
    ),
    ("linear", {"switches": 1667, "servers_per_switch": 2}, "topology", "expands to 5001 nodes"),
]


@pytest.mark.parametrize(("kind", "params", "field", "fragment"), CONSTRAINT_TABLE)
def test_constraints_reject(kind: str, params: dict[str, Any], field: str, fragment: str) -> None:
    problems = GENERATORS[kind].constraints(params)
    assert [(f, fragment in m) for f, m, _v, _h in problems] == [(field, True)], problems


def test_constraints_use_the_given_prefix_and_tolerate_wrong_types() -> None:
    assert GENERATORS["fat-tree"].constraints({"k": 3}, prefix="labs.topo")[0][0] == "labs.topo.k"
    for kind in ("leaf-spine", "clos", "linear", "fat-tree"):
        key = next(iter(GENERATORS[kind].DEFAULTS))
        assert GENERATORS[kind].constraints({key: "many"}) == []  # the schema reports types


def test_node_limit_boundary() -> None:
    assert GENERATORS["linear"].constraints({"switches": 1667, "servers_per_switch": 2}) != []  # 5001
    assert GENERATORS["linear"].constraints({"switches": 2500, "servers_per_switch": 1}) == []  # 5000
    assert GENERATORS["fat-tree"].constraints({"k": 24}) == []


# ---------------------------------------------------------------- schemas


def test_registry_kinds() -> None:
    assert sorted(GENERATORS) == ["clos", "explicit", "fat-tree", "leaf-spine", "linear"]


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_schema_is_valid_and_accepts_defaults(kind: str) -> None:
    module = GENERATORS[kind]
    Draft202012Validator.check_schema(module.SCHEMA)
    assert module.SCHEMA["type"] == "object" and module.SCHEMA["additionalProperties"] is False
    validator = Draft202012Validator(module.SCHEMA)
    sample = EXPLICIT_SMALL if kind == "explicit" else module.DEFAULTS
    assert list(validator.iter_errors(sample)) == []
    assert list(validator.iter_errors({**sample, "bogus": 1})) != []
    for name, prop in module.SCHEMA["properties"].items():
        assert prop.get("description"), f"{kind}.{name} documents itself"
        if prop.get("type") == "integer" and name in module.DEFAULTS:
            assert f"default {module.DEFAULTS[name]}" in prop["description"]


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("leaf-spine", {"spines": 0}),
        ("leaf-spine", {"servers_per_leaf": 255}),
        ("clos", {"pods": "2"}),
        ("fat-tree", {"k": 1}),
        ("linear", {"switches": 2501}),
        ("explicit", {"nodes": []}),
        ("explicit", {"nodes": [{"name": "Bad_Name", "role": "server"}]}),
        ("explicit", {"nodes": [{"name": "a", "role": "router"}]}),
        (
            "explicit",
            {"nodes": [{"name": "a", "role": "leaf"}], "links": [{"a": "a:this-is-way-too-long", "b": "b"}]},
        ),
    ],
)
def test_schema_rejects(kind: str, params: dict[str, Any]) -> None:
    assert list(Draft202012Validator(GENERATORS[kind].SCHEMA).iter_errors(params)) != []
