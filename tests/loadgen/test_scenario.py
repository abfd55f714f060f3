"""Scenario validation: every problem reported at once, naming file, field, bad value, expectation."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from cdk.errors import LabFileError
from modules.loadgen import NodeSpec, alcor_api, load_scenario, parse_scenario, with_nodes
from modules.loadgen.plan import build_plan

REPO = Path(__file__).resolve().parents[2]

BAD = {
    "negative_count": (
        "tenants: -1\nports_per_subnet: 5\n",
        ["bad.yaml:1: tenants: must be an integer between 1 and 10000 (got -1)"],
    ),
    "unknown_step_and_field": (
        "steps: [create_vpc, create_router]\nrate_limit: 5\n",
        [
            "bad.yaml:2: rate_limit: unknown field (expected one of:",
            "bad.yaml:1: steps.create_router: unknown step (expected one of: create_segment_table,",
        ],
    ),
    "ports_do_not_fit": (
        "vpc_cidr: 10.0.0.0/24\nsubnets_per_vpc: 4\nports_per_subnet: 100\n",
        [
            "bad.yaml:3: ports_per_subnet: does not fit a /26 subnet (10.0.0.0/24 split into 4 subnets "
            "has room for 61 ports each) (got 100)\n  hint: use a larger vpc_cidr or fewer subnets_per_vpc"
        ],
    ),
    "bind_without_nodes": (
        "steps: [create_vpc, create_subnet, create_port, bind_port]\n",
        ["bad.yaml: nodes: must name at least one node when bind_port or register_node is enabled"],
    ),
    "missing_parent_step": (
        "steps: [create_port]\n",
        ["bad.yaml:1: steps.create_port: needs step 'create_subnet' to be enabled too"],
    ),
    "bad_node_entry": (
        "nodes:\n  list:\n    - {name: n1, ip: 10.0.0.300, mac: '02:00:00:00:00:01'}\n"
        "    - {name: n1, ip: 10.0.0.2, mac: zz}\n",
        [
            "bad.yaml:3: nodes.list[0].ip: must be an IPv4 address (Alcor's node manager rejects anything "
            "else) (got '10.0.0.300')",
            "bad.yaml:4: nodes.list[1].name: duplicates an earlier node name",
            "bad.yaml:4: nodes.list[1].mac: must be a MAC address like 02:00:00:00:00:01 (got 'zz')",
        ],
    ),
    "bad_rate_and_limits": (
        "rate: 0\nconcurrency: 0\nlimits: {max_duration: -5, max_requests: 0}\ntimeouts: {request: fast}\n",
        [
            "bad.yaml:1: rate: must be a number greater than 0 and at most 1e+06 (got 0)",
            "bad.yaml:2: concurrency: must be an integer between 1 and 10000 (got 0)",
            "bad.yaml:3: limits.max_duration: must be a number greater than 0 and at most 86400 (got -5)",
            "bad.yaml:3: limits.max_requests: must be an integer between 1 and 100000000 (got 0)",
            "bad.yaml:4: timeouts.request: must be a number greater than 0 and at most 3600 (got 'fast')",
        ],
    ),
    "ports_per_node_too_small": (
        "ports_per_subnet: 10\nnodes: {count: 2, ports_per_node: 3}\n"
        "steps: [create_vpc, create_subnet, create_port, bind_port]\n",
        ["bad.yaml:2: nodes.ports_per_node: 2 nodes x 3 ports cannot hold the scenario's 10 ports (got 3)"],
    ),
    "endpoint_not_http": (
        "endpoints: {vpc_manager: 'https://x:9001', router_manager: 'http://x:9003'}\n",
        [
            "bad.yaml:1: endpoints.vpc_manager: must be an http:// base URL",
            "bad.yaml:1: endpoints.router_manager: unknown service",
        ],
    ),
    "not_a_mapping": ("- create_vpc\n", ["bad.yaml: (top level): must be a mapping of scenario fields"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenario_reports_every_problem(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LabFileError) as err:
        load_scenario(path)
    message = str(err.value).replace(str(tmp_path) + "/", "")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert len(err.value.problems) == len(expected)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nrate: [1,\n")
    with pytest.raises(LabFileError) as err:
        load_scenario(path)
    assert err.value.problems[0].field == "(yaml)" and err.value.problems[0].line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabFileError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "labs" / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_example_scenarios_are_valid(path: Path) -> None:
    scenario = load_scenario(path)
    plan = build_plan(scenario, "example")
    assert plan.operations and len(plan.operations) <= scenario.max_requests


def test_plan_counts_and_dependencies(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "tenants: 2\nprojects_per_tenant: 2\nvpcs_per_project: 2\nsubnets_per_vpc: 3\nports_per_subnet: 4\n"
        "nodes: {count: 3}\n"
        "steps: [create_segment_table, register_node, create_security_group, create_vpc, create_subnet,"
        " create_port, bind_port]\n"
    )
    plan = build_plan(load_scenario(path), "r1")
    counts = {s: plan.count(s) for s in ("create_vpc", "create_subnet", "create_port", "bind_port")}
    assert counts == {"create_vpc": 8, "create_subnet": 24, "create_port": 96, "bind_port": 96}
    assert plan.count("register_node") == 3 and plan.count("create_security_group") == 4
    ops = plan.operations
    for op in ops:
        assert all(p < op.index for p in op.parents)  # parents come first
        if op.step == "create_port":
            assert {ops[p].step for p in op.parents} == {"create_subnet", "create_security_group"}
        if op.step == "bind_port":
            assert {ops[p].step for p in op.parents} == {"create_port", "register_node"}
    # Port addresses are inside their subnet and skip the gateway address.
    first_port = next(op for op in ops if op.step == "create_port").call()
    assert b'"ip_address":"10.0.0.2"' in first_port.body and first_port.path.endswith("/ports")
    # a registration carries the data-path address the data-plane manager gives peers as the
    # tunnel end (NeighborService: without it the neighbour is dropped) and the DPM's DVR MAC
    register = json.loads(next(op for op in ops if op.step == "register_node").call().body)["host_info"]
    assert register["data-path-ip"] == register["local_ip"] == "198.18.0.1"
    assert register["host_dvr_mac"] == "fe:16:11:00:00:00" and register["server_port"] == 50001
    # every port is named as Alcor and ACA name its device: "tap" + id, 14 characters
    # (a Linux interface name holds 15; the old "port-t-p-v-s-n" passed it from index 100 on)
    names = set()
    for op in ops:
        if op.step == "create_port":
            port = json.loads(op.call().body)["port"]
            assert port["name"] == ("tap" + port["id"])[:14] and len(port["name"]) == 14
            assert str(uuid.UUID(port["id"])) == port["id"]  # UUID-shaped
            names.add(port["name"])
    assert len(names) == 96  # one device name per port (ids differ in their first 11 characters)


def test_round_trip_and_lab_nodes() -> None:
    scenario = load_scenario(REPO / "labs" / "scenarios" / "ports-per-node.yaml")
    assert parse_scenario(scenario.to_dict(), "again") == scenario
    lab = with_nodes(
        scenario, [NodeSpec(f"aca-{i}", f"10.213.0.{i}", f"02:00:00:00:00:{i:02x}") for i in range(1, 9)]
    )
    assert [n.name for n in lab.nodes][:2] == ["aca-1", "aca-2"] and lab.ports_per_node == 25
    with pytest.raises(LabFileError, match=r"nodes\.ports_per_node: 2 nodes x 25 ports cannot hold"):
        with_nodes(scenario, lab.nodes[:2])  # 200 ports do not fit two nodes of 25


@pytest.mark.parametrize("groups", [[], ["sg-1"], ["sg-1", "sg-2"]])
def test_port_body_template_equals_the_encoded_document(groups: list[str]) -> None:
    call = alcor_api.create_port("p", "t", "port-id", "vpc-id", "subnet-id", "10.0.0.2", "port-0", groups)
    port = {
        "id": "port-id",
        "name": "port-0",
        "project_id": "p",
        "tenant_id": "t",
        "network_id": "vpc-id",
        "fixed_ips": [{"subnet_id": "subnet-id", "ip_address": "10.0.0.2"}],
        "admin_state_up": True,
        "device_id": "dev-port-id",
        "device_owner": "compute:nova",
        "fast_path": True,
        **({"security_groups": groups} if groups else {}),
    }
    assert call.body == json.dumps({"port": port}, separators=(",", ":")).encode()


def test_node_registration_fields_are_checked_like_the_node_manager() -> None:
    entry = {"name": "n1", "ip": "10.0.0.1", "mac": "02:00:00:00:00:01", "local_ip": "not-an-ip",
             "server_port": 0, "host_dvr_mac": "fe:16", "registered": "yes", "veth": "a-very-long-ifname"}
    with pytest.raises(LabFileError) as info:
        parse_scenario({"name": "t", "nodes": {"list": [entry]}}, "s.yaml")
    text = str(info.value)
    for field in ("local_ip", "server_port", "host_dvr_mac", "registered", "veth"):
        assert f"nodes.list[0].{field}" in text, field


def test_order_and_bulk_are_checked() -> None:
    with pytest.raises(LabFileError) as info:
        bad = {"name": "t", "order": "random", "bulk": {"create_port": 0, "create_vpc": 5}}
        parse_scenario(bad, "s.yaml")
    text = str(info.value)
    assert "order: must be one of pipelined, phased" in text
    assert "bulk.create_port" in text and "bulk.create_vpc: unknown field" in text
    ok = parse_scenario({"name": "t", "order": "phased", "bulk": {"create_port": 50}}, "s.yaml")
    assert parse_scenario(ok.to_dict(), "again") == ok and ok.bulk == {"create_port": 50}
