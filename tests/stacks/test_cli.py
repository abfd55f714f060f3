"""The distrilab CLI: synth output identical to `npx cdktf synth`, error handling, graph, validate."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cdk.pipeline import load_lab
from stacks import cli
from stacks.paths import REPO_ROOT
from stacks.terraform import Terraform, cdktf_env

NODE_MODULES = REPO_ROOT / "node_modules" / ".bin" / "cdktf"


def python_lab(folder: Path, name: str, body: str | None = None) -> Path:
    path = folder / f"{name}.py"
    path.write_text(body or f"from bench.labgen import leaf_spine_lab\n\nLAB = leaf_spine_lab({name!r})\n")
    return path


def test_commands_are_discovered() -> None:
    parser = cli.build_parser()
    for name in ("validate", "synth", "plan", "up", "down", "inspect", "graph"):
        assert cli.has_subcommand(parser, name)
    assert not cli.has_subcommand(parser, "no-such-command")


def test_validate_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(python_lab(tmp_path, "dlstk-val"))]) == 0
    out = capsys.readouterr().out
    assert "lab dlstk-val, 6 nodes (2 leaf, 2 server, 2 spine)" in out


def test_a_saved_placement_is_replayed_by_the_file_strategy(tmp_path: Path) -> None:
    lab = tmp_path / "two.yaml"
    lab.write_text("name: two\ntopology: {kind: fat-tree, k: 4}\nhosts:\n"
                   "  - {name: a, kind: ssh, address: 192.0.2.10, capacity: 20}\n"
                   "  - {name: b, kind: ssh, address: 192.0.2.11, capacity: 20}\n")
    saved = tmp_path / "placement.json"
    assert cli.main(["validate", "--save-placement", str(saved), str(lab)]) == 0
    replay = tmp_path / "replay.yaml"
    replay.write_text(lab.read_text() + f"placement: {{strategy: file, file: {saved}}}\n")
    original, replayed = load_lab(lab), load_lab(replay)
    assert set(original.placement.assignment.values()) == {"a", "b"}
    assert replayed.placement.strategy == "file"
    assert replayed.placement.assignment == original.placement.assignment


def test_validate_checks_the_controllers_scenario_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "scenarios").mkdir()
    scenario = (REPO_ROOT / "labs" / "scenarios" / "small.yaml").read_text()
    (tmp_path / "scenarios" / "small.yaml").write_text(scenario.replace("rate: 100", "rate: -5"))
    lab = tmp_path / "alcor.yaml"
    lab.write_text((REPO_ROOT / "labs" / "alcor-small.yaml").read_text())
    assert cli.main(["validate", str(lab)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "scenarios" / "small.yaml") in err and "rate" in err


def test_bad_input_is_a_short_message_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml: no such lab file" in err and "Traceback" not in err
    bad = python_lab(tmp_path, "nolab", "X = 1\n")
    assert cli.main(["validate", str(bad)]) == 2
    assert "defines no lab (got NoneType)" in capsys.readouterr().err


def test_internal_error_writes_debug_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    buggy = python_lab(tmp_path, "buggy", "def lab():\n    return {}['missing-key-xyz']\n")
    assert cli.main(["validate", str(buggy)]) == 1
    err = capsys.readouterr().err
    assert "internal error, please report" in err and "KeyError" in err
    assert str(cli.DEBUG_LOG) in err
    log = cli.DEBUG_LOG.read_text()
    assert "missing-key-xyz" in log and "Traceback (most recent call last)" in log


def test_graph_writes_dot_svg_png(tmp_path: Path) -> None:
    assert cli.main(["graph", str(python_lab(tmp_path, "dlstk-g")), "--outdir", str(tmp_path / "g")]) == 0
    dot = (tmp_path / "g" / "dlstk-g.dot").read_text()
    assert '"spine-01" -- "leaf-01"' in dot  # edges start at the upper tier
    assert 'fillcolor="#c0392b"' in dot and "rank=same" in dot
    assert (tmp_path / "g" / "dlstk-g.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "g" / "dlstk-g.png").read_bytes()[:4] == b"\x89PNG"


def test_synthesized_lab_passes_terraform_validate_offline(tmp_path: Path) -> None:
    lab_file = python_lab(tmp_path, "dlstk-tfv")
    outdir = tmp_path / "out"
    assert cli.main(["synth", str(lab_file), "--outdir", str(outdir)]) == 0
    tf = Terraform(outdir / "stacks" / "dlstk-tfv")
    tf.init()
    assert [d for d in tf.validate() if d.severity == "error"] == []


@pytest.mark.skipif(
    not NODE_MODULES.exists() and not os.environ.get("CI"),
    reason="node_modules absent (run `npm ci`); CI always runs this",
)
def test_distrilab_synth_writes_what_npx_cdktf_synth_writes(tmp_path: Path) -> None:
    lab_file = python_lab(tmp_path, "dlstk-npx")
    stack_json = REPO_ROOT / "cdktf.out" / "stacks" / "dlstk-npx" / "cdk.tf.json"
    # the README's environment, on a machine whose TF_CLI_CONFIG_FILE names a missing file
    env = cdktf_env({"DISTRILAB_LAB": str(lab_file), "TF_CLI_CONFIG_FILE": "/nonexistent/distrilab.tfrc"})
    npx = shutil.which("npx")
    assert npx, "npx is missing: install node 20 and npm"
    proc = subprocess.run(
        [npx, "--no-install", "cdktf", "synth"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from_npx = stack_json.read_bytes()
    stack_json.unlink()
    assert cli.main(["synth", str(lab_file)]) == 0
    assert stack_json.read_bytes() == from_npx
