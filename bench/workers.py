"""How many parallel actions per stage: create and destroy time of one lab per worker count.

    .venv/bin/python -m bench.workers [--size 20] [--workers 1,2,4,8,16]

The same leaf-spine lab goes through the nodes, links and fabric reconcilers and back, once per
worker count (DISTRILAB_WORKERS, what `up/down --workers N` sets), images imported once for all.
The baseline is one worker: every action after the other, as Distrinet creates nodes. Prints a
table (seconds and speed-up over the baseline) and writes bench/results/workers.json; the default
of `lxd.max_workers` (this machine's vCPU count) is judged by it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import deploy
from bench.labs import free_pools, leaf_spine
from bench.nodes import shape_for
from modules.reconcile import WORKERS_ENV

RESULTS = Path(__file__).parent / "results" / "workers.json"
STAGES = ("nodes", "links", "fabric")


def measure(size: int, workers: int, tag: str) -> dict[str, Any]:
    name = f"bw{tag}w{workers}"
    lab = leaf_spine(name, *shape_for(size), pools=free_pools(name))
    os.environ[WORKERS_ENV] = str(workers)
    try:
        deploy.apply(lab, ("images",))  # aliases of the images imported once: not what is measured
        started = time.monotonic()
        deploy.apply(lab, STAGES)
        create = time.monotonic() - started
        started = time.monotonic()
        deploy.destroy(lab, STAGES)
        destroy = time.monotonic() - started
    finally:
        deploy.destroy(lab)
        os.environ.pop(WORKERS_ENV, None)
    return {"workers": workers, "nodes": len(lab.topology.nodes), "create_seconds": round(create, 2),
            "destroy_seconds": round(destroy, 2), "load_average": os.getloadavg()}


def render(results: dict[str, Any]) -> None:
    runs = results["runs"]
    base = runs[0]
    table = Table(title=f"{base['nodes']} nodes on {results['cpus']} vCPUs: workers per stage")
    for column in ("workers", "create s", "x baseline", "destroy s", "x baseline"):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(str(r["workers"]) + (" (baseline)" if r is base else ""),
                      f"{r['create_seconds']:.1f}", f"{base['create_seconds'] / r['create_seconds']:.2f}",
                      f"{r['destroy_seconds']:.1f}", f"{base['destroy_seconds'] / r['destroy_seconds']:.2f}")
    Console(stderr=True).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20, help="nodes in the lab (default 20)")
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts; the first is the baseline")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tag = secrets.token_hex(2)
    counts = [int(w) for w in args.workers.split(",") if w]
    image_lab = leaf_spine(f"bwi{tag}", 1, 1, 1, pools=free_pools(f"bwi{tag}"))
    results: dict[str, Any] = {"cpus": os.cpu_count(), "size": args.size, "runs": []}
    try:
        deploy.apply(image_lab, ("images",))
        for workers in counts:
            print(f"[bench] {args.size} nodes, {workers} worker(s)", file=sys.stderr, flush=True)
            results["runs"].append(measure(args.size, workers, tag))
    finally:
        deploy.destroy(image_lab, ("images",))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    render(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
