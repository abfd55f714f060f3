"""Drift detection before `up`/`plan`: which applied stages no longer match their hosts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modules.reconcile import Action
from stacks.drift import applied_hashes, find_drift


def real_state(tmp_path: Path, resources: dict[str, str]) -> Path:
    """A state file written by the real terraform for terraform_data resources with these hashes."""
    config = {
        "resource": {
            "terraform_data": {
                name: {"input": {"stage": name.split("_")[0], "host": "local", "hash": digest}}
                for name, digest in resources.items()
            }
        }
    }
    (tmp_path / "main.tf.json").write_text(json.dumps(config))
    env = {"CHECKPOINT_DISABLE": "1", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for args in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        subprocess.run(["terraform", *args], cwd=tmp_path, env=env, check=True, capture_output=True)
    return tmp_path / "terraform.tfstate"


def spec_row(stage: str, digest: str) -> tuple[str, str, str, str, str, dict[str, Any]]:
    return (f"terraform_data.{stage}_local", stage, f"modules.{stage}", "local", digest, {"stage": stage})


def test_applied_hashes_read_from_real_terraform_state(tmp_path: Path) -> None:
    state = real_state(tmp_path, {"nodes_local": "aaa", "links_local": "bbb"})
    assert applied_hashes(state) == {"terraform_data.nodes_local": "aaa", "terraform_data.links_local": "bbb"}
    assert applied_hashes(tmp_path / "missing.tfstate") == {}


def test_only_applied_unchanged_refreshable_stages_are_observed(tmp_path: Path) -> None:
    state = real_state(tmp_path, {"nodes_local": "aaa", "links_local": "bbb", "alcor_local": "ccc"})
    observed: list[str] = []

    def observe_plan(module: str, spec: dict[str, Any]) -> list[Action]:
        observed.append(module)
        if module == "modules.nodes":
            return [Action("create", "dl-x-srv-01", "missing")]
        return []

    drifts = find_drift(
        [
            spec_row("nodes", "aaa"),  # applied, unchanged, drifted on the host
            spec_row("links", "bbb"),  # applied, unchanged, converged
            spec_row("fabric", "new"),  # never applied: terraform creates it anyway
            spec_row("alcor", "ccc"),  # not refreshed: observing it means API calls
        ],
        state,
        observe_plan,
    )
    assert observed == ["modules.nodes", "modules.links"]
    assert [(d.address, d.stage) for d in drifts] == [("terraform_data.nodes_local", "nodes")]
    assert drifts[0].summary == "1 action(s): create dl-x-srv-01 (missing)"


def test_a_stage_that_cannot_be_observed_counts_as_drift(tmp_path: Path) -> None:
    state = real_state(tmp_path, {"nodes_local": "aaa"})

    def unreachable(module: str, spec: dict[str, Any]) -> list[Action]:
        raise ConnectionError("LXD socket not found")

    (drift,) = find_drift([spec_row("nodes", "aaa")], state, unreachable)
    assert "cannot observe: LXD socket not found" in drift.summary


def test_changed_desired_state_is_left_to_terraform(tmp_path: Path) -> None:
    state = real_state(tmp_path, {"nodes_local": "aaa"})
    called = pytest.fail  # observing a changed stage would be wasted work
    assert find_drift([spec_row("nodes", "changed")], state, lambda m, s: called("observed")) == []
