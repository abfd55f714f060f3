"""Alcor's deployment file: loading, validation, dependency order, addresses, templating, stage spec."""

from __future__ import annotations

import ipaddress

import pytest

from cdk import alcor
from cdk.errors import LabFileError
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from cdk.stages import alcor as stage

#: Alcor's own port plan (application.properties of each service; network-acl: its Dockerfile)
ALCOR_PORTS = {
    "ignite": 10800,
    "vpc": 9001,
    "subnet": 9002,
    "route": 9003,
    "private-ip": 9004,
    "mac": 9005,
    "port": 9006,
    "node": 9007,
    "security-group": 9008,
    "api-gateway": 9009,
    "data-plane": 9010,
    "elastic-ip": 9011,
    "quota": 9012,
    "network-acl": 9013,
    "network-config": 9014,
    "gateway": 9015,
}


def small(**overrides: object) -> dict[str, object]:
    """A deployment with three services, for validation tests."""
    data: dict[str, object] = {
        "services": {
            "ignite": {"kind": "ignite", "port": 10800},
            "vpc": {"jar": "v.jar", "port": 9001, "depends_on": ["ignite"]},
            "subnet": {"jar": "s.jar", "port": 9002, "depends_on": ["vpc"]},
        }
    }
    data.update(overrides)
    return data


def problems(data: object) -> list[str]:
    with pytest.raises(LabFileError) as info:
        alcor.parse(data, "labs/x.yaml", "alcor")
    return [str(p) for p in info.value.problems]


# ---------------------------------------------------------------- the shipped file


def test_default_has_alcors_sixteen_containers_and_ports() -> None:
    d = alcor.resolve_section("default")
    assert d is not None
    assert {s.name: s.port for s in d.services} == ALCOR_PORTS
    assert d.service("network-config").extra_ports == {"grpc": 9016}
    assert d.service("ignite").image == "ignite"
    assert {s.image for s in d.services if s.name != "ignite"} == {"alcor-service"}
    assert all(s.health.path == "/actuator/health" for s in d.services if s.kind == "spring")
    assert d.service("ignite").health.kind == "tcp"


def test_default_orders_ignite_first_and_the_gateway_last() -> None:
    d = alcor.resolve_section("default")
    assert d is not None
    order = alcor.levels(d)
    assert order[0] == ("ignite",)
    assert order[-1] == ("api-gateway",)
    position = {name: i for i, level in enumerate(order) for name in level}
    for svc in d.services:
        for dep in svc.depends_on:
            assert position[dep] < position[svc.name], (svc.name, dep)


def test_empty_mapping_and_default_are_the_same_deployment() -> None:
    assert alcor.resolve_section({}) == alcor.resolve_section("default")
    assert alcor.resolve_section(None) is None


def test_override_merges_into_the_default() -> None:
    d = alcor.resolve_section(
        {"services": {"port": {"resources": {"memory": "3GiB"}}, "network-acl": None}, "max_parallel": 2}
    )
    assert d is not None
    assert d.service("port").resources.memory == "3GiB"
    assert d.service("port").port == 9006  # untouched fields keep the default
    assert "network-acl" not in d.names
    assert d.max_parallel == 2


def test_dropping_a_service_others_depend_on_is_an_error() -> None:
    with pytest.raises(LabFileError) as info:
        alcor.resolve_section({"services": {"quota": None}}, "labs/x.yaml")
    text = str(info.value)
    assert "alcor.services.api-gateway.depends_on: unknown service 'quota'" in text


# ---------------------------------------------------------------- validation


def test_valid_small_deployment() -> None:
    d = alcor.parse(small())
    assert alcor.levels(d) == [("ignite",), ("vpc",), ("subnet",)]


def test_unknown_dependency_names_file_field_and_value() -> None:
    data = small()
    data["services"]["vpc"]["depends_on"] = ["ignite", "nosuch"]  # type: ignore[index]
    [text] = problems(data)
    assert text.startswith("labs/x.yaml: alcor.services.vpc.depends_on: unknown service 'nosuch'")
    assert "(got 'nosuch')" in text


