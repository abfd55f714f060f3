"""`distrilab inspect LAB`: the lab's nodes with their host, LXD state and addresses, and how the
placement spread them (nodes per host, links that cross hosts)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cdk.model import Lab
from stacks.json_output import emit
from stacks.loading import load

console = Console()
#: the state of a node that `up --limit` did not deploy
LEFT_OUT = "left out"
STATE_STYLE = {"Running": "green", "Stopped": "yellow", "absent": "dim", "Error": "red", LEFT_OUT: "dim"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="list the lab's nodes and their LXD state", description=__doc__)
    p.add_argument("lab", type=Path, help="lab file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=inspect)


def node_rows(lab: Lab, states: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """One record per node; `states` maps LXD instance name -> (status, cluster member or "")."""
    fabric: dict[str, list[str]] = {}
    for iface in lab.addressing.servers:
        fabric.setdefault(iface.node, []).append(f"{iface.interface} {iface.address}")
    rows = []
    for node in lab.topology.nodes:
        instance = lab.instance_name(node.name)
        addresses = fabric.get(node.name, [])
        if node.name in lab.addressing.loopbacks:
            addresses = [f"lo {lab.addressing.loopbacks[node.name]}", *addresses]
        rows.append(
            {
                "node": node.name,
                "instance": instance,
                "role": node.role,
                "kind": node.kind,
                "host": lab.placement.assignment[node.name],
                "state": states.get(instance, ("absent", ""))[0],
                "location": states.get(instance, ("absent", ""))[1],  # where LXD says it runs
                "management": lab.addressing.management.get(node.name),
                "fabric": addresses,
            }
        )
    return rows


def lxd_states(lab: Lab) -> dict[str, tuple[str, str]]:
    """instance -> (status, member): one query to the first host's API (a multi-host lab's
    hosts form one LXD cluster, whose every member lists every instance)."""
    from cdk.stages.nodes import endpoint
    from modules.lxd_client import connect
    from modules.lxd_rest import owned_instances

    first = lab.hosts[0]
    client = connect(None if first.kind == "local" else endpoint(first, lab.name))
    return {name: (str(i.get("status")), str(i.get("location") or ""))
            for name, i in owned_instances(client, lab.name).items()}


def spread(lab: Lab) -> dict[str, Any]:
    """Nodes per host and the links whose ends are on different hosts (VXLAN tunnels)."""
    per_host = {h.name: 0 for h in lab.hosts}
    for host in lab.placement.assignment.values():
        per_host[host] += 1
    return {"strategy": lab.placement.strategy, "nodes_per_host": per_host,
            "cross_host_links": lab.placement.cross_host_links, "links": len(lab.topology.links)}


def inspect(args: argparse.Namespace) -> int:
    from stacks.limits import read_limit
    from stacks.paths import Paths

    lab = load(args.lab, whole=True)  # the nodes `up --limit` left out are shown as such
    limit = read_limit(Paths.for_repo(), lab.name)
    rows = node_rows(lab, lxd_states(lab))
    for row in rows:
        if limit is not None and row["node"] not in limit["nodes"] and row["state"] == "absent":
            row["state"] = LEFT_OUT
    placement = spread(lab)
    if args.json:
        emit("inspect", {"lab": lab.name, "placement": placement, "limit": limit, "nodes": rows})
        return 0
    hosts = ", ".join(f"{h} {n}" for h, n in placement["nodes_per_host"].items())
    part = f"; up --limit {limit['selector']}: {len(limit['nodes'])} deployed" if limit else ""
    table = Table(title=f"{lab.name}: {len(rows)} nodes", caption=(
        f"placement {placement['strategy']}: {hosts}; "
        f"{placement['cross_host_links']}/{placement['links']} links cross hosts{part}"))
    for column in ("node", "role", "host", "state", "management", "fabric"):
        table.add_column(column)
    for r in rows:
        style = STATE_STYLE.get(r["state"], "")
        table.add_row(
            r["node"],
            r["role"],
            r["host"],
            f"[{style}]{r['state']}[/]",
            r["management"] or "",
            ", ".join(r["fabric"]),
        )
    console.print(table)
    return 0
