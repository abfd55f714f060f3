"""`distrilab inspect LAB`: the lab's nodes with their host, LXD state and addresses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cdk.model import Lab
from stacks.loading import load

console = Console()
STATE_STYLE = {"Running": "green", "Stopped": "yellow", "absent": "dim", "Error": "red"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="list the lab's nodes and their LXD state", description=__doc__)
    p.add_argument("lab", type=Path, help="lab file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=inspect)


def node_rows(lab: Lab, states: dict[str, str]) -> list[dict[str, Any]]:
    """One record per node; `states` maps LXD instance name -> status (missing: "absent")."""
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
                "state": states.get(instance, "absent"),
                "management": lab.addressing.management.get(node.name),
                "fabric": addresses,
            }
        )
    return rows


def lxd_states(lab: Lab) -> dict[str, str]:
    from modules.lxd_client import connect
    from modules.lxd_rest import owned_instances

    return {name: str(i.get("status")) for name, i in owned_instances(connect(None), lab.name).items()}


def inspect(args: argparse.Namespace) -> int:
    lab = load(args.lab)
    rows = node_rows(lab, lxd_states(lab))
    if args.json:
        print(json.dumps({"lab": lab.name, "nodes": rows}, indent=2))
        return 0
    table = Table(title=f"{lab.name}: {len(rows)} nodes")
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
