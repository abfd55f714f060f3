"""`distrilab load SCENARIO --target URL [--out DIR]`: run a load scenario against Alcor's API.

Sends the scenario's requests open-loop at its rate, writes report.json and PNG plots to DIR, and
prints a one-screen summary. Request failures are counted in the report, not raised; exit 0 unless
`--fail-on-errors` is given and something failed (1), or the scenario/target is bad (2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from modules.loadgen import Progress as LoadProgress

console = Console()
stderr = Console(stderr=True)  # progress: stdout may carry --json


def parse_endpoint(text: str) -> tuple[str, str]:
    """`--endpoint SERVICE=URL` (modules.loadgen's parser, imported only when the option is used:
    the load generator's imports cost ~0.25 s, which every distrilab command would pay at start)."""
    from modules.loadgen.__main__ import parse_endpoint as parse

    return parse(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("load", help="run a load scenario against Alcor's API", description=__doc__)
    p.add_argument("scenario", type=Path, help="scenario YAML (see labs/scenarios/)")
    p.add_argument("--target", required=True, help="Alcor base URL, e.g. the API gateway on port 9009")
    p.add_argument(
        "--out", type=Path, default=Path("load-report"), help="report directory (default: %(default)s)"
    )
    p.add_argument(
        "--endpoint",
        action="append",
        type=parse_endpoint,
        default=[],
        metavar="SERVICE=URL",
        help="per-service base URL (vpc_manager, subnet_manager, port_manager, "
        "security_group_manager, node_manager); repeatable",
    )
    p.add_argument("--json", action="store_true",
                   help="print report.json on stdout instead of the summary (progress stays on stderr)")
    p.add_argument("--fail-on-errors", action="store_true", help="exit 1 when any request failed")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from rich import box
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from modules.loadgen import load_scenario, run_scenario
    from modules.loadgen.summary import HEADERS, LATENCY_NOTE, error_lines, headline, summary_rows

    scenario = load_scenario(args.scenario)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[errors]} errors"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(f"{scenario.name}", total=None, errors=0)

        def on_progress(p: LoadProgress) -> None:
            bar.update(task, total=p.planned, completed=p.done + p.skipped, errors=p.errors)

        report = run_scenario(scenario, args.target, args.out, on_progress, endpoints=dict(args.endpoint))
    doc = report.to_dict()
    exit_code = 1 if args.fail_on_errors and doc["totals"]["error_total"] else 0
    if args.json:  # the report's own kind and version (docs/schemas/distrilab-load-report.v1.json)
        print(json.dumps({**doc, "files": report.files}, indent=2))
        return exit_code
    console.print(headline(doc), markup=False)
    # Borderless with one space between columns, so that it fits an 80-column terminal.
    table = Table(
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        caption=LATENCY_NOTE,
        caption_justify="left",
    )
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    errors_column = HEADERS.index("err")
    for row in summary_rows(doc):
        table.add_row(*row, style="red" if row[errors_column] != "0" else None)
    console.print(table)
    for line in error_lines(doc):
        console.print(line, style="yellow", markup=False)
    # soft_wrap: file paths stay whole so they can be copied, whatever the terminal width
    console.print(f"report: {', '.join(report.files)}", markup=False, soft_wrap=True)
    return exit_code
