"""The AWS pre-flight against moto's EC2, STS and Service Quotas (VPC quotas are moto's own).

moto's Service Quotas knows only the `vpc` service, so the EC2 vCPU quota comes from an injected
reader that answers L-1216C47A and passes every other quota to the real boto3 reader (moto).
AMIs: moto ships real Amazon Linux images of both architectures; "Debian" images are made with
CreateImage from an instance, under Debian's account id (MOTO_ACCOUNT_ID), so the owner filter
is exercised as in AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdk.aws import DEBIAN_OWNER, aws_lab
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from modules.aws_preflight import (
    VCPU_QUOTA,
    AwsPreflightError,
    Finding,
    QuotaReader,
    check,
    preflight,
    service_quota_reader,
)

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    """A moto account with fake credentials; nothing from the user's ~/.aws is read."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    # without keys, botocore would next ask the instance metadata service: never leave this machine
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def ec2(session: boto3.Session) -> Any:
    return session.client("ec2", region_name=REGION)


def amazon_image(session: boto3.Session, arch: str) -> str:
    """One of moto's stock Amazon Linux 2 images of `arch`."""
    images = ec2(session).describe_images(
        Owners=["amazon"],
        Filters=[{"Name": "architecture", "Values": [arch]}, {"Name": "name", "Values": ["amzn2-ami-hvm-*"]}],
    )["Images"]
    return sorted(i["ImageId"] for i in images)[0]


def vcpu_quota(session: boto3.Session, value: float | None) -> QuotaReader:
    real = service_quota_reader(session, REGION)
    return lambda service, code: value if (service, code) == VCPU_QUOTA else real(service, code)


def lab(**aws: Any) -> Lab:
    """Two aws hosts (m5.large, 2 vCPUs each) sharing `aws` settings."""
    settings = {"region": REGION, "instance_type": "m5.large", "key_name": "lab-key", **aws}
    return lab_from_dict(
        {
            "name": "pre",
            "hosts": [
                {"name": "h1", "kind": "aws", "aws": settings},
                {"name": "h2", "kind": "aws", "aws": settings},
            ],
            "topology": {"kind": "linear", "switches": 2},
        },
        "labs/pre.yaml",
        host_routes=(),
    )


def run(session: boto3.Session, the_lab: Lab, quota: float | None = 64) -> list[Finding]:
    settings = aws_lab(the_lab)
    assert settings is not None
    return preflight(settings, session, vcpu_quota(session, quota))


def problems(findings: list[Finding]) -> list[tuple[str, str | None, str]]:
    return [(f.check, f.host, f.message) for f in findings if f.status == "problem"]


def good_setup(session: boto3.Session) -> str:
    ec2(session).create_key_pair(KeyName="lab-key")
    return amazon_image(session, "x86_64")


def test_good_setup_passes(aws: boto3.Session) -> None:
    ami = good_setup(aws)
    the_lab = lab(ami=ami, availability_zone="eu-west-1a", admin_cidr="198.51.100.7/32")
    settings = aws_lab(the_lab)
    assert settings is not None
    findings = check(the_lab, aws, vcpu_quota(aws, 64))
    by_check = {(f.check, f.host): f for f in findings}
    assert all(f.status == "ok" for f in findings), [str(f) for f in findings]
    assert by_check[("credentials", None)].message == "authenticated as arn:aws:sts::123456789012:user/moto"
    assert by_check[("instance_type", "h1")].message == "m5.large is offered in eu-west-1a"
    assert by_check[("ami", "h2")].message.startswith(f"{ami} (amzn2-ami-hvm-")
    assert by_check[("key_pair", "h1, h2")].message == "key pair 'lab-key' exists"
    assert by_check[("vcpu_quota", None)].message == "4 vCPUs needed, 0 of 64 in use (L-1216C47A)"
    # the VPC quota comes from moto's Service Quotas (5), the default VPC is in use
    assert by_check[("vpc_quota", None)].message == "1 of 5 VPCs in use, the lab adds 1"


def test_missing_ami(aws: boto3.Session) -> None:
    good_setup(aws)
    findings = run(aws, lab(ami="ami-0000000000000dead"))
    assert problems(findings) == [
        ("ami", "h1", "AMI ami-0000000000000dead not found in eu-west-1"),
        ("ami", "h2", "AMI ami-0000000000000dead not found in eu-west-1"),
    ]
    hint = next(f.hint for f in findings if f.check == "ami")
    assert f"--owners {DEBIAN_OWNER}" in (hint or "")