def test_dependency_cycle_is_reported_with_its_path() -> None:
    data = small()
    data["services"]["ignite"]["depends_on"] = ["subnet"]  # type: ignore[index]
    [text] = problems(data)
    assert "dependency cycle: " in text
    assert "ignite -> subnet -> vpc -> ignite" in text or "subnet -> vpc -> ignite -> subnet" in text


def test_duplicate_ports_on_one_address() -> None:
    data = small()
    data["services"]["vpc"]["address"] = "10.210.0.50"  # type: ignore[index]
    data["services"]["subnet"]["address"] = "10.210.0.50"  # type: ignore[index]
    data["services"]["subnet"]["port"] = 9001  # type: ignore[index]
    [text] = problems(data)
    assert "alcor.services.subnet.port: port 9001 on 10.210.0.50 is already used by service 'vpc'" in text


def test_duplicate_port_within_a_service() -> None:
    data = small()
    data["services"]["vpc"]["extra_ports"] = {"grpc": 9001}  # type: ignore[index]
    [text] = problems(data)
    assert "alcor.services.vpc.extra_ports.grpc: same port as 'port'" in text


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("port", 70000, "alcor.services.vpc.port: must be a TCP port number (1-65535) (got 70000)"),
        ("port", "9001", "alcor.services.vpc.port: must be a TCP port number"),
        ("kind", "tomcat", "alcor.services.vpc.kind: must be one of ignite, spring (got 'tomcat')"),
        ("jar", "dir/v.jar", "alcor.services.vpc.jar: must be a jar file name"),
        ("resources", {"memory": "lots"}, "alcor.services.vpc.resources.memory: must be a size"),
        ("resources", {"cpu": "two"}, "alcor.services.vpc.resources.cpu: must be a CPU count"),
        ("health", {"timeout": 0}, "alcor.services.vpc.health.timeout: must be a number of seconds"),
        ("health", {"path": "health"}, "alcor.services.vpc.health.path: must be an absolute URL path"),
        ("health", {"port": "grpc"}, "alcor.services.vpc.health.port: not a port of this service"),
        ("address", "10.1.2", "alcor.services.vpc.address: must be an IPv4 address"),
        ("colour", "red", "alcor.services.vpc.colour: unknown field"),
        ("config", {"a.b": {"x": 1}}, "alcor.services.vpc.config.a.b: must be a string, number or boolean"),
        ("local_forwards", {70000: "a:1"}, "vpc.local_forwards.70000: the key must be a TCP port"),
        ("local_forwards", {10800: "ignite"}, "vpc.local_forwards.10800: must be 'host:port'"),
        ("local_forwards", {10800: "{{ghost.host}}:1"}, "vpc.local_forwards.10800: unknown service"),
    ],
)
def test_bad_service_values(field: str, value: object, expected: str) -> None:
    data = small()
    data["services"]["vpc"][field] = value  # type: ignore[index]
    found = problems(data)
    assert any(expected in text for text in found), found


def test_every_problem_is_reported_at_once() -> None:
    data = small(max_parallel=0)
    data["services"]["vpc"]["port"] = 0  # type: ignore[index]
    data["services"]["subnet"]["depends_on"] = ["ghost"]  # type: ignore[index]
    found = problems(data)
    assert len(found) == 3, found


def test_spring_service_needs_a_jar() -> None:
    data = small()
    del data["services"]["vpc"]["jar"]  # type: ignore[index]
    found = problems(data)
    assert any("alcor.services.vpc.jar: a Spring service needs its jar file name" in t for t in found)


def test_bad_template_reference() -> None:
    data = small()
    data["services"]["vpc"]["config"] = {"x.url": "{{nosuch.url}}", "y": "{{ignite.grpc}}"}  # type: ignore[index]
    found = problems(data)
    assert any("config.x.url: unknown service 'nosuch'" in t for t in found)
    assert any("config.y: unknown field 'grpc' of service 'ignite'" in t for t in found)


