"""`distrilab serve LAB`: a local web page of the lab, refreshed every 2 s (leave it open during `up`).

It shows the topology (tiers as rows, hosts as colours, links that cross hosts dashed red), each
node's LXD state and management address, the last `distrilab check` report and the controller's
latency and throughput charts. The page (stacks/serve_page/) is drawn by a small script from
`/api/state`; nothing is fetched from outside this server.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cdk.errors import DistrilabError
from cdk.model import Lab
from stacks.commands.graph import drawn
from stacks.commands.inspect import lxd_states, node_rows, spread
from stacks.loading import load
from stacks.paths import Paths

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).resolve().parents[1] / "serve_page"
#: URL path -> (file in PAGE_DIR, content type): all the page is
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/serve.js": ("serve.js", "text/javascript; charset=utf-8"),
    "/serve.css": ("serve.css", "text/css; charset=utf-8"),
}
#: the plots of a load report the page shows (file names from modules/loadgen/plots.py)
CHARTS = ("latency.png", "throughput.png")
#: states that are neither up nor down: LXD did not answer
UNKNOWN = "unknown"

#: lab -> {instance: (status, cluster member)}, as stacks.commands.inspect.lxd_states
StateSource = Callable[[Lab], dict[str, tuple[str, str]]]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="a local web page of the lab: topology, node states, checks",
                              description=__doc__)
    p.add_argument("lab", type=Path, help="lab file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default %(default)s; 0: any free one)")
    p.set_defaults(func=serve)


@dataclass(frozen=True)
class LabView:
    """What the page shows and where each part comes from."""

    lab: Lab
    check_file: Path  # the last `distrilab check --json` document
    reports_dir: Path  # the controller's report.json and plots
    states: StateSource = lxd_states

    @classmethod
    def of(cls, lab: Lab, paths: Paths) -> LabView:
        from cdk.stages.controller import REPORTS_DIR  # relative to where the stage runs: the repo

        return cls(lab, paths.last_check(lab.name), paths.repo / REPORTS_DIR / lab.name)


def node_states(view: LabView) -> tuple[dict[str, tuple[str, str]], str | None]:
    """The LXD states, or every node "unknown" and the reason when LXD does not answer."""
    try:
        return view.states(view.lab), None
    except Exception as err:  # any failure of the daemon or the network: the page still renders
        log.debug("LXD states of %s: %s", view.lab.name, err, exc_info=True)
        unknown = {view.lab.instance_name(n.name): (UNKNOWN, "") for n in view.lab.topology.nodes}
        return unknown, f"{type(err).__name__}: {err}"


def is_down(state: str) -> bool:
    return state not in ("Running", UNKNOWN)


def last_check(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the document, None), (None, None) when no check ran yet, (None, why) when unreadable."""
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as err:
        return None, f"{path}: {err}"


def report_charts(reports_dir: Path) -> list[dict[str, str]]:
    """The charts present, with their modification time in the URL (a new run shows at once)."""
    charts = []
    for name in CHARTS:
        path = reports_dir / name
        if path.is_file():
            charts.append({"name": path.stem, "url": f"/report/{name}?v={path.stat().st_mtime_ns}"})
    return charts


def state_document(view: LabView) -> dict[str, Any]:
    """What `/api/state` answers: the nodes of `inspect --json` with the tiers and links of `graph --json`."""
    states, lxd_error = node_states(view)
    topology = drawn(view.lab, [])
    tiers = {n["name"]: n["tier"] for n in topology["nodes"]}
    nodes = [{**row, "tier": tiers[row["node"]], "down": is_down(row["state"])}
             for row in node_rows(view.lab, states)]
    check, check_error = last_check(view.check_file)
    return {
        "lab": view.lab.name,
        "topology": view.lab.topology.kind,
        "hosts": [h.name for h in view.lab.hosts],
        "placement": spread(view.lab),
        "nodes": nodes,
        "links": topology["links"],
        "lxd_error": lxd_error,
        "check": check,
        "check_error": check_error,
        "charts": report_charts(view.reports_dir),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class Handler(BaseHTTPRequestHandler):
    server: LabServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/state":
            body = json.dumps(state_document(self.server.view)).encode()
            self.reply(body, "application/json")
        elif path in ASSETS:
            name, content_type = ASSETS[path]
            self.reply((PAGE_DIR / name).read_bytes(), content_type)
        elif path.startswith("/report/") and path.removeprefix("/report/") in CHARTS:
            self.send_file(self.server.view.reports_dir / path.removeprefix("/report/"), "image/png")
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def send_file(self, path: Path, content_type: str) -> None:
        try:
            self.reply(path.read_bytes(), content_type)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)

    def reply(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # the page polls: never an old state
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)  # one line every 2 s: not on stderr


class LabServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser's open connection never holds up the exit

    def __init__(self, view: LabView, host: str = "127.0.0.1", port: int = 0):
        self.view = view
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


@contextmanager
def running(view: LabView, host: str = "127.0.0.1", port: int = 0) -> Iterator[LabServer]:
    """A server answering in a background thread while the block runs (tests, screenshots)."""
    server = LabServer(view, host, port)
    # a short poll interval: shutdown() returns within 0.1 s instead of 0.5 s
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="distrilab-serve", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(args: argparse.Namespace) -> int:
    lab = load(args.lab)
    try:
        server = LabServer(LabView.of(lab, Paths.for_repo()), args.host, args.port)
    except OSError as err:
        raise DistrilabError(f"cannot listen on {args.host}:{args.port}: {err}\n"
                             "  hint: --port 0 picks a free port") from err
    print(f"lab {lab.name}: {server.url} (Ctrl-C stops)", flush=True)
    with server, suppress(KeyboardInterrupt):  # Ctrl-C is how it stops: no "interrupted", exit 0
        server.serve_forever()
    return 0


# ---- headless Chromium: what a person would see (the tests, and the README's docs/serve.png)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise DistrilabError("chromium is not installed\n"
                             "  hint: bash .ci/setup installs it (cdk/programs.py, group dev)")
    return found


def headless(url: str, *options: str, timeout: float = 120) -> str:
    """Chromium's stdout for `url` once the page's script ran (5 s of page time: two polls).
    A dead proxy for everything but loopback: the page may reach this server and nothing else."""
    with tempfile.TemporaryDirectory(prefix="distrilab-chromium-") as profile:
        argv = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--proxy-server=127.0.0.1:9", "--virtual-time-budget=5000",
                *options, url]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = proc.stderr.strip()[-2000:]
        raise DistrilabError(f"chromium failed on {url} (exit {proc.returncode}): {tail}")
    return proc.stdout


def rendered_dom(url: str) -> str:
    return headless(url, "--dump-dom")


def screenshot(url: str, out: Path, size: tuple[int, int] = (1400, 900)) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    headless(url, f"--screenshot={out.resolve()}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars")
    if not out.is_file():
        raise DistrilabError(f"chromium wrote no screenshot to {out}")
    return out


def main(argv: list[str]) -> int:
    """`python -m stacks.commands.serve --screenshot FILE LAB`: the page of LAB as it is now, as a PNG."""
    parser = argparse.ArgumentParser(prog="python -m stacks.commands.serve", description=main.__doc__)
    parser.add_argument("--screenshot", type=Path, required=True, metavar="FILE")
    parser.add_argument("lab", type=Path)
    args = parser.parse_args(argv)
    lab = load(args.lab)
    with running(LabView.of(lab, Paths.for_repo())) as server:
        print(screenshot(server.url, args.screenshot))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