def test_ami_of_the_wrong_architecture(aws: boto3.Session) -> None:
    good_setup(aws)
    arm = amazon_image(aws, "arm64")
    assert problems(run(aws, lab(ami=arm)))[0] == (
        "ami",
        "h1",
        f"AMI {arm} is arm64, but m5.large runs x86_64",
    )


def test_missing_key_pair(aws: boto3.Session) -> None:
    ami = amazon_image(aws, "x86_64")  # no key pair created
    findings = run(aws, lab(ami=ami, key_name="nokey"))
    assert problems(findings) == [("key_pair", "h1, h2", "key pair 'nokey' not found in eu-west-1")]
    hint = next(f.hint for f in findings if f.check == "key_pair")
    assert (hint or "").startswith("import your public key: aws ec2 import-key-pair --key-name nokey ")


def test_unavailable_instance_type(aws: boto3.Session) -> None:
    good_setup(aws)
    arm = amazon_image(aws, "arm64")
    # a1 (Graviton 1) is offered in eu-west-1b and eu-west-1c only (moto's offering data)
    findings = run(aws, lab(ami=arm, instance_type="a1.large", availability_zone="eu-west-1a"))
    assert problems(findings) == [
        ("instance_type", "h1", "instance type a1.large is not offered in eu-west-1a"),
        ("instance_type", "h2", "instance type a1.large is not offered in eu-west-1a"),
    ]
    hint = next(f.hint for f in findings if f.check == "instance_type")
    assert hint == "offered in: eu-west-1b, eu-west-1c; change aws.availability_zone or aws.instance_type"
    # without a zone, AWS might pick eu-west-1a for the subnet: a warning that says which zones work
    findings = run(aws, lab(ami=arm, instance_type="a1.large"))
    assert problems(findings) == []
    warning = next(f for f in findings if f.check == "instance_type")
    assert (warning.status, warning.hint) == (
        "warning",
        "set aws.availability_zone to one of eu-west-1b, eu-west-1c",
    )


def test_unknown_instance_type(aws: boto3.Session) -> None:
    ami = good_setup(aws)
    assert problems(run(aws, lab(ami=ami, instance_type="zz9.huge")))[:1] == [
        ("instance_type", "h1", "instance type 'zz9.huge' does not exist in eu-west-1")
    ]


def test_over_vcpu_quota(aws: boto3.Session) -> None:
    ami = good_setup(aws)
    # 3 x c5.4xlarge (48 vCPUs) already run in the account; the lab wants 2 more (32): 80 > 64
    ec2(aws).run_instances(ImageId=ami, MinCount=3, MaxCount=3, InstanceType="c5.4xlarge")
    findings = run(aws, lab(ami=ami, instance_type="c5.4xlarge"), quota=64)
    assert problems(findings) == [
        (
            "vcpu_quota",
            None,
            "the lab needs 32 vCPUs of standard on-demand instances (h1 c5.4xlarge 16, h2 c5.4xlarge 16); "
            "48 of 64 are in use in eu-west-1 (quota L-1216C47A)",
        )
    ]
    hint = next(f.hint for f in findings if f.check == "vcpu_quota")
    assert hint == "request an increase to at least 80 in Service Quotas, or choose smaller instance types"
    # the lab's own running instances are not counted against it (a re-check of a deployed lab)
    ids = [i["InstanceId"] for r in ec2(aws).describe_instances()["Reservations"] for i in r["Instances"]]
    ec2(aws).create_tags(Resources=ids[:2], Tags=[{"Key": "distrilab:lab", "Value": "pre"}])
    assert problems(run(aws, lab(ami=ami, instance_type="c5.4xlarge"), quota=64)) == []


def test_unreadable_quota_is_a_warning(aws: boto3.Session) -> None:
    ami = good_setup(aws)
    finding = next(f for f in run(aws, lab(ami=ami), quota=None) if f.check == "vcpu_quota")
    assert (finding.status, finding.message) == ("warning", "could not read the vCPU quota L-1216C47A")
    # the boto3 reader answers None where Service Quotas cannot (moto knows only the vpc service)
    assert service_quota_reader(aws, REGION)(*VCPU_QUOTA) is None


