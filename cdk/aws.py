"""AWS hosts at design time: what a lab asks of AWS, the Debian AMI to look for, cloud-init (pure).

Shared by the lab loader (cdk/lab.py: checks of the `aws` mappings), the AWS construct
(stacks/aws_hosts.py: provider resources) and the boto3 pre-flight (modules/aws_preflight.py), so
all three agree on the region, the network and the AMI a lab needs. Imports no provider package
and does no I/O.

All aws hosts of a lab share one VPC with one subnet, so the network settings (`LAB_WIDE`) are
lab-wide: a host may repeat them, but every host that gives one must give the same value.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from cdk.errors import DistrilabError
from cdk.model import Lab
from cdk.programs import packages
from cdk.stages.cluster import SYSCTLS

Architecture = Literal["x86_64", "arm64"]
#: one VPC and one subnet per lab: these must agree across a lab's aws hosts
LAB_WIDE = ("region", "availability_zone", "vpc_cidr", "admin_cidr")
DEFAULT_VPC_CIDR = "172.30.0.0/16"  # outside the default lab pools (10.210-213/16)
#: SSH and the LXD API answer this range; the world unless the lab narrows it (a warning then)
DEFAULT_ADMIN_CIDR = "0.0.0.0/0"
#: GiB: the LXD storage pool's loop file (lxd.storage_size, 20GiB by default) lives on the root volume
DEFAULT_VOLUME_SIZE = 40
#: the AWS account that publishes Debian's official cloud images
DEBIAN_OWNER = "136693071363"
DEBIAN_RELEASE = 12
#: the login user of Debian's cloud images (the cluster stage reaches aws hosts over ssh as it)
SSH_USER = "admin"
LXD_PORT = 8443
VXLAN_PORT = 4789
#: written by cloud-init when the host is ready for the cluster stage
READY_MARKER = "/var/lib/distrilab/ready"
CLIENT_CERT_PATH = "/etc/distrilab/lxd-client.crt"
INIT_SCRIPT_PATH = "/usr/local/sbin/distrilab-host-init"
OWNER = "aws_hosts"

#: Debian names its AMIs by Debian's architecture names
_DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
#: first letters of the families counted by the "Running On-Demand Standard (A, C, D, H, I, M, R, T,
#: Z) instances" quota; the prefixes below start with those letters but have quotas of their own
_STANDARD_LETTERS = frozenset("acdhimrtz")
_OWN_QUOTA_PREFIXES = ("inf", "dl", "hpc", "trn", "mac", "u-")
_INSTANCE_TYPE = re.compile(r"^(?P<prefix>[a-z]+)(?P<generation>\d+)(?P<suffix>[a-z-]*)\.[a-z0-9]+$")


def lab_tags(lab: str, name: str) -> dict[str, str]:
    """Tags of every AWS object a lab creates: ownership, like the LXD objects' user.distrilab.*."""
    return {"Name": name, "distrilab:lab": lab, "distrilab:owner": OWNER}


def architecture_of(instance_type: str) -> Architecture:
    """The CPU architecture of an instance type, from its name (Graviton families carry a 'g' after
    the generation: m7g, c6gn, t4g, x2gd; a1 is the first Graviton). The pre-flight confirms it
    against DescribeInstanceTypes before any apply."""
    match = _INSTANCE_TYPE.match(instance_type)
    if not match:
        return "x86_64"
    if match["prefix"] == "a" and match["generation"] == "1":
        return "arm64"
    return "arm64" if "g" in match["suffix"] else "x86_64"


def is_standard_on_demand(instance_type: str) -> bool:
    """True when the type counts against the standard on-demand vCPU quota (L-1216C47A)."""
    return instance_type[:1] in _STANDARD_LETTERS and not instance_type.startswith(_OWN_QUOTA_PREFIXES)


def debian_ami_pattern(architecture: Architecture) -> str:
    """The name filter of Debian's official AMIs for an architecture, e.g. debian-12-amd64-*."""
    return f"debian-{DEBIAN_RELEASE}-{_DEBIAN_ARCH[architecture]}-*"


@dataclass(frozen=True)
class AwsHost:
    name: str
    instance_type: str
    architecture: Architecture
    ami: str | None  # None: the newest Debian 12 AMI of `architecture`
    key_name: str | None
    volume_size: int  # GiB


