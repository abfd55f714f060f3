"""The controller stage: its section's validation, its spec, and the reconciler's pure planning."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdk.errors import DistrilabError, LabFileError
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from cdk.stages import controller as stage
from modules import controller
from tests.modules.plan_cases import HERE, check_case

SCENARIO = "name: t\nports_per_subnet: 2\nnodes: {count: 2, ports_per_node: 1}\n"


def make_lab(tmp_path: Path, section: Any, alcor: Any = "default") -> Lab:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    data = {
        "name": "uc1",
        "topology": {"kind": "linear", "switches": 1, "servers_per_switch": 2},
        "images": {"server": "aca"},
        "alcor": alcor,
        "controller": section,
    }
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(data))
    return lab_from_dict(data, str(tmp_path / "lab.yaml"), host_routes=[])


def test_spec_targets_the_gateway_and_binds_to_the_aca_nodes(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, {"scenario": "s.yaml", "endpoints": {"node_manager": "node"}})
    spec = stage.build(lab, lab.hosts[0])
    assert spec is not None
    assert spec["mode"] == "container" and spec["instance"] == "dl-uc1-controller"
    assert spec["scenario"] == str(tmp_path / "s.yaml")
    assert spec["target_url"].endswith(":9009") and spec["endpoints"]["node_manager"].endswith(":9007")
    assert [n["name"] for n in spec["nodes"]] == ["srv-01-01", "srv-01-02"]
    assert spec["reports_dir"] == ".distrilab/reports/uc1"


def test_no_section_no_stage(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, None)
    assert stage.build(lab, lab.hosts[0]) is None


@pytest.mark.parametrize(
    ("section", "alcor", "expected"),
    [
        ({"scenario": "s.yaml", "mode": "vm"}, "default", "controller.mode: must be one of container, host"),
        ({"scenario": "s.yaml", "target": "nosuch"}, "default", "controller.target: must be one of the"),
        ({"scenario": "s.yaml", "endpoints": {"dns": "vpc"}}, "default", "controller.endpoints.dns: unknown"),
        ({"scenario": "s.yaml", "timeout": 1}, "default", "controller.timeout: must be a whole number"),
        ({}, "default", "controller.scenario: must be the path of a load-test scenario file"),
        ({"scenario": "s.yaml"}, None, "controller: needs Alcor"),
    ],
)
def test_bad_sections(tmp_path: Path, section: Any, alcor: Any, expected: str) -> None:
    # the pipeline validates the section when the lab is loaded, before any stage is built
    with pytest.raises(LabFileError) as info:
        make_lab(tmp_path, section, alcor)
    assert expected in str(info.value)


@pytest.fixture()
def spec(tmp_path: Path) -> controller.Spec:
    lab = make_lab(tmp_path, {"scenario": "s.yaml", "mode": "host"})
    data = stage.build(lab, lab.hosts[0])
    assert data is not None
    return controller.load({**data, "reports_dir": str(tmp_path / "reports")})


MACS = {"srv-01-01": "00:16:3e:00:00:01", "srv-01-02": "00:16:3e:00:00:02"}


def observed(spec: controller.Spec, record: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"instances": {}, "image": None, "scenario": SCENARIO, "macs": dict(MACS), "record": record}


def test_first_apply_runs_and_a_matching_record_means_no_changes(spec: controller.Spec) -> None:
    [action] = controller.ControllerReconciler().plan(spec, observed(spec))
    assert (action.verb, action.target) == ("run", "host")
    record = {**action.data["key"], "exit": 0}
    assert controller.ControllerReconciler().plan(spec, observed(spec, record)) == []
    failed = {**record, "exit": 1}
    assert [a.verb for a in controller.ControllerReconciler().plan(spec, observed(spec, failed))] == ["run"]


def test_scenario_nodes_become_the_registered_aca_nodes(spec: controller.Spec) -> None:
    [action] = controller.ControllerReconciler().plan(spec, observed(spec))
    data = yaml.safe_load(action.data["scenario"])
    assert data["nodes"]["ports_per_node"] == 1
    assert [(n["name"], n["mac"]) for n in data["nodes"]["list"]] == sorted(MACS.items())
    assert data["nodes"]["list"][0]["id"] == spec.nodes[0]["node_id"]
    assert (
        action.data["key"]["scenario_sha256"] == hashlib.sha256(action.data["scenario"].encode()).hexdigest()
    )


def test_the_run_keeps_the_labs_registrations_and_would_send_the_same_ones(spec: controller.Spec) -> None:
    from modules.alcor import AcaNode, host_info
    from modules.loadgen.plan import build_plan
    from modules.loadgen.scenario import parse_scenario

    [action] = controller.ControllerReconciler().plan(spec, observed(spec))
    scenario = parse_scenario(yaml.safe_load(action.data["scenario"]), "derived")
    assert all(node.registered for node in scenario.nodes)
    # the node manager replaces a node by id (NodeServiceImpl.createNodeInfo): the run registers none
    assert build_plan(scenario, "r1").count("register_node") == 0
    for node, entry in zip(scenario.nodes, spec.nodes, strict=True):
        lab = host_info(AcaNode(**entry), MACS[node.name])
        assert node.host_info(entry["node_id"]) == lab  # one builder: field for field what the lab sent
        assert lab["data-path-ip"] == entry["data_path_ip"] != lab["local_ip"]


#: a real run's spec and observed state, captured by tests/e2e/test_alcor.py
RAN = HERE / "controller" / "ran.json"


def test_a_real_run_plans_nothing_until_its_inputs_change() -> None:
    check_case(controller.ControllerReconciler(), RAN)
    case = json.loads(RAN.read_text())
    reconciler = controller.ControllerReconciler()
    spec = reconciler.load_spec(case["spec"])
    changes = {
        "scenario": {"scenario": case["observed"]["scenario"].replace("rate: 20", "rate: 21")},
        "failed run": {"record": {**case["observed"]["record"], "exit": 1}},
        "recreated node": {"macs": {**case["observed"]["macs"], spec.nodes[0]["name"]: "00:16:3e:aa:bb:cc"}},
    }
    comment = {"scenario": case["observed"]["scenario"] + "# a comment changes no run\n"}
    assert reconciler.plan(spec, {**case["observed"], **comment}) == []
    assert "rate: 20" in case["observed"]["scenario"]
    for why, change in changes.items():
        actions = reconciler.plan(spec, {**case["observed"], **change})
        assert [a.verb for a in actions] == ["run"], why


def test_missing_mac_is_a_clear_error(spec: controller.Spec) -> None:
    seen = observed(spec)
    seen["macs"]["srv-01-02"] = None
    with pytest.raises(DistrilabError) as info:
        controller.ControllerReconciler().plan(spec, seen)
    assert "no MAC address for ACA node(s) srv-01-02" in str(info.value)


def test_container_mode_needs_its_image(spec: controller.Spec) -> None:
    container = controller.Spec(**{**spec.__dict__, "mode": "container"})
    with pytest.raises(DistrilabError) as info:
        controller.ControllerReconciler().plan(container, observed(container))
    assert "image alias dl-uc1-controller not found" in str(info.value)
    seen = {**observed(container), "image": "f" * 64}
    assert [a.verb for a in controller.ControllerReconciler().plan(container, seen)] == [
        "create-template",
        "create",
        "run",
    ]


def test_destroy_deletes_only_the_container(spec: controller.Spec) -> None:
    reconciler = controller.ControllerReconciler()
    seen = {**observed(spec), "instances": {"dl-uc1-controller": {"status": "Running", "config": {}}}}
    actions = reconciler.plan(reconciler.empty_spec(spec), seen)
    assert [(a.verb, a.target) for a in actions] == [("delete", "dl-uc1-controller")]


SHIPPED_IMPORT_CHECK = """
import importlib, sys
root = sys.argv[1]
# the checkout must not be reachable: only what the controller receives
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in getattr(f, "__name__", "").lower()]
sys.path[:] = [root] + [p for p in sys.path if p and "site-packages" in p or p.endswith(".zip")
                         or "/lib/python" in p]
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    assert module.__file__.startswith(root), (name, module.__file__)
"""


def test_the_files_sent_to_the_controller_import_on_their_own(tmp_path: Path) -> None:
    """Every shipped module imports with nothing but the shipped files (a hand-kept list once
    missed a `cdk` module the loadgen started to import, and the controller died at start)."""
    names = []
    for source, relative in controller._source_files():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        if relative.endswith(".py") and relative.split("/")[0] in {"cdk", "modules"}:
            names.append(relative.removesuffix(".py").removesuffix("/__init__").replace("/", "."))
    assert "modules.loadgen.__main__" in names and "cdk.errors" in names
    run = subprocess.run([sys.executable, "-I", "-c", SHIPPED_IMPORT_CHECK, str(tmp_path), *names],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
