"""Shared pieces of the end-to-end tests: unique lab names and what a lab leaves on the host."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from modules import lxd_rest as rest
from stacks.paths import Paths
from stacks.pool_records import forget

REPO = Path(__file__).resolve().parents[2]
Distrilab = Callable[..., subprocess.CompletedProcess[str]]


def leaf_spine_file(folder: Path, name: str, spines: int, leaves: int, per_leaf: int,
                    own_pools: bool = True) -> Path:
    """A leaf-spine lab file on the server and switch images; `own_pools`: pools hashed from the
    name (bench.labs.free_pools), else none (the lab picks them: cdk/pipeline.py choose_pools)."""
    from bench.labs import free_pools

    data: dict[str, Any] = {
        "name": name,
        "topology": {"kind": "leaf-spine", "spines": spines, "leaves": leaves, "servers_per_leaf": per_leaf},
        "images": {"server": "server", "switch": "switch"},
    }
    if own_pools:
        data["addressing"] = free_pools(name)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def report(run: subprocess.CompletedProcess[str]) -> str:
    """The end of a command's output, for an assertion message."""
    return run.stdout[-3000:] + run.stderr[-3000:]


@pytest.fixture
def lab_name() -> str:
    """A lab name no other run uses (tests must tolerate leftovers of earlier, killed runs)."""
    return f"e2e{secrets.token_hex(3)}"


def lab_leftovers(lab: str) -> dict[str, Any]:
    """Everything of `lab` still on this host: labelled instances/networks, aliases, host interfaces."""
    client = rest.connect(None)
    instances = sorted(rest.owned_instances(client, lab))
    networks = [n["name"] for n in rest.metadata(client.api.networks.get(params={"recursion": 1}))
                if n.get("config", {}).get(rest.LAB_KEY) == lab]
    aliases = [a["name"] for a in rest.metadata(client.api.images.aliases.get(params={"recursion": 1}))
               if a["name"].startswith(f"dl-{lab}-")]
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    marker = f"alias distrilab:{lab}:"
    interfaces = [line.split(":")[1].strip() for line in out.splitlines() if marker in line]
    return {k: v for k, v in {"instances": instances, "networks": networks, "aliases": aliases,
                              "interfaces": interfaces}.items() if v}


@contextmanager
def cli_lab(lab_name: str, lab_file: Path, timeout: int = 900) -> Iterator[Distrilab]:
    """`distrilab ARGS... LAB_FILE` as a user runs it; afterwards `down`, and whatever a failed run
    left is swept, state files removed, and nothing of the lab may remain on the host."""

    def distrilab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stacks.cli", *args, str(lab_file)], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    try:
        yield distrilab
    finally:
        down = distrilab("down")
        leftovers = lab_leftovers(lab_name)
        if down.returncode != 0 or leftovers:  # the safety net, so a failed run leaves nothing
            subprocess.run([sys.executable, "-m", "modules.sweep", "destroy", "--lab", lab_name], cwd=REPO,
                           capture_output=True, timeout=600)
        paths = Paths.for_repo(REPO)
        for path in (paths.state_file(lab_name), Path(f"{paths.state_file(lab_name)}.backup")):
            path.unlink(missing_ok=True)
        for folder in (paths.state_dir / lab_name, paths.specs_dir / lab_name, paths.workdir(lab_name)):
            shutil.rmtree(folder, ignore_errors=True)
        forget(paths, lab_name)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert leftovers == {}