@dataclass(frozen=True)
class AwsLab:
    """Everything a lab asks of AWS: one region, one VPC with one subnet, the instances."""

    lab: str
    region: str
    availability_zone: str | None  # None: AWS picks one for the subnet
    vpc_cidr: str
    subnet_cidr: str
    admin_cidr: str
    hosts: tuple[AwsHost, ...]

    @property
    def architectures(self) -> tuple[Architecture, ...]:
        """The architectures whose Debian AMI must be looked up (hosts without an explicit AMI)."""
        return tuple(sorted({h.architecture for h in self.hosts if h.ami is None}))


def subnet_of(vpc_cidr: str) -> str:
    """The lab's subnet: the first /24 of the VPC (the VPC itself when it is /24 or smaller)."""
    network = ipaddress.ip_network(vpc_cidr)
    return str(next(network.subnets(new_prefix=max(network.prefixlen, 24))))


def aws_lab(lab: Lab) -> AwsLab | None:
    """The AWS part of a lab, or None when it has no aws host. Raises DistrilabError when the
    lab-wide settings disagree (the lab loader reports that with lines; this guards labs built in code)."""
    hosts = [h for h in lab.hosts if h.kind == "aws"]
    if not hosts:
        return None
    conflicts = lab_wide_conflicts([h.aws for h in hosts])
    if conflicts:
        key, value, first = conflicts[0][1], conflicts[0][2], conflicts[0][3]
        raise DistrilabError(
            f"lab {lab.name}: aws.{key} differs between aws hosts ({value!r} and {first!r})\n"
            "  hint: all aws hosts of a lab share one region, VPC and subnet"
        )
    shared: dict[str, Any] = {}
    for host in hosts:
        shared.update({k: host.aws[k] for k in LAB_WIDE if k in host.aws})
    if "region" not in shared:
        raise DistrilabError(f"lab {lab.name}: aws hosts need aws.region")
    vpc_cidr = str(shared.get("vpc_cidr", DEFAULT_VPC_CIDR))
    return AwsLab(
        lab=lab.name,
        region=str(shared["region"]),
        availability_zone=shared.get("availability_zone"),
        vpc_cidr=vpc_cidr,
        subnet_cidr=subnet_of(vpc_cidr),
        admin_cidr=str(shared.get("admin_cidr", DEFAULT_ADMIN_CIDR)),
        hosts=tuple(
            AwsHost(
                name=h.name,
                instance_type=str(h.aws["instance_type"]),
                architecture=architecture_of(str(h.aws["instance_type"])),
                ami=h.aws.get("ami"),
                key_name=h.aws.get("key_name"),
                volume_size=int(h.aws.get("volume_size", DEFAULT_VOLUME_SIZE)),
            )
            for h in hosts
        ),
    )


# ---------------------------------------------------------------- checks the lab loader runs

#: (attribute path, message, bad value, hint): the shape cdk/lab.py turns into located problems
Finding = tuple[tuple[str | int, ...], str, object, str | None]


def lab_wide_conflicts(settings: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, Any, Any, int]]:
    """(index, key, value, first value, first index) for each lab-wide setting that differs from
    the first aws host that gave it."""
    first: dict[str, tuple[Any, int]] = {}
    conflicts = []
    for index, aws in enumerate(settings):
        for key in LAB_WIDE:
            if key not in aws:
                continue
            if key in first and aws[key] != first[key][0]:
                conflicts.append((index, key, aws[key], first[key][0], first[key][1]))
            first.setdefault(key, (aws[key], index))
    return conflicts


def check_aws_hosts(entries: Sequence[Mapping[str, Any]], pools: Mapping[str, str]) -> list[Finding]:
    """Semantic checks of the `aws` mappings of a lab file's hosts (`entries`: the `hosts` list)."""
    aws_entries = [(i, e.get("aws", {})) for i, e in enumerate(entries) if e.get("kind") == "aws"]
    findings: list[Finding] = []
    for pos, key, value, first_value, first_pos in lab_wide_conflicts([a for _, a in aws_entries]):
        findings.append(
            (
                ("hosts", aws_entries[pos][0], "aws", key),
                f"must be the same on every aws host (hosts[{aws_entries[first_pos][0]}] "
                f"has {first_value!r})",
                value,
                "the aws hosts of a lab share one region, VPC and subnet",
            )
        )
    for index, aws in aws_entries:
        for key, (low, high) in (("vpc_cidr", (16, 28)), ("admin_cidr", (0, 32))):
            if key in aws:
                findings += _check_cidr(("hosts", index, "aws", key), aws[key], low, high, pools)
    return findings


