"""Maximum request rate of the load controller against wrk and locust, on one loopback target.

`.venv/bin/python -m bench.load [--concurrency 32] [--duration 10]`

The target is nginx (Debian package `nginx-light`) with one worker answering from memory with
Alcor-shaped bodies (`201 {"port":{...}}` for ports; `network`/`subnet` for the controller's one
VPC and subnet), so the clients, not the server, are what is measured; without nginx the bench
says so and stops. Each client runs alone, one after the other, with the same
number of connections, against the same endpoint (POST /project/{id}/ports with a create-port
JSON body of the same size as the controller's):

- wrk: `wrk -t1 -c C -d D -s post.lua` (C, one thread, closed loop: as fast as it can);
- locust: one process, C users of `FastHttpUser` (geventhttpclient, locust's fastest client;
  the default HttpUser is several times slower), `wait_time = constant(0)`, headless;
- distrilab: the load controller's engine with a rate far above what it can reach, so it sends
  as fast as C connections allow; it builds a distinct create-port body per request and checks
  each answer for the `port` key (locust checks the status and the key too; wrk checks nothing).

Besides the wall-clock rate, each client's requests per CPU-second of its own process are
recorded (getrusage of the child for wrk and locust, which includes locust's start-up; process
time around the run for distrilab): a measure that the machine's other load disturbs far less.

The clients take turns for `--rounds` rounds (default 3) and each client's median round counts,
because the machine is shared and other load comes and goes; the JSON keeps every round with the
load average before it. Writes bench/results/load.json and prints a table with rates and ratios.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import uvloop

from modules.loadgen import alcor_api, parse_scenario
from modules.loadgen.engine import execute
from modules.loadgen.http import Endpoint
from modules.loadgen.plan import build_plan
from modules.loadgen.scenario import SERVICES

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
PROJECT = "5f0b5c3e-0000-4000-8000-00000000b001"
#: What the target answers, per path suffix, shaped like Alcor's answers (the resource key first).
ANSWERS = {
    "vpcs": '{"network":{"id":"n","status":"ACTIVE"}}',
    "subnets": '{"subnet":{"id":"s","gateway_ip":"10.0.0.1"}}',
    "ports": '{"port":{"id":"p","status":"DOWN","binding:vif_type":"ovs"}}',
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_body() -> str:
    call = alcor_api.create_port(
        PROJECT,
        PROJECT,
        "6b9e7c8a-0000-4000-8000-000000000001",
        "6b9e7c8a-0000-4000-8000-0000000000aa",
        "6b9e7c8a-0000-4000-8000-0000000000bb",
        "10.0.0.2",
        "port-0-0-0-0-0",
        [],
    )
    return call.body.decode()


class Nginx:
    """nginx with one worker on 127.0.0.1, config and logs in a temp dir, stopped by its PID."""

    def __init__(self) -> None:
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dl-bench-nginx-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        if not Path(self.binary).exists():
            raise SystemExit("bench.load needs nginx as its target: apt-get install nginx-light")
        conf = self.dir / "nginx.conf"
        conf.write_text(
            textwrap.dedent(f"""\
            daemon off;
            worker_processes 1;
            pid {self.dir}/nginx.pid;
            error_log {self.dir}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {self.dir}/body;
                keepalive_requests 100000000;
                keepalive_timeout 120s;
                server {{
                    listen 127.0.0.1:{self.port};
                    default_type application/json;
                    location ~ /vpcs$ {{ return 201 '{ANSWERS["vpcs"]}'; }}
                    location ~ /subnets$ {{ return 201 '{ANSWERS["subnets"]}'; }}
                    location / {{ return 201 '{ANSWERS["ports"]}'; }}
                }}
            }}
            """)
        )
        self.proc = subprocess.Popen([self.binary, "-c", str(conf), "-p", str(self.dir)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return f"http://127.0.0.1:{self.port}"
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"nginx did not start; see {self.dir}/error.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_wrk(url: str, concurrency: int, duration: int, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    body = sample_body().replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = "{body}"\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    cpu0 = _children_cpu()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{duration}s",
            "-s",
            str(script),
            f"{url}/project/{PROJECT}/ports",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _children_cpu() - cpu0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "errors": int(errors.group(1)) if errors else 0,
        "requests": requests,
        "cpu_s": round(cpu, 3),
        "requests_per_cpu_s": round(requests / cpu, 1) if cpu else None,
        "raw": out.strip().splitlines(),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LOCUSTFILE = """\
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

BODY = {body!r}
PATH = {path!r}


class Controller(FastHttpUser):
    wait_time = constant(0)

    @task
    def create_port(self):
        with self.client.post(PATH, data=BODY, headers={{"Content-Type": "application/json"}},
                              catch_response=True) as resp:
            if resp.status_code != 201 or b'"port"' not in resp.content:
                resp.failure("no port")