def test_section_must_be_null_default_or_mapping() -> None:
    with pytest.raises(LabFileError) as info:
        alcor.resolve_section("everything", "labs/x.yaml")
    assert "labs/x.yaml: alcor: must be null, 'default' or a mapping" in str(info.value)


# ---------------------------------------------------------------- order, addresses, templating


def test_levels_group_independent_services() -> None:
    d = alcor.parse(
        {
            "services": {
                "a": {"kind": "ignite", "port": 1},
                "c": {"jar": "c.jar", "port": 3, "depends_on": ["a"]},
                "b": {"jar": "b.jar", "port": 2, "depends_on": ["a"]},
                "d": {"jar": "d.jar", "port": 4, "depends_on": ["b", "c"]},
            }
        }
    )
    assert alcor.levels(d) == [("a",), ("b", "c"), ("d",)]


def test_addresses_follow_the_fabric_nodes_and_respect_pinned_ones() -> None:
    data = small()
    data["services"]["vpc"]["address"] = "10.210.0.40"  # type: ignore[index]
    d = alcor.parse(data)
    used = ["10.210.0.1/16", "10.210.0.2/16", "10.210.0.3/16"]
    addresses, extra = alcor.allocate_addresses(d, "10.210.0.0/16", used, extra=1)
    # pinned addresses count as taken: allocation continues after the highest one
    assert addresses == {"ignite": "10.210.0.41/16", "vpc": "10.210.0.40/16", "subnet": "10.210.0.42/16"}
    assert extra == ["10.210.0.43/16"]


def test_templating_expands_service_facts() -> None:
    d = alcor.resolve_section("default")
    assert d is not None
    addresses = {s.name: f"10.210.1.{i + 1}/16" for i, s in enumerate(d.services)}
    facts = alcor.template_facts(d, addresses, "lab1")
    dpm = alcor.render_config(d.service("data-plane"), facts)
    ncm_ip = addresses["network-config"].split("/")[0]
    assert dpm["microservices.netwconfigmanager.service.url"] == ncm_ip
    assert dpm["microservices.node.service.url"] == f"http://{addresses['node'].split('/')[0]}:9007/nodes"
    # Alcor connects to host:port only for the literal localhost (IgniteConfiguration.java,
    # getThinIgniteClient): every Spring service reaches Ignite through its own loopback
    assert dpm["ignite.host"] == "localhost" and dpm["ignite.port"] == "10800"
    ignite = f"{addresses['ignite'].split('/')[0]}:10800"
    for svc in d.services:
        if svc.kind == "spring":
            assert alcor.render(svc.local_forwards[10800], facts) == ignite
        else:
            assert svc.local_forwards == {}  # Ignite itself forwards nothing
    assert dpm["server.port"] == "9010"
    port = alcor.render_config(d.service("port"), facts)
    assert port["alcor.vif_type"] == "ovs"
    assert port["microservices.mac.service.url"].endswith(":9005/macs")
    assert all("{{" not in v for s in d.services for v in alcor.render_config(s, facts).values())
    assert alcor.render_config(d.service("ignite"), facts) == {}  # Ignite takes no Spring properties


# ---------------------------------------------------------------- the stage builder


def lab(**extra: object) -> Lab:
    topology = {"kind": "leaf-spine", "spines": 1, "leaves": 2, "servers_per_leaf": 2}
    data: dict[str, object] = {"name": "al1", "topology": topology}
    data.update(extra)
    return lab_from_dict(data, "labs/al1.yaml", host_routes=[])


def test_stage_is_empty_without_alcor() -> None:
    plain = lab()
    assert stage.build(plain, plain.hosts[0]) is None


