"""`distrilab doctor [LAB]`: is this machine (or every host of LAB) ready for labs? Every program
distrilab runs (cdk/programs.py) and what labs need of a host (modules/doctor.py): inotify limits,
neighbour tables, open files, the firewall backend, the storage pool, /dev/net/tun, openvswitch,
nesting. `--fix` sets what can be set and checks again."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from stacks.json_output import emit

if TYPE_CHECKING:
    from cdk.model import Lab
    from modules.doctor import Finding

STATE_STYLE = {"pass": "green", "fixed": "cyan", "skip": "dim", "fail": "bold red",
               "ok": "green", "missing": "bold red", "optional": "yellow"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", description=__doc__,
                              help="check (and --fix) what labs need on this machine or a lab's hosts")
    p.add_argument("lab", type=Path, nargs="?",
                   help="lab file: check its hosts for its size (default: this machine)")
    p.add_argument("--fix", action="store_true",
                   help="set what can be set (packages, sysctls, limits), then check again")
    p.add_argument("--group", action="append", metavar="GROUP",
                   help="programs of host, tool, dev or image (default: host, tool and dev: what .ci/setup "
                   "installs)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    p.set_defaults(func=doctor)


def program_rows(groups: list[str]) -> list[dict[str, str]]:
    """Every program of `groups`: where it was found, or the package that brings it."""
    from cdk.errors import DistrilabError
    from cdk.programs import SYSTEM_PATH, missing, programs

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
    return rows


def host_findings(lab: Lab | None, fix: bool) -> list[Finding]:
    """The doctor's findings on every host of `lab` (this machine without one), sized for its nodes."""
    from cdk.stages.nodes import endpoint
    from modules import doctor as engine
    from modules.host_shell import LocalShell, shell_for

    if lab is None:
        targets: list[tuple[Any, engine.Needs]] = [(LocalShell("local"), engine.Needs())]
    else:
        targets = [(shell_for(endpoint(h, lab.name), h.ssh_user),
                    engine.Needs(len(lab.nodes_on(h.name)), lab.lxd.pool)) for h in lab.hosts]
    found: list[Finding] = []
    for shell, needs in targets:
        if fix:
            found += engine.fix(shell, needs)
        else:
            found += engine.diagnose(engine.observe(shell, needs.pool), needs)
    return found


def doctor(args: argparse.Namespace) -> int:
    from stacks.loading import load

    programs = program_rows(args.group or ["host", "tool", "dev"])
    lab = load(args.lab) if args.lab else None
    checks = host_findings(lab, args.fix)
    ok = not any(r["state"] == "missing" for r in programs) and not any(f.state == "fail" for f in checks)
    if args.json:
        emit("doctor", {"ok": ok, "lab": lab.name if lab else None, "programs": programs,
                        "checks": [f.to_dict() for f in checks]})
        return 0 if ok else 1
    console = Console()
    missing = [r for r in programs if r["state"] != "ok"]
    table = Table(title=f"programs: {len(missing)} not installed")
    for column in ("program", "package", "group", "state", "path"):
        table.add_column(column)
    for row in missing:
        table.add_row(row["program"], row["package"], row["group"], _styled(row["state"]), row["path"])
    if missing:
        console.print(table)
    else:
        console.print(f"[green]programs[/]: all {len(programs)} installed")
    console.print(findings_table(checks, f"distrilab doctor: {'ready' if ok else 'not ready'}"))
    if not ok and not args.fix:
        console.print(f"fix what can be fixed: distrilab doctor {args.lab or ''} --fix".replace("  ", " "))
    return 0 if ok else 1


def findings_table(checks: list[Finding], title: str) -> Table:
    table = Table(title=title)
    for column in ("host", "check", "state", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for f in checks:
        table.add_row(f.host, f.check, _styled(f.state), f.detail, f.fix)
    return table


def _styled(state: str) -> str:
    return f"[{STATE_STYLE[state]}]{state}[/]"
