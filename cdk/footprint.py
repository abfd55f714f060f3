"""How much host memory a lab's containers take on each host (pure).

Figures per running node, in MiB of host memory (the container's cgroup plus its `[lxc monitor]`
process, ~11 MB, which no cgroup counts), measured on this project's 2-core host by
`python -m bench.scale` (bench/results/scale.json): the host's MemAvailable before `up` and after
the check, divided by the nodes. Java services (Alcor, Ignite, the controller) grow to their heap:
they count at their memory limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdk.model import Lab, Node

#: per node kind and switch bridge. bench/results/scale.json (2026-12-03): host MiB per node
#: 10.7 (250 nodes) to 13.2 (996) with Linux-bridge switches, 14.6 at 250 with OVS switches, whose
#: cgroups hold 40 MiB each against 4.7 for a server; so a server or Linux-bridge switch ~14 MiB
#: and an OVS switch ~48 (the 250-node OVS figure less its servers). An ACA server runs OVS and the
#: agent too: counted as an OVS switch plus a margin for the agent (not measured here: no ACA binary)
#: A routed fabric's switch runs FRR's zebra and bgpd: its cgroup held 35.5 MiB in the 18-node
#: dc-3tier (bench/results/fabric_modes.json, 2026-12-03), counted with its lxc monitor as 40
NODE_MIB = {"server": 14, "switch/linux": 14, "switch/ovs": 48, "switch/frr": 40, "aca": 64}
#: a Java service without a memory limit (the JVM's default heap is a quarter of the host)
SERVICE_MIB = 1024
#: kept for the host itself, the LXD daemon and terraform
RESERVE_MIB = 1024

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|kB|KiB|MB|MiB|GB|GiB|TB|TiB)?$")
_UNIT_MIB = {"B": 1 / 2**20, "kB": 1000 / 2**20, "KiB": 1 / 1024, "MB": 1e6 / 2**20, "MiB": 1.0,
             "GB": 1e9 / 2**20, "GiB": 1024.0, "TB": 1e12 / 2**20, "TiB": 2**20}


@dataclass
class Estimate:
    host: str
    counts: dict[str, int] = field(default_factory=dict)  # what -> how many
    sums: dict[str, float] = field(default_factory=dict)  # what -> MiB of all of them

    def add(self, what: str, mib: float) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        self.sums[what] = self.sums.get(what, 0.0) + mib

    def each(self, what: str) -> float:
        return self.sums[what] / self.counts[what]

    @property
    def total_mib(self) -> int:
        return round(sum(self.sums.values()))

    def describe(self) -> str:
        return ", ".join(f"{n} {w} x {self.each(w):.0f} MiB" for w, n in sorted(self.counts.items()))


def size_mib(text: str | None) -> float | None:
    """An LXD size ("128MiB", "2GiB") in MiB; None when unset."""
    if text is None:
        return None
    match = _SIZE.match(str(text).strip())
    return float(match.group(1)) * _UNIT_MIB[match.group(2) or "B"] if match else None


def node_key(lab: Lab, node: Node) -> str:
    if node.kind == "switch":
        return "switch/frr" if lab.fabric.mode == "l3" else f"switch/{lab.fabric.bridge}"
    return "aca" if lab.image_of(node) == "aca" else "server"


def node_mib(lab: Lab, node: Node) -> float:
    """A node's footprint, capped by its memory limit (a limit below the footprint is what it gets)."""
    limits = lab.limits.get(node.role)  # resolved per role (cdk/pipeline.resolve_limits)
    limit = size_mib(limits.memory) if limits else None
    base = NODE_MIB[node_key(lab, node)]
    return min(base, limit) if limit else base


def estimate(lab: Lab, services: dict[str, list[str | None]] | None = None,
             skip: frozenset[str] = frozenset()) -> dict[str, Estimate]:
    """Per host: the lab's nodes not in `skip` (instances already running), and `services`
    ({host: [memory limit or None, ...]}: Alcor's and the controller's Java containers)."""
    result = {h.name: Estimate(h.name) for h in lab.hosts}
    for node in lab.topology.nodes:
        if lab.instance_name(node.name) not in skip:
            result[lab.placement.assignment[node.name]].add(node_key(lab, node), node_mib(lab, node))
    for host, limits in (services or {}).items():
        for limit in limits:
            result[host].add("Java service", size_mib(limit) or SERVICE_MIB)
    return result
