"""`distrilab`: the command line. Subcommands live in stacks/commands/*.py, each module
registering its own through `register(subparsers)` (handlers take the parsed args, return an exit code).

Errors: a DistrilabError is the user's to fix and prints as a short red message (exit 2 for bad
input such as a lab file, 1 for a failed run: terraform, reconcilers, image builds). Anything
else is a bug: "internal error, please report", the last frame, and the full traceback in
.distrilab/debug.log.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.markup import escape

from cdk.errors import DistrilabError, ImageBuildError, ReconcileError, TerraformError
from stacks.paths import REPO_ROOT

#: what every terraform/jsii child process gets (also what `npx cdktf` needs: see README)
QUIET_ENV = {"CHECKPOINT_DISABLE": "1", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
#: errors of a run (exit 1); every other DistrilabError is bad input (exit 2)
RUN_FAILURES = (TerraformError, ReconcileError, ImageBuildError)
DEBUG_LOG = REPO_ROOT / ".distrilab" / "debug.log"

stderr = Console(stderr=True, soft_wrap=True)


def command_modules() -> list[ModuleType]:
    """Every module in stacks/commands, sorted by name (the order of `distrilab --help`)."""
    import stacks.commands as package

    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"stacks.commands.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distrilab",
        description="Emulated data-center networks of LXD containers, through CDK for Terraform stacks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        module.register(subparsers)
    parser.subcommands = dict(subparsers.choices)  # type: ignore[attr-defined]
    return parser


def has_subcommand(parser: argparse.ArgumentParser, name: str) -> bool:
    """Whether a command module registered `name` (lets `up` run `check` once someone wrote it)."""
    return name in getattr(parser, "subcommands", {})


def exit_code(err: DistrilabError) -> int:
    return 1 if isinstance(err, RUN_FAILURES) else 2


def main(argv: Sequence[str] | None = None) -> int:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except DistrilabError as err:
        stderr.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        return exit_code(err)
    except KeyboardInterrupt:
        stderr.print("[red]interrupted[/]")
        return 130
    except Exception as err:  # a bug: keep the details for the report, show the gist
        log_path = write_debug_log(argv, err)
        frame = traceback.extract_tb(err.__traceback__)[-1]
        stderr.print(
            f"[bold red]internal error, please report:[/] {escape(type(err).__name__)}: {escape(str(err))}\n"
            f"  at {frame.filename}:{frame.lineno} in {frame.name}\n"
            f"  full traceback: {log_path}",
            highlight=False,
        )
        return 1


def write_debug_log(argv: Sequence[str] | None, err: BaseException) -> Path:
    DEBUG_LOG.parent.mkdir(parents=True, exist_ok=True)
    with DEBUG_LOG.open("a") as log:
        log.write(f"--- {datetime.now(UTC).isoformat()} distrilab {' '.join(argv or sys.argv[1:])}\n")
        log.write("".join(traceback.format_exception(err)))
    return DEBUG_LOG


if __name__ == "__main__":
    sys.exit(main())
