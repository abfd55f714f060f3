"""A test endpoint for one Alcor port on an ACA node: a network namespace wired to br-int.

Alcor's own ping test (scripts/busybox-ping-test/container_ops.py, alcor 21f11b5) attaches each
port as a container on br-int with `ovs-docker add-port br-int eth1 <c> --ipaddress --macaddress`
and `ovs-docker set-vlan br-int eth1 <c> 1`. A namespace does the same here without docker: a veth
pair whose host end is an OVS port on br-int with the port's VLAN tag, and whose other end, in the
namespace, carries the port's MAC and address. The OVS port is named as ACA names the port it
programs ("tap" + the port id, 14 characters: alcor-control-agent include/aca_util.h,
aca_get_port_name), so ACA in its default mode finds it and sets the tag itself (`set port <name>
tag=<vlan>`, src/ovs/aca_ovs_l2_programmer.cpp).

The functions return shell scripts (run with `sh -c` inside the node: `modules.lxd_rest.sh`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from modules.loadgen.alcor_api import port_name

#: ACA's internal VLANs start at 1 (include/aca_vlan_manager.h: current_available_vlan_id(1)),
#: the VLAN Alcor's busybox test sets
DEFAULT_VLAN = 1


@dataclass(frozen=True)
class Endpoint:
    port_id: str
    mac: str
    address: str  # CIDR: the port's fixed IP with its subnet's prefix length
    vlan: int = DEFAULT_VLAN

    @property
    def ovs_port(self) -> str:
        return port_name(self.port_id)

    @property
    def netns(self) -> str:
        return f"p{self.port_id[:12]}"

    @property
    def peer(self) -> str:  # the namespace's end of the veth pair (15 characters at most)
        return f"v{self.port_id[:11]}"

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


def attach_script(ep: Endpoint) -> str:
    """Create (again) the namespace, the veth pair and the tagged br-int port."""
    ns, tap, peer = shlex.quote(ep.netns), shlex.quote(ep.ovs_port), shlex.quote(ep.peer)
    lines = [
        "set -e",
        f"ip netns del {ns} 2>/dev/null || true",
        f"ovs-vsctl --if-exists del-port br-int {tap}",
        f"ip link del {tap} 2>/dev/null || true",
        f"ip netns add {ns}",
        f"ip link add {tap} type veth peer name {peer}",
        f"ip link set {peer} netns {ns}",
        f"ovs-vsctl add-port br-int {tap} tag={ep.vlan}",
        # the userspace datapath computes no checksums a veth leaves to the "hardware"
        f"ethtool -K {tap} tx off >/dev/null 2>&1 || true",
        f"ip link set {tap} up",
        f"{_in(ep)} ip link set lo up",
        f"{_in(ep)} ip link set {peer} address {shlex.quote(ep.mac)}",
        f"{_in(ep)} ip addr add {shlex.quote(ep.address)} dev {peer}",
        f"{_in(ep)} ethtool -K {peer} tx off >/dev/null 2>&1 || true",
        f"{_in(ep)} ip link set {peer} up",
    ]
    return "\n".join(lines)


def detach_script(ep: Endpoint) -> str:
    ns, tap = shlex.quote(ep.netns), shlex.quote(ep.ovs_port)
    return f"ip netns del {ns} 2>/dev/null; ovs-vsctl --if-exists del-port br-int {tap}; " \
           f"ip link del {tap} 2>/dev/null; true"


def ping_script(source: Endpoint, target_ip: str, count: int = 3, deadline: int = 15) -> str:
    """Ping from the endpoint's namespace; exit 0 once `count` answers came back within `deadline`
    seconds. Not the first `count` echoes: the first frames to a new peer can be lost while ARP
    resolves, in the namespace and, on OVS's userspace datapath, for the tunnel's underlay
    (OVS drops the packet that triggers its own ARP request: tnl/neigh)."""
    return f"{_in(source)} ping -c {count} -w {deadline} -i 0.5 {shlex.quote(target_ip)}"


def _in(ep: Endpoint) -> str:
    """Run in the endpoint's network namespace. Not `ip netns exec` or `ip -n`: they remount /sys,
    which an unprivileged container may not ("mount of /sys failed: Operation not permitted")."""
    return f"nsenter --net=/run/netns/{shlex.quote(ep.netns)}"
