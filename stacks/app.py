"""The cdktf app entry point (`cdktf.json`: `.venv/bin/python -m stacks.app`).

`npx cdktf synth|deploy|destroy` run this with the repo root as working directory; the lab comes
from the environment variable DISTRILAB_LAB (default labs/default.yaml). `distrilab synth` calls
`synthesize` in-process and writes the same files.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import cdktn

from cdk.errors import DistrilabError
from cdk.model import Lab
from cdk.stages import Stage
from stacks.lab_stack import REPO_ROOT, LabStack, Paths
from stacks.loading import load

DEFAULT_LAB = "labs/default.yaml"
DEFAULT_OUTDIR = REPO_ROOT / "cdktf.out"


def synthesize(
    lab: Lab, outdir: Path | None = None, paths: Paths | None = None, stages: tuple[Stage, ...] | None = None
) -> LabStack:
    """Write `<outdir>/manifest.json` and `<outdir>/stacks/<lab>/cdk.tf.json` (+ its specs/)."""
    outdir = Path(outdir or os.environ.get("CDKTF_OUTDIR") or DEFAULT_OUTDIR).resolve()
    # validation would run `terraform version` for every construct: seconds for nothing here
    app = cdktn.App(outdir=str(outdir), skip_validation=True)
    stack = LabStack(app, lab, paths, stack_dir=outdir / "stacks" / lab.name, stages=stages)
    app.synth()
    return stack


def load_for_deploy(path: str | Path) -> Lab:
    """cdktf synthesizes for deploy (and destroy): the lab's chosen pools are claimed as by `up`,
    and a lab too large for this host's memory is refused as by `up` (nothing claimed then).
    Nodes already running are not counted, so a deployed lab can always be destroyed."""
    from modules.memory_fit import check_local_memory
    from stacks.pool_records import forget_new_claim, read_records

    claimed_before = set(read_records(Paths.for_repo()))
    lab = load(path, claim_pools=True)
    try:
        check_local_memory(lab)  # DISTRILAB_IGNORE_MEMORY=1 skips it
    except DistrilabError:
        forget_new_claim(Paths.for_repo(), lab.name, claimed_before)
        raise
    return lab


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        synthesize(load_for_deploy(os.environ.get("DISTRILAB_LAB", DEFAULT_LAB)))
    except DistrilabError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
