"""One host, 250 to 1000 nodes: up per stage, the check, down, memory and open files per node.

    .venv/bin/python -m bench.scale [--sizes 250,500,1000] [--out bench/results/scale.json]

The same 3-tier Clos shape at each size (14 servers per edge switch, 128 MiB limits, btrfs),
with Linux-bridge switches (`fabric: {bridge: linux}`); the baseline of the same run is the
250-node lab with Open vSwitch switches (the L2 default; userspace datapath on this kernel).
Each lab is a real `up` through terraform, timed per stage from terraform's events, then the
check (the sampled pairs), then `down`. Memory: the host's MemAvailable before `up` and after
the check, and each container's own usage from LXD (its cgroup), by kind; the `[lxc monitor]`
process of each container is outside its cgroup, so the host figure is the one to plan with.
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
from rich.console import Console
from rich.table import Table

from bench.hosts import timed_apply
from modules.memory_fit import mem_available_mib

DEFAULT_OUT = Path(__file__).parent / "results" / "scale.json"
#: nodes -> (cores, pods, aggregations per pod, edges per pod); 14 servers per edge everywhere
SHAPES = {250: (2, 4, 2, 4), 500: (2, 8, 2, 4), 1000: (4, 8, 4, 8)}
console = Console()


def lab_file(size: int, bridge: str, folder: Path) -> Path:
    cores, pods, aggregations, edges = SHAPES[size]
    name = f"sc{size}{bridge[0]}{secrets.token_hex(2)}"
    lab = {
        "name": name,
        "topology": {"kind": "clos", "pods": pods, "cores": cores, "aggregations_per_pod": aggregations,
                     "edges_per_pod": edges, "servers_per_edge": 14},
        "fabric": {"bridge": bridge},
        "resources": {"defaults": {"memory": "128MiB"}},
        "lxd": {"storage": "btrfs", "max_workers": 16},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return path


def open_files() -> int:
    return int(Path("/proc/sys/fs/file-nr").read_text().split()[0])


def lxd_daemon() -> dict[str, int]:
    """The LXD daemon's open files and memory (RSS, MiB) now: what a large lab costs it."""
    from modules.lxd_host import LXD_PID_FILE

    pid = Path(LXD_PID_FILE).read_text().strip()
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return {"open_files": len(list(Path(f"/proc/{pid}/fd").iterdir())), "rss_mib": rss // 1024}


def container_memory(lab: Any) -> dict[str, float]:
    """Mean memory (MiB) of the lab's containers by kind, as their cgroups count it (LXD's state)."""
    from modules import lxd_rest as rest
    from modules.lxd_client import connect

    kinds = {lab.instance_name(n.name): n.kind for n in lab.topology.nodes}
    used: dict[str, list[float]] = {}
    for item in rest.metadata(connect().api.instances.get(params={"recursion": 2})) or []:
        if item["name"] in kinds and item.get("state"):
            usage = (item["state"].get("memory") or {}).get("usage") or 0
            used.setdefault(kinds[item["name"]], []).append(usage / 2**20)
    return {kind: round(sum(v) / len(v), 1) for kind, v in used.items()}


def without_pair_lists(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's checks without the pairs tried (thousands; `check --json` lists them)."""
    return [{**c, "data": {k: v for k, v in c.get("data", {}).items() if k != "pairs"}}
            for c in report["checks"]]


def run(size: int, bridge: str, folder: Path) -> dict[str, Any]:
    path = lab_file(size, bridge, folder)
    console.print(f"[bold]{size} nodes, {bridge} switches[/] ({path.stem})")
    return {**measure(path), "bridge": bridge}


def measure(path: Path) -> dict[str, Any]:
    """`up`, the check and `down` of one lab file, timed, with memory and open files per node."""
    from modules.check import run_checks
    from stacks.loading import load

    free_before, files_before = mem_available_mib(), open_files()
    up = timed_apply(path)
    console.print(f"  up {up['seconds']} s: {up['per_stage_host']}")
    lab = load(path, check_host_routes=False)
    started = time.monotonic()
    report = run_checks(lab, rstp_timeout=180)
    check_seconds = round(time.monotonic() - started, 1)
    ping = next(c for c in report.checks if c.name == "ping")
    console.print(f"  check {check_seconds} s: {'ok' if report.ok else 'FAILED'}; {ping.summary}")
    free_after, files_after, daemon = mem_available_mib(), open_files(), lxd_daemon()
    per_kind = container_memory(lab)
    down = timed_apply(path, destroy=True)
    console.print(f"  down {down['seconds']} s: {down['per_stage_host']}")
    nodes = up["nodes"]
    return {
        "nodes": nodes, "lab": path.stem,
        "up": up, "down": down,
        "up_s_per_node": {key.split("@")[0]: round(s / nodes, 3) for key, s in up["per_stage_host"].items()},
        "down_s_per_node": round(down["seconds"] / nodes, 3),
        "check": {"ok": report.ok, "seconds": check_seconds, "checks": without_pair_lists(report.to_dict())},
        "pairs_tried": ping.data.get("tried"),
        "answered_on_retry": len(ping.data.get("answered_on_retry", [])),
        "unreachable": len(ping.data.get("unreachable", [])),
        "host_memory_mib_per_node": round((free_before - free_after) / nodes, 1),
        "container_memory_mib_by_kind": per_kind,
        "open_files_per_node": round((files_after - files_before) / nodes, 1),
        "lxd_daemon": daemon,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="250,500,1000",
                        help="comma-separated, from " + ", ".join(map(str, SHAPES)))
    parser.add_argument("--no-baseline", action="store_true", help="skip the 250-node Open vSwitch baseline")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from stacks.cli import QUIET_ENV

    for key, value in QUIET_ENV.items():  # as `distrilab` runs: no jsii/terraform notices
        os.environ.setdefault(key, value)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = ([] if args.no_baseline else [(250, "ovs")]) + [(size, "linux") for size in sizes]
        for size, bridge in plan:
            runs.append(run(size, bridge, Path(tmp)))
    table = Table(title="one 2-core host: 3-tier Clos, 14 servers per edge switch (baseline: ovs at 250)")
    for column in ("nodes", "switches", "up s", "nodes s/node", "fabric s/node", "check s", "pairs",
                   "retried", "unreachable", "down s/node", "MiB/node (host)", "MiB server/switch (cgroup)",
                   "files/node", "LXD fds/RSS MiB"):
        table.add_column(column, justify="right")
    for r in runs:
        per = r["up_s_per_node"]
        mem, daemon = r["container_memory_mib_by_kind"], r["lxd_daemon"]
        table.add_row(str(r["nodes"]), r["bridge"], str(r["up"]["seconds"]), str(per.get("nodes")),
                      str(per.get("fabric")), str(r["check"]["seconds"]), str(r["pairs_tried"]),
                      str(r["answered_on_retry"]), str(r["unreachable"]), str(r["down_s_per_node"]),
                      str(r["host_memory_mib_per_node"]), f"{mem.get('server')}/{mem.get('switch')}",
                      str(r["open_files_per_node"]), f"{daemon['open_files']}/{daemon['rss_mib']}")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), "runs": runs}, indent=2) + "\n")
    console.print(f"written {args.out}")
    return 0 if all(r["check"]["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
