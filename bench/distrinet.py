"""The Distrinet baseline of bench/nodes.py: a lab's nodes, links and addresses, the way Distrinet did it.

Distrinet (futurewei-cloud/Distrinet, commit 1d7e98f3) drives LXD from the command line, one
process per step. Per node, `LxcNode.createContainer` (mininet/mininet/lxc_container.py:341-360):
`lxc init IMAGE NAME`, `lxc config set NAME limits.cpu`, `lxc config set NAME limits.memory`,
`lxc start NAME` (its data-center topologies pass cpu=1, memory="512MB": topodc.py:227).
Per container interface, `addContainerInterface` (lxc_container.py:374-398): `brctl addbr BR`,
`lxc network attach BR NAME DEV IFNAME`, `ip link set up BR`; every node first gets its admin
interface on the shared `admin-br` (distrinet.py:544-550). Per link, both ends get an interface
(cloudlink.py:154-155), and two bridges on the same host are joined by a veth pair
(`createContainerLinkCommandList`, lxc_container.py:286-296: `ip link add vX type veth peer
name vY`, `brctl addif` x2, `ip link set up` x2; the second end's call would recreate the same
pair, so one pair per link is done here). `configureContainer` (lxc_container.py:191-217) runs
three `lxc exec`s per node: `ifconfig admin IP`, an authorized_keys append, `service ssh start`.
Interface addresses are then set inside each node over its shell (Mininet's `Intf.setIP`,
link.py:71-83; distrinet.py:859-860). Its documented LXD set-up uses the `dir` storage backend
(provision/playbooks/configure-lxd-no-clustering.yml:15). Teardown (`terminate`,
lxc_container.py:514-526): `lxc delete NAME --force`, then `ip link delete` per host device.

What this module does, sequentially as the project's issue specifies ("sequential lxc launch +
per-node lxc exec configuration, as Distrinet did"; Distrinet itself sends each node's chain over
its own SSH session without waiting, so on one host its steps may overlap):
- every step above as its own process, `ip link add BR type bridge`/`ip link set X master BR` for
  brctl (not installed here), the admin interface named eth0 (the name distrilab's images use);
- the three configureContainer execs with `ip addr add` for ifconfig (no net-tools in the images)
  and, since the images have no sshd, `service ssh start` replaced by one exec that starts it only
  if present (so the exec count stays three);
- the address configuration as one exec per node that runs the same script distrilab's fabric
  stage runs (modules/fabric.py: addresses, and the OVS bridge on switches): at most as much work
  as Mininet's per-interface commands, so the baseline is not made slower than Distrinet;
- instances carry `user.distrilab.lab` (set in the `lxc init` request) so leftovers can be found.
Left out, each in the baseline's favour: the SSH round trip in front of every host command
(Distrinet runs them through `targetSsh`), its 10 s pause after every 51 container creations
(distrinet.py:531-538; never reached at 50 nodes) and the `ip link delete` of devices that are
already gone (it deletes both veth ends and both bridges from both nodes).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from cdk.model import Lab
from cdk.stages import fabric as fabric_stage
from cdk.stages import links as links_stage
from modules import fabric
from modules import lxd_rest as rest

#: Distrinet's data-center topologies give each container these limits (topodc.py:227)
CPU, MEMORY = "1", "512MB"
METHOD = (
    "Distrinet's sequence (bench/distrinet.py), sequential, one process per step: per node lxc init, "
    "2x lxc config set (limits), lxc start, admin NIC (bridge add, lxc network attach, link up), "
    "3 lxc exec (configureContainer); per link 2x (bridge add, lxc network attach, link up) + veth pair "
    "(add, 2x master, 2x up); per node one lxc exec setting its addresses (the fabric script); destroy: "
    "lxc delete --force per node, ip link delete per host device"
)
SSH_EXEC = "if [ -x /usr/sbin/sshd ]; then service ssh start; fi"


@dataclass
class HostDevices:
    """Host interfaces the baseline created, deleted at the end like Distrinet's terminate()."""

    bridges: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)


def run(*argv: str, check: bool = True) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)[:200]}: exit {done.returncode}: {done.stderr.strip()[-300:]}")


def create_pool(kind: str, tag: str) -> str:
    """A storage pool of driver `kind` for one run; `distrilab` (btrfs) is the existing one."""
    if kind == "btrfs":
        return "distrilab"
    name = f"dl-bb{tag}-{kind}"
    run("lxc", "storage", "create", name, kind)
    return name


def delete_pool(name: str) -> None:
    if name != "distrilab":
        run("lxc", "storage", "delete", name, check=False)


def create_tun_profile(label: str) -> str:
    """OVS's netdev datapath (no openvswitch module here) needs /dev/net/tun in switches: a profile
    named in the `lxc init` of switches, so the sequence gains no step."""
    name = f"dl-{label}-tun"
    run("lxc", "profile", "create", name)
    run("lxc", "profile", "set", name, "user.distrilab.lab", label)
    run("lxc", "profile", "device", "add", name, "tun", "unix-char",
        "source=/dev/net/tun", "path=/dev/net/tun")
    return name


@dataclass(frozen=True)
class Step:
    """One command of the sequence; `check=False` where Distrinet's own command fails harmlessly."""

    argv: tuple[str, ...]
    check: bool = True