def _check_cidr(
    path: tuple[str | int, ...], text: str, low: int, high: int, pools: Mapping[str, str]
) -> list[Finding]:
    try:
        network = ipaddress.ip_network(text)
    except ValueError:
        try:
            fixed = ipaddress.ip_network(text, strict=False)
        except ValueError:
            example = DEFAULT_VPC_CIDR if path[-1] == "vpc_cidr" else "your public address, 203.0.113.7/32"
            return [(path, "must be an IPv4 network in CIDR form", text, f"e.g. {example}")]
        return [(path, "has host bits set", text, f"use {fixed}")]
    if network.version != 4 or not low <= network.prefixlen <= high:
        return [(path, f"must be an IPv4 network with a prefix length from /{low} to /{high}", text, None)]
    if path[-1] == "vpc_cidr":
        for pool, pool_text in sorted(pools.items()):
            try:
                pool_network = ipaddress.ip_network(pool_text, strict=False)
            except ValueError:
                continue  # reported by the pool checks
            if network.overlaps(pool_network):
                return [
                    (
                        path,
                        f"overlaps the lab's {pool} pool {pool_text}",
                        text,
                        f"the hosts route both; e.g. {DEFAULT_VPC_CIDR}",
                    )
                ]
    return []


# ---------------------------------------------------------------- cloud-init


def host_init_script(sysctls: Mapping[str, int] | None = None) -> str:
    """The first-boot script of an aws host: LXD installed and listening on 8443, distrilab's client
    certificate trusted, kernel limits raised, then READY_MARKER written. Idempotent (a re-run
    changes nothing); storage pool and clustering are left to the cluster stage."""
    sysctls = SYSCTLS if sysctls is None else sysctls
    limits = "\n".join(f"{k} = {v}" for k, v in sorted(sysctls.items()))
    return f"""#!/bin/sh
# distrilab: make this instance an LXD host for the cluster stage (run once by cloud-init)
set -eu
export DEBIAN_FRONTEND=noninteractive
cat > /etc/sysctl.d/60-distrilab.conf <<'EOF'
{limits}
EOF
sysctl -q --system
apt-get update -q
# what every lab host gets (cdk/programs.py, the list .ci/setup and the cluster stage install
# from); nftables before LXD: a daemon started without it cannot create bridges
apt-get install -y -q --no-install-recommends nftables
apt-get install -y -q --no-install-recommends {" ".join(packages(["host"]))}
if [ -d /run/systemd/system ]; then
    systemctl enable --now lxd.socket lxd.service
elif ! lxc info >/dev/null 2>&1; then
    # no service manager (containers, some minimal images): start the daemon detached
    nohup lxd --group lxd --logfile /var/log/lxd-distrilab.log >/dev/null 2>&1 &
fi
lxd waitready --timeout=300
# the ssh user (passwordless sudo already) may use lxc without sudo, as the cluster stage does
if id {SSH_USER} >/dev/null 2>&1; then adduser --quiet {SSH_USER} lxd; fi
lxc config set core.https_address '[::]:{LXD_PORT}'
if ! lxc config trust list --format csv | grep -q ',distrilab,'; then
    lxc config trust add {shlex.quote(CLIENT_CERT_PATH)} --name distrilab
fi
mkdir -p {shlex.quote(READY_MARKER.rsplit("/", 1)[0])}
date -u +%Y-%m-%dT%H:%M:%SZ > {shlex.quote(READY_MARKER)}
"""


def cloud_init(client_cert_pem: str, sysctls: Mapping[str, int] | None = None) -> str:
    """The instance's user data (#cloud-config): writes the client certificate and the init
    script, runs the script once. Deterministic, so unchanged labs plan no replacement."""
    config = {
        "write_files": [
            {"path": CLIENT_CERT_PATH, "permissions": "0644", "content": client_cert_pem.strip() + "\n"},
            {"path": INIT_SCRIPT_PATH, "permissions": "0755", "content": host_init_script(sysctls)},
        ],
        "runcmd": [[INIT_SCRIPT_PATH]],
    }
    return "#cloud-config\n" + yaml.dump(config, Dumper=_BlockDumper, sort_keys=False, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks: the user data reads like the files it writes."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_BlockDumper.add_representer(str, _represent_str)
