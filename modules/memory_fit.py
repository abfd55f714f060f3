"""Refuse a lab that cannot fit this machine's memory, before anything is created.

`up` calls `check_local_memory` before terraform: the lab's nodes on the local host that are not
running yet (a re-applied lab already holds its memory), at the footprints of cdk/footprint.py,
plus Alcor's Java services when they run here (not the controller), against MemAvailable less a reserve. Hosts
reached over ssh are sized by their pre-flight (modules/host_preflight.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cdk.errors import DistrilabError
from cdk.footprint import NODE_MIB, RESERVE_MIB, Estimate, estimate
from cdk.model import Lab


class MemoryFitError(DistrilabError):
    pass


def mem_available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise DistrilabError(f"{meminfo} has no MemAvailable line")


#: set (to anything) to deploy a lab that does not fit, from `npx cdktf deploy` (`up --ignore-memory`)
IGNORE_MEMORY_ENV = "DISTRILAB_IGNORE_MEMORY"


def running_instances(lab: Lab) -> frozenset[str]:
    """The lab's containers this host's LXD already runs ({} when LXD is not up yet)."""
    from modules import lxd_rest as rest
    from modules.lxd_client import LxdUnreachableError, connect

    try:
        owned = rest.owned_instances(connect(timeout=10), lab.name)
    except LxdUnreachableError:
        return frozenset()  # a machine without LXD yet: the cluster stage installs it, nothing runs
    return frozenset(name for name, item in owned.items() if item.get("status") == "Running")


def java_services(lab: Lab) -> dict[str, list[str | None]]:
    """{host: [memory limit, ...]} of Alcor's services, on the host that runs them (the
    controller's container is not counted: it idles while the lab comes up)."""
    from cdk.stages.alcor import control_plane_host, deployment_of

    deployment = deployment_of(lab)
    if deployment is None:
        return {}
    return {control_plane_host(lab, deployment): [s.resources.memory for s in deployment.services]}


def refusal(lab: Lab, need: Estimate, available: int) -> str | None:
    """Pure: why `need` does not fit `available` MiB (None when it fits)."""
    if need.total_mib + RESERVE_MIB <= available:
        return None
    fits = max(0, available - RESERVE_MIB)
    per_node = need.total_mib / max(1, sum(need.counts.values()))
    hints = [f"about {int(fits // per_node)} such nodes fit" if per_node else "",
             "shrink the topology or give it more hosts (hosts: [...])"]
    if need.counts.get("switch/ovs"):
        saved = need.counts["switch/ovs"] * (NODE_MIB["switch/ovs"] - NODE_MIB["switch/linux"])
        hints.append(f"fabric: {{bridge: linux}} saves ~{saved} MiB")
    hints.append(f"or pass --ignore-memory (npx cdktf: {IGNORE_MEMORY_ENV}=1) if you know better")
    return (f"lab {lab.name} does not fit host {need.host}'s memory: {need.describe()} = "
            f"~{need.total_mib} MiB, plus {RESERVE_MIB} MiB kept for the host; {available} MiB is "
            f"available. Nothing was created.\n  hint: " + "; ".join(h for h in hints if h))


def check_local_memory(
    lab: Lab,
    available: Callable[[], int] = mem_available_mib,
    running: Callable[[Lab], frozenset[str]] = running_instances,
) -> Estimate | None:
    """Raise MemoryFitError when the lab's new containers on the local host do not fit; else the
    estimate (None: no local host, or the user set IGNORE_MEMORY_ENV)."""
    local = [h.name for h in lab.hosts if h.kind == "local"]
    if not local or os.environ.get(IGNORE_MEMORY_ENV):
        return None
    need = estimate(lab, java_services(lab), skip=running(lab))[local[0]]
    problem = refusal(lab, need, available())
    if problem:
        raise MemoryFitError(problem)
    return need
