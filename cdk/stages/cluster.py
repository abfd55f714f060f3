"""Desired state of the `cluster` stage: LXD running on a host, the shared storage pool, sysctls.

The first host of the lab bootstraps the LXD cluster; every other host joins it (`role`), which
only matters for multi-host labs and remote hosts (a single local host is a standalone daemon).
"""

from __future__ import annotations

from typing import Any

from cdk.model import Host, Lab
from cdk.stages import common
from cdk.stages.nodes import endpoint

#: the storage pool every lab shares (created once per host, never deleted by a lab's destroy)
POOL = "distrilab"
#: kernel limits containers need at scale: inotify instances run out at ~20 systemd containers
#: with the default 128, and a failed container still makes `lxc launch` return 0. The neighbour
#: (ARP/ND) table is one for every namespace of the host: each server's neighbours count against
#: one limit (1024 by default; `check --full` of 224 servers needs ~50,000 entries), and above the
#: soft limit the kernel collects entries every 5 s
SYSCTLS: dict[str, int] = {
    "fs.inotify.max_user_instances": 1024,
    "fs.inotify.max_user_watches": 1048576,
    "kernel.keys.maxkeys": 2000,
    "net.ipv4.neigh.default.gc_thresh2": 32768,
    "net.ipv4.neigh.default.gc_thresh3": 65536,
    "net.ipv6.neigh.default.gc_thresh2": 32768,
    "net.ipv6.neigh.default.gc_thresh3": 65536,
}


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The cluster-stage spec for `host` (pure)."""
    first = lab.hosts[0]
    # a remote host is always reached through LXD's HTTPS API, which only a cluster member (here
    # of one) is set up for: its address, the lab's trusted certificate, the pinned server one
    clustered = len(lab.hosts) > 1 or first.kind != "local"
    return {
        **common(lab, host),
        "endpoint": endpoint(host, lab.name),
        "ssh_user": host.ssh_user,
        "pool": {"name": lab.lxd.pool, "driver": lab.lxd.storage, "size": lab.lxd.storage_size},
        "sysctls": dict(SYSCTLS),
        "cluster": {
            "enabled": clustered,
            "role": "bootstrap" if host.name == first.name else "join",
            "bootstrap": endpoint(first, lab.name),
        },
    }
