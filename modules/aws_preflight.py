"""Pre-flight of a lab's aws hosts: what AWS must offer before `terraform apply` can succeed.

Reads only (boto3 describe/get calls; no AWS object is created or changed). Checks, in order:
credentials (STS), region (known to botocore and enabled for the account), availability zone,
each instance type (exists, offered in the region/zone), each AMI (exists, available, the
architecture the instance type runs; without `aws.ami` the newest Debian 12 image of Debian's
account, as stacks/aws_hosts.py looks it up), key pairs, the standard on-demand vCPU quota
(L-1216C47A) against the vCPUs already running, the VPCs-per-region quota (L-F678F1CE).

Returns typed findings (ok / problem / warning, each problem with a hint); `check` raises
AwsPreflightError naming every problem at once. Instances and VPCs tagged with the lab's own
`distrilab:lab` are not counted as used: re-checking a deployed lab must not fail on itself.

`python -m modules.aws_preflight LAB_FILE` prints the findings; exit 0 ready, 1 problems, 2 bad lab.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cdk.aws import (
    DEBIAN_OWNER,
    DEFAULT_ADMIN_CIDR,
    AwsHost,
    AwsLab,
    aws_lab,
    debian_ami_pattern,
    is_standard_on_demand,
)
from cdk.errors import DistrilabError
from cdk.lab_source import did_you_mean
from cdk.model import Lab

log = logging.getLogger(__name__)

Status = Literal["ok", "problem", "warning"]
#: Service Quotas codes: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" (vCPUs)
VCPU_QUOTA = ("ec2", "L-1216C47A")
#: "VPCs per Region"
VPC_QUOTA = ("vpc", "L-F678F1CE")
#: (service code, quota code) -> the quota's value in this account and region, None if unreadable
QuotaReader = Callable[[str, str], float | None]


@dataclass(frozen=True)
class Finding:
    check: str  # credentials, region, availability_zone, instance_type, ami, key_pair, vcpu_quota, ...
    status: Status
    message: str
    hint: str | None = None
    host: str | None = None  # the lab host it is about, when it is about one

    @property
    def where(self) -> str:
        return f"{self.check} ({self.host})" if self.host else self.check

    def __str__(self) -> str:
        text = f"{self.status:<7} {self.where}: {self.message}"
        return text + (f"\n        hint: {self.hint}" if self.hint else "")


class AwsPreflightError(DistrilabError):
    """AWS cannot host the lab as described; `problems` lists every reason."""

    def __init__(self, lab: str, findings: Sequence[Finding]):
        self.findings = list(findings)
        self.problems = [f for f in self.findings if f.status == "problem"]
        lines = [f"aws pre-flight of lab {lab}: {len(self.problems)} problem(s)"]
        for p in self.problems:
            lines.append(f"  - {p.where}: {p.message}" + (f"\n    hint: {p.hint}" if p.hint else ""))
        super().__init__("\n".join(lines))


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def service_quota_reader(session: boto3.Session, region: str) -> QuotaReader:
    """Reads the applied quota value, falling back to AWS's default where none was ever applied."""
    client = session.client("service-quotas", region_name=region)

    def read(service: str, quota: str) -> float | None:
        try:
            return float(client.get_service_quota(ServiceCode=service, QuotaCode=quota)["Quota"]["Value"])
        except ClientError as err:
            if _code(err) != "NoSuchResourceException":
                log.debug("get_service_quota %s/%s: %s", service, quota, err)
                return None
        try:
            answer = client.get_aws_default_service_quota(ServiceCode=service, QuotaCode=quota)
            return float(answer["Quota"]["Value"])
        # emulators (moto, localstack) raise NotImplementedError for calls they lack: unreadable too
        except (ClientError, BotoCoreError, NotImplementedError) as err:
            log.debug("get_aws_default_service_quota %s/%s: %s", service, quota, err)
            return None

    return read


def check(
    lab: Lab, session: boto3.Session | None = None, quota_reader: QuotaReader | None = None
) -> list[Finding]:
    """Run the pre-flight for `lab`; raise AwsPreflightError when any check found a problem.
    A lab without aws hosts has nothing to check (no AWS call is made)."""
    settings = aws_lab(lab)
    if settings is None:
        return []
    findings = preflight(settings, session, quota_reader)
    if any(f.status == "problem" for f in findings):
        raise AwsPreflightError(lab.name, findings)
    return findings


