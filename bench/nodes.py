"""Node creation and destruction: distrilab's reconcilers against a Distrinet-style baseline.

    .venv/bin/python -m bench.nodes [--sizes 20,50,100] [--baseline-sizes 20,50] [--quick]

For each size, a leaf-spine lab of exactly that many nodes goes through the images, nodes,
links and fabric reconcilers (template copies, one ip -batch for links, one script per node
entered with nsenter), then `modules.check` (RSTP, all-pairs ping, TCP across racks), then
destroy. The baseline (bench/distrinet.py) builds the same lab, nodes, links and addresses,
with Distrinet's sequence of lxc/ip commands, in the same run on the same images, on a new
`dir` pool (Distrinet's documented LXD set-up) and on the btrfs pool distrilab uses.
Reports seconds per node (rich table on stderr) and writes bench/results/nodes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from bench import deploy, distrinet
from bench.labs import free_pools, leaf_spine
from cdk.model import Lab
from modules.check import run_checks

RESULTS = Path(__file__).parent / "results" / "nodes.json"
#: leaf-spine shapes (spines, leaves, servers per leaf) with exactly N nodes
SHAPES = {10: (2, 2, 3), 20: (2, 3, 5), 50: (2, 4, 11), 100: (4, 6, 15), 200: (4, 12, 15)}


def shape_for(size: int) -> tuple[int, int, int]:
    if size in SHAPES:
        return SHAPES[size]
    leaves = max(2, size // 16)
    return 2, leaves, max(1, (size - 2 - leaves) // leaves)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_distrilab(size: int, tag: str, check: bool) -> dict[str, Any]:
    """Deploy, check and destroy one lab of `size` nodes; seconds per stage and per node."""
    name = f"bn{tag}{size}"
    spines, leaves, per_leaf = shape_for(size)
    lab = leaf_spine(name, spines, leaves, per_leaf, pools=free_pools(name))
    nodes = len(lab.topology.nodes)
    result: dict[str, Any] = {"nodes": nodes, "links": len(lab.topology.links),
                              "shape": [spines, leaves, per_leaf]}
    try:
        deploy.apply(lab, ("images",))  # aliases the already imported images: not node creation
        started = time.monotonic()
        fixed = first_nodes(lab)  # the management network, one template per image, one node each
        stages = deploy.apply(lab, ("nodes", "links", "fabric"))
        create = time.monotonic() - started
        result.update(
            create_seconds=round(create, 2),
            create_per_node=round(create / nodes, 4),
            fixed_seconds=round(fixed, 2),
            marginal_per_node=round((create - fixed) / (nodes - 2), 4),
            stage_seconds={k: round(v["seconds"], 2) for k, v in stages.items()},
            fds_after_apply=open_fds(),
        )
        if check:
            report = run_checks(lab, rstp_timeout=120)
            result["check"] = report.to_dict()
            result["check_ok"] = report.ok
        started = time.monotonic()
        deploy.destroy(lab, ("nodes", "links", "fabric"))
        destroy = time.monotonic() - started
        result.update(destroy_seconds=round(destroy, 2), destroy_per_node=round(destroy / nodes, 4),
                      load_average=os.getloadavg())
    finally:
        deploy.destroy(lab)  # idempotent: after a success only the image aliases remain
    return result


def first_nodes(lab: Lab) -> float:
    """Apply the nodes stage for one switch and one server: what every lab pays once."""
    from cdk.stages import nodes as stage

    r = deploy.reconciler_of("nodes")
    spec = stage.build(lab, lab.hosts[0]) or {}
    kinds: dict[str, dict[str, Any]] = {}
    for node in spec["nodes"]:
        kinds.setdefault(node["kind"], node)
    started = time.monotonic()
    r.converge(r.load_spec({**spec, "nodes": list(kinds.values())}))
    return time.monotonic() - started


def run_baseline(size: int, tag: str, image_lab: Lab, pool_kind: str) -> dict[str, Any]:
    """The same lab (nodes, links, addresses) built Distrinet's way (bench/distrinet.py)."""
    label = f"bb{tag}{pool_kind[:2]}{size}"
    spines, leaves, per_leaf = shape_for(size)
    lab = leaf_spine(label, spines, leaves, per_leaf, pools=free_pools(label))
    images = {kind: f"dl-{image_lab.name}-{kind}" for kind in ("server", "switch")}
    return {**distrinet.measure(lab, label, images, pool_kind), "load_average": os.getloadavg()}


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    pools = list(dict.fromkeys(b["pool"] for b in results["baseline"]))
    table = Table(title="node creation / destruction, seconds per node (lower is better)")
    for col in ("nodes", "distrilab create", "(fixed s + per node)",
                *(f"Distrinet {p} create (speed-up)" for p in pools),
                "distrilab destroy", *(f"Distrinet {p} destroy" for p in pools), "check"):
        table.add_column(col, justify="right")
    baseline = {(b["pool"], b["nodes"]): b for b in results["baseline"]}
    for r in results["distrilab"]:
        found = [baseline.get((p, r["nodes"])) for p in pools]
        table.add_row(
            str(r["nodes"]), f"{r['create_per_node']:.3f}",
            f"{r['fixed_seconds']:.1f} + {r['marginal_per_node']:.3f}",
            *(f"{b['create_per_node']:.3f} ({b['create_per_node'] / r['create_per_node']:.1f}x)" if b else "-"
              for b in found),
            f"{r['destroy_per_node']:.3f}",
            *(f"{b['destroy_per_node']:.3f}" if b else "-" for b in found),
            {True: "[green]ok[/green]", False: "[red]FAILED[/red]"}.get(r.get("check_ok"), "-"),
        )
    Console(stderr=True).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nodes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,50,100", help="distrilab lab sizes (default 20,50,100)")
    parser.add_argument("--baseline-sizes", default="20,50", help="baseline sizes (default 20,50)")
    parser.add_argument("--baseline-pools", default="dir,btrfs",
                        help="storage drivers of the baseline runs (default dir,btrfs; dir is Distrinet's)")
    parser.add_argument("--quick", action="store_true", help="sizes 10,20 and baseline 10 only")
    parser.add_argument("--no-check", action="store_true", help="skip modules.check after each deploy")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [10, 20] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    baseline_sizes = [10] if args.quick else [int(s) for s in args.baseline_sizes.split(",") if s]
    tag = secrets.token_hex(2)

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "load_average_at_start": os.getloadavg()},
        "method": {
            "distrilab": "nodes, links, fabric reconcilers: copies of an id-shifted template container, "
                         "one ip -batch for all links, one fabric script per node entered with nsenter; "
                         "then modules.check; then destroy",
            "baseline": distrinet.METHOD,
        },
        "distrilab": [],
        "baseline": [],
    }
    # images are built and imported once and shared by labs: hold them for the whole run, so each
    # lab measures node creation, not a first import
    image_lab = leaf_spine(f"bi{tag}", 1, 1, 1, pools=free_pools(f"bi{tag}"))
    try:
        deploy.apply(image_lab, ("images",))
        for size in sizes:
            print(f"[bench] distrilab: {size} nodes", file=sys.stderr, flush=True)
            results["distrilab"].append(run_distrilab(size, tag, check=not args.no_check))
        for pool_kind in [p for p in args.baseline_pools.split(",") if p]:
            for size in baseline_sizes:
                print(f"[bench] baseline ({pool_kind} pool): {size} nodes", file=sys.stderr, flush=True)
                results["baseline"].append(run_baseline(size, tag, image_lab, pool_kind))
    finally:
        deploy.destroy(image_lab, ("images",))
    results["load_average_at_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    render(results)
    print(f"[bench] results in {args.output}", file=sys.stderr)
    failed = [r["nodes"] for r in results["distrilab"] if r.get("check_ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
