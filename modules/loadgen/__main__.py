"""`python -m modules.loadgen SCENARIO --target URL --out DIR`: plain-text progress and summary.

Runs where terraform or a lab hook captures the output, so it prints plain lines, no bars.
Exit codes: 0 the run completed (request errors are in the report), 1 with --fail-on-errors and
errors counted, 2 a bad scenario, target or arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import urllib.request
from collections.abc import Callable

from cdk.errors import DistrilabError
from modules.loadgen.engine import Progress
from modules.loadgen.plan import PortRef
from modules.loadgen.runner import run_scenario
from modules.loadgen.summary import format_text


def parse_endpoint(text: str) -> tuple[str, str]:
    service, sep, url = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected SERVICE=URL (got {text!r})")
    return service, url


def http_ping(url: str) -> Callable[[PortRef, PortRef], bool]:
    """verify_ping through the lab's ping agent: it attaches both ports' endpoints on their ACA
    nodes and pings (the controller's own container cannot reach the nodes' switches)."""

    def ping(source: PortRef, target: PortRef) -> bool:
        body = json.dumps({"source": dataclasses.asdict(source), "target": dataclasses.asdict(target)})
        request = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as answer:
            return bool(json.loads(answer.read()).get("ok"))

    return ping


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
    ap.add_argument("--ping-url", metavar="URL",
                    help="verify_ping asks this ping agent (modules/ping_agent.py) to ping between two ports")
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
            ping=http_ping(args.ping_url) if args.ping_url else None,
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
