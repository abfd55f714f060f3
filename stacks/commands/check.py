"""`distrilab check LAB`: is the deployed lab healthy? RSTP converged, servers reach each other, TCP flows."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from stacks.json_output import document, emit
from stacks.loading import load
from stacks.paths import Paths

if TYPE_CHECKING:
    from modules.check import Report

console = Console(stderr=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("check", help="test a deployed lab end to end (RSTP or BGP + ECMP, ping, TCP)",
                              description=__doc__)
    p.add_argument("lab", type=Path, help="lab file")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--rstp-timeout", type=float, default=60.0, metavar="S",
                   help="how long to wait for RSTP to converge (default 60)")
    p.add_argument("--ping-deadline", type=int, default=10, metavar="S",
                   help="how long each ping waits for its reply (default 10)")
    p.add_argument("--full", action="store_true",
                   help="ping every ordered pair of servers (n²; small labs) instead of a sample that "
                        "covers every rack pair, pod pair and server")
    p.set_defaults(func=check)


def render(report: Report) -> Table:
    table = Table(title=f"lab {report.lab}: {'healthy' if report.ok else 'FAILED'}")
    for column in ("check", "result", "summary", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for c in report.checks:
        result = "[green]ok[/green]" if c.ok else "[bold red]FAILED[/bold red]"
        summary = "\n".join([c.summary, *(f"  {d}" for d in c.details[:10])])
        table.add_row(c.name, result, summary, f"{c.seconds:.1f}")
    return table


def check(args: argparse.Namespace) -> int:
    from modules.check import run_checks  # pylxd and friends: only for this command (~0.5 s)

    lab = load(args.lab)
    if args.json:
        report = run_checks(lab, rstp_timeout=args.rstp_timeout, ping_deadline=args.ping_deadline,
                            full=args.full)
        emit("check", report.to_dict())
    else:
        with console.status("checking ...") as status:
            report = run_checks(lab, rstp_timeout=args.rstp_timeout, ping_deadline=args.ping_deadline,
                                progress=lambda text: status.update(text), full=args.full)
        Console().print(render(report))
    save_report(lab.name, document("check", report.to_dict()))
    return 0 if report.ok else 1


def save_report(lab: str, report: dict) -> None:
    """Keep the last report where `serve` (and a later look) finds it; written whole, then renamed."""
    path = Paths.for_repo().last_check(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(path)