def test_stage_spec_places_services_after_the_fabric() -> None:
    the_lab = lab(alcor="default")
    spec = stage.build(the_lab, the_lab.hosts[0])
    assert spec is not None
    assert spec["lab"] == "al1" and spec["network"]["name"] == "dlm-al1"
    fabric = {ipaddress.IPv4Interface(a).ip for a in the_lab.addressing.management.values()}
    service_ips = [ipaddress.IPv4Interface(s["address"]).ip for s in spec["services"]]
    assert len(set(service_ips)) == 16
    assert min(service_ips) > max(fabric)
    by_name = {s["name"]: s for s in spec["services"]}
    assert by_name["vpc"]["instance"] == "dl-al1-alcor-vpc"
    assert by_name["vpc"]["image"] == "dl-al1-alcor-service"
    assert by_name["vpc"]["properties"]["ignite.host"] == "localhost"
    ignite = f"{by_name['ignite']['address'].split('/')[0]}:10800"
    assert by_name["vpc"]["local_forwards"] == {"10800": ignite} and by_name["ignite"]["local_forwards"] == {}
    assert by_name["ignite"]["level"] == 0 and by_name["api-gateway"]["level"] == 5
    _, controller = stage.control_plane_addresses(the_lab, alcor.resolve_section("default"))
    # taken from the pool's top downward, in service order: the controller comes last, below them
    assert max(service_ips) == ipaddress.IPv4Address("10.210.255.254")
    assert max(fabric) < ipaddress.IPv4Interface(controller).ip < min(service_ips)
    vpc_ip = by_name["vpc"]["address"].split("/")[0]
    assert spec["post_deploy"]["segment_table_url"] == f"http://{vpc_ip}:9001/segments/createDefaultTable"
    assert spec["post_deploy"]["nodes"] == []  # no server uses the aca image


def test_control_plane_addresses_survive_lab_edits() -> None:
    """One more leaf (and its servers) neither moves Alcor's containers nor the controller."""
    small = lab(alcor="default")
    grown = lab_from_dict(
        {
            "name": "al1",
            "topology": {"kind": "leaf-spine", "spines": 1, "leaves": 3, "servers_per_leaf": 2},
            "alcor": "default",
        },
        "labs/al1.yaml",
        host_routes=[],
    )
    section = alcor.resolve_section("default")
    assert stage.control_plane_addresses(small, section) == stage.control_plane_addresses(grown, section)


def test_stage_registers_every_aca_server() -> None:
    the_lab = lab(alcor="default", images={"server": "aca"})
    spec = stage.build(the_lab, the_lab.hosts[0])
    assert spec is not None
    registered = spec["post_deploy"]["nodes"]
    servers = sorted(n.name for n in the_lab.topology.nodes if n.kind == "server")
    assert [n["name"] for n in registered] == servers
    first = registered[0]
    assert first["node_id"] == stage.node_id("al1", first["name"])
    assert first["local_ip"] == the_lab.addressing.management[first["name"]].split("/")[0]
    fabric = {a.node: a.address.split("/")[0] for a in the_lab.addressing.servers}
    assert first["data_path_ip"] == fabric[first["name"]]
    assert first["interface"] == "eth1" and first["server_port"] == 50001
    ncm = next(s for s in spec["services"] if s["name"] == "network-config")
    assert spec["post_deploy"]["aca_env"] == {
        "ACA_NCM_ADDRESS": ncm["address"].split("/")[0],
        "ACA_NCM_PORT": "9016",
    }


def test_stage_runs_only_on_the_control_plane_host() -> None:
    the_lab = lab(
        alcor={"host": "h2"},
        hosts=[{"name": "h1", "kind": "local"}, {"name": "h2", "kind": "ssh", "address": "198.51.100.2"}],
    )
    assert stage.build(the_lab, the_lab.hosts[0]) is None
    assert stage.build(the_lab, the_lab.hosts[1]) is not None


def test_unknown_control_plane_host() -> None:
    the_lab = lab(alcor={"host": "nowhere"})
    with pytest.raises(LabFileError) as info:
        stage.build(the_lab, the_lab.hosts[0])
    assert "labs/al1.yaml: alcor.host: not one of the lab's hosts (local) (got 'nowhere')" in str(info.value)


def test_stage_spec_is_deterministic() -> None:
    a, b = lab(alcor="default"), lab(alcor="default")
    assert stage.build(a, a.hosts[0]) == stage.build(b, b.hosts[0])
