"""The terraform stack of one lab: `terraform_data` resources whose provisioners run the reconcilers.

One resource per (stage, host) for which the stage's builder returns a spec, plus an anchor
resource `lab` that everything depends on. Terraform has no provider here (none can be downloaded),
so the built-in `terraform_data` carries the desired state's hash in `input`/`triggers_replace`:
`terraform plan` shows which stage on which host changes, the reconciler prints the node-level diff.

Replacement is create-before-destroy and every provisioner passes `--generation ${self.id}`
(see modules/reconcile.py). Measured with terraform 1.11: the deposed object of a
create-before-destroy replacement and a tainted object are destroyed WITHOUT their destroy-time
provisioners, so the new resource's apply must converge the stage on its own (reconcilers delete
owned objects their spec no longer lists); the generation check guards any other path.
The destroy provisioner finds the spec the resource was *created* from through `self.input.hash`
(spec files are content-addressed and kept under `.distrilab/specs/<lab>/`, which synth never wipes).
The `sweep` resource, after the cluster stage and before the others, removes on destroy every
object still carrying the lab's label (cdk/sweep.py, modules/sweep.py): the safety net for tainted
resources whose destroy provisioners terraform skips. It runs before the cluster is dissolved:
a leftover network in a dissolved cluster's database kept a dnsmasq on the next lab's address.

Labs with `kind: aws` hosts also get the AWS provider resources (stacks/aws_hosts.py). An aws
host's address exists only once its instance does, after synth wrote the spec files, so every
stage resource of an aws host gets the instance's public and private address in its provisioners'
environment (DISTRILAB_HOST_ADDRESS, DISTRILAB_HOST_PRIVATE_ADDRESS; joining cluster members also
DISTRILAB_BOOTSTRAP_ADDRESS, the first host's) and in `input` and `triggers_replace`: measured
with terraform 1.11, a changed `input` of a terraform_data is an in-place update that runs no
provisioner, so only `triggers_replace` makes a replaced instance re-run the stage. The cluster
stage of an aws host waits for the instances (and, joining, for the first host's cluster stage).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cdktn
from constructs import Construct

import cdk.stages
from cdk.model import Lab
from cdk.stages import Stage
from cdk.sweep import HOST_ADDRESSES_ENV, SWEEP, sweep_spec
from stacks.aws_hosts import AwsHosts, add_aws_hosts
from stacks.paths import REPO_ROOT, Paths

__all__ = ["ANCHOR", "REPO_ROOT", "SWEEP", "LabStack", "Paths", "StageSpec", "stage_specs"]


#: the resource every stage depends on
ANCHOR = "lab"
#: what a stage's provisioners get for an aws host (modules/lxd_host.py reads them)
HOST_ADDRESS_ENV = "DISTRILAB_HOST_ADDRESS"  # public: ssh and the LXD API from this machine
HOST_PRIVATE_ADDRESS_ENV = "DISTRILAB_HOST_PRIVATE_ADDRESS"  # VPC: cluster traffic, VXLAN underlay
BOOTSTRAP_ADDRESS_ENV = "DISTRILAB_BOOTSTRAP_ADDRESS"  # public address of the cluster's first host


@dataclass(frozen=True)
class StageSpec:
    """The desired state of one stage on one host, canonicalised and hashed."""

    stage: Stage
    host: str
    spec: dict[str, Any]
    canonical: str  # sorted-keys compact JSON: the hashed and written form
    hash: str  # sha256 hex of `canonical`

    @property
    def resource_id(self) -> str:
        return resource_id(self.stage.name, self.host)

    @property
    def file_name(self) -> str:
        return spec_file_name(self.stage.name, self.host, self.hash)


def resource_id(stage: str, host: str) -> str:
    """Terraform name of a stage resource (identifiers allow letters, digits, '_' and '-')."""
    return f"{stage}_{host}"


def spec_file_name(stage: str, host: str, digest: str) -> str:
    return f"{stage}@{host}-{digest[:12]}.json"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hashed(data: Any) -> tuple[str, str]:
    """(canonical JSON, its sha256 hex): what content-addressed spec files are named after."""
    text = canonical_json(data)
    return text, hashlib.sha256(text.encode()).hexdigest()


def destroy_spec_name(stage: str, host: str) -> str:
    """The spec file a destroy provisioner reads: the one named by the hash in its `input`."""
    return f"{stage}@{host}-${{substr(self.input.hash, 0, 12)}}.json"


def stage_specs(lab: Lab, stages: Iterable[Stage]) -> list[StageSpec]:
    """Run every stage builder for every host (None: nothing to do there). Pure apart from imports."""
    specs: list[StageSpec] = []
    for stage in stages:
        built = [(host.name, stage.build(lab, host)) for host in lab.hosts]
        for host, spec in built:
            if spec is None:
                continue
            text, digest = hashed(spec)
            specs.append(StageSpec(stage, host, spec, text, digest))
    return specs


def pg_schema(lab: Lab) -> str:
    return str(lab.state.settings.get("schema_name") or f"distrilab_{lab.name.replace('-', '_')}")


def s3_key(lab: Lab) -> str:
    return str(lab.state.settings.get("key") or f"distrilab/{lab.name}.tfstate")


def add_backend(stack: cdktn.TerraformStack, lab: Lab, paths: Paths) -> None:
    """Where terraform keeps the lab's state (cdk.model.StateBackend). No credential is written:
    the pg backend reads PG_CONN_STR at init, the s3 backend the usual AWS variables."""
    settings = lab.state.settings
    if lab.state.backend == "pg":
        # a partial configuration: conn_str comes from PG_CONN_STR at init, never from a file
        # (without a backend construct, cdktn would add its default local one beside an override)
        cdktn.PgBackend(stack, conn_str="(PG_CONN_STR)", schema_name=pg_schema(lab))
        stack.add_override("terraform.backend.pg.conn_str", None)
    elif lab.state.backend == "s3":
        lockfile = settings.get("use_lockfile", "dynamodb_table" not in settings)
        cdktn.S3Backend(
            stack,
            bucket=settings["bucket"],
            key=s3_key(lab),
            region=settings.get("region"),
            endpoints={"s3": settings["endpoint"]} if settings.get("endpoint") else None,
            use_path_style=True if settings.get("endpoint") else None,
            use_lockfile=lockfile or None,
            dynamodb_table=settings.get("dynamodb_table"),
        )
    else:
        cdktn.LocalBackend(stack, path=str(paths.state_file(lab.name)))


def state_location(lab: Lab, paths: Paths) -> str:
    """Where the state is, for people: the file, the pg schema or the s3 object."""
    if lab.state.backend == "pg":
        return f"pg schema {pg_schema(lab)}"
    if lab.state.backend == "s3":
        return f"s3://{lab.state.settings['bucket']}/{s3_key(lab)}"
    return str(paths.state_file(lab.name))


def inventory(lab: Lab) -> dict[str, Any]:
    """What the stack outputs: every node with role, kind, host, image and addresses; the hosts."""
    fabric: dict[str, list[str]] = {}
    for iface in lab.addressing.servers:
        fabric.setdefault(iface.node, []).append(f"{iface.interface}={iface.address}")
    nodes = {}
    for node in lab.topology.nodes:
        addresses = {"management": lab.addressing.management.get(node.name)}
        if node.name in lab.addressing.loopbacks:
            addresses["loopback"] = lab.addressing.loopbacks[node.name]
        nodes[node.name] = {
            "instance": lab.instance_name(node.name),
            "role": node.role,
            "kind": node.kind,
            "host": lab.placement.assignment[node.name],
            "image": lab.image_of(node),
            "addresses": addresses,
            "fabric": sorted(fabric.get(node.name, [])),
        }
    hosts = {h.name: {"kind": h.kind, "address": h.address, "capacity": h.capacity} for h in lab.hosts}
    return {"lab": lab.name, "nodes": nodes, "hosts": hosts}


class LabStack(cdktn.TerraformStack):
    """The stack of one lab, named after it. Writes the stage spec files while being built."""

    def __init__(
        self,
        scope: Construct,
        lab: Lab,
        paths: Paths | None = None,
        stack_dir: Path | None = None,
        stages: tuple[Stage, ...] | None = None,
        aws_client_cert: str | None = None,
    ):
        """`aws_client_cert`: the certificate aws hosts trust on their LXD API (default: distrilab's
        own client certificate, see stacks.aws_hosts.add_aws_hosts); ignored without aws hosts."""
        super().__init__(scope, lab.name)
        self.lab = lab
        self.paths = paths or Paths.for_repo()
        self.stages = stages = cdk.stages.STAGES if stages is None else stages
        self.specs = stage_specs(lab, stages)
        self._write_specs(stack_dir)
        add_backend(self, lab, self.paths)

        self.anchor = cdktn.TerraformResource(self, ANCHOR, terraform_resource_type="terraform_data")
        # constant input: the anchor must never be replaced
        self.anchor.add_override("input", {"lab": lab.name})
        # instances for aws hosts; adds nothing (and imports no provider) for other labs
        self.aws: AwsHosts = add_aws_hosts(self, lab, aws_client_cert)

        self.resources: dict[str, cdktn.TerraformResource] = {}
        self.sweep: cdktn.TerraformResource | None = None
        previous: list[cdktn.TerraformResource] = [self.anchor]
        for stage in stages:
            if stage.name != "cluster" and self.sweep is None:
                previous = [self._sweep_resource(previous)]
            current = [self._stage_resource(s, previous) for s in self.specs if s.stage.name == stage.name]
            if current:
                previous = current
        if self.sweep is None:
            self._sweep_resource(previous)

        # the inventory is large (a record per node): passing it through jsii costs ~0.4 s at 1000
        # nodes, so it goes to a content-addressed file that terraform reads for the output
        inventory_text, inventory_digest = hashed(inventory(lab))
        self.inventory_file = self._write_file(f"inventory-{inventory_digest[:12]}.json", inventory_text)
        cdktn.TerraformOutput(
            self,
            "inventory",
            value=f'${{jsondecode(file("{self.inventory_file}"))}}',
            description="nodes (role, kind, host, image, addresses) and hosts of the lab",
        )

    @property
    def specs_dir(self) -> Path:
        return self.paths.specs_dir / self.lab.name

    def _write_specs(self, stack_dir: Path | None) -> None:
        """Durable copies under .distrilab/specs/<lab>/ (the commands read those), plus a copy in
        the stack folder so the synthesized output is self-describing."""
        for s in self.specs:
            self._write_file(s.file_name, s.canonical)
            if stack_dir:
                self._write_file(s.file_name, s.canonical, stack_dir / "specs")

    def _write_file(self, name: str, text: str, folder: Path | None = None) -> Path:
        """Write a content-addressed file once (an existing one already has the right content)."""
        folder = folder or self.specs_dir
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text + "\n")
            tmp.replace(path)
        return path

    def _exec(
        self, args: str, when_destroy: bool = False, environment: dict[str, str] | None = None
    ) -> cdktn.LocalExecProvisioner:
        return cdktn.LocalExecProvisioner(
            type="local-exec",
            command=f"{self.paths.python} {args}",
            working_dir=str(self.paths.repo),
            environment={"PYTHONPATH": str(self.paths.repo), "PYTHONUNBUFFERED": "1", **(environment or {})},
            when="destroy" if when_destroy else None,
        )

    def _sweep_resource(self, depends_on: list[cdktn.TerraformResource]) -> cdktn.TerraformResource:
        """The lab's sweep (cdk/sweep.py): after the cluster stage, before every other stage, so
        its destroy runs once the stages are gone and while the lab's LXD cluster still exists.
        Only `destroy` runs it; a changed spec (hosts) is an in-place update of `input`, never a
        replacement (a replacement's deposed object would be destroyed: measured, without its
        provisioners; still, nothing may sweep a lab that lives on)."""
        text, digest = hashed(sweep_spec(self.lab))
        self._write_file(spec_file_name(SWEEP, "all", digest), text)
        destroy_spec = self.specs_dir / destroy_spec_name(SWEEP, "all")
        addresses = dict(self.aws.public_addresses)
        environment = {HOST_ADDRESSES_ENV: "${jsonencode(self.input.addresses)}"} if addresses else {}
        self.sweep = cdktn.TerraformResource(
            self,
            SWEEP,
            terraform_resource_type="terraform_data",
            depends_on=list(depends_on),
            provisioners=[self._exec(f"-m modules.sweep destroy --spec {destroy_spec}",
                                     when_destroy=True, environment=environment)],
        )
        self.sweep.add_override("input", {"lab": self.lab.name, "hash": digest,
                                          **({"addresses": addresses} if addresses else {})})
        return self.sweep

    def _aws_addresses(self, s: StageSpec) -> dict[str, str]:
        """The apply-time addresses a stage on an aws host needs, as terraform references (empty
        for other hosts): the host's own and, for a joining cluster member, the first host's."""
        if s.host not in self.aws.instances:
            return {}
        addresses = {
            HOST_ADDRESS_ENV: self.aws.public_addresses[s.host],
            HOST_PRIVATE_ADDRESS_ENV: self.aws.private_addresses[s.host],
        }
        first = self.lab.hosts[0].name
        if s.stage.name == "cluster" and s.host != first and first in self.aws.instances:
            addresses[BOOTSTRAP_ADDRESS_ENV] = self.aws.public_addresses[first]
        return addresses

    def _stage_resource(
        self, s: StageSpec, depends_on: list[cdktn.TerraformResource]
    ) -> cdktn.TerraformResource:
        common = f"--generation ${{self.id}} --state-dir {self.paths.state_dir}"
        create_spec = self.specs_dir / s.file_name
        # destroy reads the spec this resource was created from, found through its stored hash
        destroy_spec = self.specs_dir / destroy_spec_name(s.stage.name, s.host)
        addresses = self._aws_addresses(s)
        if addresses and s.stage.name == "cluster":
            depends_on = [*depends_on, *self.aws.depends_on]  # the host must exist to be set up
            bootstrap = self.resources.get(resource_id("cluster", self.lab.hosts[0].name))
            if BOOTSTRAP_ADDRESS_ENV in addresses and bootstrap is not None:
                depends_on.append(bootstrap)  # joining needs the first host's address and token
        # other joining hosts install LXD while the first one bootstraps the cluster, and wait
        # for it only to join (modules/lxd_host.py: join_cluster)
        # destroy-time provisioners may only reference `self`: they read the addresses from input
        destroy_env = {name: f"${{self.input.addresses.{name}}}" for name in addresses}
        resource = cdktn.TerraformResource(
            self,
            s.resource_id,
            terraform_resource_type="terraform_data",
            depends_on=list(depends_on),
            lifecycle=cdktn.TerraformResourceLifecycle(create_before_destroy=True),
            provisioners=[
                self._exec(f"-m {s.stage.module} apply --spec {create_spec} {common}", environment=addresses),
                self._exec(
                    f"-m {s.stage.module} destroy --spec {destroy_spec} {common}",
                    when_destroy=True,
                    environment=destroy_env,
                ),
            ],
        )
        stage_input: dict[str, Any] = {"stage": s.stage.name, "host": s.host, "hash": s.hash}
        if addresses:
            stage_input["addresses"] = addresses
        resource.add_override("input", stage_input)
        # a replaced instance (new addresses) must re-run the stage: only a change here does that
        resource.add_override("triggers_replace", [s.hash, *addresses.values()] if addresses else [s.hash])
        self.resources[s.resource_id] = resource
        return resource
