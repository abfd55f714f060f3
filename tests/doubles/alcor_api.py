"""TEST DOUBLE of Alcor's REST API -- for tests only; product code never imports this module.

A real HTTP/1.1 server on 127.0.0.1 or a given local address (ephemeral port, asyncio in a
background thread) that answers the calls the load controller makes, with Alcor's paths, request
and response shapes, status
codes and Spring Boot error bodies, as read from futurewei-cloud/alcor (commit 21f11b5; the facts
are listed in modules/loadgen/alcor_api.py). It keeps state, so a subnet on an unknown VPC or a
port on an unknown subnet fails the way Alcor fails, and it records server-side timing for every
request (from the request's last byte to the response write). Knobs for tests: `delay` (seconds
added before each answer, without blocking other connections), `error_rate` (fraction of
requests answered with `error_status`, 500 by default; only paths containing `error_match`),
`stall(seconds)` (hold every answer
until then), `drop_rate` (fraction of connections closed without an answer).

Where Alcor's source gives a status but no message (an exception without text), the double uses
the exception's name as the message; it does not model Ignite or ACA programming. Segment ranges
only as far as they change answers: a VPC created before `createDefaultTable` makes its VXLAN
partition on demand (vpc_manager SegmentServiceImpl.addVxlanEntity), and any later
`createDefaultTable` then meets an existing range: 409 (VxlanRangeRepository.createRange,
NetworkRangeExistException).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ServerTiming:
    method: str
    path: str
    status: int
    received: float  # time.monotonic() when the request was complete
    responded: float  # time.monotonic() when the answer was written

    @property
    def seconds(self) -> float:
        return self.responded - self.received


class AlcorError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _spring_error(status: int, message: str, path: str) -> dict[str, Any]:
    """Spring Boot 2.1's default error body (BasicErrorController)."""
    now = datetime.now(UTC)
    return {
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000",
        "status": status,
        "error": _REASONS.get(status, "Error"),
        "message": message,
        "path": path,
    }


