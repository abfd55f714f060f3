"""The pure AWS helpers shared by the loader, the AWS construct and the pre-flight (cdk/aws.py)."""

from __future__ import annotations

import pytest

from cdk.aws import (
    DEFAULT_ADMIN_CIDR,
    DEFAULT_VOLUME_SIZE,
    DEFAULT_VPC_CIDR,
    architecture_of,
    aws_lab,
    debian_ami_pattern,
    is_standard_on_demand,
    subnet_of,
)
from cdk.pipeline import lab_from_dict, load_lab
from tests.cdk.golden import FAKE_HOST_ROUTES, LABS_DIR


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("m6i.xlarge", "x86_64"),
        ("c5.large", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("g4dn.xlarge", "x86_64"),  # the GPU family g, not Graviton
        ("m7g.large", "arm64"),
        ("c6gn.medium", "arm64"),
        ("t4g.micro", "arm64"),
        ("x2gd.large", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("im4gn.large", "arm64"),
        ("a1.large", "arm64"),  # Graviton 1
        ("u-6tb1.metal", "x86_64"),
    ],
)
def test_architecture_of(instance_type: str, architecture: str) -> None:
    assert architecture_of(instance_type) == architecture


@pytest.mark.parametrize(
    ("instance_type", "standard"),
    [
        ("m6i.xlarge", True),
        ("c5.large", True),
        ("t3.micro", True),
        ("r6g.large", True),
        ("z1d.large", True),
        ("i4i.large", True),
        ("inf2.xlarge", False),  # Inferentia has its own quota
        ("g5.xlarge", False),
        ("p4d.24xlarge", False),
        ("mac2.metal", False),
        ("dl1.24xlarge", False),
        ("trn1.2xlarge", False),
        ("hpc7g.4xlarge", False),
        ("x2iedn.xlarge", False),
        ("u-6tb1.metal", False),
    ],
)
def test_standard_on_demand_families(instance_type: str, standard: bool) -> None:
    assert is_standard_on_demand(instance_type) is standard


def test_subnet_and_ami_pattern() -> None:
    assert subnet_of("172.30.0.0/16") == "172.30.0.0/24"
    assert subnet_of("10.0.0.0/26") == "10.0.0.0/26"
    assert debian_ami_pattern("x86_64") == "debian-12-amd64-*"
    assert debian_ami_pattern("arm64") == "debian-12-arm64-*"


def test_shipped_aws_lab() -> None:
    settings = aws_lab(load_lab(LABS_DIR / "aws-2hosts.yaml", host_routes=FAKE_HOST_ROUTES))
    assert settings is not None
    assert (settings.region, settings.availability_zone) == ("eu-west-1", "eu-west-1a")
    assert (settings.vpc_cidr, settings.subnet_cidr) == ("172.30.0.0/16", "172.30.0.0/24")
    assert settings.admin_cidr == "203.0.113.7/32"
    assert [(h.name, h.instance_type, h.architecture, h.ami) for h in settings.hosts] == [
        ("aws-1", "m6i.xlarge", "x86_64", None),
        ("aws-2", "m6i.xlarge", "x86_64", None),
    ]
    assert settings.architectures == ("x86_64",)


def test_defaults_and_labs_without_aws() -> None:
    lab = lab_from_dict(
        {
            "name": "d",
            "hosts": [
                {"name": "c", "kind": "aws", "aws": {"region": "us-east-1", "instance_type": "t3.large"}}
            ],
            "topology": {"kind": "linear"},
        },
        host_routes=(),
    )
    settings = aws_lab(lab)
    assert settings is not None
    assert (settings.vpc_cidr, settings.admin_cidr) == (DEFAULT_VPC_CIDR, DEFAULT_ADMIN_CIDR)
    assert settings.hosts[0].volume_size == DEFAULT_VOLUME_SIZE
    assert settings.hosts[0].key_name is None
    assert aws_lab(lab_from_dict({"name": "p", "topology": {"kind": "linear"}}, host_routes=())) is None
