"""Desired state of the "alcor" stage: Alcor's containers, their configuration, the post-deploy steps.

Pure: the same lab always gives the same dict. `modules/alcor.py` converges a host to it.

Placement: the whole control plane runs on one host, `alcor.host` of the deployment file, or the
lab's first host when unset; the stage has nothing to do on any other host. Addresses: the
management pool's highest free addresses, downward in the deployment file's service order
(`control_plane_addresses`; cdk/addressing.py keeps the pool's top free of node homes, so lab edits
do not move them); the controller container takes the next one down.
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from typing import Any

from cdk import alcor as model
from cdk.errors import LabFileError, Problem
from cdk.model import Host, Lab, Node
from cdk.names import image_alias, management_network
from cdk.stages import common

#: the image recipe whose servers run the Alcor Control Agent (and so get registered)
ACA_IMAGE = "aca"
#: uuid5 namespace of node ids: the same lab node always registers under the same id
NODE_ID_NAMESPACE = uuid.UUID("3b0a4c55-5f0e-4f7e-9d6a-2f1c0d1e7a11")


def instance(lab: str, service: str) -> str:
    """The container of one Alcor service: dl-<lab>-alcor-<service>."""
    return f"dl-{lab}-alcor-{service}"


def controller_instance(lab: str) -> str:
    return f"dl-{lab}-controller"


def node_id(lab: str, node: str) -> str:
    """The id a lab node is registered under in Alcor's node manager (deterministic)."""
    return str(uuid.uuid5(NODE_ID_NAMESPACE, f"{lab}/{node}"))


def deployment_of(lab: Lab) -> model.Deployment | None:
    return model.resolve_section(lab.alcor, lab.source)


def control_plane_host(lab: Lab, deployment: model.Deployment | None) -> str:
    """The lab host that runs Alcor (and, by default, the controller)."""
    names = [h.name for h in lab.hosts]
    wanted = deployment.host if deployment and deployment.host else names[0]
    if wanted not in names:
        raise LabFileError(
            [
                Problem(
                    lab.source,
                    "alcor.host",
                    f"not one of the lab's hosts ({', '.join(names)})",
                    wanted,
                    hint="name a host from the lab's 'hosts' section, or leave alcor.host unset",
                )
            ]
        )
    return wanted


def control_plane_addresses(lab: Lab, deployment: model.Deployment | None) -> tuple[dict[str, str], str]:
    """(service -> management address, controller address), all CIDR form, from the pool's top."""
    used = [lab.addressing.management_gateway, *lab.addressing.management.values()]
    empty = model.Deployment(services=())
    addresses, extra = model.allocate_addresses(
        deployment or empty, lab.addressing.management_network, used, 1, from_top=True
    )
    return addresses, extra[0]


def aca_nodes(lab: Lab) -> list[Node]:
    """The servers that run the Alcor Control Agent: their image recipe is `aca`."""
    return [n for n in lab.topology.nodes if n.kind == "server" and lab.image_of(n) == ACA_IMAGE]


def required_recipes(lab: Lab, host: Host) -> set[str]:
    """Image recipes the alcor stage needs on `host` (for the images stage): none off the control plane."""
    deployment = deployment_of(lab)
    if deployment is None or control_plane_host(lab, deployment) != host.name:
        return set()
    return {s.image for s in deployment.services}


def _ip(cidr: str) -> str:
    return str(ipaddress.IPv4Interface(cidr).ip)


def _jar_dir(lab: Lab, deployment: model.Deployment) -> str | None:
    """jar_dir made absolute: relative paths are relative to the lab file's directory."""
    if deployment.jar_dir is None:
        return None
    path = Path(deployment.jar_dir).expanduser()
    if not path.is_absolute() and not lab.source.startswith("<"):
        path = Path(lab.source).resolve().parent / path
    return str(path)


def node_entry(lab: Lab, node: Node, deployment: model.Deployment) -> dict[str, Any]:
    defaults = deployment.post_deploy.node_defaults
    fabric = {a.interface: a.address for a in lab.addressing.servers if a.node == node.name}
    data_iface = defaults.interface if defaults.interface in fabric else "eth0"
    data_ip = _ip(fabric[data_iface]) if data_iface in fabric else _ip(lab.addressing.management[node.name])
    return {
        "name": node.name,
        "instance": lab.instance_name(node.name),
        "node_id": node_id(lab.name, node.name),
        "local_ip": _ip(lab.addressing.management[node.name]),
        "data_path_ip": data_ip,
        "interface": data_iface,  # its MAC, read from LXD at apply time, is the node's mac_address
        "server_port": defaults.server_port,
        "host_dvr_mac": defaults.host_dvr_mac,
    }


def _aca_env(deployment: model.Deployment, facts: dict[str, str]) -> dict[str, str]:
    """What each ACA node's /etc/aca/aca.env must say: the NCM's address and gRPC port (ACA -a/-p)."""
    if (
        "network-config" not in deployment.names
        or "grpc" not in deployment.service("network-config").extra_ports
    ):
        return {}
    return {"ACA_NCM_ADDRESS": facts["network-config.host"], "ACA_NCM_PORT": facts["network-config.grpc"]}


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The alcor-stage spec for `host`; None without Alcor or on a host that does not run it."""
    deployment = deployment_of(lab)
    if deployment is None or control_plane_host(lab, deployment) != host.name:
        return None
    addresses, _ = control_plane_addresses(lab, deployment)
    facts = model.template_facts(deployment, addresses, lab.name)
    level_of = {name: i for i, names in enumerate(model.levels(deployment)) for name in names}
    services = []
    for svc in deployment.services:
        health_port = svc.all_ports()[svc.health.port]
        services.append(
            {
                "name": svc.name,
                "instance": instance(lab.name, svc.name),
                "kind": svc.kind,
                "recipe": svc.image,
                "image": image_alias(lab.name, svc.image),
                "jar": svc.jar,
                "port": svc.port,
                "extra_ports": dict(sorted(svc.extra_ports.items())),
                "address": addresses[svc.name],
                "java_opts": svc.java_opts,
                "local_forwards": {str(port): model.render(target, facts)
                                   for port, target in sorted(svc.local_forwards.items())},
                "properties": model.render_config(svc, facts),
                "depends_on": sorted(svc.depends_on),
                "level": level_of[svc.name],
                "limits": {"cpu": svc.resources.cpu, "memory": svc.resources.memory},
                "health": {
                    "kind": svc.health.kind,
                    "path": svc.health.path,
                    "port": health_port,
                    "timeout": svc.health.timeout,
                    "interval": svc.health.interval,
                },
            }
        )
    post = deployment.post_deploy
    names = set(deployment.names)
    segment = (
        f"{facts['vpc.url']}/segments/createDefaultTable"
        if post.default_segment_table and "vpc" in names
        else None
    )
    registration = post.register_nodes and "node" in names
    nodes = [node_entry(lab, n, deployment) for n in sorted(aca_nodes(lab), key=lambda n: n.name)]
    return {
        **common(lab, host),
        "pool": lab.lxd.pool,
        "privileged": lab.lxd.privileged,
        "network": {"name": management_network(lab.name), "gateway": lab.addressing.management_gateway},
        "jar_dir": _jar_dir(lab, deployment),
        "max_parallel": deployment.max_parallel,
        "services": services,
        "post_deploy": {
            "segment_table_url": segment,
            "node_manager_url": facts["node.url"] if registration else None,
            "nodes": nodes if registration else [],
            "aca_env": _aca_env(deployment, facts) if nodes else {},
        },
    }
