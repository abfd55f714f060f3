"""AWS hosts of a lab as real provider resources (cdktn-provider-aws), added to the lab's stack.

For a lab with `kind: aws` hosts, `add_aws_hosts(stack, lab)` adds the `aws` provider (the hosts'
region) and one network for the lab: a VPC, one subnet, an internet gateway with a default route,
and a security group (ssh and the LXD API from the admin CIDR; the LXD cluster port and VXLAN
between the lab's hosts only; all egress). Then one `aws_instance` per aws host, Debian 12, whose
cloud-init installs LXD, raises the inotify limits, opens the LXD API on 8443 to distrilab's
client certificate and writes a ready marker (cdk.aws.host_init_script). Every object is tagged
`distrilab:lab=<lab>`. Outputs `aws_host_<name>`: public/private address and instance id.

The provider package is 523 MB and its first import takes ~15-25 s and 2 GB: it is imported
here, lazily, and only when the lab has aws hosts. The Terraform registry is unreachable on the
development machines, so such a stack is synthesized and asserted offline; applying it needs a
machine that can download the provider, and `modules.aws_preflight` should pass first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cdktn
from constructs import Construct

from cdk.aws import (
    DEBIAN_OWNER,
    DEFAULT_ADMIN_CIDR,
    LXD_PORT,
    VXLAN_PORT,
    AwsLab,
    aws_lab,
    cloud_init,
    debian_ami_pattern,
    lab_tags,
)
from cdk.model import Lab

log = logging.getLogger(__name__)

#: the provider's package (pip extra `aws`); imported only by AwsLabHosts
PROVIDER_PACKAGE = "cdktn_provider_aws"


@dataclass(frozen=True)
class AwsHosts:
    """What the lab stack needs from the AWS resources: empty for a lab without aws hosts.

    `instances` are the `aws_instance` resources (make the cluster stage depend on them);
    `public_addresses`/`private_addresses` are Terraform tokens (`${aws_instance.host_x.public_ip}`)
    to pass into the cluster stage: public for ssh and the LXD API from the admin machine,
    private for cluster membership and VXLAN underlay between hosts.
    """

    instances: Mapping[str, cdktn.TerraformResource] = field(default_factory=dict)
    public_addresses: Mapping[str, str] = field(default_factory=dict)
    private_addresses: Mapping[str, str] = field(default_factory=dict)
    network: Mapping[str, cdktn.TerraformElement] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.instances)

    @property
    def depends_on(self) -> list[cdktn.TerraformResource]:
        """Everything a host stage must wait for: the instances (which wait for their network)."""
        return list(self.instances.values())


def add_aws_hosts(scope: Construct, lab: Lab, client_cert_pem: str | None = None) -> AwsHosts:
    """Add the AWS provider, network and instances of `lab` to `scope` (the lab's stack).

    A lab without aws hosts adds nothing and never imports the provider package. The instances
    trust `client_cert_pem` on their LXD API; by default distrilab's own client certificate
    (modules.lxd_client, created on first use). Raises DistrilabError for inconsistent labs.
    """
    settings = aws_lab(lab)
    if settings is None:
        return AwsHosts()
    if client_cert_pem is None:
        from modules.lxd_client import cert_dir, ensure_client_cert

        client_cert_pem = ensure_client_cert(cert_dir())[0].read_text()
    return AwsLabHosts(scope, "aws", settings, client_cert_pem).handles


class AwsLabHosts(Construct):
    """The provider resources of a lab's aws hosts; stable Terraform names (`aws_vpc.lab`,
    `aws_instance.host_<name>`) so that plans read well and renames are deliberate."""

    def __init__(self, scope: Construct, id_: str, settings: AwsLab, client_cert_pem: str):
        super().__init__(scope, id_)
        # lazy on purpose: 523 MB of bindings, 15-25 s on first import (see the module docstring)
        from cdktn_provider_aws.data_aws_ami import DataAwsAmi, DataAwsAmiFilter
        from cdktn_provider_aws.instance import Instance, InstanceMetadataOptions, InstanceRootBlockDevice
        from cdktn_provider_aws.internet_gateway import InternetGateway
        from cdktn_provider_aws.provider import AwsProvider
        from cdktn_provider_aws.route import Route
        from cdktn_provider_aws.route_table import RouteTable
        from cdktn_provider_aws.route_table_association import RouteTableAssociation
        from cdktn_provider_aws.security_group import SecurityGroup
        from cdktn_provider_aws.subnet import Subnet
        from cdktn_provider_aws.vpc import Vpc
        from cdktn_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
        from cdktn_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule

        lab = settings.lab
        self.settings = settings
        if settings.admin_cidr == DEFAULT_ADMIN_CIDR:
            log.warning(
                "lab %s: ssh and the LXD API of its aws hosts answer %s; set aws.admin_cidr to your "
                "address (e.g. 203.0.113.7/32)",
                lab,
                DEFAULT_ADMIN_CIDR,
            )

        def named(element: Any, name: str) -> Any:
            element.override_logical_id(name)
            return element

        AwsProvider(self, "provider", region=settings.region)
        vpc = named(
            Vpc(
                self,
                "vpc",
                cidr_block=settings.vpc_cidr,
                enable_dns_support=True,
                enable_dns_hostnames=True,
                tags=lab_tags(lab, f"dl-{lab}"),
            ),
            "lab",
        )
        subnet = named(
            Subnet(
                self,
                "subnet",
                vpc_id=vpc.id,
                cidr_block=settings.subnet_cidr,
                availability_zone=settings.availability_zone,
                map_public_ip_on_launch=True,
                tags=lab_tags(lab, f"dl-{lab}"),
            ),
            "lab",
        )
        gateway = named(
            InternetGateway(self, "gateway", vpc_id=vpc.id, tags=lab_tags(lab, f"dl-{lab}")), "lab"
        )
        table = named(RouteTable(self, "routes", vpc_id=vpc.id, tags=lab_tags(lab, f"dl-{lab}")), "lab")
        default_route = named(
            Route(
                self,
                "default-route",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                gateway_id=gateway.id,
            ),
            "default",
        )
        association = named(
            RouteTableAssociation(self, "association", route_table_id=table.id, subnet_id=subnet.id), "lab"
        )
        group = named(
            SecurityGroup(
                self,
                "group",
                name=f"dl-{lab}",
                description=f"distrilab lab {lab}: ssh and LXD from the admin, LXD and VXLAN between hosts",
                vpc_id=vpc.id,
                tags=lab_tags(lab, f"dl-{lab}"),
            ),
            "lab",
        )
        # one resource per rule: each shows up, and changes, on its own in a plan
        ingress = {
            # the cluster stage bootstraps hosts over ssh
            "ssh_admin": {"ip_protocol": "tcp", "port": 22, "cidr_ipv4": settings.admin_cidr},
            # the reconcilers run on the admin machine and talk to each host's LXD API
            "lxd_admin": {"ip_protocol": "tcp", "port": LXD_PORT, "cidr_ipv4": settings.admin_cidr},
            "lxd_members": {"ip_protocol": "tcp", "port": LXD_PORT, "referenced_security_group_id": group.id},
            "vxlan_members": {
                "ip_protocol": "udp",
                "port": VXLAN_PORT,
                "referenced_security_group_id": group.id,
            },
        }
        rules: dict[str, cdktn.TerraformElement] = {}
        for name, rule in ingress.items():
            port = rule.pop("port")
            rules[name] = named(
                VpcSecurityGroupIngressRule(
                    self,
                    f"rule-{name}",
                    security_group_id=group.id,
                    from_port=port,
                    to_port=port,
                    description=name.replace("_", " from "),
                    tags=lab_tags(lab, f"dl-{lab}-{name}"),
                    **rule,
                ),
                name,
            )
        rules["all_egress"] = named(
            VpcSecurityGroupEgressRule(
                self,
                "rule-all-egress",
                security_group_id=group.id,
                ip_protocol="-1",  # all protocols and ports: packages, images, anything the lab fetches
                cidr_ipv4="0.0.0.0/0",
                description="all egress",
                tags=lab_tags(lab, f"dl-{lab}-all-egress"),
            ),
            "all_egress",
        )
        amis = {
            arch: named(
                DataAwsAmi(
                    self,
                    f"debian-{arch}",
                    most_recent=True,
                    owners=[DEBIAN_OWNER],
                    filter=[
                        DataAwsAmiFilter(name="name", values=[debian_ami_pattern(arch)]),
                        DataAwsAmiFilter(name="architecture", values=[arch]),
                        DataAwsAmiFilter(name="virtualization-type", values=["hvm"]),
                    ],
                ),
                f"debian_{arch}",
            )
            for arch in settings.architectures
        }
        user_data = cloud_init(client_cert_pem)
        instances: dict[str, cdktn.TerraformResource] = {}
        for host in settings.hosts:
            instance = named(
                Instance(
                    self,
                    f"host-{host.name}",
                    ami=host.ami or amis[host.architecture].id,
                    instance_type=host.instance_type,
                    subnet_id=subnet.id,
                    vpc_security_group_ids=[group.id],
                    key_name=host.key_name,
                    associate_public_ip_address=True,
                    root_block_device=InstanceRootBlockDevice(
                        volume_size=host.volume_size,
                        volume_type="gp3",
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                    metadata_options=InstanceMetadataOptions(http_tokens="required"),  # IMDSv2 only
                    user_data=user_data,
                    user_data_replace_on_change=True,
                    tags=lab_tags(lab, f"dl-{lab}-{host.name}"),
                    # the default route must exist before cloud-init runs apt-get
                    depends_on=[default_route, association],
                ),
                f"host_{host.name}",
            )
            instances[host.name] = instance
            named(
                cdktn.TerraformOutput(
                    self,
                    f"output-{host.name}",
                    value={
                        "public_ip": instance.public_ip,
                        "private_ip": instance.private_ip,
                        "instance_id": instance.id,
                    },
                    description=f"aws host {host.name} of lab {lab}: addresses and instance id",
                ),
                f"aws_host_{host.name}",
            )
        self.handles = AwsHosts(
            instances=instances,
            public_addresses={name: i.public_ip for name, i in instances.items()},
            private_addresses={name: i.private_ip for name, i in instances.items()},
            network={
                "vpc": vpc,
                "subnet": subnet,
                "internet_gateway": gateway,
                "route_table": table,
                "default_route": default_route,
                "security_group": group,
                **rules,
                **{f"ami_{arch}": ami for arch, ami in amis.items()},
            },
        )
