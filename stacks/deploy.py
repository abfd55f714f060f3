"""The steps the CLI commands share: synth a lab into cdktf.out, then drive terraform on it.

`distrilab up/down` and `npx cdktf deploy/destroy` share the state file (`terraform.<lab>.tfstate`
at the repo root, the path cdktf's default local backend uses) and write byte-identical
`cdktf.out/stacks/<lab>/cdk.tf.json`, so either can undo what the other did. distrilab runs
terraform on a private copy of that file (`.distrilab/terraform/<lab>/`): `npx cdktf synth`
deletes the folders of every other stack in cdktf.out (measured with cdktf-cli 0.21), which
would pull the working directory from under a running apply of another lab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdk.aws import aws_lab
from cdk.model import Lab
from cdk.stages import Stage
from stacks.app import DEFAULT_OUTDIR, synthesize
from stacks.drift import Drift, find_drift
from stacks.lab_stack import ANCHOR, SWEEP, Paths
from stacks.terraform import ApplyResult, EventCallback, PlanResult, Terraform, TerraformBinary


@dataclass(frozen=True)
class Synthesized:
    lab: Lab
    stack_dir: Path  # cdktf.out/stacks/<lab>: what `npx cdktf` uses
    workdir: Path  # where distrilab runs terraform (a copy of the stack's cdk.tf.json)
    state_file: Path
    resources: dict[str, tuple[str, str]]  # terraform address -> (stage, host)
    #: (address, stage, module, host, hash, spec) of every stage resource, for drift detection
    stage_specs: tuple[tuple[str, str, str, str, str, dict[str, Any]], ...] = ()

    def label(self, address: str) -> tuple[str, str]:
        """(stage, host) of a resource address; the anchor is ("lab", "*")."""
        return self.resources.get(address, (address.rsplit(".", 1)[-1], "?"))


def synth(
    lab: Lab,
    outdir: Path = DEFAULT_OUTDIR,
    paths: Paths | None = None,
    stages: tuple[Stage, ...] | None = None,
) -> Synthesized:
    stack = synthesize(lab, outdir, paths, stages)
    stack_dir = Path(outdir).resolve() / "stacks" / lab.name
    workdir = stack.paths.workdir(lab.name)
    workdir.mkdir(parents=True, exist_ok=True)
    # copied at once: a concurrent `npx cdktf synth` of another lab may delete stack_dir
    (workdir / "cdk.tf.json").write_bytes((stack_dir / "cdk.tf.json").read_bytes())
    resources = {f"terraform_data.{ANCHOR}": (ANCHOR, "*")}
    # in the stack's order: the sweep comes right after the cluster stage
    resources.update({f"terraform_data.{s.resource_id}": (s.stage.name, s.host) for s in stack.specs
                      if s.stage.name == "cluster"})
    resources[f"terraform_data.{SWEEP}"] = (SWEEP, "*")
    resources.update({f"terraform_data.{s.resource_id}": (s.stage.name, s.host) for s in stack.specs})
    stage_specs = tuple(
        (f"terraform_data.{s.resource_id}", s.stage.name, s.stage.module, s.host, s.hash, s.spec)
        for s in stack.specs
    )
    state_file = stack.paths.state_file(lab.name)
    return Synthesized(lab, stack_dir, workdir, state_file, resources, stage_specs)


def drift(synthesized: Synthesized) -> list[Drift]:
    """Stages whose hosts no longer match what was applied (see stacks/drift.py)."""
    local = synthesized.lab.state.backend == "local"
    return find_drift(synthesized.stage_specs,
                      synthesized.state_file if local else terraform(synthesized).state_pull())


def terraform(synthesized: Synthesized, binary: TerraformBinary | None = None) -> Terraform:
    """A runner in the lab's terraform folder, initialised (offline: only built-in resources)."""
    tf = Terraform(synthesized.workdir, binary, lock_timeout=synthesized.lab.state.lock_timeout)
    tf.init()
    return tf


def plan(
    synthesized: Synthesized,
    on_event: EventCallback | None = None,
    destroy: bool = False,
    replace: Sequence[str] = (),
) -> PlanResult:
    return terraform(synthesized).plan(on_event, destroy=destroy, replace=replace)


def apply(
    synthesized: Synthesized,
    on_event: EventCallback | None = None,
    destroy: bool = False,
    replace: Sequence[str] = (),
) -> ApplyResult:
    """`terraform apply` (or destroy) of the synthesized stack, events streamed to `on_event`.

    Before applying a lab with aws hosts, the AWS pre-flight (modules/aws_preflight.py) must pass:
    it raises AwsPreflightError naming every problem (quotas, AMI, key pair, ...) before terraform
    creates anything. boto3 is imported only then. `replace` re-runs drifted stages.
    """
    if not destroy and aws_lab(synthesized.lab) is not None:
        from modules.aws_preflight import check as aws_preflight

        aws_preflight(synthesized.lab)
    tf = terraform(synthesized)
    return tf.destroy(on_event) if destroy else tf.apply(on_event, replace=replace)
