"""Desired state of the "nodes" stage on one host: the lab's management bridge and its containers.

Pure: the same lab always gives the same dict. `modules/nodes.py` converges a host to it.
"""

from __future__ import annotations

from typing import Any

from cdk.errors import DistrilabError
from cdk.model import Host, Lab, Node
from cdk.names import image_alias, management_network
from cdk.stages import common

OVS_PACKAGE = "openvswitch-switch"

def endpoint(host: Host, lab: str | None = None) -> dict[str, Any]:
    """How a reconciler reaches the host's LXD API and shell (modules.lxd_client.connect and
    modules.host_shell.shell_for take this). A remote host names the lab, whose credentials
    (modules/lab_secrets.py) reach it, and the lab's `ssh_key` when it gives one."""
    found: dict[str, Any] = {"name": host.name, "kind": host.kind, "address": host.address}
    if host.kind != "local" and lab:
        found["lab"] = lab
        if host.ssh_key:
            found["ssh_key"] = host.ssh_key
    return found


def image_runs_ovs(lab: Lab, recipe: str) -> bool:
    """Whether a recipe (or one it extends) installs Open vSwitch: its userspace (netdev) datapath
    needs /dev/net/tun in the container (switches, and servers on the `aca` image)."""
    if recipe not in lab.image_packages:
        raise DistrilabError(f"lab {lab.name}: no packages known for image '{recipe}' (a lab built in "
                             "code sets image_packages=cdk.lab.recipe_packages(its images))")
    return OVS_PACKAGE in lab.image_packages[recipe]


def _node_spec(lab: Lab, node: Node) -> dict[str, Any]:
    limits = lab.limits.get(node.role) or lab.limits.get(node.kind)
    return {
        "name": node.name,
        "instance": lab.instance_name(node.name),
        "kind": node.kind,
        "role": node.role,
        "image": image_alias(lab.name, lab.image_of(node)),
        "tun": image_runs_ovs(lab, lab.image_of(node)),
        "limits": {
            "cpu": limits.cpu if limits else None,
            "memory": limits.memory if limits else None,
        },
    }


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The nodes-stage spec for `host`; None when no node of the lab is placed there."""
    nodes = lab.nodes_on(host.name)
    if not nodes:
        return None
    return {
        **common(lab, host),
        "endpoint": endpoint(host, lab.name),
        # a local host is a standalone daemon; other hosts are members of the lab's LXD cluster
        "target": None if host.kind == "local" else host.name,
        "pool": lab.lxd.pool,
        "privileged": lab.lxd.privileged,
        "network": {
            # in a cluster the network is one object for every member: the first host with nodes
            # creates it, the others wait for it (parallel creations race)
            **({"creator": next(h.name for h in lab.hosts if lab.nodes_on(h.name))}
               if host.kind != "local" else {}),
            "name": management_network(lab.name),
            "gateway": lab.addressing.management_gateway,
        },
        "nodes": [_node_spec(lab, n) for n in sorted(nodes, key=lambda n: n.name)],
    }