def test_vpc_quota_exhausted(aws: boto3.Session) -> None:
    ami = good_setup(aws)
    for index in range(4):  # with the default VPC: 5 of moto's default quota of 5
        ec2(aws).create_vpc(CidrBlock=f"10.{index}.0.0/16")
    assert problems(run(aws, lab(ami=ami))) == [
        ("vpc_quota", None, "5 of 5 VPCs are in use in eu-west-1 (quota L-F678F1CE); the lab needs 1 more")
    ]


def test_debian_lookup(aws: boto3.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", DEBIAN_OWNER)  # what follows happens in Debian's account
    client = ec2(aws)
    client.create_key_pair(KeyName="lab-key")
    source = client.run_instances(ImageId=amazon_image(aws, "x86_64"), MinCount=1, MaxCount=1)
    instance = source["Instances"][0]["InstanceId"]
    debian = client.create_image(InstanceId=instance, Name="debian-12-amd64-20260101-2345")["ImageId"]
    client.terminate_instances(InstanceIds=[instance])
    findings = run(aws, lab())
    assert problems(findings) == []
    assert next(f for f in findings if f.check == "ami").message == (
        f"{debian} (debian-12-amd64-20260101-2345, x86_64)"
    )
    # a Graviton type needs Debian's arm64 image, which this account does not have
    assert problems(run(aws, lab(instance_type="m7g.large"))) == [
        ("ami", "h1", f"no Debian 12 arm64 AMI of account {DEBIAN_OWNER} in eu-west-1"),
        ("ami", "h2", f"no Debian 12 arm64 AMI of account {DEBIAN_OWNER} in eu-west-1"),
    ]


def test_no_credentials_stops_at_once(aws: boto3.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    findings = run(boto3.Session(region_name=REGION), lab())
    assert [(f.check, f.status, f.message) for f in findings] == [
        ("credentials", "problem", "no AWS credentials found")
    ]


def test_unknown_and_disabled_regions(aws: boto3.Session) -> None:
    findings = run(aws, lab(region="eu-west-9"))
    assert problems(findings) == [("region", None, "unknown region 'eu-west-9'")]
    assert findings[-1].hint and findings[-1].hint.startswith("did you mean 'eu-west-")
    # moto, like AWS, has opt-in regions that are not enabled
    assert problems(run(aws, lab(region="ap-east-1"))) == [
        ("region", None, "region 'ap-east-1' is not enabled for this account")
    ]


def test_every_problem_is_reported_at_once(aws: boto3.Session) -> None:
    ec2(aws).run_instances(
        ImageId=amazon_image(aws, "x86_64"), MinCount=2, MaxCount=2, InstanceType="m5.xlarge"
    )
    the_lab = lab(ami="ami-0000000000000dead", key_name="nokey")
    with pytest.raises(AwsPreflightError) as caught:
        check(the_lab, aws, vcpu_quota(aws, 10))
    text = str(caught.value)
    assert text.splitlines()[0] == "aws pre-flight of lab pre: 4 problem(s)"
    assert "  - ami (h1): AMI ami-0000000000000dead not found in eu-west-1" in text
    assert "  - key_pair (h1, h2): key pair 'nokey' not found in eu-west-1" in text
    assert "  - vcpu_quota: the lab needs 4 vCPUs" in text and "8 of 10 are in use" in text
    assert [p.check for p in caught.value.problems] == ["ami", "ami", "key_pair", "vcpu_quota"]


def test_lab_without_aws_hosts_makes_no_call() -> None:
    class NoAws:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"AWS was called ({name})")

    plain = lab_from_dict({"name": "plain", "topology": {"kind": "linear"}}, host_routes=())
    assert check(plain, NoAws()) == []  # type: ignore[arg-type]


def test_cli_aws_check(aws: boto3.Session, capsys: pytest.CaptureFixture[str]) -> None:
    from stacks import cli

    # the shipped lab in an empty account: no key pair 'distrilab', no Debian image of Debian's account
    assert cli.main(["aws-check", "labs/aws-2hosts.yaml"]) == 1
    out = capsys.readouterr().out
    assert "problem key_pair (aws-1, aws-2): key pair 'distrilab' not found in eu-west-1" in out
    assert "problem ami (aws-1): no Debian 12 x86_64 AMI of account 136693071363 in eu-west-1" in out
    assert out.rstrip().endswith("3 problem(s)")
    assert cli.main(["aws-check", "labs/default.yaml"]) == 0
    assert "lab default has no aws hosts: nothing to check" in capsys.readouterr().out
