"""Desired state of the "controller" stage: one bounded run of the test controller against Alcor.

Pure: the same lab always gives the same dict. `modules/controller.py` converges a host to it.

The lab's `controller:` section (null: no controller stage):

    controller:
      scenario: scenarios/small.yaml   # modules.loadgen scenario file, relative to the lab file
      mode: container                  # container: in dl-<lab>-controller | host: on the host itself
      image: controller                # image recipe of the container (mode container)
      target: api-gateway              # the Alcor service whose URL is --target
      endpoints: {node_manager: node}  # loadgen service -> Alcor service, called directly
      timeout: 900                     # seconds; the run is stopped after that
      resources: {cpu: 1, memory: 512MiB}

It runs on the control plane's host, at the management address below Alcor's containers, and its
report is copied to `.distrilab/reports/<lab>/` (relative to where the stage runs). When the lab has
ACA nodes, the scenario's `nodes` are replaced by them (a port's binding:host_id must name a node
the alcor stage registered).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdk.errors import LabFileError, Problem
from cdk.model import Host, Lab
from cdk.names import image_alias, management_network
from cdk.stages import common
from cdk.stages.alcor import (
    aca_nodes,
    control_plane_addresses,
    control_plane_host,
    controller_instance,
    deployment_of,
    node_entry,
)

FIELDS = ("scenario", "mode", "image", "target", "endpoints", "timeout", "resources")
MODES = ("container", "host")
#: the services modules.loadgen can address directly (its --endpoint SERVICE=URL names)
LOADGEN_SERVICES = ("vpc_manager", "subnet_manager", "port_manager", "security_group_manager", "node_manager")
DEFAULT_TIMEOUT = 900
REPORTS_DIR = ".distrilab/reports"


def validate_section(lab: Lab) -> dict[str, Any]:
    """The validated controller section (raises LabFileError with every problem)."""
    raw = lab.controller
    problems: list[Problem] = []

    def bad(where: str, message: str, value: object = None, hint: str | None = None) -> None:
        problems.append(
            Problem(lab.source, f"controller.{where}" if where else "controller", message, value, hint=hint)
        )

    if not isinstance(raw, Mapping):
        raise LabFileError([Problem(lab.source, "controller", "must be a mapping", raw)])
    for key in raw:
        if key not in FIELDS:
            bad(str(key), f"unknown field (allowed: {', '.join(FIELDS)})", key)
    deployment = deployment_of(lab)
    services = set(deployment.names) if deployment else set()
    if deployment is None:
        bad("", "needs Alcor: set the lab's `alcor:` section (e.g. `alcor: default`)")
    scenario = raw.get("scenario")
    if not isinstance(scenario, str) or not scenario:
        bad(
            "scenario",
            "must be the path of a load-test scenario file",
            scenario,
            "see modules/loadgen/scenario.py",
        )
    mode = raw.get("mode", "container")
    if mode not in MODES:
        bad("mode", f"must be one of {', '.join(MODES)}", mode)
    image = raw.get("image", "controller")
    if not isinstance(image, str) or not re.match(r"^[a-z][a-z0-9-]*$", image):
        bad("image", "must be an image recipe name", image)
    target = raw.get("target", "api-gateway")
    if deployment is not None and target not in services:
        bad("target", f"must be one of the deployment's services ({', '.join(sorted(services))})", target)
    endpoints = raw.get("endpoints") or {}
    if not isinstance(endpoints, Mapping):
        bad("endpoints", "must be a mapping of loadgen service -> Alcor service", endpoints)
        endpoints = {}
    for key, value in endpoints.items():
        if key not in LOADGEN_SERVICES:
            bad(f"endpoints.{key}", f"unknown loadgen service (known: {', '.join(LOADGEN_SERVICES)})", key)
        elif deployment is not None and value not in services:
            bad(f"endpoints.{key}", "must name one of the deployment's services", value)
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 10 <= timeout <= 86400:
        bad("timeout", "must be a whole number of seconds between 10 and 86400", timeout)
    resources = raw.get("resources") or {}
    if not isinstance(resources, Mapping) or set(resources) - {"cpu", "memory"}:
        bad("resources", "must be a mapping with cpu and/or memory", resources)
        resources = {}
    if problems:
        raise LabFileError(problems)
    return {
        "scenario": scenario,
        "mode": mode,
        "image": image,
        "target": target,
        "endpoints": dict(sorted(endpoints.items())),
        "timeout": timeout,
        "resources": {"cpu": resources.get("cpu"), "memory": resources.get("memory")},
    }


def scenario_path(lab: Lab, section: Mapping[str, Any]) -> Path:
    """The scenario file: a relative path is relative to the lab file."""
    scenario = Path(section["scenario"]).expanduser()
    if not scenario.is_absolute() and not lab.source.startswith("<"):
        scenario = Path(lab.source).resolve().parent / scenario
    return scenario


def required_recipes(lab: Lab, host: Host) -> set[str]:
    """The controller container's image on the control-plane host (for the images stage)."""
    if lab.controller is None:
        return set()
    section = validate_section(lab)
    if section["mode"] != "container" or control_plane_host(lab, deployment_of(lab)) != host.name:
        return set()
    return {section["image"]}


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The controller-stage spec for `host`; None without a controller or on another host."""
    if lab.controller is None:
        return None
    section = validate_section(lab)
    deployment = deployment_of(lab)
    if deployment is None or control_plane_host(lab, deployment) != host.name:
        return None
    addresses, controller_address = control_plane_addresses(lab, deployment)

    def url(service: str) -> str:
        svc = deployment.service(service)
        return f"http://{addresses[service].split('/')[0]}:{svc.port}"

    scenario = scenario_path(lab, section)
    cpu, memory = section["resources"]["cpu"], section["resources"]["memory"]
    return {
        **common(lab, host),
        "mode": section["mode"],
        "pool": lab.lxd.pool,
        "privileged": lab.lxd.privileged,
        "network": {"name": management_network(lab.name), "gateway": lab.addressing.management_gateway},
        "instance": controller_instance(lab.name),
        "recipe": section["image"],
        "image": image_alias(lab.name, section["image"]),
        "address": controller_address,
        "limits": {"cpu": None if cpu is None else str(cpu), "memory": memory},
        "scenario": str(scenario),
        "target_url": url(section["target"]),
        "endpoints": {name: url(service) for name, service in section["endpoints"].items()},
        "timeout": section["timeout"],
        "reports_dir": f"{REPORTS_DIR}/{lab.name}",
        # the scenario's ports bind to these (the nodes the alcor stage registers), when there are any
        "nodes": [
            entry
            for entry in (
                node_entry(lab, n, deployment) for n in sorted(aca_nodes(lab), key=lambda n: n.name)
            )
        ]
        if deployment.post_deploy.register_nodes
        else [],
    }
