"""`distrilab load` and `python -m modules.loadgen` against the Alcor API double."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from modules.loadgen.__main__ import main as module_main
from stacks.cli import main as cli_main
from stacks.commands import load as load_command
from tests.doubles.alcor_api import AlcorApiDouble
from tests.json_schema import valid_document

SCENARIO = """
name: cli
vpcs_per_project: 1
subnets_per_vpc: 2
ports_per_subnet: 5
nodes: {count: 2}
rate: 200
steps: [create_segment_table, register_node, create_vpc, create_subnet, create_port, bind_port]
limits: {max_duration: 10, max_requests: 1000}
"""


def test_distrilab_load_prints_summary_and_writes_report(
    alcor: AlcorApiDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load_command, "console", Console(width=80))  # the table must fit 80 columns
    path = tmp_path / "cli.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "report"
    assert cli_main(["load", str(path), "--target", alcor.url, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    table = text[text.index(" step ") : text.index("latency in ms")]
    assert "ports" in table and "p99.9" in table and "report.json" in text
    assert "…" not in table and all(len(line) <= 80 for line in table.splitlines())
    doc = json.loads((out / "report.json").read_text())
    assert doc["totals"]["ok"] == 1 + 2 + 1 + 2 + 10 + 10


def test_distrilab_load_json_is_the_report_on_stdout(
    alcor: AlcorApiDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cli.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "report"
    assert cli_main(["load", "--json", str(path), "--target", alcor.url, "--out", str(out)]) == 0
    doc = valid_document(capsys.readouterr().out, "distrilab-load-report")  # nothing else on stdout
    assert doc["totals"] == json.loads((out / "report.json").read_text())["totals"]
    assert str(out / "report.json") in doc["files"]


def test_module_entry_point_exit_codes(
    alcor: AlcorApiDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate: -1\n")
    assert module_main([str(bad), "--target", alcor.url, "--out", str(tmp_path / "o")]) == 2
    assert "rate: must be a number" in capsys.readouterr().err

    good = tmp_path / "good.yaml"
    good.write_text(SCENARIO.replace("register_node, ", ""))  # bind_port to unknown nodes fails
    args = [str(good), "--target", alcor.url, "--out", str(tmp_path / "o"), "--quiet"]
    assert module_main(args) == 0
    assert module_main([*args, "--fail-on-errors"]) == 1
    assert "bind_port: http_5xx=10" in capsys.readouterr().out


def test_endpoint_override_routes_a_service(alcor: AlcorApiDouble, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("ports_per_subnet: 2\nsteps: [create_vpc, create_subnet, create_port]\n")
    # The target is unreachable; only the port manager override points at the double, so only
    # VPC creation is tried and fails (the rest is skipped): proves per-service routing.
    assert (
        module_main(
            [
                str(path),
                "--target",
                "http://127.0.0.1:9",
                "--out",
                str(tmp_path / "o"),
                "--quiet",
                "--endpoint",
                f"port_manager={alcor.url}",
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["endpoints"]["port_manager"] == alcor.url
    assert doc["steps"]["create_vpc"]["errors"]["unreachable"] == 1
    assert doc["steps"]["create_port"]["skipped"] == 2
