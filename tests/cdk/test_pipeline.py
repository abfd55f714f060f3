"""The design-time pipeline end to end: shipped labs, determinism, stage boundaries, host routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdk.errors import LabFileError
from cdk.host_routes import HostRoute, parse_resolvers, parse_routes
from cdk.lab import validate
from cdk.lab_schema import DEFAULT_POOLS
from cdk.lab_source import parse_path, read_lab_file, source_from_dict
from cdk.model import INSTANCE_NAME_MAX, Endpoint, Lab, Limits, Link, Node, Topology, to_dict
from cdk.pipeline import check_names, lab_from_dict, load_lab, resolve_limits, run_pipeline
from stacks.host_facts import read_host_routes
from tests.cdk.golden import FAKE_HOST_ROUTES, LABS_DIR, read_only

SHIPPED = sorted(LABS_DIR.glob("*.yaml"))

#: (file, lab name, node count, topology kind)
EXPECTED = {
    "default.yaml": ("default", 10, "leaf-spine"),
    "dc-3tier.yaml": ("dc3", 18, "clos"),
    "fat-tree-k4.yaml": ("ft4", 36, "fat-tree"),
    "clos-1000.yaml": ("clos1k", 996, "clos"),
    "aws-2hosts.yaml": ("aws2", 12, "leaf-spine"),
    "alcor-small.yaml": ("alcorsmall", 8, "leaf-spine"),
    "ssh-3hosts.yaml": ("ssh3", 26, "clos"),
}


def as_json(lab: Lab) -> str:
    return json.dumps(to_dict(lab), sort_keys=True)


def test_every_shipped_lab_is_expected() -> None:
    assert sorted(p.name for p in SHIPPED) == sorted(EXPECTED)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_lab_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with read_only(monkeypatch):
        lab = load_lab(path, host_routes=FAKE_HOST_ROUTES)
    name, nodes, kind = EXPECTED[path.name]
    assert (lab.name, len(lab.topology.nodes), lab.topology.kind) == (name, nodes, kind)
    assert lab.source == str(path)
    assert set(lab.placement.assignment) == {n.name for n in lab.topology.nodes}
    assert len(lab.addressing.management) == nodes
    assert all(len(lab.instance_name(n.name)) <= INSTANCE_NAME_MAX for n in lab.topology.nodes)
    assert all(lab.image_of(n) for n in lab.topology.nodes)
    assert set(lab.limits) == {n.role for n in lab.topology.nodes}
    # the header comment says what the lab is
    assert path.read_text().startswith(f"# {path.stem}:")


def test_dc_3tier_is_distrinet_pr21() -> None:
    lab = load_lab(LABS_DIR / "dc-3tier.yaml", host_routes=())
    roles = [n.role for n in lab.topology.nodes]
    counts = {role: roles.count(role) for role in set(roles)}
    assert counts == {"core": 2, "aggregation": 4, "edge": 4, "server": 8}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_pipeline_is_deterministic(path: Path) -> None:
    first = as_json(load_lab(path, host_routes=FAKE_HOST_ROUTES))
    second = as_json(load_lab(path, host_routes=FAKE_HOST_ROUTES))
    assert first == second


def test_python_lab_equals_the_same_yaml_lab() -> None:
    path = LABS_DIR / "default.yaml"
    from_file = load_lab(path, host_routes=())
    from_dict = lab_from_dict(read_lab_file(path).data, str(path), host_routes=())
    assert as_json(from_file) == as_json(from_dict)
    assert lab_from_dict({"name": "py", "topology": {"kind": "linear"}}, host_routes=()).source == "<python>"


def test_stages_stop_at_their_boundary() -> None:
    # an odd fat-tree k is an expand-stage problem: the validate-stage problem alone is reported
    data = {"name": "two", "topology": {"kind": "fat-tree", "k": 5}, "lxd": {"max_workers": 0}}
    with pytest.raises(LabFileError) as caught:
        lab_from_dict(data, "two.yaml", host_routes=())
    assert [p.field for p in caught.value.problems] == ["lxd.max_workers"]
    del data["lxd"]
    with pytest.raises(LabFileError) as caught:
        lab_from_dict(data, "two.yaml", host_routes=())
    assert [p.field for p in caught.value.problems] == ["topology.k"]


def test_a_labs_own_bridge_is_no_conflict() -> None:
    # FAKE_HOST_ROUTES has 10.99.0.0/16 on the bridge of the deployed lab "other"
    data = {"name": "other", "topology": {"kind": "linear"}, "addressing": {"management": "10.99.0.0/16"}}
    assert lab_from_dict(data, host_routes=FAKE_HOST_ROUTES).addressing.management_network == "10.99.0.0/16"
    with pytest.raises(LabFileError) as caught:
        lab_from_dict({**data, "name": "mine"}, host_routes=FAKE_HOST_ROUTES)
    assert str(caught.value) == (
        "<python>: addressing.management: overlaps 10.99.0.0/16 of the lab other (route dev dlbr-other) "
        "(got '10.99.0.0/16')\n  hint: leave addressing.management out (the lab then takes a free range) "
        "or pick one no lab uses, e.g. 10.0.0.0/16"
    )


def test_host_route_reader_parses_ip_json_and_resolv_conf(tmp_path: Path) -> None:
    outputs = {
        "ip -j route": json.dumps(
            [
                {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
                {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel"},
                {"dst": "10.210.0.0/16", "dev": "dlm-h4x"},
                {"dst": "10.30.0.0/24", "dev": "br-x"},
                {"dst": "203.0.113.7", "dev": "eth0"},
                {"dst": "fd00::/64", "dev": "eth0"},
            ]
        ),
        "ip -j -d link": json.dumps(
            [{"ifname": "br-x", "ifalias": "distrilab:labx:links"}, {"ifname": "eth0"}]
        ),
    }
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\n")
    routes = read_host_routes(run=lambda argv: outputs[" ".join(argv)], resolv_conf=resolv)
    assert routes == [
        HostRoute("192.0.2.0/24", "route dev eth0"),
        HostRoute("10.210.0.0/16", "route dev dlm-h4x", lab="h4x"),
        HostRoute("10.30.0.0/24", "route dev br-x", lab="labx"),
        HostRoute("203.0.113.7/32", "route dev eth0"),
        HostRoute("10.255.255.53/32", "resolver in /etc/resolv.conf"),
    ]


def test_host_route_reader_survives_a_missing_ip_command(tmp_path: Path) -> None:
    def missing(argv: object) -> str:
        raise FileNotFoundError("ip")

    assert read_host_routes(run=missing, resolv_conf=tmp_path / "absent") == []


def test_host_route_reader_on_this_machine() -> None:
    routes = read_host_routes()
    assert routes, "this machine has at least its uplink route"
    assert parse_routes("[]", "[]") == [] and parse_resolvers("") == []
    assert all(route.network.count("/") == 1 for route in routes)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("topology", ("topology",)),
        ("topology.k", ("topology", "k")),
        ("topology.links[3].b", ("topology", "links", 3, "b")),
        ("hosts[0]", ("hosts", 0)),
    ],
)
def test_parse_path(text: str, path: tuple) -> None:
    assert parse_path(text) == path


def _checked(name: str, nodes: list[Node], links: list[Link] | None = None) -> list[str]:
    source = source_from_dict({"name": name, "topology": {"kind": "linear"}})
    spec = validate(source)
    with pytest.raises(LabFileError) as caught:
        check_names(spec, Topology("explicit", tuple(nodes), tuple(links or ())), source)
    return [str(p) for p in caught.value.problems]


def test_check_stage_limits_container_names() -> None:
    long_node = "n" * 40  # dl-<20-char lab>-<40> is 64 characters
    problems = _checked("a" * 20, [Node(long_node, "server", "server"), Node("s1", "switch", "switch")])
    assert problems == [
        f"<python>: name: makes container names longer than 63 characters: dl-{'a' * 20}-{long_node} "
        f"(64; 1 of 2 nodes) (got '{'a' * 20}')\n  hint: shorten the lab name or the node names"
    ]


def test_check_stage_requires_dns_labels_and_short_interfaces() -> None:
    nodes = [Node("Bad_Node", "server", "server"), Node("s1", "switch", "switch")]
    links = [Link(Endpoint("Bad_Node", "eth1"), Endpoint("s1", "a-very-long-ifname"))]
    assert _checked("lab", nodes, links) == [
        "<python>: topology: gives container name dl-lab-Bad_Node, which is not a DNS label (got 'Bad_Node')"
        "\n  hint: use lowercase letters, digits and '-' (not at the end)",
        "<python>: topology.links: interface s1:a-very-long-ifname is longer than 15 characters "
        "(got 'a-very-long-ifname')\n  hint: Linux interface names have at most 15 characters",
    ]


def test_limits_inherit_role_over_kind_over_defaults() -> None:
    topology = Topology(
        "x",
        (Node("c1", "core", "switch"), Node("e1", "edge", "switch"), Node("h1", "server", "server")),
        (),
    )
    limits = {
        "defaults": Limits(cpu="1", memory="128MiB"),
        "switch": Limits(memory="256MiB"),
        "core": Limits(cpu="2"),
    }
    assert resolve_limits(limits, topology) == {
        "core": Limits(cpu="2", memory="256MiB"),
        "edge": Limits(cpu="1", memory="256MiB"),
        "server": Limits(cpu="1", memory="128MiB"),
    }
    assert resolve_limits({}, topology)["core"] == Limits()


RUNNING_DEFAULT = HostRoute("10.210.0.0/16", "route dev dlm-first", lab="first")


def test_a_lab_without_pools_takes_the_defaults_on_a_free_host() -> None:
    lab = lab_from_dict({"name": "second", "topology": {"kind": "linear"}}, host_routes=FAKE_HOST_ROUTES)
    assert lab.addressing.pools == DEFAULT_POOLS


def test_a_lab_without_pools_moves_off_a_running_labs_management_range() -> None:
    data = {"name": "second", "topology": {"kind": "linear"}}
    lab = lab_from_dict(data, host_routes=(*FAKE_HOST_ROUTES, RUNNING_DEFAULT))
    # the next /16 after the defaults: 10.211-10.213 are this lab's own other pools
    assert lab.addressing.pools == {**DEFAULT_POOLS, "management": "10.214.0.0/16"}
    assert lab.addressing.management_network == "10.214.0.0/16"
    # a third lab, with the second one's bridge up as well, moves one further
    third = lab_from_dict({**data, "name": "third"}, host_routes=(
        RUNNING_DEFAULT, HostRoute("10.214.0.0/16", "route dev dlm-second", lab="second")))
    assert third.addressing.pools["management"] == "10.215.0.0/16"


def test_a_recorded_pool_is_kept_and_its_own_bridge_is_no_conflict() -> None:
    data = {"name": "second", "topology": {"kind": "linear"}}
    own = HostRoute("10.214.0.0/16", "route dev dlm-second", lab="second")
    recorded = {**DEFAULT_POOLS, "management": "10.214.0.0/16"}
    # the first lab went down meanwhile: the second keeps the range it came up with
    lab = run_pipeline(lambda: source_from_dict(data, "<python>"), host_routes=(own,),
                       pool_records={"second": recorded})
    assert lab.addressing.pools["management"] == "10.214.0.0/16"
    # a lab recorded but not yet routed (its up still running) is avoided too
    third = run_pipeline(lambda: source_from_dict({**data, "name": "third"}, "<python>"), host_routes=(),
                         pool_records={"second": {"management": "10.210.0.0/16"}})
    assert third.addressing.pools["management"] == "10.214.0.0/16"


def test_a_pool_the_file_sets_is_never_moved_and_is_refused_naming_the_other_lab() -> None:
    data = {"name": "second", "topology": {"kind": "linear"}, "addressing": {"management": "10.210.0.0/16"}}
    with pytest.raises(LabFileError, match=r"overlaps 10\.210\.0\.0/16 of the lab first"):
        lab_from_dict(data, host_routes=(RUNNING_DEFAULT,))
    # a set pool that the default of an unset one would overlap: the unset one moves
    moved = lab_from_dict({**data, "addressing": {"loopbacks": "10.212.0.0/16"}}, host_routes=())
    assert moved.addressing.pools["loopbacks"] == "10.212.0.0/16"
    assert moved.addressing.pools["p2p"] == "10.214.0.0/16"


def test_a_lab_file_keeps_its_record_and_avoids_the_others(tmp_path: Path) -> None:
    path = tmp_path / "second.yaml"
    path.write_text("name: second\ntopology: {kind: linear}\n")
    records = {"first": dict(DEFAULT_POOLS), "second": {"management": "10.230.0.0/16"}}
    pools = load_lab(path, pool_records=records).addressing.pools
    assert pools["management"] == "10.230.0.0/16"  # its own record
    assert not set(pools.values()) & set(DEFAULT_POOLS.values())  # clear of the first lab's