class AlcorState:
    """What the double's Alcor knows; handlers raise AlcorError the way Alcor's services fail."""

    def __init__(self) -> None:
        self.segment_table = False
        self.nodes: dict[str, dict[str, Any]] = {}
        self.vpcs: dict[str, dict[str, Any]] = {}
        self.subnets: dict[str, dict[str, Any]] = {}
        self.security_groups: dict[str, dict[str, Any]] = {}
        self.ports: dict[str, dict[str, Any]] = {}
        self._segment = 1000

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        doc = _parse_json(body) if body else None
        if parts == ["segments", "createDefaultTable"]:
            self._need(method, "POST")
            # all partitions in one createRange: any existing one (a second call, or one a VPC
            # made on demand) refuses the batch (VxlanRangeRepository.createRange)
            if self.segment_table or self.vpcs:
                raise AlcorError(409, "network range already exists")
            self.segment_table = True
            return 200, None
        if parts and parts[0] == "nodes":
            return self._nodes(method, parts[1:], doc)
        if len(parts) >= 3 and parts[0] == "project":
            project, kind, rest = parts[1], parts[2], parts[3:]
            handler = {
                "vpcs": self._vpcs,
                "subnets": self._subnets,
                "ports": self._ports,
                "security-groups": self._security_groups,
            }.get(kind)
            if handler is not None:
                return handler(method, project, rest, doc)
        raise AlcorError(404, "No message available")

    @staticmethod
    def _need(method: str, allowed: str) -> None:
        if method != allowed:
            raise AlcorError(405, f"Request method '{method}' not supported")

    @staticmethod
    def _member(doc: Any, key: str) -> dict[str, Any] | None:
        if not isinstance(doc, dict):
            return None
        value = doc.get(key)
        return value if isinstance(value, dict) else None

    # node_manager: NodeController, NodeServiceImpl (no exception handler: errors are 500s)
    def _nodes(self, method: str, rest: list[str], doc: Any) -> tuple[int, Any]:
        if rest == ["bulk"]:  # BulkNodeInfoJson in, a bare list out, 200
            self._need(method, "POST")
            infos = doc.get("host_infos") if isinstance(doc, dict) else None
            if not isinstance(infos, list) or not all(isinstance(i, dict) for i in infos):
                raise AlcorError(500, "ParameterNullOrEmptyException")
            return 200, [self._store_node(info) for info in infos]
        if len(rest) == 1:
            node_id = rest[0]
            if method == "GET":  # a missing node is 200 {"host_info": null}
                return 200, {"host_info": self.nodes.get(node_id)}
            if node_id not in self.nodes and method in ("PUT", "DELETE"):
                raise AlcorError(500, "ParameterNullOrEmptyException")  # NODE_EXCEPTION_NODE_NOT_EXISTING
            if method == "DELETE":
                del self.nodes[node_id]
                return 200, f"{{Node(Node) Id: {node_id}}}"
            self._need(method, "PUT")
            info = self._member(doc, "host_info")
            if info is None or str(info.get("node_id")) != node_id:  # verifyParameterValid
                raise AlcorError(500, "ParameterNullOrEmptyException")
            return 200, {"host_info": self._store_node(info)}
        if rest:
            raise AlcorError(404, "No message available")
        if method == "GET":  # NodesWebJson (its list field has no @JsonProperty)
            return 200, {"nodeInfos": list(self.nodes.values())}
        self._need(method, "POST")
        info = self._member(doc, "host_info")
        if info is None:
            raise AlcorError(500, "ParameterNullOrEmptyException")
        return 201, {"host_info": self._store_node(info)}

    def _store_node(self, info: dict[str, Any]) -> dict[str, Any]:
        """createNodeInfo: validateIp(local_ip), then put: an existing id is replaced, silently."""
        try:
            ipaddress.IPv4Address(str(info.get("local_ip", "")))
        except ValueError:
            raise AlcorError(500, "Invalid IP address format") from None
        node = {**info, "ncm_uri": None}
        self.nodes[str(info.get("node_id"))] = node
        return node

    # vpc_manager: VpcController
    def _vpcs(self, method: str, project: str, rest: list[str], doc: Any) -> tuple[int, Any]:
        if method == "GET" and len(rest) == 1:
            return 200, {"network": self.vpcs.get(rest[0])}
        if rest:
            raise AlcorError(404, "No message available")
        self._need(method, "POST")
        net = self._member(doc, "network")
        if net is None:
            raise AlcorError(500, "java.lang.NullPointerException")
        mtu = net.get("mtu")
        if isinstance(mtu, int) and mtu < 68:
            raise AlcorError(500, "request resource is invalid")
        if net.get("provider:network_type") not in (None, "vxlan", "vlan", "gre", "flat"):
            raise AlcorError(500, "request resource is invalid")
        self._segment += 1
        stamp = _utc()
        vpc = {
            "id": net.get("id") or str(uuid.uuid4()),
            "project_id": project,
            "tenant_id": net.get("tenant_id") or project,
            "name": net.get("name"),
            "description": net.get("description"),
            "cidr": net.get("cidr"),
            "admin_state_up": bool(net.get("admin_state_up", False)),
            "port_security_enabled": net.get("port_security_enabled", True),
            "mtu": mtu if isinstance(mtu, int) and mtu > 0 else 1400,
            "status": net.get("status") or "ACTIVE",
            "revision_number": max(1, int(net.get("revision_number") or 0)),
            "availability_zones": ["Nova"],
            "tags": [],
            "provider:network_type": net.get("provider:network_type") or "vxlan",
            "provider:segmentation_id": self._segment,
            "created_at": stamp,
            "updated_at": stamp,
            "subnets": [],
        }
        self.vpcs[vpc["id"]] = vpc
        return 201, {"network": vpc}

    # subnet_manager: SubnetController
    def _subnets(self, method: str, project: str, rest: list[str], doc: Any) -> tuple[int, Any]:
        if method == "GET" and len(rest) == 1:
            subnet = self.subnets.get(rest[0])
            if subnet is None:
                raise AlcorError(404, "No message available")
            return 200, {"subnet": subnet}
        if rest:
            raise AlcorError(404, "No message available")
        self._need(method, "POST")
        req = self._member(doc, "subnet")
        if req is None:
            raise AlcorError(500, "java.lang.NullPointerException")
        try:
            net = ipaddress.IPv4Network(str(req.get("cidr")))
        except ValueError:
            raise AlcorError(500, "request resource is invalid") from None
        vpc_id = req.get("network_id")
        if vpc_id not in self.vpcs:
            raise AlcorError(
                500,
                "java.util.concurrent.CompletionException: "
                "com.futurewei.alcor.common.exception.FallbackException: fallback request",
            )
        hosts = list(_first_last(net))
        subnet = {
            "id": req.get("id") or str(uuid.uuid4()),
            "project_id": project,
            "tenant_id": req.get("tenant_id") or project,
            "name": req.get("name"),
            "network_id": vpc_id,
            "cidr": str(net),
            "ip_version": 4,
            "gateway_ip": req.get("gateway_ip") or hosts[0],
            "allocation_pools": [{"start": hosts[0], "end": hosts[1]}],
            "enable_dhcp": True,
            "revision_number": 1,
            "created_at": _utc(),
            "updated_at": _utc(),
        }
        self.subnets[subnet["id"]] = subnet
        self.vpcs[vpc_id]["subnets"].append(subnet["id"])
        return 201, {"subnet": subnet}

    # security_group_manager: SecurityGroupController
    def _security_groups(self, method: str, project: str, rest: list[str], doc: Any) -> tuple[int, Any]:
        if rest:
            raise AlcorError(404, "No message available")
        self._need(method, "POST")
        req = self._member(doc, "security_group")
        if req is None:
            raise AlcorError(412, "Security group is required")
        sg = {
            **req,
            "id": req.get("id") or str(uuid.uuid4()),
            "project_id": project,
            "tenant_id": req.get("tenant_id") or project,
            "security_group_rules": req.get("security_group_rules") or [],
        }
        self.security_groups[sg["id"]] = sg
        return 201, {"security_group": sg}

    # port_manager: PortController + RestParameterValidator
    def _ports(self, method: str, project: str, rest: list[str], doc: Any) -> tuple[int, Any]:
        if method == "PUT" and len(rest) == 1:
            return self._update_port(rest[0], doc)
        if method == "GET" and len(rest) == 1:
            port = self.ports.get(rest[0])
            if port is None:
                raise AlcorError(404, "Port not found")
            return 200, {"port": port}
        if rest == ["bulk"]:  # PortController: {"ports": [...]} in, 201 {"ports": [...]} out
            self._need(method, "POST")
            reqs = doc.get("ports") if isinstance(doc, dict) else None
            if not isinstance(reqs, list):
                raise AlcorError(500, "java.lang.NullPointerException")
            return 201, {"ports": [self._create_port(project, {"port": r})[1]["port"] for r in reqs]}
        if rest:
            raise AlcorError(404, "No message available")
        self._need(method, "POST")
        return self._create_port(project, doc)

    def _create_port(self, project: str, doc: Any) -> tuple[int, Any]:
        req = self._member(doc, "port")
        if req is None:
            raise AlcorError(500, "java.lang.NullPointerException")
        if not req.get("network_id"):
            raise AlcorError(412, "Network id is required")
        self._check_fixed_ips(req.get("fixed_ips"))
        if req["network_id"] not in self.vpcs:
            raise AlcorError(500, "Vpc entity not found")
        for fixed in req.get("fixed_ips") or []:
            if fixed.get("subnet_id") is not None and fixed["subnet_id"] not in self.subnets:
                raise AlcorError(500, "Get SubnetEntity exception")
        for sg in req.get("security_groups") or []:
            if sg not in self.security_groups:
                raise AlcorError(500, "Security group entity not found")
        self._check_host(req.get("binding:host_id"))
        port = {
            **req,
            "id": req.get("id") or str(uuid.uuid4()),
            "project_id": project,
            "tenant_id": req.get("tenant_id") or project,
            "mac_address": req.get("mac_address") or _mac(len(self.ports)),
            "status": "DOWN",
            "binding:vif_type": req.get("binding:vif_type") or "ovs",
            "revision_number": 1,
        }
        self.ports[port["id"]] = port
        return 201, {"port": port}

    def _update_port(self, port_id: str, doc: Any) -> tuple[int, Any]:
        req = self._member(doc, "port")
        if req is None:
            raise AlcorError(500, "java.lang.NullPointerException")
        self._check_fixed_ips(req.get("fixed_ips"))
        port = self.ports.get(port_id)
        if port is None:
            raise AlcorError(404, "Port not found")
        self._check_host(req.get("binding:host_id"))
        port.update(req)
        port["revision_number"] = port.get("revision_number", 1) + 1
        return 200, {"port": port}

    @staticmethod
    def _check_fixed_ips(fixed_ips: Any) -> None:
        for fixed in fixed_ips or []:
            if not isinstance(fixed, dict):
                raise AlcorError(412, "Fixed ips invalid")
            subnet, ip = fixed.get("subnet_id"), fixed.get("ip_address")
            if (subnet is None and ip is None) or subnet == "":
                raise AlcorError(412, "Fixed ips invalid")
            if ip is not None:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise AlcorError(412, "Fixed ips invalid") from None

    def _check_host(self, host: Any) -> None:
        # binding:host_id is matched against registered node names (NodeProcessor).
        if host is not None and not any(n.get("node_name") == host for n in self.nodes.values()):
            raise AlcorError(500, "Node info not found")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise AlcorError(400, f"JSON parse error: {exc}") from None


