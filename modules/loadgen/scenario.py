"""Load-test scenario files: the typed model and its validation.

A scenario says how many objects to create in Alcor (tenants x projects x VPCs x subnets x ports),
on which nodes ports are bound, at what request rate, with how many requests in flight, and when
the run must stop. `load_scenario(path)` checks every field up front and raises one LabFileError
listing each problem (file, field, bad value, what was expected) before anything is sent.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdk.errors import LabFileError, Problem
from cdk.lab_source import DocumentKind, locate, read_yaml_source
from modules.loadgen import alcor_api

#: Steps in dependency order; a step's requests wait for their parent object's step.
STEP_ORDER: tuple[str, ...] = (
    "create_segment_table",
    "register_node",
    "create_security_group",
    "create_vpc",
    "create_subnet",
    "create_port",
    "bind_port",
    "verify_ping",
)
#: Steps enabled when the file does not list `steps` (what Alcor's pseudo-controller measures).
DEFAULT_STEPS: tuple[str, ...] = ("create_vpc", "create_subnet", "create_port")
#: Step -> the steps it needs (when those are enabled).
STEP_NEEDS: dict[str, tuple[str, ...]] = {
    "create_subnet": ("create_vpc",),
    "create_port": ("create_subnet",),
    "bind_port": ("create_port",),
    "verify_ping": ("bind_port",),
}
SERVICES: tuple[str, ...] = (
    "vpc_manager",
    "subnet_manager",
    "port_manager",
    "security_group_manager",
    "node_manager",
)

#: how steps follow each other: `pipelined` (an operation goes as soon as its parents
#: succeeded) or `phased`, Alcor's own pseudo controller's shape (alcor_http_api_test.java: every
#: VPC answered before the first subnet is sent, every subnet before the first port)
ORDERS = ("pipelined", "phased")

#: steps that have a bulk endpoint: requests carry up to N of them (port_manager
#: POST /project/{p}/ports/bulk, node_manager POST /nodes/bulk)
BULK_STEPS = ("create_port", "register_node")

_TOP_KEYS = {
    "name",
    "description",
    "order",
    "bulk",
    "tenants",
    "projects_per_tenant",
    "vpcs_per_project",
    "subnets_per_vpc",
    "ports_per_subnet",
    "security_groups_per_project",
    "vpc_cidr",
    "nodes",
    "rate",
    "concurrency",
    "steps",
    "timeouts",
    "limits",
    "endpoints",
}
_STEP_KEYS = {"enabled", "rate"}
_NODE_KEYS = {"count", "list", "ports_per_node", "name_prefix"}
_NODE_ENTRY_KEYS = {
    "name", "ip", "mac", "id", "local_ip", "veth", "server_port", "host_dvr_mac", "registered"}
_TIMEOUT_KEYS = {"connect", "request"}
_LIMIT_KEYS = {"max_duration", "max_requests"}


@dataclass(frozen=True)
class NodeSpec:
    """A compute node that ports are bound to; `name` is what Alcor's binding:host_id matches.

    `ip` is its data-path address (the tunnel end peers reach, `data-path-ip`); `local_ip` where
    its ACA is reached (default: `ip`). `registered`: the lab registered it already (the
    controller stage's nodes): the run binds to it and never registers it again."""

    name: str
    ip: str
    mac: str
    id: str | None = None
    local_ip: str | None = None
    veth: str = "eth0"
    server_port: int = alcor_api.ACA_GRPC_PORT
    host_dvr_mac: str = alcor_api.HOST_DVR_MAC
    registered: bool = False

    def host_info(self, node_id: str) -> dict[str, Any]:
        return alcor_api.host_info(node_id, self.name, self.local_ip or self.ip, self.ip, self.mac,
                                   self.veth, self.server_port, self.host_dvr_mac)


@dataclass(frozen=True)
class StepSpec:
    name: str
    rate: float | None = None  # requests/s for this step; None: the global rate


@dataclass(frozen=True)
class Scenario:
    name: str
    tenants: int = 1
    projects_per_tenant: int = 1
    vpcs_per_project: int = 1
    subnets_per_vpc: int = 1
    ports_per_subnet: int = 10
    security_groups_per_project: int = 1
    vpc_cidr: str = "10.0.0.0/16"
    nodes: tuple[NodeSpec, ...] = ()
    ports_per_node: int | None = None
    rate: float = 100.0  # global requests/s across all steps
    concurrency: int = 32  # requests in flight at most
    steps: tuple[StepSpec, ...] = tuple(StepSpec(s) for s in DEFAULT_STEPS)
    connect_timeout: float = 3.0
    request_timeout: float = 10.0
    max_duration: float = 60.0  # seconds; the run stops scheduling after this
    max_requests: int = 100_000  # requests sent at most
    endpoints: Mapping[str, str] = field(default_factory=dict)  # service -> base URL
    description: str = ""
    order: str = "pipelined"  # ORDERS
    bulk: Mapping[str, int] = field(default_factory=dict)  # step -> items per request (BULK_STEPS)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.steps if s.name == name), None)

    def enabled(self, name: str) -> bool:
        return self.step(name) is not None

    @property
    def subnet_prefix(self) -> int:
        """Prefix length of each subnet: the VPC CIDR split evenly into subnets_per_vpc blocks."""
        net = ipaddress.ip_network(self.vpc_cidr)
        return (
            net.prefixlen + math.ceil(math.log2(self.subnets_per_vpc))
            if self.subnets_per_vpc > 1
            else net.prefixlen
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenants": self.tenants,
            "projects_per_tenant": self.projects_per_tenant,
            "vpcs_per_project": self.vpcs_per_project,
            "subnets_per_vpc": self.subnets_per_vpc,
            "ports_per_subnet": self.ports_per_subnet,
            "security_groups_per_project": self.security_groups_per_project,
            "vpc_cidr": self.vpc_cidr,
            "nodes": _nodes_doc(self.nodes, self.ports_per_node),
            "rate": self.rate,
            "concurrency": self.concurrency,
            "steps": {s.name: ({"rate": s.rate} if s.rate else {}) for s in self.steps},
            "timeouts": {"connect": self.connect_timeout, "request": self.request_timeout},
            "limits": {"max_duration": self.max_duration, "max_requests": self.max_requests},
            "endpoints": dict(self.endpoints),
            "order": self.order,
            "bulk": dict(self.bulk),
        }


class _Checker:
    """Collects problems for one file so that all of them are reported at once."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, fld: str, message: str, value: object = None, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, fld, message, value, hint=hint))

    def unknown_keys(self, where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(data) - allowed, key=str):
            self.add(f"{where}{key}", f"unknown field (expected one of: {', '.join(sorted(allowed))})")

    def integer(
        self, data: Mapping[str, Any], key: str, default: int, lo: int, hi: int, where: str = ""
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.add(f"{where}{key}", f"must be an integer between {lo} and {hi}", value)
            return default
        return value

    def number(
        self, data: Mapping[str, Any], key: str, default: float | None, lo: float, hi: float, where: str = ""
    ) -> float | None:
        value = data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo < value <= hi:
            self.add(f"{where}{key}", f"must be a number greater than {lo:g} and at most {hi:g}", value)
            return default
        return float(value)

    def mapping(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, "must be a mapping", value)
            return {}
        return value


def parse_scenario(data: object, file: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario document; raises LabFileError with every problem found."""
    ck = _Checker(file)
    if not isinstance(data, dict):
        raise LabFileError([Problem(file, "(top level)", "must be a mapping of scenario fields", data)])
    ck.unknown_keys("", data, _TOP_KEYS)
    name = data.get("name", Path(file).stem)
    if not isinstance(name, str) or not name:
        ck.add("name", "must be a non-empty string", name)
        name = "scenario"

    tenants = ck.integer(data, "tenants", 1, 1, 10_000)
    projects = ck.integer(data, "projects_per_tenant", 1, 1, 10_000)
    vpcs = ck.integer(data, "vpcs_per_project", 1, 1, 10_000)
    subnets = ck.integer(data, "subnets_per_vpc", 1, 1, 4096)
    ports = ck.integer(data, "ports_per_subnet", 10, 0, 1_000_000)
    sgs = ck.integer(data, "security_groups_per_project", 1, 0, 1000)
    rate = ck.number(data, "rate", 100.0, 0, 1_000_000) or 100.0
    concurrency = ck.integer(data, "concurrency", 32, 1, 10_000)

    vpc_cidr = data.get("vpc_cidr", "10.0.0.0/16")
    try:
        net = ipaddress.ip_network(str(vpc_cidr))
        if net.version != 4:
            raise ValueError("IPv4 only")
    except ValueError:
        ck.add(
            "vpc_cidr",
            "must be an IPv4 network in CIDR form with host bits zero (e.g. 10.0.0.0/16)",
            vpc_cidr,
        )
        net = ipaddress.ip_network("10.0.0.0/16")
    else:
        bits = math.ceil(math.log2(subnets)) if subnets > 1 else 0
        prefix = net.prefixlen + bits
        # Each subnet gives up its network, gateway and broadcast addresses.
        room = 2 ** (32 - prefix) - 3 if prefix <= 30 else 0
        if ports > room:
            ck.add(
                "ports_per_subnet",
                f"does not fit a /{prefix} subnet ({vpc_cidr} split into {subnets} subnets has room "
                f"for {max(room, 0)} ports each)",
                ports,
                hint="use a larger vpc_cidr or fewer subnets_per_vpc",
            )

    steps = _parse_steps(ck, data.get("steps"))
    nodes, ports_per_node = _parse_nodes(ck, data.get("nodes"))

    timeouts = ck.mapping(data, "timeouts")
    ck.unknown_keys("timeouts.", timeouts, _TIMEOUT_KEYS)
    connect_timeout = ck.number(timeouts, "connect", 3.0, 0, 600, "timeouts.") or 3.0
    request_timeout = ck.number(timeouts, "request", 10.0, 0, 3600, "timeouts.") or 10.0

    limits = ck.mapping(data, "limits")
    ck.unknown_keys("limits.", limits, _LIMIT_KEYS)
    max_duration = ck.number(limits, "max_duration", 60.0, 0, 86_400, "limits.") or 60.0
    max_requests = ck.integer(limits, "max_requests", 100_000, 1, 100_000_000, "limits.")

    endpoints = ck.mapping(data, "endpoints")
    for service, url in endpoints.items():
        if service not in SERVICES:
            ck.add(f"endpoints.{service}", f"unknown service (expected one of: {', '.join(SERVICES)})")
        elif not isinstance(url, str) or not url.startswith("http://"):
            ck.add(f"endpoints.{service}", "must be an http:// base URL (e.g. http://10.210.0.5:9001)", url)

    order = data.get("order", "pipelined")
    if order not in ORDERS:
        ck.add("order", f"must be one of {', '.join(ORDERS)}", order,
               hint="phased: each step's requests all answered before the next step starts (Alcor's own)")
        order = "pipelined"

    bulk_doc = ck.mapping(data, "bulk")
    ck.unknown_keys("bulk.", bulk_doc, set(BULK_STEPS))
    bulk = {step: ck.integer(bulk_doc, step, 1, 1, 10_000, "bulk.")
            for step in BULK_STEPS if step in bulk_doc}

    step_names = [s.name for s in steps]
    total_ports = tenants * projects * vpcs * subnets * ports
    if "bind_port" in step_names or "register_node" in step_names:
        if not nodes:
            ck.add(
                "nodes",
                "must name at least one node when bind_port or register_node is enabled",
                hint="add 'nodes: {count: 2}' or a 'nodes.list'",
            )
        elif (
            ports_per_node is not None
            and "bind_port" in step_names
            and total_ports > len(nodes) * ports_per_node
        ):
            ck.add(
                "nodes.ports_per_node",
                f"{len(nodes)} nodes x {ports_per_node} ports cannot hold the scenario's {total_ports} ports",
                ports_per_node,
                hint="raise ports_per_node, add nodes, or create fewer ports",
            )
    if "verify_ping" in step_names and len(nodes) < 2:
        ck.add(
            "steps.verify_ping", "needs at least 2 nodes to ping between ports on different nodes", len(nodes)
        )

    if ck.problems:
        raise LabFileError(ck.problems)
    return Scenario(
        name=name,
        tenants=tenants,
        projects_per_tenant=projects,
        vpcs_per_project=vpcs,
        subnets_per_vpc=subnets,
        ports_per_subnet=ports,
        security_groups_per_project=sgs,
        vpc_cidr=str(net),
        nodes=nodes,
        ports_per_node=ports_per_node,
        rate=rate,
        concurrency=concurrency,
        steps=steps,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        max_duration=max_duration,
        max_requests=max_requests,
        endpoints={k: v.rstrip("/") for k, v in endpoints.items() if k in SERVICES},
        description=str(data.get("description", "")),
        order=str(order),
        bulk={k: v for k, v in bulk.items() if v > 1},
    )


def _parse_steps(ck: _Checker, raw: object) -> tuple[StepSpec, ...]:
    if raw is None:
        return tuple(StepSpec(s) for s in DEFAULT_STEPS)
    entries: dict[str, dict[str, Any]] = {}
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                ck.add(f"steps[{i}]", "must be a step name", item)
            else:
                entries[item] = {}
    elif isinstance(raw, dict):
        for key, value in raw.items():
            if value is None or value is True:
                entries[key] = {}
            elif value is False:
                entries[key] = {"enabled": False}
            elif isinstance(value, dict):
                ck.unknown_keys(f"steps.{key}.", value, _STEP_KEYS)
                entries[key] = value
            else:
                ck.add(f"steps.{key}", "must be true/false or a mapping with 'enabled' and 'rate'", value)
    else:
        ck.add("steps", "must be a list of step names or a mapping of step -> settings", raw)
        return tuple(StepSpec(s) for s in DEFAULT_STEPS)

    steps: list[StepSpec] = []
    for key, settings in entries.items():
        if key not in STEP_ORDER:
            ck.add(f"steps.{key}", f"unknown step (expected one of: {', '.join(STEP_ORDER)})")
            continue
        enabled = settings.get("enabled", True)
        if not isinstance(enabled, bool):
            ck.add(f"steps.{key}.enabled", "must be true or false", enabled)
            continue
        if enabled:
            steps.append(StepSpec(key, ck.number(settings, "rate", None, 0, 1_000_000, f"steps.{key}.")))
    names = {s.name for s in steps}
    for step in steps:
        for need in STEP_NEEDS.get(step.name, ()):
            if need not in names:
                ck.add(
                    f"steps.{step.name}",
                    f"needs step '{need}' to be enabled too",
                    hint=f"add '{need}' to steps",
                )
    if not steps:
        ck.add("steps", "must enable at least one step", raw)
    return tuple(sorted(steps, key=lambda s: STEP_ORDER.index(s.name)))


def _parse_nodes(ck: _Checker, raw: object) -> tuple[tuple[NodeSpec, ...], int | None]:
    if raw is None:
        return (), None
    if not isinstance(raw, dict):
        ck.add("nodes", "must be a mapping with 'count' or 'list' (and optional 'ports_per_node')", raw)
        return (), None
    ck.unknown_keys("nodes.", raw, _NODE_KEYS)
    ports_per_node = None
    if "ports_per_node" in raw:
        ports_per_node = ck.integer(raw, "ports_per_node", 1, 1, 1_000_000, "nodes.")
    if ("count" in raw) == ("list" in raw):
        ck.add("nodes", "must have exactly one of 'count' or 'list'", sorted(raw))
        return (), ports_per_node
    if "count" in raw:
        count = ck.integer(raw, "count", 1, 1, 100_000, "nodes.")
        prefix = raw.get("name_prefix", "node")
        if not isinstance(prefix, str) or not prefix:
            ck.add("nodes.name_prefix", "must be a non-empty string", prefix)
            prefix = "node"
        # Synthetic nodes for runs against a test double or an Alcor without real ACA hosts:
        # addresses from the benchmarking range 198.18.0.0/15 (RFC 2544), only ever sent as data.
        base = int(ipaddress.ip_address("198.18.0.0"))
        return tuple(
            NodeSpec(
                name=f"{prefix}{i + 1}",
                ip=str(ipaddress.ip_address(base + i + 1)),
                mac="02:00:" + ":".join(f"{(i >> s) & 255:02x}" for s in (24, 16, 8, 0)),
            )
            for i in range(count)
        ), ports_per_node
    entries = raw["list"]
    if not isinstance(entries, list) or not entries:
        ck.add("nodes.list", "must be a non-empty list of {name, ip, mac}", entries)
        return (), ports_per_node
    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"nodes.list[{i}]"
        if not isinstance(entry, dict):
            ck.add(where, "must be a mapping with name, ip and mac", entry)
            continue
        ck.unknown_keys(f"{where}.", entry, _NODE_ENTRY_KEYS)
        name, ip, mac = entry.get("name"), entry.get("ip"), entry.get("mac")
        ok = True
        if not isinstance(name, str) or not name:
            ck.add(f"{where}.name", "must be a non-empty string", name)
            ok = False
        elif name in seen:
            ck.add(f"{where}.name", "duplicates an earlier node name (binding:host_id must be unique)", name)
            ok = False
        else:
            seen.add(name)
        try:
            ipaddress.IPv4Address(str(ip))
        except ValueError:
            ck.add(f"{where}.ip", "must be an IPv4 address (Alcor's node manager rejects anything else)", ip)
            ok = False
        if not isinstance(mac, str) or not _is_mac(mac):
            ck.add(f"{where}.mac", "must be a MAC address like 02:00:00:00:00:01", mac)
            ok = False
        extra = _node_registration(ck, where, entry)
        if ok and extra is not None:
            nodes.append(NodeSpec(str(name), str(ip), str(mac), entry.get("id"), **extra))
    return tuple(nodes), ports_per_node


def _node_registration(ck: _Checker, where: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The optional registration fields of a nodes.list entry (NodeInfo's), checked as the node
    manager checks them; None when one is bad."""
    extra: dict[str, Any] = {}
    ok = True
    if "local_ip" in entry:
        try:  # the node manager's validateIp (NodeController.createNodeInfo)
            extra["local_ip"] = str(ipaddress.IPv4Address(str(entry["local_ip"])))
        except ValueError:
            ck.add(f"{where}.local_ip", "must be an IPv4 address (the node manager refuses others)",
                   entry["local_ip"])
            ok = False
    if "veth" in entry:
        if not isinstance(entry["veth"], str) or not 0 < len(entry["veth"]) <= 15:
            ck.add(f"{where}.veth", "must be an interface name (1-15 characters)", entry["veth"])
            ok = False
        else:
            extra["veth"] = entry["veth"]
    if "server_port" in entry:
        port = entry["server_port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            ck.add(f"{where}.server_port", "must be a TCP port (ACA's gRPC port, 50001 by default)", port)
            ok = False
        else:
            extra["server_port"] = port
    if "host_dvr_mac" in entry:
        if not isinstance(entry["host_dvr_mac"], str) or not _is_mac(entry["host_dvr_mac"]):
            ck.add(f"{where}.host_dvr_mac", "must be a MAC address like fe:16:11:00:00:00",
                   entry["host_dvr_mac"])
            ok = False
        else:
            extra["host_dvr_mac"] = entry["host_dvr_mac"]
    if "registered" in entry:
        if not isinstance(entry["registered"], bool):
            ck.add(f"{where}.registered", "must be true or false", entry["registered"])
            ok = False
        else:
            extra["registered"] = entry["registered"]
    return extra if ok else None


def _is_mac(text: str) -> bool:
    parts = text.replace("-", ":").split(":")
    hexdigits = "0123456789abcdefABCDEF"
    return len(parts) == 6 and all(len(p) == 2 and all(c in hexdigits for c in p) for p in parts)


#: how errors name a scenario file (read as a lab file is: cdk/lab_source.py)
SCENARIO_FILE = DocumentKind("scenario file", "scenario fields", "the shipped ones are in labs/scenarios/",
                             "labs/scenarios/small.yaml", "(top level)")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file: every problem at once, each at its line."""
    source = read_yaml_source(path, SCENARIO_FILE)
    try:
        return parse_scenario(source.data, source.file)
    except LabFileError as err:
        located = [locate(p, source) for p in err.problems]
        raise LabFileError(sorted(located, key=lambda p: p.line or 0)) from None  # top to bottom


def _nodes_doc(nodes: tuple[NodeSpec, ...], ports_per_node: int | None) -> dict[str, Any] | None:
    if not nodes:
        return None
    defaults = NodeSpec("", "", "")
    entries = []
    for n in nodes:
        entry: dict[str, Any] = {"name": n.name, "ip": n.ip, "mac": n.mac, **({"id": n.id} if n.id else {})}
        for key in ("local_ip", "veth", "server_port", "host_dvr_mac", "registered"):
            if getattr(n, key) != getattr(defaults, key):
                entry[key] = getattr(n, key)
        entries.append(entry)
    return {"list": entries, **({"ports_per_node": ports_per_node} if ports_per_node else {})}


def with_nodes(scenario: Scenario, nodes: list[NodeSpec] | tuple[NodeSpec, ...]) -> Scenario:
    """The scenario with the lab's own nodes (e.g. the ACA nodes the Alcor stage registered,
    whose node_name is what binding:host_id must name), validated again as a whole."""
    doc = scenario.to_dict()
    doc["nodes"] = _nodes_doc(tuple(nodes), scenario.ports_per_node)
    return parse_scenario(doc, f"{scenario.name} (with the lab's nodes)")
