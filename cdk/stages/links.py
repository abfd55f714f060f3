"""Desired state of the "links" stage on one host: a Linux bridge per link, an end per local node.

Pure. Names are derived from hashes of the lab and link id (not list positions), so adding or
removing a link leaves every other link's names alone; all fit the kernel's 15-character limit:
`dl<lab4>l<link8>` bridge, `dl<lab4>a<link8>`/`dl<lab4>b<link8>` host ends of the veth pairs
whose other end is the node's interface, `dl<lab4>x<link8>` the VXLAN of a cross-host link.
"""

from __future__ import annotations

from typing import Any

from cdk.errors import DistrilabError
from cdk.model import Host, Lab, Link
from cdk.names import alias_prefix, lab_tag, link_tag, vni
from cdk.stages import common
from cdk.stages.nodes import endpoint

#: VXLAN's UDP port (IANA)
VXLAN_PORT = 4789
#: the largest MTU a VXLAN over a 1500-byte underlay can carry (50 bytes of headers)
VXLAN_MTU = 1450


def fabric_mtu(lab: Lab) -> int:
    """The MTU of every link of the lab: the lab's, lowered for VXLAN's 50 bytes of headers on
    all links as soon as one crosses hosts. The fabric is one L2 domain (or routes over it): a
    1500-byte frame from a local link would be dropped at a 1450-byte tunnel (seen: ping passes,
    TCP stalls)."""
    if lab.placement.cross_host_links:
        return min(lab.addressing.mtu, VXLAN_MTU)
    return lab.addressing.mtu


def _link_spec(lab: Lab, link: Link, host: Host) -> dict[str, Any]:
    where = lab.placement.assignment
    tag, ltag = lab_tag(lab.name), link_tag(lab.name, link.id)
    ends = []
    for side, ep in (("a", link.a), ("b", link.b)):
        if where[ep.node] == host.name:
            ends.append({
                "node": ep.node,
                "instance": lab.instance_name(ep.node),
                "interface": ep.interface,
                "veth": f"dl{tag}{side}{ltag}",
            })
    spec: dict[str, Any] = {
        "id": link.id,
        "bridge": f"dl{tag}l{ltag}",
        "ends": ends,
        "mtu": fabric_mtu(lab),
        "vxlan": None,
    }
    remote_hosts = {where[ep.node] for ep in (link.a, link.b)} - {host.name}
    if remote_hosts:
        hosts = {h.name: h for h in lab.hosts}
        remote = hosts[remote_hosts.pop()]
        if not all(h.address or h.kind == "aws" for h in (host, remote)):
            raise DistrilabError(
                f"{lab.source}: link {link.id} crosses hosts {host.name} and {remote.name}, "
                "which both need an 'address' for its VXLAN tunnel"
            )
        spec["vxlan"] = {
            "name": f"dl{tag}x{ltag}",
            "vni": vni(lab.name, link.id),
            "local": host.address,
            "remote": remote.address,
            "port": VXLAN_PORT,
        }
        if host.underlay:  # the interface the tunnel leaves through (else the route to `remote`)
            spec["vxlan"]["dev"] = host.underlay
        if not (host.address and remote.address):
            # an aws host's (private) address exists only once terraform created its instance, after
            # synth: None here names the LXD cluster member whose address the reconciler uses
            spec["vxlan"].update(local_host=host.name, remote_host=remote.name)
    return spec


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The links-stage spec for `host`: every link with at least one end placed there."""
    where = lab.placement.assignment
    links = [
        _link_spec(lab, link, host)
        for link in lab.topology.links
        if host.name in (where[link.a.node], where[link.b.node])
    ]
    if not links:
        return None
    bridges = [link["bridge"] for link in links]
    if len(set(bridges)) != len(bridges):  # 2^32 names: practically never; refuse rather than merge links
        raise DistrilabError(f"{lab.source}: two links of lab {lab.name} hash to the same bridge name")
    return {**common(lab, host), "endpoint": endpoint(host, lab.name), "ssh_user": host.ssh_user,
            "alias_prefix": alias_prefix(lab.name), "links": links}
