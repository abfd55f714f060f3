"""What design time needs to know about this machine, read here and passed in (cdk/ does no I/O).

`read_host_routes`: its IPv4 routes and resolvers, which a lab's address pools must avoid
(parsed by cdk/host_routes.py).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from cdk.host_routes import HostRoute, parse_resolvers, parse_routes

log = logging.getLogger(__name__)

#: runs a command and returns its stdout (injectable so that tests can feed recorded output)
CommandRunner = Callable[[Sequence[str]], str]


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, timeout=10).stdout


def read_host_routes(
    run: CommandRunner = _run, resolv_conf: Path = Path("/etc/resolv.conf")
) -> list[HostRoute]:
    """This machine's IPv4 routes and resolvers; empty parts when `ip` or the file is unavailable."""
    try:
        routes = parse_routes(run(["ip", "-j", "route"]), run(["ip", "-j", "-d", "link"]))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("cannot read the host's routes (%s): pool overlaps with them are not checked", exc)
        routes = []
    with contextlib.suppress(OSError):  # no resolv.conf: no resolver to collide with
        routes += parse_resolvers(resolv_conf.read_text(encoding="utf-8"))
    return routes
