"""End to end at a size CI can afford: a 250-node 3-tier Clos with Linux-bridge switches.

Through the CLI and terraform, as a user runs it: `up --no-check`, then `check --json`, whose
ping must cover every rack pair, every pod pair and every server with the pairs
modules/reach_pairs.py picks, and find nothing unreachable on the healthy lab; then `down`
(cli_lab), which must leave nothing of the lab behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from bench.labs import free_pools
from modules.reach_pairs import sampled_pairs
from stacks.loading import load
from tests.e2e.conftest import cli_lab, report

pytestmark = pytest.mark.e2e

#: 2 cores + 4 pods x (2 aggregation + 4 edge x (1 + 14 servers)) = 250 nodes, 16 racks
TOPOLOGY = {"kind": "clos", "pods": 4, "cores": 2, "aggregations_per_pod": 2, "edges_per_pod": 4,
            "servers_per_edge": 14}


def test_a_250_node_lab_is_checked_by_a_sample_that_covers_it(lab_name: str, tmp_path: Path) -> None:
    lab_file = tmp_path / f"{lab_name}.yaml"
    lab_file.write_text(yaml.safe_dump({
        "name": lab_name, "topology": TOPOLOGY, "addressing": free_pools(lab_name),
        "fabric": {"bridge": "linux"}, "resources": {"defaults": {"memory": "128MiB"}},
        "lxd": {"storage": "btrfs", "max_workers": 16},
    }))
    with cli_lab(lab_name, lab_file) as distrilab:
        started = time.monotonic()
        up = distrilab("up", "--no-check")
        assert up.returncode == 0, report(up)
        print(f"up: {time.monotonic() - started:.0f} s")
        check = distrilab("check", "--json")
        checked = json.loads(check.stdout)
        assert check.returncode == 0 and checked["ok"], json.dumps(checked)[-3000:]
        checks = {c["name"]: c for c in checked["checks"]}
        assert set(checks) == {"stp", "ping", "tcp"}
        ping = checks["ping"]["data"]
        assert ping["mode"] == "sampled" and ping["unreachable"] == []
        assert ping["coverage"] == {"servers": 224, "racks": 16, "rack_pairs": 16 * 15 // 2, "pods": 4,
                                    "pod_pairs": 6}
        lab = load(lab_file, check_host_routes=False)
        servers = [n for n in lab.topology.nodes if n.kind == "server"]
        assert [tuple(p) for p in ping["pairs"]] == sampled_pairs(servers)
        assert ping["tried"] == len(ping["pairs"]) == 120 + 224
