"""`distrilab doctor`: is this machine ready? Every program distrilab runs (cdk/programs.py),
where it was found, and the Debian package that brings each missing one."""

from __future__ import annotations

import argparse
import json
import shutil

from rich.console import Console
from rich.table import Table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check that every program distrilab runs is installed",
                              description=__doc__)
    p.add_argument("--group", action="append", metavar="GROUP",
                   help="host, tool, dev or image (default: host, tool and dev, what .ci/setup installs)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    from cdk.errors import DistrilabError
    from cdk.programs import SYSTEM_PATH, missing, programs

    groups = args.group or ["host", "tool", "dev"]
    try:
        gaps = {p.name for p in missing(groups)}
    except ValueError as err:
        raise DistrilabError(f"--group: {err}") from None
    rows = []
    for p in programs(*groups):
        found = shutil.which(p.name) or shutil.which(p.name, path=SYSTEM_PATH)
        state = "ok" if found else ("missing" if p.name in gaps else "optional")
        rows.append({"program": p.name, "package": p.package or p.other_source, "group": p.group,
                     "state": state, "path": found or "", "why": p.why})
    if args.json:
        print(json.dumps({"ok": not gaps, "programs": rows}, indent=2))
        return 1 if gaps else 0
    table = Table(title="distrilab doctor: " + ("ready" if not gaps else f"{len(gaps)} program(s) missing"))
    for column in ("program", "package", "group", "state", "path"):
        table.add_column(column)
    for row in rows:
        colour = {"ok": "green", "missing": "bold red", "optional": "yellow"}[row["state"]]
        state = f"[{colour}]{row['state']}[/]"
        table.add_row(row["program"], row["package"], row["group"], state, row["path"])
    console = Console()
    console.print(table)
    if gaps:
        packages = sorted({p.package for p in programs(*groups) if p.name in gaps and p.package})
        console.print(f"install them: .ci/setup (or apt-get install {' '.join(packages)})")
    return 1 if gaps else 0
