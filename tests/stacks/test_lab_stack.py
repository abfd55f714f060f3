"""Synth assertions: resources per (stage, host), provisioner commands, ordering, hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cdktn
import pytest

from cdk.model import Lab, StateBackend
from cdk.stages import Stage
from stacks.lab_stack import LabStack, stage_specs
from stacks.paths import Paths
from tests.stacks.conftest import fresh_app, resources_of
from tests.stacks.fixture_stages import FIXTURE_STAGES, MODULE


def synth(lab: Lab, paths: Paths, stages: tuple[Stage, ...] = FIXTURE_STAGES) -> dict:
    app = fresh_app()
    stack = LabStack(app, lab, paths, stages=stages)
    return json.loads(cdktn.Testing.synth(stack))


def test_one_resource_per_stage_and_host_plus_anchor_and_sweep(two_host_lab: Lab, paths: Paths) -> None:
    resources = resources_of(synth(two_host_lab, paths))
    assert len(resources) == len(FIXTURE_STAGES) * len(two_host_lab.hosts) + 2
    assert set(resources) == {"lab", "sweep", "markers_a", "markers_b", "manifest_a", "manifest_b"}
    assert resources["markers_a"]["input"]["stage"] == "markers"
    assert resources["markers_b"]["input"]["host"] == "b"


def test_builder_returning_none_gives_no_resource(paths: Paths) -> None:
    from bench.labgen import leaf_spine_lab

    lab = leaf_spine_lab("dlstk-t", hosts=("a", "b", "c", "d", "e", "f", "g"))
    resources = resources_of(synth(lab, paths))
    assert "markers_g" not in resources  # 6 nodes on 7 hosts: g holds none
    assert "manifest_g" in resources


def test_provisioner_commands(two_host_lab: Lab, paths: Paths) -> None:
    resource = resources_of(synth(two_host_lab, paths))["markers_a"]
    create, destroy = (p["local-exec"] for p in resource["provisioner"])
    digest = resource["input"]["hash"]
    spec = paths.specs_dir / "dlstk-t" / f"markers@a-{digest[:12]}.json"
    assert create["command"] == (
        f"{paths.python} -m {MODULE} apply --spec {spec} "
        f"--generation ${{self.id}} --state-dir {paths.state_dir}"
    )
    assert "when" not in create
    assert destroy["when"] == "destroy"
    # destroy reads the spec the resource was created from, whatever the current config says
    destroy_spec = paths.specs_dir / "dlstk-t" / "markers@a-${substr(self.input.hash, 0, 12)}.json"
    assert destroy["command"] == (
        f"{paths.python} -m {MODULE} destroy --spec {destroy_spec} --generation ${{self.id}} "
        f"--state-dir {paths.state_dir}"
    )
    for provisioner in (create, destroy):
        assert provisioner["working_dir"] == str(paths.repo)
        assert provisioner["environment"]["PYTHONPATH"] == str(paths.repo)


def test_anchor_has_no_provisioner_and_never_changes(two_host_lab: Lab, paths: Paths) -> None:
    anchor = resources_of(synth(two_host_lab, paths))["lab"]
    assert "provisioner" not in anchor
    assert anchor["input"] == {"lab": "dlstk-t"}
    assert "triggers_replace" not in anchor


def test_sweep_runs_on_destroy_only_from_the_spec_it_last_had(two_host_lab: Lab, paths: Paths) -> None:
    sweep = resources_of(synth(two_host_lab, paths))["sweep"]
    (only,) = sweep["provisioner"]
    assert only["local-exec"]["when"] == "destroy"
    spec_file = paths.specs_dir / "dlstk-t" / "sweep@all-${substr(self.input.hash, 0, 12)}.json"
    assert only["local-exec"]["command"] == f"{paths.python} -m modules.sweep destroy --spec {spec_file}"
    digest = sweep["input"]["hash"]
    assert sweep["input"] == {"lab": "dlstk-t", "hash": digest}
    # never replaced: a changed spec is an in-place update, which runs no provisioner
    assert "triggers_replace" not in sweep and "lifecycle" not in sweep
    spec = json.loads((paths.specs_dir / "dlstk-t" / f"sweep@all-{digest[:12]}.json").read_text())
    assert spec["cluster"]["name"] == "a" and [h["name"] for h in spec["hosts"]] == ["a", "b"]


def test_depends_on_follows_stage_order(two_host_lab: Lab, paths: Paths) -> None:
    resources = resources_of(synth(two_host_lab, paths))
    assert "depends_on" not in resources["lab"]
    assert resources["sweep"]["depends_on"] == ["terraform_data.lab"]  # no cluster stage here
    for host in ("a", "b"):
        assert resources[f"markers_{host}"]["depends_on"] == ["terraform_data.sweep"]
        assert resources[f"manifest_{host}"]["depends_on"] == [
            "terraform_data.markers_a",
            "terraform_data.markers_b",
        ]


def test_the_sweep_comes_after_the_cluster_stage_and_before_the_others(paths: Paths) -> None:
    """Destroyed in reverse: every stage first, then the sweep, then the cluster stage (which may
    dissolve the cluster the sweep talks to)."""
    import cdk.stages
    from bench.labgen import leaf_spine_lab

    lab = leaf_spine_lab("dlstk-t", hosts=("a", "b"))
    resources = resources_of(synth(lab, paths, cdk.stages.STAGES[:3]))
    assert resources["sweep"]["depends_on"] == ["terraform_data.cluster_a", "terraform_data.cluster_b"]
    assert resources["images_a"]["depends_on"] == ["terraform_data.sweep"]
    assert resources["cluster_a"]["depends_on"] == ["terraform_data.lab"]


def test_create_before_destroy_and_triggers(two_host_lab: Lab, paths: Paths) -> None:
    app = fresh_app()
    stack = LabStack(app, two_host_lab, paths, stages=FIXTURE_STAGES)
    synthesized = cdktn.Testing.synth(stack)
    for s in stack.specs:
        assert cdktn.Testing.to_have_resource_with_properties(
            synthesized,
            "terraform_data",
            {
                "lifecycle": {"create_before_destroy": True},
                "triggers_replace": [s.hash],
                "input": {"stage": s.stage.name, "host": s.host, "hash": s.hash},
            },
        )


def test_hash_is_sha256_of_the_written_canonical_spec(two_host_lab: Lab, paths: Paths) -> None:
    resources = resources_of(synth(two_host_lab, paths))
    digest = resources["manifest_b"]["input"]["hash"]
    text = (paths.specs_dir / "dlstk-t" / f"manifest@b-{digest[:12]}.json").read_text().strip()
    assert hashlib.sha256(text.encode()).hexdigest() == digest
    assert json.loads(text) == {
        "files": {"mtu": "1450"},
        "host": "b",
        "lab": "dlstk-t",
        "max_workers": None,
        "workers_limit": None,
        "root": json.loads(text)["root"],
        "stage": "manifest",
    }


def test_hash_changes_when_and_only_when_the_stage_spec_changes(two_host_lab: Lab, paths: Paths) -> None:
    def hashes(lab: Lab) -> dict[str, str]:
        return {
            name: r["input"]["hash"] for name, r in resources_of(synth(lab, paths)).items() if name != "lab"
        }

    before = hashes(two_host_lab)
    assert hashes(two_host_lab) == before  # deterministic
    # the MTU feeds only the manifest stage
    new_mtu = dataclasses.replace(two_host_lab.addressing, mtu=9000)
    after = hashes(dataclasses.replace(two_host_lab, addressing=new_mtu))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"manifest_a", "manifest_b"}
    # moving one node from host a to b changes the markers of both hosts, not the manifests
    assignment = {**two_host_lab.placement.assignment, "leaf-01": "b"}
    moved = dataclasses.replace(two_host_lab.placement, assignment=assignment)
    after = hashes(dataclasses.replace(two_host_lab, placement=moved))
    assert {name for name in before if before[name] != after[name]} == {"markers_a", "markers_b"}


def test_spec_files_survive_resynth_content_addressed(two_host_lab: Lab, paths: Paths) -> None:
    synth(two_host_lab, paths)
    new_mtu = dataclasses.replace(two_host_lab.addressing, mtu=9000)
    synth(dataclasses.replace(two_host_lab, addressing=new_mtu), paths)
    names = sorted(p.name.split("-")[0] for p in (paths.specs_dir / "dlstk-t").glob("manifest@*.json"))
    assert names == ["manifest@a", "manifest@a", "manifest@b", "manifest@b"]  # old and new kept


def test_broken_import_inside_a_builder_is_raised(two_host_lab: Lab, tmp_path: Path) -> None:
    stages = (Stage("broken", "modules.x", "tests.stacks.fixture_stages.broken_builder"),)
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        stage_specs(two_host_lab, stages)


def test_inventory_output(two_host_lab: Lab, paths: Paths) -> None:
    value = synth(two_host_lab, paths)["output"]["inventory"]["value"]
    # terraform reads the inventory from a content-addressed file (terraform output shows it: e2e)
    (inventory_file,) = (paths.specs_dir / "dlstk-t").glob("inventory-*.json")
    assert value == f'${{jsondecode(file("{inventory_file}"))}}'
    inventory = json.loads(inventory_file.read_text())
    assert set(inventory["hosts"]) == {"a", "b"}
    server = inventory["nodes"]["srv-01-01"]
    assert server["role"] == "server" and server["kind"] == "server" and server["image"] == "server"
    assert server["host"] == two_host_lab.placement.assignment["srv-01-01"]
    assert server["addresses"]["management"] == two_host_lab.addressing.management["srv-01-01"]
    assert server["fabric"] == ["eth1=10.213.0.2/16"]
    assert inventory["nodes"]["spine-01"]["addresses"]["loopback"].endswith("/32")


def test_backend_is_cdktf_default_state_file(two_host_lab: Lab, paths: Paths) -> None:
    backend = synth(two_host_lab, paths)["terraform"]["backend"]
    assert backend == {"local": {"path": str(paths.state_root / "terraform.dlstk-t.tfstate")}}


def test_the_default_backend_is_the_local_state_file(two_host_lab: Lab, paths: Paths) -> None:
    backend = synth(two_host_lab, paths)["terraform"]["backend"]
    assert backend == {"local": {"path": str(paths.state_file(two_host_lab.name))}}


def test_the_pg_backend_names_its_schema_and_writes_no_connection_string(two_host_lab: Lab,
                                                                          paths: Paths) -> None:
    lab = dataclasses.replace(two_host_lab, state=StateBackend("pg", "5s"))
    assert synth(lab, paths)["terraform"]["backend"] == {"pg": {"schema_name": "distrilab_dlstk_t"}}
    named = dataclasses.replace(lab, state=StateBackend("pg", "5s", {"schema_name": "team_labs"}))
    assert synth(named, paths)["terraform"]["backend"] == {"pg": {"schema_name": "team_labs"}}


def test_the_s3_backend_locks_with_a_lockfile_unless_given_a_dynamodb_table(two_host_lab: Lab,
                                                                            paths: Paths) -> None:
    settings = {"bucket": "labs", "region": "eu-west-1"}
    lab = dataclasses.replace(two_host_lab, state=StateBackend("s3", "60s", settings))
    assert synth(lab, paths)["terraform"]["backend"] == {"s3": {
        "bucket": "labs", "key": "distrilab/dlstk-t.tfstate", "region": "eu-west-1", "use_lockfile": True}}
    table = dataclasses.replace(lab, state=StateBackend("s3", "60s", {
        "bucket": "labs", "key": "x/y.tfstate", "dynamodb_table": "locks", "endpoint": "http://127.0.0.1:9000"}))
    s3 = synth(table, paths)["terraform"]["backend"]["s3"]
    assert s3["dynamodb_table"] == "locks" and "use_lockfile" not in s3 and s3["key"] == "x/y.tfstate"
    assert s3["endpoints"] == {"s3": "http://127.0.0.1:9000"} and s3["use_path_style"] is True
