"""The networks this machine already uses, so that a lab's address pools can avoid them (pure).

Parses `ip -j route` (the main routing table), `ip -j -d link` (interface aliases) and the
resolver lines of /etc/resolv.conf; stacks/host_facts.py reads them. A route through a device of
a deployed lab belongs to that lab, and is no conflict for the lab itself when it is loaded again:
the device is the lab's if its ifalias is `distrilab:<lab>:...` (the convention for host bridges),
or if it is named `dlm-<lab>` (the LXD-managed management bridge, which carries no ifalias).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from cdk.names import lab_of_interface

#: the LXD-managed management bridge of lab L is `dlm-L`
MANAGEMENT_BRIDGE_PREFIX = "dlm-"


@dataclass(frozen=True)
class HostRoute:
    network: str  # "192.0.2.0/24"; a resolver is a /32
    origin: str  # "route dev eth0", "resolver in /etc/resolv.conf"
    lab: str | None = None  # the distrilab lab whose bridge carries the route


def parse_routes(route_json: str, link_json: str) -> list[HostRoute]:
    """Routes from `ip -j route` output; `ip -j -d link` output gives each device's distrilab lab."""
    owner = {link["ifname"]: lab for link in json.loads(link_json or "[]")
             if (lab := lab_of_interface(link)) is not None}
    routes = []
    for route in json.loads(route_json or "[]"):
        dev = route.get("dev") or ""
        if dev not in owner and dev.startswith(MANAGEMENT_BRIDGE_PREFIX):
            owner[dev] = dev.removeprefix(MANAGEMENT_BRIDGE_PREFIX)
        dst = route.get("dst", "default")
        if dst == "default":
            continue  # the default route covers everything; only specific routes can collide
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if network.version != 4:
            continue
        origin = f"route dev {dev}" if dev else "route"
        routes.append(HostRoute(str(network), origin, owner.get(dev)))
    return routes


def parse_resolvers(resolv_conf: str) -> list[HostRoute]:
    """IPv4 name servers from resolv.conf text (loopback resolvers never collide with a lab)."""
    resolvers = []
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ipaddress.ip_address(fields[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                resolvers.append(HostRoute(f"{address}/32", "resolver in /etc/resolv.conf"))
    return resolvers
