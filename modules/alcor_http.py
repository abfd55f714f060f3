"""Alcor's HTTP API as the alcor stage uses it: health probes, the node manager's registrations.

Plain urllib, JSON in and out; a connection error is an AlcorCallError, an error status is
returned (or raised by `expect`) with Alcor's text.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

from modules.alcor_spec import ServiceSpec, Spec

HTTP_TIMEOUT = 10.0


PROBE_TIMEOUT = 2.0


class AlcorCallError(RuntimeError):
    """An Alcor API call answered an error status or could not be made."""


def http(method: str, url: str, body: Any = None, timeout: float = HTTP_TIMEOUT) -> tuple[int, str]:
    """One JSON request; returns (status, body text). Connection errors raise AlcorCallError."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        raise AlcorCallError(f"{method} {url}: {getattr(err, 'reason', err)}") from err


def probe(svc: ServiceSpec, timeout: float = PROBE_TIMEOUT) -> str | None:
    """One health check: None when healthy, else why not."""
    if svc.health.kind == "tcp":
        try:
            with socket.create_connection((svc.ip, svc.health.port), timeout=timeout):
                return None
        except OSError as err:
            return f"tcp {svc.ip}:{svc.health.port}: {err}"
    url = f"http://{svc.ip}:{svc.health.port}{svc.health.path}"
    try:
        status, text = http("GET", url, timeout=timeout)
    except AlcorCallError as err:
        return str(err)
    return None if 200 <= status < 300 else f"GET {url}: {status} {text.strip()[:200]}"


def registered_nodes(url: str) -> list[dict[str, Any]] | None:
    """The node manager's registrations (`GET /nodes` -> {"nodeInfos": [...]}); None if unreachable."""
    try:
        status, text = http("GET", f"{url}/nodes")
    except AlcorCallError:
        return None
    if status != 200:
        return None
    try:
        body = json.loads(text or "{}")
    except ValueError:
        return None
    return list(body.get("nodeInfos") or [])


def call_node_manager(spec: Spec, verb: str, data: dict[str, Any]) -> None:
    """Register, update or remove one node; registering checks first, so it never duplicates a node."""
    base = data["url"]
    if verb == "deregister-node":
        expect("DELETE", f"{base}/nodes/{data['node_id']}")
        return
    info = data["host_info"]
    if not info.get("mac_address"):
        raise AlcorCallError(
            f"ACA node {data['node']}: no MAC address for {info.get('veth')} "
            "(is the node running, with its links?)"
        )
    url = f"{base}/nodes/{info['node_id']}"
    if verb == "register-node":
        # the plan may predate a restart of the node manager: ask again before creating
        status, text = http("GET", url)
        known = (
            status == 200
            and (json.loads(text or "{}").get("host_info") or {}).get("node_id") == info["node_id"]
        )
        if not known:
            expect("POST", f"{base}/nodes", {"host_info": info})
            return
    expect("PUT", url, {"host_info": info})


def expect(method: str, url: str, body: Any = None) -> str:
    status, text = http(method, url, body)
    if not 200 <= status < 300:
        raise AlcorCallError(f"{method} {url}: {status} {text.strip()[:300]}")
    return text

