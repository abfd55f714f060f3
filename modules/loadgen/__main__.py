"""`python -m modules.loadgen SCENARIO --target URL --out DIR`: plain-text progress and summary.

Runs where terraform or a lab hook captures the output, so it prints plain lines, no bars.
Exit codes: 0 the run completed (request errors are in the report), 1 with --fail-on-errors and
errors counted, 2 a bad scenario, target or arguments.
"""

from __future__ import annotations

import argparse
import sys

from cdk.errors import DistrilabError
from modules.loadgen.engine import Progress
from modules.loadgen.runner import run_scenario
from modules.loadgen.summary import format_text


def parse_endpoint(text: str) -> tuple[str, str]:
    service, sep, url = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected SERVICE=URL (got {text!r})")
    return service, url


def _print_progress(p: Progress) -> None:
    print(
        f"[loadgen] {p.elapsed:6.1f}s sent {p.sent}/{p.planned} done {p.done} "
        f"errors {p.errors} skipped {p.skipped}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modules.loadgen", description=__doc__.splitlines()[0])
    ap.add_argument("scenario", help="scenario YAML file")
    ap.add_argument("--target", required=True, help="Alcor base URL (the API gateway, port 9009)")
    ap.add_argument("--out", required=True, help="directory for report.json and the plots")
    ap.add_argument(
        "--endpoint",
        action="append",
        type=parse_endpoint,
        default=[],
        metavar="SERVICE=URL",
        help="per-service base URL (vpc_manager, subnet_manager, port_manager, "
        "security_group_manager, node_manager); repeatable",
    )
    ap.add_argument("--fail-on-errors", action="store_true", help="exit 1 when any request failed")
    ap.add_argument("--quiet", action="store_true", help="no per-second progress lines")
    args = ap.parse_args(argv)
    try:
        report = run_scenario(
            args.scenario,
            args.target,
            args.out,
            None if args.quiet else _print_progress,
            endpoints=dict(args.endpoint),
        )
    except DistrilabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = report.to_dict()
    print(format_text(doc))
    print("report: " + ", ".join(report.files))
    return 1 if args.fail_on_errors and doc["totals"]["error_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
