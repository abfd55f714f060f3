"""The lab's ping agent: verify_ping for the load controller, on the ACA nodes themselves.

The controller runs in its own container (or on the host) and cannot reach the nodes' switches,
so its verify_ping step asks this agent (`python -m modules.loadgen ... --ping-url URL`), which
the controller stage serves while the run lasts. For each pair of bound ports it
- reads each port from Alcor (port manager: its MAC and fixed IP; subnet manager: the prefix),
- attaches the port's test endpoint on the node the port is bound to, as Alcor's busybox ping
  test attaches a container (modules/port_endpoint.py: a namespace on br-int, tagged, named as
  ACA names the port), once per port,
- pings from the source endpoint to the target's address, and records the outcome per pair.
The outcome is what the data plane does: with ACA programming the nodes, ports in one VPC on
different nodes answer; without it (or with the tunnels down) they do not, and the report says so.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modules.alcor_http import AlcorCallError, http
from modules.port_endpoint import Endpoint, attach_script, detach_script, ping_script

#: runs a shell script in a node's container: (instance, script) -> (exit code, output)
NodeRunner = Callable[[str, str], tuple[int, str]]


class PingAgent:
    def __init__(self, instances: Mapping[str, str], port_manager: str, subnet_manager: str,
                 run: NodeRunner, bind: str = "127.0.0.1") -> None:
        self.instances = dict(instances)  # node name (binding:host_id) -> its container
        self.port_manager = port_manager.rstrip("/")
        self.subnet_manager = subnet_manager.rstrip("/")
        self.run = run
        self.results: list[dict[str, Any]] = []
        self.attached: dict[str, tuple[str, Endpoint]] = {}  # port id -> (instance, endpoint)
        self._lock = threading.Lock()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                answer = json.dumps(agent.ping(body.get("source") or {}, body.get("target") or {})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((bind, 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/ping"

    def __enter__(self) -> PingAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.detach_all()

    # ------------------------------------------------------------------ one pair

    def ping(self, source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "source": {k: source.get(k) for k in ("port_id", "ip", "node")},
            "target": {k: target.get(k) for k in ("port_id", "ip", "node")},
        }
        try:
            instance, endpoint = self.endpoint(source)
            self.endpoint(target)
            code, output = self.run(instance, ping_script(endpoint, str(target["ip"])))
            record["ok"] = code == 0
            record["detail"] = _ping_summary(output)
        except (AgentError, KeyError) as err:
            record["ok"] = False
            record["detail"] = str(err)
        with self._lock:
            self.results.append(record)
        return {"ok": record["ok"], "detail": record["detail"]}

    def endpoint(self, ref: dict[str, Any]) -> tuple[str, Endpoint]:
        """The port's endpoint, attached on its node (once)."""
        port_id = str(ref["port_id"])
        with self._lock:
            known = self.attached.get(port_id)
        if known:
            return known
        instance = self.instances.get(str(ref.get("node")))
        if instance is None:
            raise AgentError(f"port {port_id} is bound to {ref.get('node')!r}, not an ACA node of the lab")
        project = str(ref.get("project_id") or "")
        port = self._get(f"{self.port_manager}/project/{project}/ports/{port_id}", "port")
        subnet = self._get(f"{self.subnet_manager}/project/{project}/subnets/{ref['subnet_id']}", "subnet")
        prefix = str(subnet.get("cidr", "/32")).split("/")[-1]
        endpoint = Endpoint(port_id, str(port.get("mac_address")), f"{ref['ip']}/{prefix}")
        code, output = self.run(instance, attach_script(endpoint))
        if code != 0:
            raise AgentError(f"attaching port {port_id} on {instance} failed: {output.strip()[-300:]}")
        with self._lock:
            self.attached[port_id] = (instance, endpoint)
        return instance, endpoint

    def detach_all(self) -> None:
        with self._lock:
            attached, self.attached = list(self.attached.values()), {}
        for instance, endpoint in attached:
            self.run(instance, detach_script(endpoint))

    @staticmethod
    def _get(url: str, key: str) -> dict[str, Any]:
        try:
            status, text = http("GET", url, timeout=30)
            doc = json.loads(text)
        except (AlcorCallError, ValueError) as err:
            raise AgentError(f"GET {url}: {err}") from None
        value = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(value, dict):
            raise AgentError(f"GET {url}: {status}, no {key!r} in the answer")
        return value


class AgentError(Exception):
    pass


def _ping_summary(output: str) -> str:
    """ping's statistics line ("3 packets transmitted, 3 received, 0% packet loss, ...")."""
    lines = [line for line in output.splitlines() if "packets transmitted" in line]
    return lines[-1].strip() if lines else output.strip()[-200:]
