"""`distrilab up/inspect/plan/down` of a real 3-node lab on the shared LXD daemon, with every
stage whose builder module exists (the others are skipped by the stack with a warning)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cdk.errors import LabFileError
from stacks import cli
from stacks.paths import REPO_ROOT, Paths
from stacks.terraform import cdktf_env
from tests.ci import skip_unless_ci
from tests.e2e.conftest import report
from tests.json_schema import valid_document

LAB = "dlstk-live"
#: pools tried in order: the test must not collide with labs other people run on this host
POOL_BASES = (244, 224, 228, 236, 248)
NODES = {f"dl-{LAB}-{n}" for n in ("leaf-01", "spine-01", "srv-01-01", "srv-01-02")}


def lab_file(folder: Path) -> Path:
    """A Python lab file on the first set of pools this host does not route yet."""
    from cdk.pipeline import lab_from_dict

    for base in POOL_BASES:
        data = {
            "name": LAB,
            "topology": {"kind": "leaf-spine", "spines": 1, "leaves": 1, "servers_per_leaf": 2},
            "addressing": {
                "management": f"10.{base}.0.0/16",
                "loopbacks": f"10.{base + 1}.0.0/16",
                "p2p": f"10.{base + 2}.0.0/16",
                "servers": f"10.{base + 3}.0.0/16",
            },
            "resources": {"defaults": {"memory": "128MiB"}},
        }
        try:
            lab_from_dict(data, source="test_real_lab")
        except LabFileError:
            continue
        path = folder / f"{LAB}.py"
        path.write_text(
            f"from cdk.pipeline import lab_from_dict\n\nLAB = lab_from_dict({data!r}, source={str(path)!r})\n"
        )
        return path
    skip_unless_ci("no free address pools on this host")


def labelled(kind: str) -> list[str]:
    """Names of the LXD objects of a kind ("instance", "network", "profile") labelled with LAB."""
    command = ["lxc", "list"] if kind == "instance" else ["lxc", kind, "list"]
    proc = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, check=True)
    return [
        o["name"] for o in json.loads(proc.stdout) if o.get("config", {}).get("user.distrilab.lab") == LAB
    ]


@pytest.fixture
def live_lab(tmp_path: Path) -> Path:
    path = lab_file(tmp_path)
    cli.main(["down", str(path)])  # leftovers of an interrupted earlier run
    yield path
    cli.main(["down", str(path)])
    Paths.for_repo().state_file(LAB).unlink(missing_ok=True)


@pytest.mark.e2e
def test_up_inspect_plan_down(live_lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # connectivity is `distrilab check`'s own test (tests/e2e); this one is about the terraform flow
    assert cli.main(["up", "--no-check", str(live_lab)]) == 0
    capsys.readouterr()
    assert cli.main(["inspect", "--json", str(live_lab)]) == 0
    nodes = valid_document(capsys.readouterr().out, "distrilab-inspect")["nodes"]
    assert {n["node"]: n["state"] for n in nodes} == {
        "leaf-01": "Running",
        "spine-01": "Running",
        "srv-01-01": "Running",
        "srv-01-02": "Running",
    }
    assert cli.main(["plan", str(live_lab)]) == 0
    assert "no changes" in capsys.readouterr().out  # a second apply would do nothing

    assert set(labelled("instance")) >= NODES and labelled("network")
    assert cli.main(["down", str(live_lab)]) == 0
    assert labelled("instance") == [] and labelled("network") == [] and labelled("profile") == []
    state = json.loads(Paths.for_repo().state_file(LAB).read_text())
    assert state["resources"] == []


@pytest.mark.e2e
@pytest.mark.skipif(
    not (REPO_ROOT / "node_modules" / ".bin" / "cdktf").exists() and not os.environ.get("CI"),
    reason="node_modules absent (run `npm ci`); CI always runs this",
)
def test_npx_cdktf_deploy_and_distrilab_share_state(
    live_lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the README's environment, on a machine whose TF_CLI_CONFIG_FILE names a missing file
    env = cdktf_env({"DISTRILAB_LAB": str(live_lab), "TF_CLI_CONFIG_FILE": "/nonexistent/distrilab.tfrc"})
    npx = shutil.which("npx")
    assert npx, "npx is missing: install node 20 and npm"
    deploy = subprocess.run(
        # the stack named: a shared work tree's cdktf.out may hold another lab's manifest
        [npx, "--no-install", "cdktf", "deploy", LAB, "--auto-approve"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert deploy.returncode == 0, report(deploy)
    assert set(labelled("instance")) >= NODES
    capsys.readouterr()
    assert cli.main(["plan", str(live_lab)]) == 0  # distrilab sees npx's state: nothing to do
    assert "no changes" in capsys.readouterr().out
    assert cli.main(["down", str(live_lab)]) == 0
    assert labelled("instance") == [] and labelled("network") == []
