"""What a lab would collide with on a host shared with other labs (pure; stacks/clashes.py reads
the host). Pools are checked against the host's routes at load (cdk/pipeline.py); here:
- VXLAN ids: Linux refuses a second VXLAN device with the same id on the same UDP port of a
  host (drivers/net/vxlan: vxlan_vni_in_use), so a cross-host link whose id another lab's tunnel
  holds would fail halfway through the links stage;
- the lab's name: its containers and networks are found by it, so a lab of the same name that
  another checkout deployed would be taken over, not created.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdk.model import Lab
from cdk.names import vni


def lab_vnis(lab: Lab, host: str) -> dict[int, str]:
    """VXLAN id -> link id of every link of `lab` that leaves `host` through a tunnel."""
    where = lab.placement.assignment
    return {vni(lab.name, link.id): link.id for link in lab.topology.links
            if (where[link.a.node] == host) != (where[link.b.node] == host)}


def vni_clashes(lab: Lab, host: str, taken: Mapping[int, str]) -> list[str]:
    """One line per link of `lab` on `host` whose VXLAN id another lab's tunnel there holds
    (`taken`: id -> lab, read from the host's interfaces)."""
    return [f"link {link} needs VXLAN id {number}, which lab {taken[number]} uses on host {host}"
            for number, link in sorted(lab_vnis(lab, host).items())
            if number in taken and taken[number] != lab.name]


def name_clash(lab: str, objects_on_host: int, resources_in_state: int) -> str | None:
    """Why `lab` must not be deployed here: objects carry its name but this checkout's state
    holds none of them (another checkout deployed a lab of that name), else None."""
    if objects_on_host and not resources_in_state:
        return (f"lab {lab} already runs on this host ({objects_on_host} containers and networks carry "
                f"its name), but this checkout's state holds nothing of it: another checkout deployed it")
    return None
