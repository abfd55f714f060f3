"""Synth assertions for the AWS wiring of the lab stack (stacks/lab_stack.py + stacks/aws_hosts.py).

labs/aws-2hosts.yaml through the real stage builders: the cluster stage of each aws host waits for
the instances and gets their addresses (environment, input, triggers_replace), since synth writes
the specs before the addresses exist. One synth serves most tests: the provider's first import
costs 15-25 s. A lab without aws hosts is synthesized in a fresh interpreter, to prove the stack
stays free of AWS and never imports the provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cdktn
import pytest
import yaml

from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from cdk.sweep import HOST_ADDRESSES_ENV
from stacks.lab_stack import (
    BOOTSTRAP_ADDRESS_ENV,
    HOST_ADDRESS_ENV,
    HOST_PRIVATE_ADDRESS_ENV,
    LabStack,
)
from stacks.paths import REPO_ROOT, Paths
from tests.stacks.conftest import fresh_app, resources_of
from tests.stacks.test_aws_hosts import CERT, needs_provider

AWS_LAB = REPO_ROOT / "labs" / "aws-2hosts.yaml"
BASE_ENV = {"PYTHONPATH", "PYTHONUNBUFFERED"}


def aws_two_hosts() -> Lab:
    # host_routes=(): the lab's pools are checked against this machine's routes only when loading
    # a file for real; here they must not depend on which labs happen to run on the test machine
    return lab_from_dict(yaml.safe_load(AWS_LAB.read_text()), str(AWS_LAB), host_routes=())


def public(host: str) -> str:
    return f"${{aws_instance.host_{host}.public_ip}}"


def private(host: str) -> str:
    return f"${{aws_instance.host_{host}.private_ip}}"


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("aws-stack")
    paths = Paths(
        repo=REPO_ROOT,
        python=Paths.for_repo().python,
        state_dir=root / "state",
        specs_dir=root / "specs",
        state_root=root,
        work_root=root / "terraform",
    )
    app = fresh_app()
    stack = LabStack(app, aws_two_hosts(), paths, aws_client_cert=CERT)
    data = json.loads(cdktn.Testing.synth(stack))
    data["specs_dir"] = str(paths.specs_dir / "aws2")
    return data


def environments(resource: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    create, destroy = (p["local-exec"] for p in resource["provisioner"])
    assert destroy["when"] == "destroy"
    return create["environment"], destroy["environment"]


@needs_provider
def test_cluster_stage_waits_for_the_instances_and_joiners_for_the_first_host(tf: dict[str, Any]) -> None:
    resources = resources_of(tf)
    instances = ["aws_instance.host_aws-1", "aws_instance.host_aws-2"]
    assert sorted(tf["resource"]["aws_instance"]) == ["host_aws-1", "host_aws-2"]
    assert resources["cluster_aws-1"]["depends_on"] == ["terraform_data.lab", *instances]
    # `lxc cluster add` on the first host hands out the join token: it must be bootstrapped first
    assert resources["cluster_aws-2"]["depends_on"] == [
        "terraform_data.lab",
        *instances,
        "terraform_data.cluster_aws-1",
    ]
    # the sweep, then later stages, wait for the cluster stage, not for the instances directly
    assert resources["sweep"]["depends_on"] == [
        "terraform_data.cluster_aws-1",
        "terraform_data.cluster_aws-2",
    ]
    assert resources["images_aws-1"]["depends_on"] == ["terraform_data.sweep"]


@needs_provider
def test_cluster_stage_gets_the_instance_addresses(tf: dict[str, Any]) -> None:
    resources = resources_of(tf)
    create, destroy = environments(resources["cluster_aws-1"])
    assert create[HOST_ADDRESS_ENV] == public("aws-1")
    assert create[HOST_PRIVATE_ADDRESS_ENV] == private("aws-1")
    assert BOOTSTRAP_ADDRESS_ENV not in create  # aws-1 is the first host: it bootstraps
    create, destroy = environments(resources["cluster_aws-2"])
    assert {k: v for k, v in create.items() if k not in BASE_ENV} == {
        HOST_ADDRESS_ENV: public("aws-2"),
        HOST_PRIVATE_ADDRESS_ENV: private("aws-2"),
        BOOTSTRAP_ADDRESS_ENV: public("aws-1"),  # the joiner fetches its token from the first host
    }
    # destroy-time provisioners may only reference `self`: the same values, through the input
    assert {k: v for k, v in destroy.items() if k not in BASE_ENV} == {
        name: f"${{self.input.addresses.{name}}}"
        for name in (HOST_ADDRESS_ENV, HOST_PRIVATE_ADDRESS_ENV, BOOTSTRAP_ADDRESS_ENV)
    }


@needs_provider
def test_a_replaced_instance_replaces_every_stage_of_its_host(tf: dict[str, Any]) -> None:
    # terraform_data re-runs its provisioners only when replaced: a changed `input` is an in-place
    # update (measured, terraform 1.11), so the addresses go into triggers_replace as well
    stage_resources = {k: v for k, v in resources_of(tf).items() if k not in ("lab", "sweep")}
    assert {k.rsplit("_", 1)[0] for k in stage_resources} == {"cluster", "images", "nodes", "links", "fabric"}
    for name, resource in stage_resources.items():
        host = resource["input"]["host"]
        addresses = resource["input"]["addresses"]
        assert addresses[HOST_ADDRESS_ENV] == public(host), name
        assert addresses[HOST_PRIVATE_ADDRESS_ENV] == private(host), name
        first, *rest = resource["triggers_replace"]
        assert (first, sorted(rest)) == (resource["input"]["hash"], sorted(addresses.values())), name
        create, _ = environments(resource)
        assert {k: v for k, v in create.items() if k not in BASE_ENV} == addresses, name


@needs_provider
def test_the_sweep_reaches_the_instances_through_its_input(tf: dict[str, Any]) -> None:
    sweep = resources_of(tf)["sweep"]
    assert sweep["input"]["addresses"] == {"aws-1": public("aws-1"), "aws-2": public("aws-2")}
    (only,) = sweep["provisioner"]
    assert only["local-exec"]["environment"][HOST_ADDRESSES_ENV] == "${jsonencode(self.input.addresses)}"


@needs_provider
def test_cross_host_links_name_the_hosts_whose_addresses_come_at_apply(tf: dict[str, Any]) -> None:
    digest = resources_of(tf)["links_aws-1"]["input"]["hash"]
    spec = json.loads((Path(tf["specs_dir"]) / f"links@aws-1-{digest[:12]}.json").read_text())
    tunnels = [link["vxlan"] for link in spec["links"] if link["vxlan"]]
    assert len(tunnels) == 2  # the lab's two cross-host links (placement: partition)
    for vxlan in tunnels:
        assert (vxlan["local"], vxlan["remote"]) == (None, None)
        assert (vxlan["local_host"], vxlan["remote_host"]) == ("aws-1", "aws-2")


def test_apply_runs_the_aws_preflight_before_terraform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws

    from modules.aws_preflight import AwsPreflightError
    from stacks import deploy

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    started: list[object] = []
    monkeypatch.setattr(deploy, "terraform", lambda *args: started.append(args))
    synthesized = deploy.Synthesized(
        aws_two_hosts(), tmp_path / "stack", tmp_path / "terraform", tmp_path / "state.tfstate", {}, ()
    )
    with mock_aws(), pytest.raises(AwsPreflightError) as raised:
        deploy.apply(synthesized)  # moto's empty account has no key pair 'distrilab'
    assert "distrilab" in str(raised.value)
    assert started == []  # terraform never ran


def test_the_stack_and_the_host_reconciler_agree_on_the_variable_names() -> None:
    from modules import lxd_host

    assert (HOST_ADDRESS_ENV, HOST_PRIVATE_ADDRESS_ENV, BOOTSTRAP_ADDRESS_ENV) == (
        lxd_host.HOST_ADDRESS_ENV,
        lxd_host.HOST_PRIVATE_ADDRESS_ENV,
        lxd_host.BOOTSTRAP_ADDRESS_ENV,
    )


def test_lab_without_aws_hosts_is_unchanged_and_never_imports_the_provider(tmp_path: Path) -> None:
    # a fresh interpreter: this test process may have imported the provider already
    code = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        import cdktn
        from bench.labgen import leaf_spine_lab
        from stacks.lab_stack import LabStack
        from stacks.paths import Paths
        from tests.stacks.conftest import fresh_app
        from tests.stacks.fixture_stages import FIXTURE_STAGES
        root = Path({str(tmp_path)!r})
        paths = Paths(repo=Path.cwd(), python=Paths.for_repo().python, state_dir=root / "state",
                      specs_dir=root / "specs", state_root=root, work_root=root / "terraform")
        app = fresh_app()
        stack = LabStack(app, leaf_spine_lab("plain", hosts=("a", "b")), paths, stages=FIXTURE_STAGES)
        print(json.dumps({{
            "tf": json.loads(cdktn.Testing.synth(stack)), "aws": bool(stack.aws),
            "imported": sorted(m for m in sys.modules if m.startswith("cdktn_provider_aws")),
        }}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["aws"], result["imported"]) == (False, [])
    tf = result["tf"]
    assert sorted(tf["resource"]) == ["terraform_data"]
    assert "provider" not in tf and sorted(tf["output"]) == ["inventory"]
    resources = resources_of(tf)
    assert resources["sweep"]["input"] == {"lab": resources["lab"]["input"]["lab"],
                                           "hash": resources["sweep"]["input"]["hash"]}  # no addresses
    assert set(resources["sweep"]["provisioner"][0]["local-exec"]["environment"]) == BASE_ENV
    for name, resource in resources.items():
        if name in ("lab", "sweep"):
            continue
        # the shape every stage resource had before aws hosts were wired in
        assert sorted(resource["input"]) == ["hash", "host", "stage"], name
        assert resource["triggers_replace"] == [resource["input"]["hash"]], name
        assert all(d.startswith("terraform_data.") for d in resource["depends_on"]), name
        for provisioner in resource["provisioner"]:
            assert set(provisioner["local-exec"]["environment"]) == BASE_ENV, name
