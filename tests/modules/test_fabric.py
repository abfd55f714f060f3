"""modules/fabric.py: plan fixtures, the node script, parsing a real observation, execute on the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.fabric import (
    SCRIPT_PATH,
    FabricReconciler,
    parse_observation,
    render_script,
    script_digest,
)
from modules.node_shell import NodeShell
from tests.fakes.lxd import FakeLxd
from tests.modules.plan_cases import HERE, cases, check_case

RAW = HERE / "fabric" / "raw"


@pytest.mark.parametrize("path", cases("fabric"))
def test_plan_fixture(path: Path) -> None:
    check_case(FabricReconciler(), path)


def spec_of(case: str = "already_present") -> dict:
    return json.loads((HERE / "fabric" / f"{case}.json").read_text())["spec"]


def test_switch_script_enables_rstp_before_adding_ports() -> None:
    spec = FabricReconciler().load_spec(spec_of())
    leaf = next(n for n in spec.nodes if n.name == "leaf-01")
    script = render_script(leaf, "netdev")
    rstp = script.index("rstp_enable=true")
    assert rstp < script.index("add-port")
    assert "datapath_type=netdev" in script
    for port in leaf.ports:
        assert f"ethtool -K {port.name} tx off" in script
    # server-facing ports are edge ports, the spine-facing one is not
    assert "add-port br0 eth2 -- set port eth2 other_config:rstp-port-admin-edge=true" in script
    assert "add-port br0 eth1 -- set port eth1 other_config:rstp-port-admin-edge=false" in script


def test_parse_real_switch_observation() -> None:
    observed = parse_observation((RAW / "observe_leaf.txt").read_text())
    assert observed["bridges"]["br0"]["rstp_enable"] is True
    assert observed["bridges"]["br0"]["datapath_type"] == "netdev"
    assert observed["bridges"]["br0"]["ports"] == ["eth1", "eth2", "eth3"]
    assert observed["tx_csum"]["eth1"] == "off"
    assert len(observed["script"]) == 64


def test_parse_real_server_observation() -> None:
    observed = parse_observation((RAW / "observe_server.txt").read_text())
    assert not observed.get("bridges")
    assert observed["addresses"]["eth1"] and "eth1" in observed["up"]


def test_execute_writes_the_boot_script_and_runs_it_once_per_node() -> None:
    fake = FakeLxd()
    spec = FabricReconciler().load_spec(spec_of())
    for node in spec.nodes:
        fake.add_instance(node.instance, config={"user.distrilab.lab": spec.lab})
    r = FabricReconciler()
    actions = r.plan(spec, {"host_datapath": "netdev", "nodes": {n.instance: {"status": "Running"}
                                                                   for n in spec.nodes}})
    assert len(actions) == len(spec.nodes)
    assert r.execute(NodeShell(fake, local=False), spec, actions) == []
    assert sorted(name for name, _ in fake.execs) == sorted(n.instance for n in spec.nodes)
    for _, argv in fake.execs:
        command = argv[-1]
        assert command.rstrip().endswith(f"{SCRIPT_PATH} --now")
    # the digest the plan compares with is the digest of what was written
    leaf = next(n for n in spec.nodes if n.kind == "switch")
    script = render_script(leaf, "netdev")
    assert script in next(argv[-1] for name, argv in fake.execs if name == leaf.instance)
    assert len(script_digest(script)) == 64


def test_failed_script_fails_the_action() -> None:
    fake = FakeLxd(exec_handler=lambda name, argv: (1, "", "failed: ethtool -K eth1 tx off"))
    spec = FabricReconciler().load_spec(spec_of())
    node = spec.nodes[0]
    fake.add_instance(node.instance)
    r = FabricReconciler()
    actions = r.plan(spec, {"host_datapath": "netdev", "nodes": {node.instance: {"status": "Running"}}})
    mine = [a for a in actions if a.target == node.instance]
    failures = r.execute(NodeShell(fake, local=False), spec, mine)
    assert len(failures) == 1 and "ethtool" in failures[0][1]