"""


def run_locust(url: str, concurrency: int, duration: int, workdir: Path) -> dict[str, Any]:
    locustfile = workdir / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(body=sample_body(), path=f"/project/{PROJECT}/ports"))
    prefix = workdir / "locust"
    locust = Path(sys.executable).with_name("locust")
    # All users start within the first second (-r C) so ramp-up costs little of the run.
    cpu0 = _children_cpu()
    subprocess.run(
        [
            str(locust),
            "-f",
            str(locustfile),
            "--headless",
            "-u",
            str(concurrency),
            "-r",
            str(concurrency),
            "-t",
            f"{duration}s",
            "--host",
            url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    cpu = _children_cpu() - cpu0  # includes locust's start-up (imports, gevent): a few 0.1 s
    with open(f"{prefix}_stats.csv") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    agg = rows["Aggregated"]
    requests = int(agg["Request Count"])
    return {
        "rate": float(agg["Requests/s"]),
        "errors": int(agg["Failure Count"]),
        "requests": requests,
        "cpu_s": round(cpu, 3),
        "requests_per_cpu_s": round(requests / cpu, 1) if cpu else None,
    }


def run_distrilab(url: str, concurrency: int, duration: int) -> dict[str, Any]:
    scenario = parse_scenario(
        {
            "name": "bench-max-rate",
            "vpc_cidr": "10.0.0.0/8",
            "ports_per_subnet": 300_000,
            "rate": 1_000_000,  # far above reach: sends as fast as `concurrency` connections allow
            "concurrency": concurrency,
            "steps": ["create_vpc", "create_subnet", "create_port"],
            "limits": {"max_duration": duration, "max_requests": 300_000},
        },
        "bench",
    )
    # The engine itself (as run_scenario runs it, minus the report), so that the CPU time
    # counted is the run's, not the plan's: building 300k operations takes seconds.
    plan = build_plan(scenario, "bench")
    endpoint = Endpoint.parse(url)
    gc.collect()
    gc.freeze()
    cpu0 = time.process_time()
    result = uvloop.run(execute(scenario, plan, dict.fromkeys(SERVICES, endpoint)))
    cpu = time.process_time() - cpu0
    gc.unfreeze()
    ports = result.steps["create_port"]
    span = (ports.last_done or 0) - (ports.first_send or 0)
    return {
        "rate": ports.ok / span if span > 0 else 0.0,
        "errors": sum(ports.errors.values()),
        "requests": ports.sent,
        "cpu_s": round(cpu, 3),
        "requests_per_cpu_s": round(ports.sent / cpu, 1) if cpu else None,
        "send_lag_ms": ports.send_lag_ms(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32, help="connections for every client")
    ap.add_argument("--duration", type=int, default=10, help="seconds each client runs")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of wrk, locust, distrilab in turn; the median round counts",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench.load needs wrk: apt-get install wrk")
    nginx = Nginx()
    rounds: dict[str, list[dict[str, Any]]] = {"wrk": [], "locust_fasthttp": [], "distrilab": []}
    url = nginx.start()
    workdir = Path(tempfile.mkdtemp(prefix="dl-bench-load-"))
    clients = (
        ("wrk", lambda: run_wrk(url, args.concurrency, args.duration, workdir)),
        ("locust_fasthttp", lambda: run_locust(url, args.concurrency, args.duration, workdir)),
        ("distrilab", lambda: run_distrilab(url, args.concurrency, args.duration)),
    )
    try:
        # Interleaved rounds: the machine is shared, so load from elsewhere hits every client.
        for i in range(args.rounds):
            for name, run in clients:
                load_before = os.getloadavg()[0]
                print(
                    f"round {i + 1}/{args.rounds}: {name} ({args.concurrency} connections, "
                    f"{args.duration} s) ...",
                    flush=True,
                )
                rounds[name].append({**run(), "loadavg_before": round(load_before, 2)})
                time.sleep(1)
    finally:
        nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    median = {name: statistics.median(r["rate"] for r in runs) for name, runs in rounds.items()}
    # Requests per CPU-second of the client: what the client costs, which the machine's other
    # load disturbs far less than the wall-clock rate.
    per_cpu = {
        name: statistics.median(r["requests_per_cpu_s"] for r in runs) for name, runs in rounds.items()
    }
    ours = median["distrilab"]
    doc = {
        "bench": "load",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_after": round(os.getloadavg()[0], 2),
        },
        "target": "nginx-light, 1 worker, fixed 201 JSON answer, loopback",
        "endpoint": "POST /project/{id}/ports",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "median_rate": {k: round(v, 1) for k, v in median.items()},
        "median_requests_per_cpu_s": {k: round(v, 1) for k, v in per_cpu.items()},
        "ratios": {
            "distrilab_vs_locust_fasthttp": round(ours / median["locust_fasthttp"], 2),
            "distrilab_vs_wrk": round(ours / median["wrk"], 3),
            "per_cpu_distrilab_vs_locust_fasthttp": round(
                per_cpu["distrilab"] / per_cpu["locust_fasthttp"], 2
            ),
            "per_cpu_distrilab_vs_wrk": round(per_cpu["distrilab"] / per_cpu["wrk"], 3),
        },
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{'client':<17}{'median req/s':>13}{'rounds (req/s)':>24}{'req/CPU-s':>11}{'ours / it':>11}")
    for name, runs in rounds.items():
        each = " ".join(f"{r['rate']:.0f}" for r in runs)
        print(f"{name:<17}{median[name]:>13.0f}{each:>24}{per_cpu[name]:>11.0f}{ours / median[name]:>10.2f}x")
    r = doc["ratios"]
    print(
        f"\ndistrilab / locust(FastHttpUser): {r['distrilab_vs_locust_fasthttp']}x by rate, "
        f"{r['per_cpu_distrilab_vs_locust_fasthttp']}x per CPU-second; distrilab / wrk: "
        f"{r['distrilab_vs_wrk']}x by rate, {r['per_cpu_distrilab_vs_wrk']}x per CPU-second "
        f"(medians of {args.rounds} rounds); written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
