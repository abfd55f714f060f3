"""Leaf-spine labs through the real pipeline, with address pools this host does not use yet.

Several labs share one LXD host (benchmarks, end-to-end tests, other labs): each needs its own
management range, so the pools are picked among 10.100-10.199 /16s that no host route covers.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cdk.host_routes import HostRoute
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from stacks.host_facts import read_host_routes

POOLS = ("management", "loopbacks", "p2p", "servers")


def free_pools(lab: str) -> dict[str, str]:
    """Four /16s in 10.100.0.0-10.199.255.255 that overlap no route of this host (except the lab's own)."""
    taken = [ipaddress.ip_network(r.network) for r in read_host_routes() if r.lab != lab]
    free = []
    for second in range(100, 200):
        net = ipaddress.ip_network(f"10.{second}.0.0/16")
        if not any(net.overlaps(t) for t in taken):
            free.append(str(net))
        if len(free) == len(POOLS):
            return dict(zip(POOLS, free, strict=True))
    raise RuntimeError("no four free /16 ranges in 10.100.0.0/9 on this host")


def leaf_spine(
    name: str, spines: int = 2, leaves: int = 2, servers_per_leaf: int = 2,
    pools: dict[str, str] | None = None, host_routes: list[HostRoute] | None = None, **extra: Any,
) -> Lab:
    """A leaf-spine lab named `name` on the local host, `server`/`switch` images.

    `host_routes=[]` makes it pure (no look at this host's routes), for unit tests.
    """
    data = {
        "name": name,
        "topology": {"kind": "leaf-spine", "spines": spines, "leaves": leaves,
                     "servers_per_leaf": servers_per_leaf},
        "addressing": pools or free_pools(name),
        "images": {"server": "server", "switch": "switch"},
        **extra,
    }
    return lab_from_dict(data, source=f"<bench.labs:{name}>", host_routes=host_routes)