def steps(
    lab: Lab, label: str, images: dict[str, str], pool: str, tun_profile: str, tag: str, datapath: str
) -> tuple[list[Step], HostDevices]:
    """Pure: the commands that deploy `lab` Distrinet's way, in order, and the host devices they create.

    Nodes, admin interfaces, configureContainer, links, addresses (see the module docstring).
    """
    host = lab.hosts[0]
    fspec = fabric.FabricReconciler().load_spec(fabric_stage.build(lab, host) or {})
    nodes = {n.name: n for n in fspec.nodes}
    names = {n: f"dl-{label}-{n}" for n in nodes}
    admin = f"db{tag}adm"
    devices = HostDevices(bridges=[admin])
    out: list[Step] = []

    def add(*argv: str, check: bool = True) -> None:
        out.append(Step(argv, check))

    for node in nodes.values():  # createContainer
        name = names[node.name]
        profiles = ["-p", "default", "-p", tun_profile] if node.kind == "switch" else []
        add("lxc", "init", images[node.kind], name, "-s", pool, *profiles,
            "-c", f"user.distrilab.lab={label}")
        add("lxc", "config", "set", name, "limits.cpu", CPU)
        add("lxc", "config", "set", name, "limits.memory", MEMORY)
        add("lxc", "start", name)
    for i, node in enumerate(nodes.values()):  # addContainerInterface(admin, admin-br)
        add("ip", "link", "add", admin, "type", "bridge", check=i == 0)  # brctl addbr: exists after the first
        add("lxc", "network", "attach", admin, names[node.name], "eth0", "eth0")
        add("ip", "link", "set", "up", admin)
    for node in nodes.values():  # configureContainer: three execs
        name = names[node.name]
        add("lxc", "exec", name, "--", "ip", "addr", "add", node.mgmt_address, "dev", "eth0")
        add("lxc", "exec", name, "--", "sh", "-c",
            "mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAA-distrilab-bench' >> /root/.ssh/authorized_keys")
        add("lxc", "exec", name, "--", "sh", "-c", SSH_EXEC)
    lspec = links_stage.build(lab, host) or {"links": []}
    for n, link in enumerate(lspec["links"]):
        bridges = []
        for side, end in zip("ab", link["ends"], strict=False):  # addContainerInterface on both ends
            br = f"db{tag}{n:04d}{side}"
            add("ip", "link", "add", br, "type", "bridge")
            add("lxc", "network", "attach", br, names[end["node"]], end["interface"], end["interface"])
            add("ip", "link", "set", "up", br)
            bridges.append(br)
        devices.bridges.extend(bridges)
        va, vb = (f"v{br}" for br in bridges)  # addContainerLink: a veth pair between the bridges
        add("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        devices.veths.append(va)
        add("ip", "link", "set", va, "master", bridges[0])
        add("ip", "link", "set", vb, "master", bridges[1])
        add("ip", "link", "set", "up", va)
        add("ip", "link", "set", "up", vb)
    for node in nodes.values():  # the addresses of each node's interfaces, inside the node
        script = fabric.install_and_run(fabric.render_script(node, datapath))
        add("lxc", "exec", names[node.name], "--", "sh", "-c", script)
    return out, devices


def host_datapath() -> str:
    return "system" if fabric._KERNEL_OVS.exists() else "netdev"


def deploy(lab: Lab, label: str, images: dict[str, str], pool: str, devices: HostDevices,
           tun_profile: str) -> None:
    """Run the steps one after another; `devices` lists what to delete afterwards."""
    sequence, created = steps(lab, label, images, pool, tun_profile, secrets.token_hex(2), host_datapath())
    devices.bridges.extend(created.bridges)
    devices.veths.extend(created.veths)
    for step in sequence:
        run(*step.argv, check=step.check)


def destroy(label: str, devices: HostDevices) -> None:
    """terminate(): `lxc delete --force` per node, then `ip link delete` per host device."""
    client = rest.connect(None)
    for name in rest.owned_instances(client, label):
        run("lxc", "delete", name, "--force")
    for dev in devices.veths + devices.bridges:
        run("ip", "link", "delete", dev, check=False)
    devices.veths.clear()
    devices.bridges.clear()


def measure(lab: Lab, label: str, images: dict[str, str], pool_kind: str) -> dict[str, Any]:
    """Deploy and destroy `lab` Distrinet's way on a fresh pool of `pool_kind`; seconds per node."""
    tag = secrets.token_hex(2)
    pool = create_pool(pool_kind, tag)
    devices = HostDevices()
    tun_profile = create_tun_profile(label)
    size = len(lab.topology.nodes)
    try:
        started = time.monotonic()
        deploy(lab, label, images, pool, devices, tun_profile)
        create = time.monotonic() - started
        client = rest.connect(None)
        running = sum(1 for i in rest.owned_instances(client, label).values() if i["status"] == "Running")
        started = time.monotonic()
        destroy(label, devices)
        gone = time.monotonic() - started
        return {"nodes": size, "links": len(lab.topology.links), "pool": pool_kind, "running": running,
                "create_seconds": round(create, 2), "create_per_node": round(create / size, 4),
                "destroy_seconds": round(gone, 2), "destroy_per_node": round(gone / size, 4)}
    finally:
        client = rest.connect(None)
        for name, inst in rest.owned_instances(client, label).items():
            rest.delete_instance(client, name, inst["status"] != "Stopped")
        for dev in devices.veths + devices.bridges:
            run("ip", "link", "delete", dev, check=False)
        run("lxc", "profile", "delete", tun_profile, check=False)
        delete_pool(pool)
