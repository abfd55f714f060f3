"""modules/fabric.py: plan fixtures, the node script, parsing a real observation, execute on the fake."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modules.fabric import (
    SCRIPT_PATH,
    FabricReconciler,
    NodeSpec,
    node_drift,
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


def linux_leaf() -> NodeSpec:
    spec = spec_of()
    for node in spec["nodes"]:
        if "bridge" in node:
            node["bridge"]["type"] = "linux"
    return next(n for n in FabricReconciler().load_spec(spec).nodes if n.name == "leaf-01")


def test_linux_bridge_script_turns_stp_on_before_any_port_joins() -> None:
    leaf = linux_leaf()
    script = render_script(leaf, "netdev")
    stp = script.index("type bridge stp_state 1 priority 32768 hello_time 100 max_age 600 forward_delay 400")
    assert script.index("ip link add br0 type bridge stp_state 1") < stp < script.index("master br0")
    assert "ovs-vsctl --timeout=30" not in script and "ethtool -K eth1" not in script
    for port in leaf.ports:
        assert f"ip link set {port.name} mtu 1500 master br0 up" in script


def test_linux_bridge_script_is_idempotent_and_drops_foreign_ports(tmp_path: Path) -> None:
    # run it against a stand-in `ip` and /sys: a bridge that exists with a port the spec lacks
    sys_net = tmp_path / "sys" / "class" / "net"
    (sys_net / "br0" / "bridge").mkdir(parents=True)
    (sys_net / "br0" / "brif" / "eth9").mkdir(parents=True)
    calls = tmp_path / "calls"
    for tool in ("ip", "ethtool", "ovs-vsctl"):
        (tmp_path / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (tmp_path / tool).chmod(0o755)
    script = render_script(linux_leaf(), "netdev").replace("/sys/class/net", str(sys_net))
    proc = subprocess.run(["sh", "-c", script], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ran = calls.read_text().splitlines()
    assert "ip link add br0 type bridge stp_state 1" not in ran  # it exists
    assert "ip link set eth9 nomaster" in ran and not any(c.startswith("ovs-vsctl") for c in ran)


def test_parse_real_linux_bridge_observation() -> None:
    observed = parse_observation((RAW / "observe_linux_bridge.txt").read_text())
    assert observed["bridges"] == {"br0": {"type": "linux", "stp_state": 1, "priority": 16384,
                                           "ports": ["eth1", "eth2"]}}


def test_linux_bridge_drift() -> None:
    leaf = linux_leaf()
    script = render_script(leaf, "netdev")
    good = {"status": "Running", "script": script_digest(script),
            "up": ["eth0", *(p.name for p in leaf.ports)],
            "addresses": {"eth0": [leaf.mgmt_address]}, "tx_csum": {p.name: "on" for p in leaf.ports},
            "bridges": {"br0": {"type": "linux", "stp_state": 1, "priority": 32768,
                                "ports": sorted(p.name for p in leaf.ports)}}}
    assert node_drift(leaf, "netdev", script, good) == []  # TX offload stays on: the kernel forwards
    stp_off = {**good, "bridges": {"br0": {**good["bridges"]["br0"], "stp_state": 0, "priority": 4096}}}
    assert node_drift(leaf, "netdev", script, stp_off) == ["kernel STP off", "STP priority 4096->32768"]
    ovs = {**good, "bridges": {"br0": {"type": "ovs", "datapath_type": "netdev", "rstp_enable": True,
                                       "ports": good["bridges"]["br0"]["ports"]}}}
    assert node_drift(leaf, "netdev", script, ovs) == ["no Linux bridge br0"]


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


def routed_spec() -> dict:
    """The fabric stage's spec of the default leaf-spine as a routed fabric (cdk/stages/fabric.py)."""
    import yaml

    from cdk.pipeline import lab_from_dict
    from cdk.stages import fabric as fabric_stage
    from tests.cdk.golden import LABS_DIR

    data = yaml.safe_load((LABS_DIR / "default.yaml").read_text())
    data["fabric"] = {"mode": "l3"}
    lab = lab_from_dict(data)
    built = fabric_stage.build(lab, lab.hosts[0])
    assert built is not None
    return built


