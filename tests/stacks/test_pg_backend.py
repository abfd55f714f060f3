"""The pg state backend against a real PostgreSQL (Debian's, started here in a private cluster):
two `distrilab up` of one lab from two checkouts at once both succeed, one after the other, and
leave one consistent state; a run that cannot get the lock in the lab's lock_timeout fails with a
message that says so, and changes nothing."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stacks.paths import REPO_ROOT
from stacks.terraform import Terraform, find_terraform, terraform_env
from tests.e2e.conftest import report

pytestmark = pytest.mark.e2e

#: what a checkout holds besides the code (each checkout gets its own, as two clones would)
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "node_modules", ".distrilab", "cdktf.out", "__pycache__",
                                    "terraform.*.tfstate*")
#: `distrilab` with the fixture stages (a real reconciler over a folder: no LXD nodes needed)
CLI = ("import sys, cdk.stages\n"
       "from tests.stacks.fixture_stages import FIXTURE_STAGES\n"
       "cdk.stages.STAGES = FIXTURE_STAGES\n"
       "from stacks import cli\n"
       "sys.exit(cli.main(sys.argv[1:]))\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A private PostgreSQL cluster on a free loopback port, trusted, removed afterwards."""
    version = sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]
    name, port = f"dl{secrets.token_hex(3)}", free_port()
    subprocess.run(["pg_createcluster", version, name, "-p", str(port), "--", "--auth=trust"],
                   check=True, capture_output=True)
    try:
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True)
        yield f"postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True)


def checkout(folder: Path) -> Path:
    shutil.copytree(REPO_ROOT, folder, ignore=NOT_COPIED)
    return folder


def lab_file(folder: Path, lab: str, lock_timeout: str) -> Path:
    path = folder / f"{lab}-{lock_timeout}.py"
    path.write_text(
        "import dataclasses\n"
        "from bench.labgen import leaf_spine_lab\n"
        "from cdk.model import StateBackend\n\n"
        f"LAB = dataclasses.replace(leaf_spine_lab({lab!r}, hosts=('a', 'b')),\n"
        f"                          state=StateBackend('pg', {lock_timeout!r}))\n"
    )
    return path


def distrilab(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=repo, capture_output=True, text=True,
                          timeout=600, env={**env, "PYTHONPATH": str(repo)})


def test_two_checkouts_share_one_locked_state(postgres: str, tmp_path: Path) -> None:
    lab = f"dlpg{secrets.token_hex(2)}"
    env = {**os.environ, "PG_CONN_STR": postgres, "DISTRILAB_TEST_ROOT": str(tmp_path / "files")}
    first, second = checkout(tmp_path / "a"), checkout(tmp_path / "b")
    waiting, impatient = lab_file(tmp_path, lab, "120s"), lab_file(tmp_path, lab, "2s")
    try:
        # both at once: terraform's lock on the pg state makes one wait for the other
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda repo: distrilab(repo, env, "up", "--no-check", str(waiting)),
                                 (first, second)))
        for run in runs:
            assert run.returncode == 0, report(run)
        assert "state pg schema distrilab_" in runs[0].stdout
        state = Terraform(first / ".distrilab" / "terraform" / lab, find_terraform(),
                          env={"PG_CONN_STR": postgres}).state_pull()
        assert {r["name"] for r in state["resources"]} == {
            "lab", "sweep", "markers_a", "markers_b", "manifest_a", "manifest_b"}
        assert all(len(r["instances"]) == 1 for r in state["resources"])  # no duplicate, no deposed

        # a run holding the lock (terraform waiting at its prompt) ...
        holder = subprocess.Popen(
            [*find_terraform().argv, "apply", "-replace=terraform_data.markers_a", "-lock-timeout=0s"],
            cwd=first / ".distrilab" / "terraform" / lab, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=terraform_env({"PG_CONN_STR": postgres}))
        try:
            assert holder.stdout is not None
            for line in holder.stdout:  # the lock is held once the plan is shown
                if "Enter a value" in line or "Do you want to perform these actions" in line:
                    break
            # ... makes a run with a short lock_timeout fail, saying why
            blocked = distrilab(second, env, "up", "--no-check", str(impatient))
        finally:
            holder.communicate("no\n", timeout=120)
        assert blocked.returncode != 0
        message = blocked.stdout + blocked.stderr
        assert "state of lab" in message and "is locked by another run" in message, report(blocked)
        assert "force-unlock" in message  # what to do if that run died
    finally:
        down = distrilab(first, env, "down", str(waiting))
    assert down.returncode == 0, report(down)
