"""ACA's data-plane substrate without ACA: two ACA servers on different leaves, programmed by hand
the way ACA programs them for one VPC, ping each other's VPC ports through a VXLAN tunnel.

This machine has no openvswitch kernel module, so the aca image runs OVS's userspace (netdev)
datapath, whose tunnels only work when the underlay address sits on an OVS bridge ("native
tunneling"): the image's aca-ovs-bridges puts the fabric NIC on br-phy. With the kernel datapath
(the module loaded) that step is skipped and the kernel's VXLAN carries the same flows.

What ACA would install is taken from alcor-control-agent 24c128c: br-int and br-tun joined by
patch ports, `vxlan-generic` at ofport 100 with remote_ip/key=flow (src/ovs/aca_ovs_l2_programmer.cpp
setup_ovs_bridges_if_need); br-tun's base flows (src/ovs/of_controller.cpp: patch-int -> table 2,
unicast -> 20, vxlan-generic -> table 4); per VPC, tunnel id -> internal VLAN in table 4 and, per
remote neighbour, VLAN + MAC -> strip, set tun_id and tun_dst, out the VXLAN port in table 20
(src/ovs/aca_vlan_manager.cpp). ARP requests are flooded through the tunnel (table 22) instead of
answered by ACA's ARP responder. Each port is a namespace on br-int, as Alcor's busybox ping test
attaches containers (modules/port_endpoint.py). Then the lab's ping agent (modules/ping_agent.py),
asked as the load controller's verify_ping asks it, reads the two ports from an Alcor API double,
attaches them itself and reports the same pings.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from bench import deploy
from bench.labs import free_pools, leaf_spine
from cdk.model import Lab
from modules import lxd_rest as rest
from modules.check import run_checks
from modules.ping_agent import PingAgent
from modules.port_endpoint import Endpoint, attach_script, ping_script
from tests.doubles.alcor_api import AlcorApiDouble
from tests.e2e.conftest import lab_leftovers
from tests.loadgen.test_double import post

pytestmark = pytest.mark.e2e

TUNNEL_ID = 1000  # the VPC's VXLAN segment (VNI)
VXLAN_PORT = 100  # ACA's VXLAN_GENERIC_OUTPORT_NUMBER (include/aca_util.h)
SERVERS = ("srv-01-01", "srv-02-01")  # on leaf-01 and leaf-02
PORTS = (
    Endpoint("1a2b3c4d5e6f7a8b9c0d", "fa:16:3e:00:00:01", "192.168.50.11/24"),
    Endpoint("2b3c4d5e6f7a8b9c0d1e", "fa:16:3e:00:00:02", "192.168.50.12/24"),
)


def datapath() -> str:
    return "system" if Path("/sys/module/openvswitch").is_dir() else "netdev"


def run(client: object, instance: str, script: str) -> str:
    result = rest.sh(client, instance, script, timeout=60)
    assert result.ok, f"{instance}: {script}\n{result.stdout}{result.stderr}"
    return result.stdout


def fabric_ip(lab: Lab, node: str) -> str:
    address = next(a.address for a in lab.addressing.servers if a.node == node and a.interface == "eth1")
    return str(ipaddress.ip_interface(address).ip)


def br_tun_flows(patch_int: int, vlan: int, remote_mac: str, remote_ip: str) -> list[str]:
    """What ACA's OpenFlow controller and VLAN manager install on br-tun for one VPC and one
    remote neighbour (of_controller.cpp, aca_vlan_manager.cpp)."""
    return [
        f"table=0,priority=1,in_port={patch_int},actions=resubmit(,2)",
        f"table=0,priority=25,in_port={VXLAN_PORT},actions=resubmit(,4)",
        "table=2,priority=1,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,20)",
        "table=2,priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)",
        f"table=4,priority=1,tun_id={TUNNEL_ID},actions=mod_vlan_vid:{vlan},output:{patch_int}",
        f"table=20,priority=50,dl_vlan={vlan},dl_dst={remote_mac},actions=strip_vlan,"
        f"load:{TUNNEL_ID}->NXM_NX_TUN_ID[],set_field:{remote_ip}->tun_dst,output:{VXLAN_PORT}",
        f"table=22,priority=1,dl_vlan={vlan},actions=strip_vlan,"
        f"load:{TUNNEL_ID}->NXM_NX_TUN_ID[],set_field:{remote_ip}->tun_dst,output:{VXLAN_PORT}",
    ]


def wait_for_underlay(client: object, instance: str, ip: str, timeout: float = 90) -> None:
    """aca-run re-runs aca-ovs-bridges every start (ACA is missing: it restarts every 10 s); the
    first start after the links stage added eth1 moves it onto br-phy."""
    deadline = time.monotonic() + timeout
    while True:
        out = rest.sh(client, instance, "ip -4 -o addr show dev br-phy 2>/dev/null; "
                      "ovs-vsctl list-ports br-phy 2>/dev/null").stdout
        if ip in out and "eth1" in out:
            return
        assert time.monotonic() < deadline, f"{instance}: eth1 never moved onto br-phy: {out!r}"
        time.sleep(2)


def test_two_aca_servers_ping_through_a_vxlan_tunnel(lab_name: str) -> None:
    lab = leaf_spine(lab_name, 1, 2, 1, pools=free_pools(lab_name),
                     images={"server": "aca", "switch": "switch"},
                     images_options={"without": ["aca_source", "aca_deps"]})  # OVS, no ACA binary
    client = rest.connect(None)
    instances = [lab.instance_name(s) for s in SERVERS]
    ips = [fabric_ip(lab, s) for s in SERVERS]
    try:
        deploy.apply(lab)
        for instance, ip in zip(instances, ips, strict=True):
            assert run(client, instance, "ovs-vsctl get bridge br-int datapath_type").strip() == datapath()
            if datapath() == "netdev":
                wait_for_underlay(client, instance, ip)
        # the fabric converged (RSTP), and the servers reach each other over br-phy (ping, TCP)
        report = run_checks(lab, rstp_timeout=90)
        assert report.ok, report.to_dict()
        for me, (instance, port) in enumerate(zip(instances, PORTS, strict=True)):
            peer = PORTS[1 - me]
            run(client, instance, attach_script(port))
            patch_int = int(run(client, instance, "ovs-vsctl get interface patch-int ofport"))
            flows = br_tun_flows(patch_int, port.vlan, peer.mac, ips[1 - me])
            run(client, instance, "ovs-ofctl del-flows br-tun && " + " && ".join(
                f"ovs-ofctl add-flow br-tun '{flow}'" for flow in flows))
            tag = run(client, instance, f"ovs-vsctl get port {port.ovs_port} tag").strip()
            assert tag == str(port.vlan) and len(port.ovs_port) == 14
        out = run(client, instances[0], ping_script(PORTS[0], PORTS[1].ip))  # 3 answers, or it fails
        assert "3 received" in out, out
        # it went through the tunnel: both ends decapsulated VPC traffic (table 4 counted it)
        for instance in instances:
            counted = run(client, instance, f"ovs-ofctl dump-flows br-tun table=4,tun_id={TUNNEL_ID}")
            packets = int(counted.split("n_packets=")[1].split(",")[0])
            assert packets >= 3, counted
        check_the_ping_agent(client, instances)
    finally:
        deploy.destroy(lab)
    assert lab_leftovers(lab_name) == {}


def check_the_ping_agent(client: object, instances: list[str]) -> None:
    """verify_ping's way: the agent learns each port from Alcor (here its API double), attaches it
    on the node it is bound to and pings; it reports the outcome per pair and detaches at the end."""
    def node_run(instance: str, script: str) -> tuple[int, str]:
        result = rest.sh(client, instance, script, timeout=60)
        return result.returncode, result.stdout + result.stderr

    with AlcorApiDouble() as alcor:
        post(alcor, "/project/p1/vpcs", {"network": {"id": "v1", "cidr": "192.168.0.0/16"}})
        post(alcor, "/project/p1/subnets",
             {"subnet": {"id": "s1", "network_id": "v1", "cidr": "192.168.50.0/24", "ip_version": 4}})
        refs = []
        for port, node in zip(PORTS, SERVERS, strict=True):
            post(alcor, "/project/p1/ports", {"port": {
                "id": port.port_id, "network_id": "v1", "mac_address": port.mac,
                "fixed_ips": [{"subnet_id": "s1", "ip_address": port.ip}]}})
            refs.append({"port_id": port.port_id, "ip": port.ip, "node": node, "subnet_id": "s1",
                         "project_id": "p1"})
        nodes = dict(zip(SERVERS, instances, strict=True))
        with PingAgent(nodes, alcor.url, alcor.url, node_run) as agent:
            answer = agent.ping(refs[0], refs[1])
            results = list(agent.results)
    assert answer["ok"] and "3 received" in answer["detail"], results
    assert results[0]["source"]["node"] == SERVERS[0] and results[0]["target"]["ip"] == PORTS[1].ip
    for instance, port in zip(instances, PORTS, strict=True):  # detached again
        left = rest.sh(client, instance, "ip netns list; ovs-vsctl list-ports br-int").stdout
        assert port.netns not in left and port.ovs_port not in left, left

