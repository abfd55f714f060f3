"""Synth benchmark: `distrilab synth labs/clos-1000.yaml` against a naive stack, in one run.

    .venv/bin/python -m bench.synth [--lab labs/clos-1000.yaml] [--runs 3]

distrilab: one `terraform_data` per (stage, host), `App(skip_validation=True)`; the target is
<= 3 s wall for the whole command (interpreter, lab pipeline, jsii, writing specs).
Baseline: what a straightforward cdktn port does: one `terraform_data` per node with a
local-exec provisioner and cdktn's default validation (which runs `terraform version` for
every construct). Both are timed as fresh processes; results go to bench/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from cdk.errors import DistrilabError
from stacks.loading import load
from stacks.paths import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "synth.json"
TARGET_SECONDS = 3.0
ENV = {**os.environ, "CHECKPOINT_DISABLE": "1", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
#: tried in order when the lab file's pools collide with this host's routes (another lab running)
SPARE_POOLS = ("10.230.0.0/16", "10.231.0.0/16", "10.232.0.0/16", "10.233.0.0/16", "10.234.0.0/16")

console = Console()


def usable_lab(path: Path, workdir: Path) -> tuple[Path, str]:
    """The lab file to time, and how it was obtained.

    The lab file itself when it loads here; when its address pools collide with a route of this
    host (a lab already running), a copy with the colliding pools moved; when it does not exist,
    a ~1000-node leaf-spine lab built in code (bench/labgen.py).
    """
    if not path.exists():
        generated = workdir / "generated_1000.py"
        generated.write_text(
            "from bench.labgen import leaf_spine_lab\n\n"
            "LAB = leaf_spine_lab('bench1k', spines=4, leaves=62, servers_per_leaf=15)\n"
        )
        return generated, f"{path} absent: 996-node leaf-spine lab generated in code"
    try:
        load(path)
        return path, str(path)
    except DistrilabError as err:
        first_error = str(err).splitlines()[0]
    data = yaml.safe_load(path.read_text())
    spare = iter(SPARE_POOLS)
    for _ in range(len(SPARE_POOLS)):
        copy = workdir / path.name
        copy.write_text(yaml.safe_dump(data))
        try:
            load(copy)
            return copy, f"{path} with pools moved ({first_error})"
        except DistrilabError as err:
            field = next((p.field for p in getattr(err, "problems", [])), "")
            if not field.startswith("addressing."):
                raise
            data.setdefault("addressing", {})[field.split(".", 1)[1]] = next(spare)
    raise DistrilabError(f"{path}: no free address pool found for the benchmark")


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # user + system seconds of the process and its children (jsii's node, terraform)


def timed(argv: list[str]) -> Timing:
    """Run a command as a fresh process; wall and CPU time (CPU is what load on a shared machine
    does not inflate)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(elapsed, cpu)


def count_resources(stack_json: Path) -> int:
    data = json.loads(stack_json.read_text())
    return sum(len(v) for v in data.get("resource", {}).values())


def naive_synth(lab_path: Path, outdir: Path) -> None:
    """The baseline stack: one terraform_data per node, default validation."""
    import cdktn

    lab = load(lab_path)
    app = cdktn.App(outdir=str(outdir))  # default: validation on
    stack = cdktn.TerraformStack(app, lab.name)
    for node in lab.topology.nodes:
        resource = cdktn.TerraformResource(
            stack,
            node.name,
            terraform_resource_type="terraform_data",
            provisioners=[
                cdktn.LocalExecProvisioner(
                    type="local-exec", command=f"python -m modules.nodes apply --node {node.name}"
                )
            ],
        )
        resource.add_override(
            "input", {"node": node.name, "role": node.role, "host": lab.placement.assignment[node.name]}
        )
    app.synth()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=REPO_ROOT / "labs" / "clos-1000.yaml")
    parser.add_argument("--runs", type=int, default=3, help="distrilab synth runs (the baseline runs once)")
    parser.add_argument("--naive", nargs=2, metavar=("LAB", "OUTDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive:  # the baseline, run as its own process by the benchmark
        naive_synth(Path(args.naive[0]), Path(args.naive[1]))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        work = Path(tmp)
        lab_path, lab_source = usable_lab(args.lab, work)
        lab = load(lab_path)
        python = sys.executable
        ours_out = work / "ours"
        ours = [
            timed([python, "-m", "stacks.cli", "synth", str(lab_path), "--outdir", str(ours_out)])
            for _ in range(args.runs)
        ]
        ours_resources = count_resources(ours_out / "stacks" / lab.name / "cdk.tf.json")
        naive_out = work / "naive"
        console.print(f"baseline: {len(lab.topology.nodes)} resources with validation (takes a while) ...")
        naive = timed([python, "-m", "bench.synth", "--naive", str(lab_path), str(naive_out)])
        naive_resources = count_resources(naive_out / "stacks" / lab.name / "cdk.tf.json")

    walls = [t.wall for t in ours]
    median_wall = statistics.median(walls)
    result: dict[str, Any] = {
        "lab": lab.name,
        "lab_source": lab_source,
        "nodes": len(lab.topology.nodes),
        "links": len(lab.topology.links),
        "hosts": len(lab.hosts),
        "distrilab_synth": {
            "command": f"distrilab synth {args.lab.name}",
            "resources": ours_resources,
            "runs_wall_s": [round(w, 3) for w in walls],
            "runs_cpu_s": [round(t.cpu, 3) for t in ours],
            "best_wall_s": round(min(walls), 3),
            "median_wall_s": round(median_wall, 3),
        },
        "baseline": {
            "description": "one terraform_data per node, App() with default validation",
            "resources": naive_resources,
            "wall_s": round(naive.wall, 3),
            "cpu_s": round(naive.cpu, 3),
        },
        "speedup_wall": round(naive.wall / median_wall, 1),
        "target_s": TARGET_SECONDS,
        "target_met": median_wall <= TARGET_SECONDS,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"synth of {lab.name}: {result['nodes']} nodes, {result['hosts']} host(s)")
    for column in ("variant", "resources", "wall (s)", "cpu (s)", "note"):
        table.add_column(column)
    runs = ", ".join(f"{w:.2f}" for w in walls)
    met = "[green]met[/]" if result["target_met"] else "[red]missed[/]"
    cpu = statistics.median(t.cpu for t in ours)
    table.add_row(
        "distrilab synth",
        str(ours_resources),
        f"{median_wall:.2f}",
        f"{cpu:.2f}",
        f"median of {runs}; target {TARGET_SECONDS} s {met}",
    )
    table.add_row(
        "naive baseline",
        str(naive_resources),
        f"{naive.wall:.2f}",
        f"{naive.cpu:.2f}",
        "per-node, validation on",
    )
    console.print(table)
    loadavg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(
        f"speedup x{result['speedup_wall']} (wall); load average {loadavg} on {os.cpu_count()} cpus; "
        f"lab: {lab_source}; written {RESULTS}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
