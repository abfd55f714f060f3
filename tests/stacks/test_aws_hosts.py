"""Synth assertions for the AWS hosts of a lab (stacks/aws_hosts.py), offline.

The provider package (extra `aws`) is big: these tests skip when it is not installed, except in
CI (env CI set), where they must run. One synth serves most tests: the first import of the
provider costs 15-25 s. The lab without aws hosts is synthesized in a fresh interpreter, to
prove it never imports the provider.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cdktn
import pytest
import yaml

from cdk.aws import CLIENT_CERT_PATH, DEBIAN_OWNER, INIT_SCRIPT_PATH, READY_MARKER
from cdk.errors import DistrilabError
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from cdk.programs import packages
from stacks.aws_hosts import PROVIDER_PACKAGE, AwsHosts, add_aws_hosts
from stacks.paths import REPO_ROOT, Paths
from tests.stacks.conftest import fresh_app

HAVE_PROVIDER = importlib.util.find_spec(PROVIDER_PACKAGE) is not None
needs_provider = pytest.mark.skipif(
    not HAVE_PROVIDER and not os.environ.get("CI"),
    reason="cdktn-provider-aws is not installed (pip install -e '.[aws]'); CI installs it and runs these",
)

CERT = "-----BEGIN CERTIFICATE-----\nMIIBdistrilabtest\n-----END CERTIFICATE-----\n"
ADMIN = "198.51.100.7/32"
EXPLICIT_AMI = "ami-0123456789abcdef0"


def aws_lab_dict(**overrides: Any) -> dict[str, Any]:
    """A local host plus two aws hosts: one x86_64 with an explicit AMI, one Graviton without."""
    return {
        "name": "awst",
        "hosts": [
            {"name": "local", "kind": "local"},
            {
                "name": "aws-1",
                "kind": "aws",
                "aws": {
                    "region": "eu-west-1",
                    "availability_zone": "eu-west-1b",
                    "instance_type": "m6i.xlarge",
                    "ami": EXPLICIT_AMI,
                    "key_name": "lab-key",
                    "volume_size": 60,
                    "vpc_cidr": "172.31.0.0/16",
                    "admin_cidr": ADMIN,
                },
            },
            {
                "name": "aws-2",
                "kind": "aws",
                "aws": {"region": "eu-west-1", "instance_type": "m7g.large", "key_name": "lab-key"},
            },
        ],
        "topology": {"kind": "leaf-spine", "spines": 2, "leaves": 2, "servers_per_leaf": 1},
        **overrides,
    }


def make_lab(data: dict[str, Any]) -> Lab:
    return lab_from_dict(data, "labs/awst.yaml", host_routes=())


def synth_aws(lab: Lab) -> tuple[dict[str, Any], AwsHosts]:
    app = fresh_app()
    stack = cdktn.TerraformStack(app, lab.name)
    handles = add_aws_hosts(stack, lab, client_cert_pem=CERT)
    # how the lab stack wires them: the cluster stage waits for the instances, gets their addresses
    cdktn.TerraformResource(
        stack,
        "cluster_aws-1",
        terraform_resource_type="terraform_data",
        depends_on=handles.depends_on,
        provisioners=[
            cdktn.LocalExecProvisioner(
                type="local-exec",
                command="true",
                environment={
                    "DISTRILAB_ADDRESS": handles.public_addresses["aws-1"],
                    "DISTRILAB_PRIVATE_ADDRESS": handles.private_addresses["aws-1"],
                },
            )
        ],
    )
    return json.loads(cdktn.Testing.synth(stack)), handles


@pytest.fixture(scope="module")
def synthesized() -> tuple[dict[str, Any], AwsHosts]:
    return synth_aws(make_lab(aws_lab_dict()))


@pytest.fixture(scope="module")
def tf(synthesized: tuple[dict[str, Any], AwsHosts]) -> dict[str, Any]:
    return synthesized[0]


def resources(tf: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return tf["resource"].get(kind, {})


@needs_provider
def test_one_instance_per_aws_host(tf: dict[str, Any]) -> None:
    instances = resources(tf, "aws_instance")
    assert sorted(instances) == ["host_aws-1", "host_aws-2"]  # the local host gets none
    one, two = instances["host_aws-1"], instances["host_aws-2"]
    assert (one["instance_type"], one["ami"], one["key_name"]) == ("m6i.xlarge", EXPLICIT_AMI, "lab-key")
    assert two["ami"] == "${data.aws_ami.debian_arm64.id}"  # m7g is Graviton: Debian's arm64 image
    assert one["root_block_device"]["volume_size"] == 60
    assert two["root_block_device"]["volume_size"] == 40  # DEFAULT_VOLUME_SIZE
    for instance in instances.values():
        assert instance["subnet_id"] == "${aws_subnet.lab.id}"
        assert instance["vpc_security_group_ids"] == ["${aws_security_group.lab.id}"]
        assert instance["associate_public_ip_address"] is True
        assert instance["metadata_options"] == {"http_tokens": "required"}
        assert set(instance["depends_on"]) == {"aws_route.default", "aws_route_table_association.lab"}
    assert one["tags"] == {"Name": "dl-awst-aws-1", "distrilab:lab": "awst", "distrilab:owner": "aws_hosts"}


@needs_provider
def test_provider_network_and_debian_lookup(tf: dict[str, Any]) -> None:
    assert tf["provider"]["aws"] == [{"region": "eu-west-1"}]
    assert resources(tf, "aws_vpc")["lab"]["cidr_block"] == "172.31.0.0/16"
    subnet = resources(tf, "aws_subnet")["lab"]
    assert (subnet["cidr_block"], subnet["availability_zone"]) == ("172.31.0.0/24", "eu-west-1b")
    route = resources(tf, "aws_route")["default"]
    assert route == {
        "destination_cidr_block": "0.0.0.0/0",
        "gateway_id": "${aws_internet_gateway.lab.id}",
        "route_table_id": "${aws_route_table.lab.id}",
    }
    assert resources(tf, "aws_route_table_association")["lab"]["subnet_id"] == "${aws_subnet.lab.id}"
    # only the architectures without an explicit AMI are looked up
    amis = tf["data"]["aws_ami"]
    assert sorted(amis) == ["debian_arm64"]
    assert amis["debian_arm64"]["owners"] == [DEBIAN_OWNER]
    assert amis["debian_arm64"]["most_recent"] is True
    filters = {f["name"]: f["values"] for f in amis["debian_arm64"]["filter"]}
    assert filters["name"] == ["debian-12-arm64-*"]
    assert filters["architecture"] == ["arm64"]


@needs_provider
def test_security_group_rules(tf: dict[str, Any]) -> None:
    group = "${aws_security_group.lab.id}"
    assert resources(tf, "aws_security_group")["lab"]["vpc_id"] == "${aws_vpc.lab.id}"
    ingress = {
        (
            r["ip_protocol"],
            r["from_port"],
            r["to_port"],
            r.get("cidr_ipv4") or r["referenced_security_group_id"],
        )
        for r in resources(tf, "aws_vpc_security_group_ingress_rule").values()
    }
    assert ingress == {
        ("tcp", 22, 22, ADMIN),  # ssh from the admin only
        ("tcp", 8443, 8443, ADMIN),  # the reconcilers reach each LXD API from the admin machine
        ("tcp", 8443, 8443, group),  # LXD cluster traffic between the lab's hosts only
        ("udp", 4789, 4789, group),  # VXLAN between the lab's hosts only
    }
    assert all(
        r["security_group_id"] == group for r in resources(tf, "aws_vpc_security_group_ingress_rule").values()
    )
    egress = list(resources(tf, "aws_vpc_security_group_egress_rule").values())
    assert [(r["ip_protocol"], r["cidr_ipv4"]) for r in egress] == [("-1", "0.0.0.0/0")]


@needs_provider
def test_every_aws_object_carries_the_lab_tag(tf: dict[str, Any]) -> None:
    tagged = [
        (kind, name, body)
        for kind, items in tf["resource"].items()
        if kind.startswith("aws_")
        for name, body in items.items()
        if kind not in ("aws_route", "aws_route_table_association")
    ]
    assert len(tagged) == 2 + 1 + 1 + 1 + 1 + 1 + 4 + 1  # instances, vpc, subnet, igw, table, group, rules
    assert all(body["tags"]["distrilab:lab"] == "awst" for _, _, body in tagged), tagged


@needs_provider
def test_user_data_installs_lxd_and_raises_inotify_limits(tf: dict[str, Any], tmp_path: Path) -> None:
    user_data = resources(tf, "aws_instance")["host_aws-1"]["user_data"]
    assert user_data == resources(tf, "aws_instance")["host_aws-2"]["user_data"]
    assert user_data.startswith("#cloud-config\n")
    config = yaml.safe_load(user_data)
    files = {f["path"]: f for f in config["write_files"]}
    assert files[CLIENT_CERT_PATH]["content"] == CERT
    script = files[INIT_SCRIPT_PATH]["content"]
    assert files[INIT_SCRIPT_PATH]["permissions"] == "0755"
    assert config["runcmd"] == [[INIT_SCRIPT_PATH]]
    lines = script.splitlines()
    nft = lines.index("apt-get install -y -q --no-install-recommends nftables")
    # the same list as .ci/setup and the ssh bootstrap: one installer for every kind of host
    lxd = lines.index("apt-get install -y -q --no-install-recommends " + " ".join(packages(["host"])))
    assert nft < lxd  # nftables present before the LXD daemon first starts
    assert {"lxd", "lxd-client", "dnsmasq-base", "kmod"} <= set(lines[lxd].split())
    assert "fs.inotify.max_user_instances = 1024" in lines
    assert "fs.inotify.max_user_watches = 1048576" in lines
    assert "lxc config set core.https_address '[::]:8443'" in lines
    assert f"    lxc config trust add {CLIENT_CERT_PATH} --name distrilab" in lines
    assert "if id admin >/dev/null 2>&1; then adduser --quiet admin lxd; fi" in lines
    assert lines[-1] == f"date -u +%Y-%m-%dT%H:%M:%SZ > {READY_MARKER}"
    # the script must at least parse with the shell Debian runs it with
    path = tmp_path / "init.sh"
    path.write_text(script)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True).returncode == 0


@needs_provider
def test_outputs_and_handles_carry_the_addresses(synthesized: tuple[dict[str, Any], AwsHosts]) -> None:
    tf, handles = synthesized
    assert tf["output"]["aws_host_aws-2"]["value"] == {
        "instance_id": "${aws_instance.host_aws-2.id}",
        "private_ip": "${aws_instance.host_aws-2.private_ip}",
        "public_ip": "${aws_instance.host_aws-2.public_ip}",
    }
    assert handles and sorted(handles.instances) == ["aws-1", "aws-2"]
    assert sorted(handles.public_addresses) == sorted(handles.private_addresses) == ["aws-1", "aws-2"]
    stage = tf["resource"]["terraform_data"]["cluster_aws-1"]
    assert sorted(stage["depends_on"]) == ["aws_instance.host_aws-1", "aws_instance.host_aws-2"]
    assert stage["provisioner"][0]["local-exec"]["environment"] == {
        "DISTRILAB_ADDRESS": "${aws_instance.host_aws-1.public_ip}",
        "DISTRILAB_PRIVATE_ADDRESS": "${aws_instance.host_aws-1.private_ip}",
    }


@needs_provider
def test_default_admin_cidr_warns_and_opens_to_all(caplog: pytest.LogCaptureFixture) -> None:
    data = aws_lab_dict()
    del data["hosts"][1]["aws"]["admin_cidr"]
    with caplog.at_level(logging.WARNING, logger="stacks.aws_hosts"):
        tf, _ = synth_aws(make_lab(data))
    assert "answer 0.0.0.0/0; set aws.admin_cidr" in caplog.text
    ssh = resources(tf, "aws_vpc_security_group_ingress_rule")["ssh_admin"]
    assert ssh["cidr_ipv4"] == "0.0.0.0/0"
    # without an explicit AMI anywhere, each architecture present gets its Debian lookup
    data["hosts"][1]["aws"].pop("ami")
    tf, _ = synth_aws(make_lab(data))
    assert sorted(tf["data"]["aws_ami"]) == ["debian_arm64", "debian_x86_64"]


@needs_provider
def test_composes_with_the_lab_stack(tmp_path: Path) -> None:
    from stacks.lab_stack import LabStack
    from tests.stacks.fixture_stages import FIXTURE_STAGES

    lab = make_lab(aws_lab_dict())
    paths = Paths(
        repo=REPO_ROOT,
        python=Paths.for_repo().python,
        state_dir=tmp_path / "state",
        specs_dir=tmp_path / "specs",
        state_root=tmp_path,
    )
    app = fresh_app()
    stack = LabStack(app, lab, paths, stages=FIXTURE_STAGES, aws_client_cert=CERT)  # adds the hosts
    tf = json.loads(cdktn.Testing.synth(stack))
    assert "lab" in tf["resource"]["terraform_data"]
    assert len(tf["resource"]["aws_instance"]) == 2
    assert {"inventory", "aws_host_aws-1", "aws_host_aws-2"} <= set(tf["output"])


def test_inconsistent_code_built_lab_is_refused() -> None:
    from dataclasses import replace

    lab = make_lab(aws_lab_dict())
    hosts = list(lab.hosts)
    hosts[2] = replace(hosts[2], aws={**hosts[2].aws, "region": "us-east-1"})
    with pytest.raises(
        DistrilabError, match=r"aws.region differs between aws hosts \('us-east-1' and 'eu-west-1'\)"
    ):
        add_aws_hosts(fresh_app(), replace(lab, hosts=tuple(hosts)), client_cert_pem=CERT)


def test_lab_without_aws_hosts_adds_nothing_and_never_imports_the_provider() -> None:
    # a fresh interpreter: this test process may have imported the provider already
    code = textwrap.dedent(
        """
        import json, sys
        import cdktn
        from bench.labgen import leaf_spine_lab
        from stacks.aws_hosts import add_aws_hosts
        from tests.stacks.conftest import fresh_app
        app = fresh_app()
        stack = cdktn.TerraformStack(app, "plain")
        cdktn.TerraformResource(stack, "anchor", terraform_resource_type="terraform_data")
        handles = add_aws_hosts(stack, leaf_spine_lab("plain", hosts=("a", "b")))
        tf = json.loads(cdktn.Testing.synth(stack))
        print(json.dumps({
            "handles": bool(handles), "depends_on": handles.depends_on,
            "resources": sorted(tf["resource"]), "providers": sorted(tf.get("provider", {})),
            "imported": sorted(m for m in sys.modules if m.startswith("cdktn_provider_aws")),
        }))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "handles": False,
        "depends_on": [],
        "resources": ["terraform_data"],
        "providers": [],
        "imported": [],
    }
