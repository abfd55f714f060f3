"""Bad input at apply time, through the real CLI, terraform and LXD daemon: LXD not reachable, a
lab image gone, the storage pool full. Each gives one clear error naming what to do (on stderr,
no traceback, no terraform wrapping) and leaves a state that `up` continues from and `down` clears.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.labs import free_pools
from stacks.paths import Paths
from tests.e2e.conftest import lab_leftovers, report

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


class Cli:
    """`python -m stacks.cli COMMAND LABFILE` for one lab, and its clean-up."""

    def __init__(self, lab: str, folder: Path, **settings: Any):
        self.lab = lab
        self.file = folder / f"{lab}.yaml"
        self.settings = settings

    def write(self) -> None:
        # pools picked right before use: other labs on the host take ranges meanwhile
        self.file.write_text(yaml.safe_dump({
            "name": self.lab,
            "topology": {"kind": "leaf-spine", "spines": 1, "leaves": 1, "servers_per_leaf": 1},
            "addressing": free_pools(self.lab),
            "images": {"server": "server", "switch": "switch"},
            **self.settings,
        }))

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stacks.cli", *args, str(self.file)], cwd=REPO,
                              capture_output=True, text=True, timeout=600, env=env)

    def down_and_sweep(self) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        self.write()  # the lab's own ranges stay free for it; one another lab took would stop `down`
        down = self("down")
        leftovers = lab_leftovers(self.lab)
        if down.returncode != 0 or leftovers:  # the safety net, so a failed run leaves nothing
            subprocess.run([sys.executable, "-m", "modules.sweep", "destroy", "--lab", self.lab], cwd=REPO,
                           capture_output=True, timeout=300)
        paths = Paths.for_repo(REPO)
        for path in (paths.state_file(self.lab), Path(f"{paths.state_file(self.lab)}.backup")):
            path.unlink(missing_ok=True)
        for folder in (paths.state_dir / self.lab, paths.specs_dir / self.lab, paths.workdir(self.lab)):
            shutil.rmtree(folder, ignore_errors=True)
        return down, leftovers


def _shown(proc: subprocess.CompletedProcess[str]) -> str:
    return report(proc)


def _one_clear_error(proc: subprocess.CompletedProcess[str]) -> str:
    """stderr holds one error with a hint, and no traceback or terraform diagnostics."""
    err = proc.stderr
    assert proc.returncode != 0, _shown(proc)
    assert err.startswith("error: ") and err.count("error: ") == 1, err
    assert "hint: " in err and "Traceback" not in err and "local-exec" not in err, err
    assert "Error running command" not in err and "Executing:" not in err, err
    return err


@pytest.fixture
def cli(lab_name: str, tmp_path: Path) -> Iterator[Cli]:
    yield Cli(lab_name, tmp_path)


def test_unreachable_lxd_then_missing_image(cli: Cli, tmp_path: Path) -> None:
    """LXD not answering: one error naming the socket and what to do; `up` continues once it
    answers. Then an image alias deleted by hand: `up` re-imports it and the nodes stage goes on."""
    empty = tmp_path / "no-daemon"
    empty.mkdir()
    cli.write()
    try:
        # a directory nothing serves: the cluster stage must not start a second daemon there
        unreachable = cli("up", env={**os.environ, "LXD_DIR": str(empty)})
        err = _one_clear_error(unreachable)
        assert f"LXD at {empty}/unix.socket does not answer" in err, err
        assert "python -m modules.lxd_host ensure" in err and "unset LXD_DIR" in err, err
        assert not (empty / "unix.socket").exists() and not any(empty.iterdir())  # nothing started

        cli.write()
        up = cli("up", "--no-check")
        assert up.returncode == 0, _shown(up)

        # drift check before terraform: the same clear error, nothing applied
        again = cli("up", env={**os.environ, "LXD_DIR": str(empty)})
        assert "does not answer" in _one_clear_error(again)

        # the lab's image alias deleted by hand: the images stage re-creates it, nodes continue
        alias = f"dl-{cli.lab}-server"
        subprocess.run(["lxc", "image", "alias", "delete", alias], check=True, capture_output=True)
        # what the nodes stage says when it runs without the images stage before it (as terraform
        # runs it, e.g. under `npx cdktf deploy`, which has no drift check)
        spec_file = max((Paths.for_repo(REPO).specs_dir / cli.lab).glob("nodes@local-*.json"),
                        key=lambda path: path.stat().st_mtime)  # the last synth's
        nodes = subprocess.run([sys.executable, "-m", "modules.nodes", "apply", "--spec", str(spec_file),
                                "--state-dir", str(tmp_path / "state")],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
        assert nodes.returncode == 1, nodes.stdout + nodes.stderr
        expected = (f"error: [nodes] image alias(es) {alias} not found on host local\n"
                    "  hint: build and import the lab's images first: 'distrilab up' does")
        assert nodes.stderr.startswith(expected), nodes.stderr
        plan = cli("plan")
        assert plan.returncode == 0, _shown(plan)
        assert f"drift images@local: 1 action(s): alias {alias} (missing)" in plan.stdout, plan.stdout
        assert f"image alias(es) {alias} not found" in plan.stdout, plan.stdout  # why nodes re-run
        repaired = cli("up", "--no-check")
        assert repaired.returncode == 0, _shown(repaired)
        aliases = subprocess.run(["lxc", "image", "alias", "list", "--format", "csv"], check=True,
                                 capture_output=True, text=True).stdout
        assert f"{alias}," in aliases
        converged = cli("up", "--no-check")
        assert converged.returncode == 0 and "no changes" in converged.stdout, _shown(converged)
    finally:
        down, leftovers = cli.down_and_sweep()
    assert down.returncode == 0, _shown(down)
    assert leftovers == {}


def test_storage_pool_full(lab_name: str, tmp_path: Path) -> None:
    """A lab on its own 128 MiB btrfs pool: the switch image does not fit (measured: LXD's unpack
    fails with tar's 'No space left on device' on every file). One error naming the pool, that it
    is full and what to do; `down` removes everything of the lab; the test deletes its pool."""
    pool = f"dl-{lab_name}-tiny"
    cli = Cli(lab_name, tmp_path, lxd={"pool": pool, "storage": "btrfs", "storage_size": "128MiB"})
    cli.write()
    try:
        up = cli("up", "--no-check")
        err = _one_clear_error(up)
        assert f"storage pool {pool} is full: no space left on device" in err, err
        assert f"lxc storage info {pool}" in err and "lxd.storage_size" in err, err
        assert "terraform_data.nodes_local" in err, err  # the stage that hit it
        assert err.count("\n") < 30, err  # not LXD's thousands of tar lines
    finally:
        down, leftovers = cli.down_and_sweep()
        _delete_pool(pool)
    assert down.returncode == 0, _shown(down)
    assert leftovers == {}


def _delete_pool(pool: str) -> None:
    """The test's own pool: its cached image volumes first (LXD refuses to delete a used pool)."""
    listed = subprocess.run(["lxc", "storage", "volume", "list", pool, "--format", "csv", "-c", "tn"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return  # never created
    for line in listed.stdout.splitlines():
        kind, name = line.split(",")[:2]
        subprocess.run(["lxc", "storage", "volume", "delete", pool, f"{kind}/{name}"], capture_output=True)
    subprocess.run(["lxc", "storage", "delete", pool], check=True, capture_output=True)