def test_routed_rack_switch_script() -> None:
    spec = FabricReconciler().load_spec(routed_spec())
    leaf = next(n for n in spec.nodes if n.name == "leaf-01")
    script = render_script(leaf, "netdev")
    assert leaf.bridge_type == "plain" and [p.name for p in leaf.ports] == ["eth3", "eth4", "eth5"]
    assert "ip link add br0 type bridge stp_state 0" in script
    # the gateway goes on the rack bridge once it exists; /31s on the uplinks
    assert script.index("type bridge stp_state 0") < script.index("setaddr br0 10.213.0.254/24")
    assert "setaddr eth1 10.212.0.0/31" in script and "setaddr eth2 10.212.0.2/31" in script
    assert "has_addr lo 10.211.1.1/32 || step ip addr add 10.211.1.1/32 dev lo" in script
    assert "ip -4 addr flush dev lo" not in script
    assert leaf.bgpd and leaf.bgpd.rstrip("\n") in script  # written through its own heredoc
    assert "sv restart bgpd" in script and "add-br" not in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0


def test_routed_servers_reach_other_racks_through_their_rack_switch() -> None:
    spec = FabricReconciler().load_spec(routed_spec())
    server = next(n for n in spec.nodes if n.name == "srv-02-01")
    assert server.interfaces == (("eth1", "10.213.1.1/24"),)
    assert server.routes == (("10.213.0.0/16", "10.213.1.254"),)
    assert "step ip route replace 10.213.0.0/16 via 10.213.1.254" in render_script(server, "netdev")


def test_routed_drift_sees_a_stopped_bgpd_an_edited_config_and_a_lost_route() -> None:
    from modules.fabric import runit_states

    spec = FabricReconciler().load_spec(routed_spec())
    leaf = next(n for n in spec.nodes if n.name == "leaf-01")
    server = next(n for n in spec.nodes if n.name == "srv-01-01")
    assert leaf.bgpd
    script = render_script(leaf, "netdev")
    addresses = {"eth0": [leaf.mgmt_address], "lo": ["127.0.0.1/8", leaf.loopback],
                 **{name: [address] for name, address in leaf.interfaces}}
    up = ["eth0", *(name for name, _ in leaf.interfaces), *(p.name for p in leaf.ports)]
    healthy = {
        "status": "Running", "script": script_digest(script), "addresses": addresses, "up": up,
        "tx_csum": {name: "off" for name, _ in leaf.interfaces} | {"br0": "off"},
        "bridges": {"br0": {"type": "linux", "stp_state": 0, "priority": 32768,
                            "ports": ["eth3", "eth4", "eth5"]}},
        "bgpd_conf": script_digest(leaf.bgpd),
        "daemons": runit_states(["run: zebra: (pid 30) 80s", "run: bgpd: (pid 31) 80s"]),
    }
    assert node_drift(leaf, "netdev", script, healthy) == []
    stopped = {**healthy, "daemons": runit_states(["run: zebra: (pid 30) 8s", "down: bgpd: 4s, normally up"])}
    assert node_drift(leaf, "netdev", script, stopped) == ["bgpd down"]
    assert node_drift(leaf, "netdev", script, {**healthy, "bgpd_conf": "0" * 64}) == ["bgpd.conf changed"]
    no_loopback = {**healthy, "addresses": {**addresses, "lo": ["127.0.0.1/8"]}}
    assert node_drift(leaf, "netdev", script, no_loopback) == ["lo lacks 10.211.1.1/32"]
    stp = {**healthy, "bridges": {"br0": {**healthy["bridges"]["br0"], "stp_state": 1}}}
    assert node_drift(leaf, "netdev", script, stp) == ["STP on a rack bridge"]

    server_script = render_script(server, "netdev")
    have = {"status": "Running", "script": script_digest(server_script), "up": ["eth0", "eth1"],
            "addresses": {"eth0": [server.mgmt_address], "eth1": ["10.213.0.1/24"]},
            "tx_csum": {"eth1": "off"}, "routes": ["default via 10.210.0.1"]}
    assert node_drift(server, "netdev", server_script, have) == ["no route to 10.213.0.0/16 via 10.213.0.254"]
    have["routes"].append("10.213.0.0/16 via 10.213.0.254")
    assert node_drift(server, "netdev", server_script, have) == []


def test_parse_routes_and_runit_states() -> None:
    text = ("== script\nabc\n== addr\n[]\n== frr\n" + "f" * 64 + "\nrun: zebra: (pid 30) 80s\n"
            "down: bgpd: 4s, normally up\n== routes\n"
            '[{"dst":"default","gateway":"10.210.0.1","dev":"eth0"},{"dst":"10.213.0.0/24","dev":"br0"}]\n')
    have = parse_observation(text)
    assert have["bgpd_conf"] == "f" * 64 and have["daemons"] == {"zebra": "run", "bgpd": "down"}
    assert have["routes"] == ["default via 10.210.0.1"]