def _first_last(net: ipaddress.IPv4Network):
    yield str(net.network_address + 1)
    yield str(net.broadcast_address - 1)


def _mac(n: int) -> str:
    return "aa:bb:" + ":".join(f"{(n >> s) & 255:02x}" for s in (24, 16, 8, 0))


def _utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, double: AlcorApiDouble):
        self.double = double
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        method, path = head[0].split(" ")[:2]
        self.busy = True
        self.double._serve(self, method, path, body, time.monotonic())

    def respond(self, status: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (
            f"HTTP/1.1 {status} \r\nContent-Type: application/json;charset=UTF-8\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.transport.write(head + payload)
        self.busy = False
        if self.buf:
            self._next()

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AlcorApiDouble:
    """Start with `with AlcorApiDouble() as alcor:`; `alcor.url` is its base URL."""

    def __init__(
        self,
        delay: float = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        drop_rate: float = 0.0,
        seed: int = 1,
        error_match: str = "",
        host: str = "127.0.0.1",
    ):
        self.host = host  # where it listens (a lab's management gateway, for a controller container)
        self.delay = delay
        self.error_rate = error_rate
        self.error_status = error_status
        self.error_match = error_match
        self.drop_rate = drop_rate
        self.state = AlcorState()
        self.timings: list[ServerTiming] = []
        self._stalled_until = 0.0
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stall(self, seconds: float) -> None:
        """Hold every answer (new and pending) until `seconds` from now."""
        self._stalled_until = time.monotonic() + seconds

    def start(self) -> AlcorApiDouble:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _ServerProtocol(self), self.host, 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="alcor-api-double", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> AlcorApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, proto: _ServerProtocol, method: str, path: str, body: bytes, received: float) -> None:
        if self.drop_rate and self._random.random() < self.drop_rate:
            proto.drop()
            return
        if self.error_rate and self.error_match in path and self._random.random() < self.error_rate:
            status, payload = self.error_status, _spring_error(self.error_status, "injected failure", path)
        else:
            try:
                status, payload = self.state.handle(method, path, body)
            except AlcorError as exc:
                status, payload = exc.status, _spring_error(exc.status, exc.message, path)
        if payload is None:
            data = b""
        elif isinstance(payload, str):  # a controller returning String: written as is, not JSON
            data = payload.encode()
        else:
            data = json.dumps(payload, separators=(",", ":")).encode()
        wait = max(self.delay, self._stalled_until - time.monotonic())
        if wait > 0:
            assert self._loop is not None
            self._loop.call_later(wait, self._answer, proto, method, path, status, data, received)
        else:
            self._answer(proto, method, path, status, data, received)

    def _answer(
        self, proto: _ServerProtocol, method: str, path: str, status: int, data: bytes, received: float
    ) -> None:
        # A stall that began while this answer waited holds it too.
        remaining = self._stalled_until - time.monotonic()
        if remaining > 0:
            assert self._loop is not None
            self._loop.call_later(remaining, self._answer, proto, method, path, status, data, received)
            return
        # Recorded before the write so that a client that has its answer also sees the record.
        self.timings.append(ServerTiming(method, path, status, received, time.monotonic()))
        proto.respond(status, data)
