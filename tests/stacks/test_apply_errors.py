"""A failing reconciler's own error is what `up`/`down` show (real terraform), and drift checking
lets an earlier stage repair what stops a later stage's plan (a deleted image alias)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdk.errors import DistrilabError, TerraformError
from modules.reconcile import Action
from stacks.drift import find_drift
from stacks.terraform import Terraform, find_terraform, reconciler_error
from tests.stacks.test_drift import real_state, spec_row
from tests.stacks.test_terraform import echo, write_config


def test_reconciler_error_is_the_last_marked_report() -> None:
    out = ["Executing: [...]", "[nodes] plan: 1 action(s)", "error: first",
           "error: [nodes] 1 action(s) failed:", "  - create x (missing): boom", "  hint: do this"]
    expected = "[nodes] 1 action(s) failed:\n  - create x (missing): boom\n  hint: do this"
    assert reconciler_error(out) == expected
    assert reconciler_error(["[nodes] no changes"]) is None


def test_terraform_failure_shows_only_the_reconcilers_error(tmp_path: Path) -> None:
    script = echo("'[nodes] plan: 1 action(s)'", "'error: storage pool p is full'", "'  hint: free space'",
                  exit_code=1)
    folder = write_config(tmp_path / "cfg", {"nodes_local": {"input": "1", "provisioner": [script]}})
    tf = Terraform(folder, find_terraform())
    tf.init()
    with pytest.raises(TerraformError) as caught:
        tf.apply()
    text = str(caught.value)
    assert text == ("storage pool p is full\n  hint: free space\n"
                    "  (from terraform_data.nodes_local; terraform apply stopped there)")
    assert caught.value.provisioner_output["terraform_data.nodes_local"]  # the full output stays available


def test_a_stage_whose_plan_fails_after_a_drifted_stage_re_runs(tmp_path: Path) -> None:
    state = real_state(tmp_path, {"images_local": "aaa", "nodes_local": "bbb"})

    def observe_plan(module: str, spec: dict[str, Any]) -> list[Action]:
        if module == "modules.images":
            return [Action("alias", "dl-x-server", "missing")]
        raise DistrilabError("[nodes] image alias(es) dl-x-server not found on host local\n  hint: ...")

    drifts = find_drift([spec_row("images", "aaa"), spec_row("nodes", "bbb")], state, observe_plan)
    assert [d.stage for d in drifts] == ["images", "nodes"]
    assert "cannot plan before images@local re-runs: [nodes] image alias(es) dl-x-server" in drifts[1].summary

    # nothing before it re-runs: the error is the user's to act on
    with pytest.raises(DistrilabError, match="not found"):
        find_drift([spec_row("nodes", "bbb")], state, observe_plan)
