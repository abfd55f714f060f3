"""Many hosts for real: three fresh testbed machines (modules/testbed.py) as `kind: ssh` hosts.

`up` bootstraps them over ssh (LXD installed from the same list as .ci/setup), forms one LXD
cluster, places a 3-tier Clos lab across it, links cross-host ends with VXLAN over the testbed
bridge, and checks ping and TCP between servers on different hosts. A node and a tunnel deleted
by hand on remote hosts are repaired by the next `up`; `down` leaves every host clean. Runs
twice: the default `partition` placement, then `round-robin` (many cross-host links).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modules import testbed
from stacks import cli

TOPOLOGY = {"kind": "clos", "pods": 2, "cores": 2, "aggregations_per_pod": 2, "edges_per_pod": 2,
            "servers_per_edge": 2}


@pytest.fixture(scope="module")
def bed() -> Iterator[testbed.Testbed]:
    made = testbed.create(3)
    try:
        yield made
    finally:
        testbed.destroy(made)


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # the lab's keys, known_hosts and certificates stay inside the test's folder
    monkeypatch.setenv("DISTRILAB_SECRETS", str(tmp_path / "secrets"))
    return tmp_path / "secrets"


def write_lab(bed: testbed.Testbed, folder: Path, strategy: str) -> tuple[str, Path]:
    name = f"mh{secrets.token_hex(3)}"
    lab = {
        "name": name,
        "hosts": [{"name": f"h{i + 1}", "kind": "ssh", "address": m.address, "ssh_key": str(bed.key)}
                  for i, m in enumerate(bed.machines)],
        "topology": TOPOLOGY,
        "placement": {"strategy": strategy},
        "resources": {"defaults": {"memory": "128MiB"}},
        # distinct pools per run: the testbed hosts keep nothing between labs, but be explicit
        "addressing": {"management": "10.230.0.0/16"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return name, path


def on(bed: testbed.Testbed, index: int, script: str) -> subprocess.CompletedProcess[str]:
    return testbed.run(bed.machine(index), script, timeout=300)


def instances(bed: testbed.Testbed, lab: str) -> dict[str, str]:
    """instance -> cluster member, as the cluster reports it."""
    out = on(bed, 0, "lxc list --format json").stdout
    return {i["name"]: i["location"] for i in json.loads(out or "[]")
            if i.get("config", {}).get("user.distrilab.lab") == lab}


def lab_interfaces(bed: testbed.Testbed, index: int, lab: str) -> list[str]:
    out = on(bed, index, "ip -o link show").stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if f"alias distrilab:{lab}:" in line]


@pytest.mark.e2e
@pytest.mark.parametrize("strategy", ["partition", "round-robin"])
def test_a_clos_lab_across_three_ssh_hosts(
    bed: testbed.Testbed, strategy: str, tmp_path: Path, secrets_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, lab_file = write_lab(bed, tmp_path, strategy)
    started = time.monotonic()
    try:
        assert cli.main(["up", str(lab_file)]) == 0, capsys.readouterr()
        up_seconds = time.monotonic() - started
        out = capsys.readouterr().out
        assert f"lab {name}: healthy" in out, out

        placed = instances(bed, name)
        members = set(placed.values())
        assert members == {"h1", "h2", "h3"}, placed
        if strategy == "round-robin":  # switches and servers on every host
            for host in ("h1", "h2", "h3"):
                roles = {n.split("-")[2] for n, h in placed.items() if h == host and "--tpl-" not in n}
                assert roles & {"core", "agg", "edge"} and "srv" in roles, (host, roles)
        tunnels = [i for i in lab_interfaces(bed, 1, name) if "x" in i[6:7]]
        assert tunnels, "no VXLAN tunnel on h2"

        # drift on remote hosts: a node deleted on h2, a tunnel deleted on h3
        victim = next(n for n, h in placed.items() if h == "h2" and "-srv-" in n)
        assert on(bed, 1, f"lxc delete --force {victim}").returncode == 0
        tunnel = next(i for i in lab_interfaces(bed, 2, name) if i[6] == "x")
        assert on(bed, 2, f"ip link del {tunnel}").returncode == 0
        assert cli.main(["plan", str(lab_file)]) == 0
        plan_out = capsys.readouterr().out
        assert "drift" in plan_out and "nodes@h2" in plan_out and "links@h3" in plan_out, plan_out
        assert cli.main(["up", str(lab_file)]) == 0
        assert f"lab {name}: healthy" in capsys.readouterr().out
        assert victim in instances(bed, name) and tunnel in lab_interfaces(bed, 2, name)
        print(f"multi-host {strategy}: up {up_seconds:.0f} s for {len(placed)} instances")
    finally:
        down = cli.main(["down", str(lab_file)])
    assert down == 0
    assert instances(bed, name) == {}
    for index in range(3):
        assert lab_interfaces(bed, index, name) == [], f"h{index + 1} keeps interfaces"
    # the lab's certificate is no longer trusted; the members it joined left the cluster
    certificates = on(bed, 0, "lxc query /1.0/certificates?recursion=1").stdout
    assert f"distrilab-{name}" not in certificates
    for index in (1, 2):
        clustered = on(bed, index, "lxc query /1.0 2>/dev/null | grep -q '\"server_clustered\": true'")
        assert clustered.returncode != 0, f"h{index + 1} is still a cluster member"