def preflight(
    settings: AwsLab, session: boto3.Session | None = None, quota_reader: QuotaReader | None = None
) -> list[Finding]:
    """Every finding about `settings` (reads only). Stops after credentials or region when those
    fail: the later checks would only repeat the same cause."""
    session = session or boto3.Session(region_name=settings.region)
    findings = _credentials(session)
    if any(f.status == "problem" for f in findings):
        return findings
    findings += _region(session, settings.region)
    if any(f.status == "problem" for f in findings):
        return findings
    ec2 = session.client("ec2", region_name=settings.region)
    quotas = quota_reader or service_quota_reader(session, settings.region)
    zones = _zones(ec2)
    if settings.availability_zone:
        findings.append(_zone(settings, zones))
    types = _instance_types(ec2, sorted({h.instance_type for h in settings.hosts}))
    for host in settings.hosts:
        findings += _instance_type(ec2, settings, host, types, zones)
        findings.append(_ami(ec2, settings, host, types.get(host.instance_type)))
    findings += _key_pairs(ec2, settings)
    findings.append(_vcpu_quota(ec2, settings, types, quotas))
    findings.append(_vpc_quota(ec2, settings, quotas))
    if settings.admin_cidr == DEFAULT_ADMIN_CIDR:
        findings.append(
            Finding(
                "admin_cidr",
                "warning",
                f"ssh and the LXD API of the hosts answer {DEFAULT_ADMIN_CIDR}",
                "set aws.admin_cidr to the address you deploy from, e.g. 203.0.113.7/32",
            )
        )
    return findings


# ---------------------------------------------------------------- the checks


def _credentials(session: boto3.Session) -> list[Finding]:
    if session.get_credentials() is None:
        return [
            Finding(
                "credentials",
                "problem",
                "no AWS credentials found",
                "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run 'aws configure'",
            )
        ]
    try:
        identity = session.client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as err:
        return [
            Finding(
                "credentials",
                "problem",
                f"AWS rejected the credentials: {err}",
                "check the profile or keys in use (aws sts get-caller-identity)",
            )
        ]
    return [Finding("credentials", "ok", f"authenticated as {identity['Arn']}")]


def _region(session: boto3.Session, region: str) -> list[Finding]:
    known = {r for p in session.get_available_partitions() for r in session.get_available_regions("ec2", p)}
    if region not in known:
        return [
            Finding(
                "region",
                "problem",
                f"unknown region '{region}'",
                did_you_mean(region, known) or "e.g. eu-west-1, us-east-1",
            )
        ]
    try:
        regions = session.client("ec2", region_name=region).describe_regions(AllRegions=True)["Regions"]
    except (ClientError, BotoCoreError) as err:
        return [Finding("region", "problem", f"cannot query region '{region}': {err}", None)]
    status = next((r.get("OptInStatus") for r in regions if r["RegionName"] == region), None)
    if status == "not-opted-in":
        return [
            Finding(
                "region",
                "problem",
                f"region '{region}' is not enabled for this account",
                "enable it under Account settings > AWS Regions, or choose another region",
            )
        ]
    return [Finding("region", "ok", f"region {region} is available")]


def _zones(ec2: Any) -> list[str]:
    answer = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
    return sorted(z["ZoneName"] for z in answer["AvailabilityZones"])


def _zone(settings: AwsLab, zones: list[str]) -> Finding:
    zone = settings.availability_zone
    if zone in zones:
        return Finding("availability_zone", "ok", f"zone {zone} is available")
    return Finding(
        "availability_zone",
        "problem",
        f"availability zone '{zone}' is not available in {settings.region}",
        f"available: {', '.join(zones) or 'none'}",
    )


