"""`distrilab up/plan/down` end to end: real terraform, real provisioners, real LXD for the sweep.

The stages are the fixture stages (a real reconciler over a folder), so the test exercises the
whole terraform flow (create, create-before-destroy replacement with generations, destroy, the
anchor's sweep) without depending on how far the LXD stages are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import cdk.stages
from modules.reconcile import WORKERS_ENV
from stacks import cli
from stacks.paths import Paths
from stacks.terraform import Terraform
from tests.json_schema import valid_document
from tests.stacks.fixture_stages import FIXTURE_STAGES

LAB = "dlstk-e2e"
PROFILE = f"dl-{LAB}-leftover"


def lab_file(folder: Path, mtu: int) -> Path:
    path = folder / f"{LAB}-{mtu}.py"
    path.write_text(
        "import dataclasses\n"
        "from bench.labgen import leaf_spine_lab\n\n"
        f"_lab = leaf_spine_lab({LAB!r}, hosts=('a', 'b'))\n"
        f"LAB = dataclasses.replace(_lab, addressing=dataclasses.replace(_lab.addressing, mtu={mtu}))\n"
    )
    return path


def lxc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=check)


def cleanup() -> None:
    lxc("profile", "delete", PROFILE, check=False)
    state = Paths.for_repo().state_file(LAB)
    for leftover in (state, state.with_name(state.name + ".backup")):
        leftover.unlink(missing_ok=True)


@pytest.fixture
def fixture_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(cdk.stages, "STAGES", FIXTURE_STAGES)
    cleanup()
    yield
    cleanup()


@pytest.mark.e2e
def test_up_replace_down(
    tmp_path: Path, files_root: Path, fixture_registry: None, capsys: pytest.CaptureFixture[str]
) -> None:
    first = lab_file(tmp_path, 1450)
    assert cli.main(["up", "--no-check", "--workers", "3", str(first)]) == 0
    out = capsys.readouterr().out
    folder = files_root / LAB
    # --workers reached every provisioner through terraform's environment, for this run only
    assert {p.read_text() for p in folder.glob("*.workers")} == {"3"}
    assert WORKERS_ENV not in os.environ
    assert (folder / "manifest@a" / "mtu").read_text() == "1450"
    assert sorted(p.name for p in (folder / "markers@a").iterdir()) == ["leaf-01", "spine-01", "srv-01-01"]
    assert "markers@a [files] create" in out.replace("\n", " ")  # reconciler lines streamed
    state = json.loads(Paths.for_repo().state_file(LAB).read_text())
    assert {r["name"] for r in state["resources"]} == {
        "lab",
        "sweep",
        "markers_a",
        "markers_b",
        "manifest_a",
        "manifest_b",
    }
    inventory = Terraform(Paths.for_repo().workdir(LAB)).output()["inventory"].value
    assert inventory["nodes"]["srv-02-01"]["host"] == "b"
    assert inventory["nodes"]["srv-02-01"]["instance"] == f"dl-{LAB}-srv-02-01"

    # `up` ends with the registered `check` command (here it fails: the fixture stages start no
    # containers) and returns its exit code
    if cli.has_subcommand(cli.build_parser(), "check"):
        check_code = cli.main(["check", str(first)])
        check_out = capsys.readouterr().out.strip().splitlines()
        assert cli.main(["up", str(first)]) == check_code
        assert check_out[0] in capsys.readouterr().out

    # nothing changed: plan says so
    assert cli.main(["plan", str(first)]) == 0
    assert "no changes" in capsys.readouterr().out

    # a new MTU replaces only the manifests (create before destroy); the new apply converges
    # the stage by itself: terraform runs no destroy provisioner for the deposed old object
    second = lab_file(tmp_path, 9000)
    assert cli.main(["plan", str(second)]) == 0
    table = capsys.readouterr().out
    assert "manifest" in table and "replace" in table and "markers" not in table
    assert cli.main(["plan", "--json", str(second)]) == 0
    planned = valid_document(capsys.readouterr().out, "distrilab-plan")
    assert {(c["stage"], c["action"]) for c in planned["changes"]} == {("manifest", "replace")}
    assert cli.main(["up", "--no-check", str(second)]) == 0
    out = capsys.readouterr().out
    assert "manifest@a [files] update mtu (drift: content)" in out
    assert "files destroy" not in out
    assert (folder / "manifest@a" / "mtu").read_text() == "9000"
    assert (folder / "manifest@b" / "mtu").read_text() == "9000"
    state = json.loads(Paths.for_repo().state_file(LAB).read_text())
    ids = {r["name"]: r["instances"][0]["attributes"]["id"] for r in state["resources"]}
    generation = Paths.for_repo().state_dir / LAB / "files@manifest@a.generation"
    assert generation.read_text().strip() == ids["manifest_a"]  # the new resource is current

    # something labelled with the lab that no stage owns: the sweep removes it after the stages
    lxc("profile", "create", PROFILE)
    lxc("profile", "set", PROFILE, "user.distrilab.lab", LAB)
    assert cli.main(["down", str(second)]) == 0
    out = capsys.readouterr().out
    assert not any(folder.glob("*/*")), "stage destroy left files behind"
    assert f"delete profile {PROFILE}" in out.replace("\n", " ")
    assert lxc("profile", "show", PROFILE, check=False).returncode != 0
    state = json.loads(Paths.for_repo().state_file(LAB).read_text())
    assert state["resources"] == []


@pytest.mark.e2e
def test_failed_stage_reports_reconciler_output(
    tmp_path: Path, files_root: Path, fixture_registry: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # the markers reconciler refuses the file named by FAIL_ON
    failing = dataclasses.replace(FIXTURE_STAGES[0], builder="tests.stacks.fixture_stages.failing")
    cdk.stages.STAGES = (failing,)
    path = lab_file(tmp_path, 1500)
    assert cli.main(["up", "--no-check", str(path)]) == 1
    err = capsys.readouterr().err
    # the reconciler's own words are the error, without terraform's wrapping of its whole output
    assert err.startswith("error: [files] 1 action(s) failed:") and "terraform apply stopped there" in err
    assert "refusing to write leaf-01 (FAIL_ON)" in err and "local-exec" not in err
    assert cli.main(["down", str(path)]) == 0
