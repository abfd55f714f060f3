"""The same lab as a bridged and as a routed fabric: up time, check, memory per switch.

    .venv/bin/python -m bench.fabric_modes [--lab labs/dc-3tier.yaml] [--out bench/results/fabric_modes.json]

One run brings the lab up three times on this host, each time checked and brought down: the L2
default (Open vSwitch with RSTP: the baseline), L2 with Linux bridges (the kernel's STP), and L3
(`fabric: {mode: l3}`: FRR's zebra and bgpd on every switch, eBGP on every link, ECMP). Per
mode: `up` per stage, the check's time (for l3 it includes waiting for BGP to converge), each
switch container's memory as its cgroup counts it, and the host's memory per node. The routed
fabric's check also says how many ECMP next hops each rack route has.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from bench.labs import free_pools
from bench.scale import console, measure

DEFAULT_LAB = Path(__file__).parents[1] / "labs" / "dc-3tier.yaml"
DEFAULT_OUT = Path(__file__).parent / "results" / "fabric_modes.json"
#: (label, the lab's `fabric` section, its switch image): baseline first
MODES = (("l2 ovs", {"bridge": "ovs"}, "switch"), ("l2 linux", {"bridge": "linux"}, "server"),
         ("l3 frr", {"mode": "l3"}, "router"))


def lab_variant(source: Path, fabric: dict[str, str], switch_image: str, folder: Path) -> Path:
    data = yaml.safe_load(source.read_text())
    name = f"fm{secrets.token_hex(3)}"
    data.update(name=name, fabric=fabric, addressing=free_pools(name))
    data["images"] = {**data.get("images", {}), "switch": switch_image}
    data.setdefault("resources", {}).setdefault("defaults", {})["memory"] = "128MiB"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fabric_modes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    from stacks.cli import QUIET_ENV

    for key, value in QUIET_ENV.items():  # as `distrilab` runs: no jsii/terraform notices
        os.environ.setdefault(key, value)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, fabric, image in MODES:
            path = lab_variant(args.lab, fabric, image, Path(tmp))
            console.print(f"[bold]{args.lab.name}: {label}[/] ({path.stem})")
            runs.append({**measure(path), "mode": label})
    table = Table(title=f"{args.lab.name} on one host, three fabrics (baseline: l2 ovs)")
    for column in ("fabric", "nodes", "up s", "nodes stage s", "fabric stage s", "check s", "check",
                   "MiB/switch (cgroup)", "MiB/node (host)", "up vs baseline"):
        table.add_column(column, justify="right")
    baseline = runs[0]["up"]["seconds"]
    for r in runs:
        stages = r["up"]["per_stage_host"]
        nodes_s = sum(v for k, v in stages.items() if k.startswith("nodes@"))
        fabric_s = sum(v for k, v in stages.items() if k.startswith("fabric@"))
        switch_mib = r["container_memory_mib_by_kind"].get("switch")
        table.add_row(r["mode"], str(r["nodes"]), str(r["up"]["seconds"]), f"{nodes_s:.1f}",
                      f"{fabric_s:.1f}", str(r["check"]["seconds"]), "ok" if r["check"]["ok"] else "FAILED",
                      str(switch_mib), str(r["host_memory_mib_per_node"]),
                      f"{r['up']['seconds'] / baseline:.2f}x")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), "lab": str(args.lab.name),
                                    "runs": runs}, indent=2) + "\n")
    console.print(f"written {args.out}")
    return 0 if all(r["check"]["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