def _instance_types(ec2: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """DescribeInstanceTypes of each name that exists (unknown names are simply absent)."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:  # one call each: a single unknown name fails the whole batched call
        try:
            for info in ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]:
                found[info["InstanceType"]] = info
        except ClientError as err:
            if _code(err) not in ("InvalidInstanceType", "InvalidParameterValue"):
                raise
    return found


def _instance_type(
    ec2: Any, settings: AwsLab, host: AwsHost, types: dict[str, dict[str, Any]], zones: list[str]
) -> list[Finding]:
    name = host.instance_type
    if name not in types:
        return [
            Finding(
                "instance_type",
                "problem",
                f"instance type '{name}' does not exist in {settings.region}",
                "list them: aws ec2 describe-instance-types --query 'InstanceTypes[].InstanceType'",
                host.name,
            )
        ]
    offers = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [name]}]
    )["InstanceTypeOfferings"]
    offered = sorted({o["Location"] for o in offers} & set(zones))
    zone = settings.availability_zone
    if zone and zone not in offered:
        where = (
            f"offered in: {', '.join(offered)}" if offered else f"not offered anywhere in {settings.region}"
        )
        return [
            Finding(
                "instance_type",
                "problem",
                f"instance type {name} is not offered in {zone}",
                f"{where}; change aws.availability_zone or aws.instance_type",
                host.name,
            )
        ]
    if not offered:
        return [
            Finding(
                "instance_type",
                "problem",
                f"instance type {name} is not offered in {settings.region}",
                "choose another instance type or region",
                host.name,
            )
        ]
    if not zone and offered != zones:
        return [
            Finding(
                "instance_type",
                "warning",
                f"instance type {name} is offered only in {', '.join(offered)}; AWS picks the subnet's zone",
                f"set aws.availability_zone to one of {', '.join(offered)}",
                host.name,
            )
        ]
    return [Finding("instance_type", "ok", f"{name} is offered in {zone or settings.region}", host=host.name)]


def _ami(ec2: Any, settings: AwsLab, host: AwsHost, type_info: dict[str, Any] | None) -> Finding:
    runs = tuple((type_info or {}).get("ProcessorInfo", {}).get("SupportedArchitectures", ()))
    if host.ami:
        try:
            images = ec2.describe_images(ImageIds=[host.ami])["Images"]
        except ClientError as err:
            if not _code(err).startswith("InvalidAMIID"):
                raise
            images = []
        if not images:
            return Finding(
                "ami",
                "problem",
                f"AMI {host.ami} not found in {settings.region}",
                "AMIs are per region; Debian 12's: aws ec2 describe-images --owners "
                f"{DEBIAN_OWNER} --filters 'Name=name,Values={debian_ami_pattern(host.architecture)}' "
                f"--region {settings.region}",
                host.name,
            )
        image = images[0]
        if image.get("State", "available") != "available":
            return Finding(
                "ami", "problem", f"AMI {host.ami} is {image['State']}, not available", None, host.name
            )
    else:
        images = ec2.describe_images(
            Owners=[DEBIAN_OWNER],
            Filters=[
                {"Name": "name", "Values": [debian_ami_pattern(host.architecture)]},
                {"Name": "architecture", "Values": [host.architecture]},
            ],
        )["Images"]
        if not images:
            return Finding(
                "ami",
                "problem",
                f"no Debian 12 {host.architecture} AMI of account {DEBIAN_OWNER} in {settings.region}",
                "set aws.ami to a Debian 12 AMI of this region",
                host.name,
            )
        image = max(images, key=lambda i: i.get("CreationDate", ""))
    arch = image.get("Architecture")
    if runs and arch not in runs:
        return Finding(
            "ami",
            "problem",
            f"AMI {image['ImageId']} is {arch}, but {host.instance_type} runs {'/'.join(runs)}",
            f"use a {'/'.join(runs)} AMI, or an instance type for {arch}",
            host.name,
        )
    return Finding("ami", "ok", f"{image['ImageId']} ({image.get('Name', '?')}, {arch})", host=host.name)


def _key_pairs(ec2: Any, settings: AwsLab) -> list[Finding]:
    findings = [
        Finding(
            "key_pair",
            "problem",
            "no aws.key_name: distrilab reaches aws hosts over ssh",
            f"set aws.key_name to a key pair of {settings.region}",
            h.name,
        )
        for h in settings.hosts
        if not h.key_name
    ]
    for name in sorted({h.key_name for h in settings.hosts if h.key_name}):
        hosts = ", ".join(h.name for h in settings.hosts if h.key_name == name)
        try:
            ec2.describe_key_pairs(KeyNames=[name])
        except ClientError as err:
            if _code(err) != "InvalidKeyPair.NotFound":
                raise
            findings.append(
                Finding(
                    "key_pair",
                    "problem",
                    f"key pair '{name}' not found in {settings.region}",
                    f"import your public key: aws ec2 import-key-pair --key-name {name} "
                    f"--public-key-material fileb://~/.ssh/id_ed25519.pub --region {settings.region}",
                    hosts,
                )
            )
            continue
        findings.append(Finding("key_pair", "ok", f"key pair '{name}' exists", host=hosts))
    return findings


def _others(items: Iterable[dict[str, Any]], lab: str) -> list[dict[str, Any]]:
    """Objects not tagged as this lab's own."""
    return [i for i in items if {"Key": "distrilab:lab", "Value": lab} not in i.get("Tags", [])]


def _vcpus(ec2: Any, types: dict[str, dict[str, Any]], names: Iterable[str]) -> dict[str, int]:
    missing = sorted(set(names) - set(types))
    known = {**types, **_instance_types(ec2, missing)} if missing else types
    return {n: int(i["VCpuInfo"]["DefaultVCpus"]) for n, i in known.items()}


def _vcpu_quota(ec2: Any, settings: AwsLab, types: dict[str, dict[str, Any]], quotas: QuotaReader) -> Finding:
    wanted = [
        h for h in settings.hosts if is_standard_on_demand(h.instance_type) and h.instance_type in types
    ]
    if not wanted:
        return Finding("vcpu_quota", "ok", "no standard on-demand instance to count")
    quota = quotas(*VCPU_QUOTA)
    if quota is None:
        return Finding(
            "vcpu_quota",
            "warning",
            f"could not read the vCPU quota {VCPU_QUOTA[1]}",
            "allow servicequotas:GetServiceQuota to have it checked",
        )
    running = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    for page in pages:
        for reservation in page["Reservations"]:
            running += _others(reservation["Instances"], settings.lab)
    running = [i for i in running if is_standard_on_demand(i["InstanceType"])]
    vcpus = _vcpus(ec2, types, {i["InstanceType"] for i in running})
    in_use = sum(vcpus.get(i["InstanceType"], 0) for i in running)
    needed = sum(vcpus[h.instance_type] for h in wanted)
    detail = ", ".join(f"{h.name} {h.instance_type} {vcpus[h.instance_type]}" for h in wanted)
    if in_use + needed > quota:
        return Finding(
            "vcpu_quota",
            "problem",
            f"the lab needs {needed} vCPUs of standard on-demand instances ({detail}); {in_use} of "
            f"{quota:g} are in use in {settings.region} (quota {VCPU_QUOTA[1]})",
            f"request an increase to at least {in_use + needed} in Service Quotas, or choose smaller "
            "instance types",
        )
    return Finding(
        "vcpu_quota", "ok", f"{needed} vCPUs needed, {in_use} of {quota:g} in use ({VCPU_QUOTA[1]})"
    )


def _vpc_quota(ec2: Any, settings: AwsLab, quotas: QuotaReader) -> Finding:
    vpcs = ec2.describe_vpcs()["Vpcs"]
    if len(_others(vpcs, settings.lab)) < len(vpcs):
        return Finding("vpc_quota", "ok", "the lab's VPC exists already")
    quota = quotas(*VPC_QUOTA)
    if quota is None:
        return Finding(
            "vpc_quota",
            "warning",
            f"could not read the VPC quota {VPC_QUOTA[1]}",
            "allow servicequotas:GetServiceQuota to have it checked",
        )
    if len(vpcs) + 1 > quota:
        return Finding(
            "vpc_quota",
            "problem",
            f"{len(vpcs)} of {quota:g} VPCs are in use in {settings.region} (quota {VPC_QUOTA[1]}); "
            "the lab needs 1 more",
            "delete an unused VPC, or request an increase in Service Quotas",
        )
    return Finding("vpc_quota", "ok", f"{len(vpcs)} of {quota:g} VPCs in use, the lab adds 1")


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    from cdk.pipeline import load_lab

    parser = argparse.ArgumentParser(
        prog="python -m modules.aws_preflight", description=__doc__.split("\n")[0]
    )
    parser.add_argument("lab", help="lab file (labs/*.yaml)")
    args = parser.parse_args(argv)
    try:
        lab = load_lab(args.lab)
    except DistrilabError as err:
        print(err, file=sys.stderr)
        return 2
    settings = aws_lab(lab)
    if settings is None:
        print(f"lab {lab.name} has no aws hosts: nothing to check")
        return 0
    findings = preflight(settings)
    for finding in findings:
        print(finding)
    problems = sum(f.status == "problem" for f in findings)
    print(f"{problems} problem(s)" if problems else "ready for apply")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
