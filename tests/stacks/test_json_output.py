"""Every reporting command's --json: one document on stdout, of its kind, valid against its schema
(docs/schemas); the commands that need a live lab are validated in their e2e tests (inspect and
plan: tests/stacks/test_real_lab.py, test_up_down.py; check and plan's drift: tests/e2e/test_fabric.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from modules.check import CheckResult, Report
from stacks import cli
from stacks.json_output import SCHEMA_DIR, VERSIONS, document, schema_file
from tests.json_schema import valid_document

REPO = Path(__file__).resolve().parents[2]


def test_every_command_has_a_valid_schema_and_no_schema_is_orphaned() -> None:
    expected = {schema_file(f"distrilab-{command}", version) for command, version in VERSIONS.items()}
    assert set(SCHEMA_DIR.glob("*.json")) == expected
    for path in expected:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["properties"]["kind"]["const"] == path.name.split(".v")[0]


def default_lab_without_pools(folder: Path) -> Path:
    """labs/default.yaml leaving its pools to the lab: it loads whatever other lab runs here (the
    shipped file sets 10.210.0.0/16, which a running lab of that range refuses)."""
    data = yaml.safe_load((REPO / "labs" / "default.yaml").read_text())
    data["addressing"] = {"mtu": data["addressing"]["mtu"]}
    path = folder / "default.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "--json", str(default_lab_without_pools(tmp_path))]) == 0
    doc = valid_document(capsys.readouterr().out, "distrilab-validate")
    assert doc["lab"] == "default" and doc["nodes"] == sum(doc["roles"].values())
    assert doc["hosts"] == [{"name": "local", "kind": "local", "nodes": doc["nodes"]}]
    assert set(doc["pools"]) == {"management", "loopbacks", "p2p", "servers"}


def test_graph_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = default_lab_without_pools(tmp_path)
    assert cli.main(["graph", "--json", "--outdir", str(tmp_path / "out"), str(lab)]) == 0
    doc = valid_document(capsys.readouterr().out, "distrilab-graph")
    assert all(Path(f).is_file() for f in doc["files"])
    tiers = {n["role"]: n["tier"] for n in doc["nodes"]}
    assert tiers["spine"] < tiers["leaf"] < tiers["server"]
    assert not any(link["cross_host"] for link in doc["links"])  # one host


def test_image_list_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    layer = tmp_path / "abc123"
    layer.mkdir()
    (layer / "build.json").write_text(json.dumps({
        "name": "switch", "hash": "abc123", "parent": "base-1", "build_seconds": 12.5, "skipped": []}))
    monkeypatch.setenv("DISTRILAB_CACHE", str(tmp_path))
    assert cli.main(["image", "list", "--json"]) == 0
    doc = valid_document(capsys.readouterr().out, "distrilab-image-list")
    assert doc["cache"] == str(tmp_path)
    assert [(x["name"], x["has_recipe"], x["packed_mb"]) for x in doc["layers"]] == [("switch", True, None)]


def test_check_document_and_its_schema_refuses_a_malformed_one() -> None:
    report = Report("lab1", [CheckResult("ping", False, "1 of 2 pairs unreachable", 1.5,
                                         ["a -> b"], {"pairs": [["a", "b"]]})])
    doc = valid_document(json.dumps(document("check", report.to_dict())), "distrilab-check")
    assert doc["ok"] is False
    del doc["checks"][0]["seconds"]
    with pytest.raises(AssertionError, match="seconds"):
        valid_document(json.dumps(doc), "distrilab-check")
