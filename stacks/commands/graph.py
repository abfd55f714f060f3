"""`distrilab graph LAB`: the topology as a Graphviz picture (DOT, SVG, PNG).

Nodes are coloured by role and ranked by tier (core/spine on top, servers at the bottom).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from rich.console import Console

from cdk.errors import DistrilabError
from cdk.model import Lab
from stacks.json_output import emit
from stacks.loading import load
from stacks.paths import REPO_ROOT

console = Console()

#: top to bottom; roles not listed go between the switches and the servers
TIERS = ("core", "spine", "aggregation", "leaf", "edge", "switch", "server")
COLOURS = {
    "core": "#c0392b",
    "spine": "#c0392b",
    "aggregation": "#e67e22",
    "leaf": "#2980b9",
    "edge": "#2980b9",
    "switch": "#16a085",
    "server": "#7f8c8d",
}
FORMATS = ("svg", "png")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("graph", help="draw the lab's topology (DOT, SVG, PNG)", description=__doc__)
    p.add_argument("lab", type=Path, help="lab file")
    p.add_argument(
        "--outdir", type=Path, default=REPO_ROOT / "cdktf.out" / "graph", help="where the files go"
    )
    p.add_argument("--json", action="store_true", help="print the drawn topology and the files as JSON")
    p.set_defaults(func=graph)


def tier(role: str) -> int:
    return TIERS.index(role) if role in TIERS else TIERS.index("server") - 1


def quoted(text: str) -> str:
    """A DOT string; backslashes pass through so labels can use DOT's own escapes (\\n)."""
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(lab: Lab) -> str:
    """The DOT text of a lab: deterministic (nodes and links in model order)."""
    lines = [
        f"graph {quoted(lab.name)} {{",
        "  graph [rankdir=TB, splines=false, nodesep=0.15, ranksep=1.2, fontname=Helvetica,"
        f" label={quoted(f'{lab.name}: {lab.topology.kind}, {len(lab.topology.nodes)} nodes')}];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10, fontcolor=white];',
        '  edge [color="#95a5a6"];',
    ]
    by_tier: dict[int, list[str]] = {}
    roles = {n.name: n.role for n in lab.topology.nodes}
    for node in lab.topology.nodes:
        by_tier.setdefault(tier(node.role), []).append(node.name)
        host = lab.placement.assignment[node.name]
        label = node.name if len(lab.hosts) == 1 else f"{node.name}\\n@{host}"
        colour = COLOURS.get(node.role, "#8e44ad")
        lines.append(f"  {quoted(node.name)} [label={quoted(label)}, fillcolor={quoted(colour)}];")
    for level in sorted(by_tier):
        members = " ".join(quoted(n) for n in by_tier[level])
        lines.append(f"  {{ rank=same; {members} }}")
    for link in lab.topology.links:
        style = (
            ", style=dashed"
            if lab.placement.assignment[link.a.node] != lab.placement.assignment[link.b.node]
            else ""
        )
        # dot ranks an edge's tail above its head: start each edge at the upper tier
        upper, lower = sorted((link.a, link.b), key=lambda e: tier(roles[e.node]))
        ports = f"taillabel={quoted(upper.interface)}, headlabel={quoted(lower.interface)}"
        lines.append(f"  {quoted(upper.node)} -- {quoted(lower.node)} [{ports}, fontsize=7{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_file: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    dot = shutil.which("dot")
    if dot is None:
        raise DistrilabError("graphviz 'dot' is not installed\n  hint: apt-get install graphviz")
    outputs = []
    for fmt in formats:
        out = dot_file.with_suffix(f".{fmt}")
        proc = subprocess.run(
            [dot, f"-T{fmt}", "-o", str(out), str(dot_file)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise DistrilabError(f"dot -T{fmt} {dot_file} failed: {proc.stderr.strip()}")
        outputs.append(out)
    return outputs


def drawn(lab: Lab, files: list[Path]) -> dict[str, object]:
    """The topology as drawn (tier 0 at the top), for docs/schemas/distrilab-graph.v1.json."""
    hosts = lab.placement.assignment
    return {
        "lab": lab.name, "topology": lab.topology.kind, "files": [str(f) for f in files],
        "nodes": [{"name": n.name, "role": n.role, "tier": tier(n.role), "host": hosts[n.name]}
                  for n in lab.topology.nodes],
        "links": [{"a": k.a.node, "a_interface": k.a.interface, "b": k.b.node, "b_interface": k.b.interface,
                   "cross_host": hosts[k.a.node] != hosts[k.b.node]} for k in lab.topology.links],
    }


def graph(args: argparse.Namespace) -> int:
    lab = load(args.lab)
    args.outdir.mkdir(parents=True, exist_ok=True)
    dot_file = args.outdir / f"{lab.name}.dot"
    dot_file.write_text(to_dot(lab))
    files = [dot_file, *render(dot_file)]
    if args.json:
        emit("graph", drawn(lab, files))
        return 0
    console.print("[green]graph[/] " + ", ".join(str(f) for f in files), highlight=False)
    return 0
