"""Seconds per node for the same lab on 1 and on 3 hosts, with where the time goes per host.

    .venv/bin/python -m bench.hosts [--out bench/results/hosts.json]

Both runs use fresh testbed machines (modules/testbed.py: Debian containers with sshd, reached as
`kind: ssh` hosts), so the two differ only in the number of hosts: the 1-host run is the
baseline of the same run. Each run is a real `up` (terraform, the reconcilers, LXD installed over
ssh, one LXD cluster for 3 hosts, VXLAN links), timed per stage and host from terraform's events,
then `down`. On one 2-core machine the 3 hosts share the same CPUs: the 3-host figure shows the
cost of distribution (cluster formation, image transfer between members, remote exec), not a
speed-up.
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

from modules import testbed

LAB_TOPOLOGY = {"kind": "clos", "pods": 2, "cores": 2, "aggregations_per_pod": 2, "edges_per_pod": 2,
                "servers_per_edge": 2}
DEFAULT_OUT = Path(__file__).parent / "results" / "hosts.json"
console = Console()


def lab_file(bed: testbed.Testbed, folder: Path) -> Path:
    name = f"bh{len(bed.machines)}{secrets.token_hex(2)}"
    lab = {
        "name": name,
        "hosts": testbed.ssh_hosts(bed),
        "topology": LAB_TOPOLOGY,
        "placement": {"strategy": "partition"},
        "resources": {"defaults": {"memory": "128MiB"}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return path


def timed_apply(path: Path, destroy: bool = False) -> dict[str, Any]:
    """One terraform apply (or destroy) of the lab; seconds per (stage, host) and in all."""
    from stacks import deploy
    from stacks.loading import load

    synthesized = deploy.synth(load(path, check_host_routes=not destroy))
    started: dict[str, float] = {}
    spent: dict[str, float] = {}

    def handle(event: Any) -> None:
        if event.type == "apply_start" and event.address:
            started[event.address] = time.monotonic()
        elif event.type in ("apply_complete", "apply_errored") and event.address in started:
            stage, host = synthesized.label(event.address)
            spent[f"{stage}@{host}"] = round(time.monotonic() - started[event.address], 2)

    begin = time.monotonic()
    if not destroy:
        from modules.host_preflight import preflight

        preflight(synthesized.lab)
    deploy.apply(synthesized, handle, destroy=destroy)
    return {"seconds": round(time.monotonic() - begin, 1), "per_stage_host": spent,
            "nodes": len(synthesized.lab.topology.nodes),
            "cross_host_links": synthesized.lab.placement.cross_host_links}


def run(hosts: int, folder: Path) -> dict[str, Any]:
    console.print(f"[bold]{hosts} host(s)[/]: starting testbed machines")
    bed = testbed.create(hosts)
    try:
        path = lab_file(bed, folder)
        up = timed_apply(path)
        console.print(f"  up (installs LXD): {up['seconds']} s")
        down = timed_apply(path, destroy=True)
        console.print(f"  down: {down['seconds']} s")
        # again on the same machines: LXD installed, the cluster formed anew (down dissolved it)
        warm = timed_apply(path)
        console.print(f"  up again: {warm['seconds']} s")
        timed_apply(path, destroy=True)
    finally:
        testbed.destroy(bed)
    return {"hosts": hosts, "up": up, "down": down, "up_again": warm,
            "seconds_per_node": round(up["seconds"] / up["nodes"], 2),
            "seconds_per_node_again": round(warm["seconds"] / warm["nodes"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    from stacks.cli import QUIET_ENV

    for key, value in QUIET_ENV.items():  # as `distrilab` runs: no jsii/terraform notices
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DISTRILAB_SECRETS", str(Path(tmp) / "secrets"))
        runs = [run(1, Path(tmp)), run(3, Path(tmp))]
    table = Table(title="the same 18-node 3-tier Clos on 1 and on 3 testbed hosts (up includes LXD install)")
    for column in ("hosts", "nodes", "cross-host links", "up s", "s/node", "down s", "up again s",
                   "s/node again", "slowest stages (up again)"):
        table.add_column(column)
    for r in runs:
        slowest = sorted(r["up_again"]["per_stage_host"].items(), key=lambda kv: -kv[1])[:4]
        table.add_row(str(r["hosts"]), str(r["up"]["nodes"]), str(r["up"]["cross_host_links"]),
                      str(r["up"]["seconds"]), str(r["seconds_per_node"]), str(r["down"]["seconds"]),
                      str(r["up_again"]["seconds"]), str(r["seconds_per_node_again"]),
                      ", ".join(f"{k} {v}s" for k, v in slowest))
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), "runs": runs}, indent=2) + "\n")
    console.print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
