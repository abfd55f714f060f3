"""A lab too large for this host's memory is refused before anything is created, with numbers."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdk.footprint import NODE_MIB, RESERVE_MIB, estimate, size_mib
from cdk.pipeline import lab_from_dict
from modules.memory_fit import IGNORE_MEMORY_ENV, MemoryFitError, check_local_memory, mem_available_mib
from stacks.loading import load
from stacks.paths import Paths
from stacks.pool_records import forget, read_records

POOLS = {"management": "10.100.0.0/16", "loopbacks": "10.101.0.0/16", "p2p": "10.102.0.0/16",
         "servers": "10.103.0.0/16"}
CLOS_1000 = {"kind": "clos", "pods": 8, "cores": 4, "aggregations_per_pod": 4, "edges_per_pod": 8,
             "servers_per_edge": 14}


def clos(bridge: str, **extra: object) -> object:
    return lab_from_dict({"name": "mf", "addressing": POOLS, "topology": CLOS_1000,
                          "fabric": {"bridge": bridge}, **extra}, host_routes=[])


def test_sizes() -> None:
    assert size_mib("128MiB") == 128 and size_mib("2GiB") == 2048 and size_mib(None) is None


def test_the_996_node_lab_needs_what_its_nodes_cost() -> None:
    need = estimate(clos("linux"))["local"]  # type: ignore[arg-type]
    assert need.counts == {"server": 896, "switch/linux": 100}
    assert need.total_mib == 996 * NODE_MIB["server"]
    ovs = estimate(clos("ovs"))["local"]  # type: ignore[arg-type]
    assert ovs.total_mib == 896 * NODE_MIB["server"] + 100 * NODE_MIB["switch/ovs"]


def test_a_memory_limit_below_the_footprint_caps_it() -> None:
    lab = clos("linux", resources={"server": {"memory": "8MiB"}})
    assert estimate(lab)["local"].each("server") == 8  # type: ignore[arg-type]


def test_refused_with_the_estimate_and_what_to_change() -> None:
    lab = clos("ovs")
    with pytest.raises(MemoryFitError) as err:
        check_local_memory(lab, available=lambda: 8000, running=lambda _lab: frozenset())  # type: ignore[arg-type]
    text = str(err.value)
    assert "896 server x 14 MiB, 100 switch/ovs x 48 MiB" in text and "8000 MiB is available" in text
    assert "Nothing was created" in text and "fabric: {bridge: linux} saves ~3400 MiB" in text
    assert "--ignore-memory" in text


def test_the_environment_override_skips_the_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IGNORE_MEMORY_ENV, "1")  # what `npx cdktf deploy` users set (up: --ignore-memory)
    assert check_local_memory(clos("ovs"), available=lambda: 8000,  # type: ignore[arg-type]
                              running=lambda _lab: frozenset()) is None


def test_nodes_already_running_hold_their_memory_already() -> None:
    lab = clos("linux")
    running = frozenset(lab.instance_name(n.name) for n in lab.topology.nodes)  # type: ignore[attr-defined]
    need = check_local_memory(lab, available=lambda: RESERVE_MIB + 1,  # type: ignore[arg-type]
                              running=lambda _lab: running)
    assert need is not None and need.total_mib == 0


def test_alcor_java_services_count_at_their_limits() -> None:
    lab = clos("linux", alcor="default")
    from modules.memory_fit import java_services

    services = java_services(lab)  # type: ignore[arg-type]
    assert list(services) == ["local"] and len(services["local"]) == 16
    need = estimate(lab, services)["local"]  # type: ignore[arg-type]
    limits = [size_mib(limit) or 1024 for limit in services["local"]]
    assert need.counts["Java service"] == 16 and need.sums["Java service"] == sum(limits) > 16 * 1024


def forget_everything(paths: Paths, name: str) -> None:
    """What the test's lab leaves in this checkout: its claim, its synthesized specs and workdir."""
    forget(paths, name)
    for folder in (paths.specs_dir / name, paths.workdir(name)):
        shutil.rmtree(folder, ignore_errors=True)


def _refused_up(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "stacks.cli", "up", str(path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "does not fit host local's memory" in proc.stderr and "Nothing was created" in proc.stderr
    return proc


def test_up_refuses_a_lab_too_large_for_this_machine(tmp_path: Path) -> None:
    # 3000 nodes (~41 GiB at the measured footprints) on this machine's real MemAvailable
    if mem_available_mib() > 40000:
        pytest.skip("this machine has room for 3000 nodes")
    name = f"mfbig{secrets.token_hex(3)}"  # other runs may have left labs and claims behind
    lab = {"name": name, "hosts": [{"name": "local", "capacity": 5000}],
           "topology": {**CLOS_1000, "pods": 24}}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(lab))
    paths = Paths.for_repo()
    try:
        _refused_up(path, tmp_path)
        assert not (tmp_path / f"terraform.{name}.tfstate").exists()
        assert name not in read_records(paths)  # its pools were not kept: nothing holds them
        # a lab that had claimed its pools before (it is up) keeps them when a later up is refused
        load(path, claim_pools=True)  # what an earlier, successful up claimed
        kept = read_records(paths)[name]
        _refused_up(path, tmp_path)
        assert read_records(paths)[name] == kept
    finally:
        forget_everything(paths, name)


def test_npx_cdktf_deploy_refuses_it_too_unless_told(tmp_path: Path) -> None:
    """`npx cdktf deploy` runs the app (cdktf.json) before terraform: the same refusal, the same
    override as an environment variable, and no pool claim kept by a refused synth."""
    if mem_available_mib() > 40000:
        pytest.skip("this machine has room for 3000 nodes")
    name = f"mfapp{secrets.token_hex(3)}"
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"name": name, "hosts": [{"name": "local", "capacity": 5000}],
                                    "topology": {**CLOS_1000, "pods": 24}}))
    env = {**os.environ, "DISTRILAB_LAB": str(path), "CDKTF_OUTDIR": str(tmp_path / "out")}
    env.pop(IGNORE_MEMORY_ENV, None)
    paths = Paths.for_repo()
    try:
        proc = subprocess.run([sys.executable, "-m", "stacks.app"], capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "does not fit host local's memory" in proc.stderr and f"{IGNORE_MEMORY_ENV}=1" in proc.stderr
        assert not (tmp_path / "out").exists() and name not in read_records(paths)
        told = subprocess.run([sys.executable, "-m", "stacks.app"], capture_output=True, text=True,
                              env={**env, IGNORE_MEMORY_ENV: "1"}, timeout=600)
        assert told.returncode == 0, told.stderr
        assert (tmp_path / "out" / "stacks" / name / "cdk.tf.json").is_file()
    finally:
        forget_everything(paths, name)
