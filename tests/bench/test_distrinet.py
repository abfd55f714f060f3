"""The Distrinet baseline issues Distrinet's per-node and per-link command sequence, nothing less."""

from __future__ import annotations

from collections import Counter

from bench.distrinet import steps
from bench.labs import leaf_spine

POOLS = {"management": "10.100.0.0/16", "loopbacks": "10.101.0.0/16", "p2p": "10.102.0.0/16",
         "servers": "10.103.0.0/16"}


def sequence_of(spines: int, leaves: int, per_leaf: int) -> tuple[list[tuple[str, ...]], int, int]:
    lab = leaf_spine("bt", spines, leaves, per_leaf, pools=POOLS, host_routes=[])
    out, devices = steps(lab, "bt", {"server": "img-s", "switch": "img-w"}, "pool", "prof", "abcd", "netdev")
    assert len(devices.veths) == len(lab.topology.links)
    assert len(devices.bridges) == 1 + 2 * len(lab.topology.links)  # admin-br + one per interface
    return [s.argv for s in out], len(lab.topology.nodes), len(lab.topology.links)


def test_per_node_and_per_link_commands_match_distrinet() -> None:
    argvs, nodes, links = sequence_of(2, 2, 3)
    verbs = Counter(a[:2] if a[0] == "lxc" else a[:3] for a in argvs)
    assert verbs[("lxc", "init")] == nodes
    assert verbs[("lxc", "start")] == nodes
    assert verbs[("lxc", "config")] == 2 * nodes  # limits.cpu, limits.memory
    assert verbs[("lxc", "network")] == nodes + 2 * links  # admin NIC + both ends of each link
    assert verbs[("lxc", "exec")] == 3 * nodes + nodes  # configureContainer x3, then the addresses
    assert verbs[("ip", "link", "add")] == nodes + 2 * links + links  # admin-br each time, bridges, veths


def test_order_is_create_then_admin_then_configure_then_links_then_addresses() -> None:
    argvs, nodes, _ = sequence_of(2, 2, 1)
    keys = (("lxc", "init"), ("lxc", "network"), ("lxc", "exec"), ("ip", "link", "add", "dbabcd0000a"))
    first = {key: next(i for i, a in enumerate(argvs) if a[:len(key)] == key) for key in keys}
    assert list(first.values()) == sorted(first.values())
    # the last exec of every node writes and runs its address script
    assert all("50-fabric.sh" in a[-1] for a in argvs[-nodes:])
    # switches carry the tun profile (netdev OVS), servers do not
    inits = [a for a in argvs if a[:2] == ("lxc", "init")]
    assert all(("prof" in a) == (a[2] == "img-w") for a in inits)
    # every host interface name fits the kernel's 15 characters
    assert all(len(a[3]) <= 15 for a in argvs if a[:3] == ("ip", "link", "add"))
