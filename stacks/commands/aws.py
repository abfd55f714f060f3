"""`distrilab aws-check LAB`: the AWS pre-flight of a lab's aws hosts (modules/aws_preflight.py).

Reads only: credentials, region, zone, instance types, AMIs, key pairs, vCPU and VPC quotas.
Exit 0 when AWS can host the lab (warnings allowed), 1 when it cannot, 2 for a bad lab file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from stacks.loading import load

if TYPE_CHECKING:
    from modules.aws_preflight import Finding

console = Console(soft_wrap=True)
STYLES = {"ok": "green", "warning": "yellow", "problem": "bold red"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "aws-check", help="check that AWS can host the lab's aws hosts", description=__doc__
    )
    p.add_argument("lab", type=Path, help="lab file")
    p.set_defaults(func=aws_check)


def render(finding: Finding) -> str:
    line = (
        f"[{STYLES[finding.status]}]{finding.status:<7}[/] {escape(finding.where)}: {escape(finding.message)}"
    )
    return line + (f"\n        [dim]hint: {escape(finding.hint)}[/]" if finding.hint else "")


def aws_check(args: argparse.Namespace) -> int:
    # imported here: boto3 costs ~0.7 s, which every other distrilab command would pay at start
    from cdk.aws import aws_lab
    from modules.aws_preflight import preflight

    lab = load(args.lab)  # a bad lab file raises LabFileError: the CLI prints it, exit 2
    settings = aws_lab(lab)
    if settings is None:
        console.print(f"lab {lab.name} has no aws hosts: nothing to check")
        return 0
    findings = preflight(settings)
    for finding in findings:
        console.print(render(finding))
    problems = sum(f.status == "problem" for f in findings)
    console.print(f"[bold red]{problems} problem(s)[/]" if problems else "[green]ready for apply[/]")
    return 1 if problems else 0
