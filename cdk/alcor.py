"""Alcor's deployment file: the model, its validation, dependency order and config templating.

A lab's `alcor:` section is `null` (no Alcor), `default` (the shipped `cdk/alcor_default.yaml`) or
a mapping that overrides parts of the default (deep merge; `services.<name>` entries merge field by
field, a new service name adds a service). Everything here is pure: no I/O to hosts.

Templating: configuration values may reference other services as `{{<service>.<field>}}` where field
is `host` (the container's management address), `port` (its main port), `url` (`http://host:port`)
or the name of one of its `extra_ports`; `{{lab.name}}` is the lab's name. Double braces, because
Spring itself uses `${...}` placeholders inside property values.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cdk.addressing import free_addresses
from cdk.errors import LabFileError, Problem

#: the deployment file shipped with distrilab (`alcor: default`)
DEFAULT_FILE = Path(__file__).resolve().parent / "alcor_default.yaml"
#: the health endpoint every Alcor Spring Boot service exposes (spring-boot-starter-actuator)
ACTUATOR_HEALTH = "/actuator/health"

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]]+$")
MEMORY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(B|kB|MB|GB|TB|KiB|MiB|GiB|TiB|%)$")
TEMPLATE_RE = re.compile(r"\{\{\s*([a-z][a-z0-9-]*)\.([A-Za-z0-9_-]+)\s*\}\}")
SERVICE_KINDS = ("ignite", "spring")
HEALTH_KINDS = ("http", "tcp")
TOP_FIELDS = (
    "version",
    "host",
    "jar_dir",
    "max_parallel",
    "common_config",
    "service_defaults",
    "services",
    "post_deploy",
)
#: what `service_defaults` may set for every Spring service
DEFAULTABLE_FIELDS = ("image", "resources", "health", "java_opts", "local_forwards")
SERVICE_FIELDS = (
    "kind",
    "image",
    "jar",
    "port",
    "extra_ports",
    "address",
    "config",
    "depends_on",
    "resources",
    "health",
    "java_opts",
    "local_forwards",
)
HEALTH_FIELDS = ("kind", "path", "port", "timeout", "interval")
POST_DEPLOY_FIELDS = ("default_segment_table", "register_nodes", "node_defaults")
NODE_DEFAULT_FIELDS = ("server_port", "host_dvr_mac", "interface")

Kind = Literal["ignite", "spring"]


# ---------------------------------------------------------------- model


@dataclass(frozen=True)
class HealthCheck:
    """How to tell a service is up: `http` GET `path` answering 2xx, or `tcp` connect to `port`."""

    kind: Literal["http", "tcp"] = "http"
    path: str = ACTUATOR_HEALTH
    port: str = "port"  # "port" (the main port) or the name of one of the service's extra_ports
    timeout: float = 180.0  # seconds from start until the service must be healthy
    interval: float = 2.0  # seconds between probes


@dataclass(frozen=True)
class Resources:
    cpu: str | None = None  # LXD limits.cpu
    memory: str | None = None  # LXD limits.memory


@dataclass(frozen=True)
class Service:
    """One container of the control plane."""

    name: str  # "vpc", "ignite", ...: container dl-<lab>-alcor-<name>
    kind: Kind  # ignite: no Spring configuration; spring: a Spring Boot service
    image: str  # image recipe: "ignite" or "alcor-service"
    jar: str | None  # file name under jar_dir, installed as /opt/alcor/<jar>
    port: int  # main port (HTTP for Spring services, thin client for Ignite)
    extra_ports: dict[str, int]  # named further ports: {"grpc": 9016}
    address: str | None  # explicit management address, else allocated from the pool's top
    config: dict[str, str]  # Spring properties (templates), common_config merged in for spring
    depends_on: tuple[str, ...]
    resources: Resources
    health: HealthCheck
    java_opts: str = ""
    #: loopback port inside the container -> "host:port" (a template) it is forwarded to
    local_forwards: dict[int, str] = field(default_factory=dict)

    def all_ports(self) -> dict[str, int]:
        return {"port": self.port, **self.extra_ports}


@dataclass(frozen=True)
class NodeDefaults:
    """Fields of Alcor's node registration (`POST /nodes`, `host_info`) that are not per node."""

    server_port: int = 50001  # ACA's gRPC port (NodeManagerConstant.GRPC_SERVER_PORT)
    host_dvr_mac: str = "fe:16:11:00:00:00"  # the DPM's own constant (ResourceService.HOST_DVR_MAC)
    interface: str = "eth1"  # the ACA node's data-path interface (mac_address, data-path-ip)


@dataclass(frozen=True)
class PostDeploy:
    default_segment_table: bool = True  # POST vpc /segments/createDefaultTable
    register_nodes: bool = True  # POST node /nodes for every server whose image is `aca`
    node_defaults: NodeDefaults = field(default_factory=NodeDefaults)


@dataclass(frozen=True)
class Deployment:
    services: tuple[Service, ...]  # in file order
    host: str | None = None  # lab host that runs the control plane (None: the lab's first host)
    jar_dir: str | None = None  # directory holding the jars (an Alcor build's output)
    max_parallel: int = 4  # services started at once within one dependency level
    post_deploy: PostDeploy = field(default_factory=PostDeploy)

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)


# ---------------------------------------------------------------- loading


def load_default() -> dict[str, Any]:
    """The shipped deployment file as plain data."""
    # libyaml's loader where PyYAML has it: 5x faster on this file, which every alcor lab reads
    return yaml.load(DEFAULT_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def merge(base: Any, override: Any) -> Any:
    """Deep merge for mappings; anything else in `override` replaces `base` (null deletes a key)."""
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return copy.deepcopy(override)
    out = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in override.items():
        if value is None and key in out and isinstance(out[key], Mapping):
            del out[key]
        else:
            out[key] = merge(out.get(key), value)
    return out


def resolve_section(section: Any, file: str = "<lab>", field_path: str = "alcor") -> Deployment | None:
    """The lab's `alcor:` value -> a validated Deployment (None when the lab has no Alcor).

    Raises LabFileError with every problem found. Idempotent on already-merged mappings.
    """
    if section is None or section is False:
        return None
    if section == "default":
        data = load_default()
    elif isinstance(section, Mapping):
        data = merge(load_default(), section)
    else:
        raise LabFileError(
            [
                Problem(
                    file,
                    field_path,
                    "must be null, 'default' or a mapping that overrides parts of the default",
                    section,
                    hint=f"see {DEFAULT_FILE.name} for every field",
                )
            ]
        )
    return parse(data, file, field_path)


def parse(data: Any, file: str = "<alcor>", field_path: str = "alcor") -> Deployment:
    """Plain data -> Deployment, collecting every problem before raising LabFileError."""
    problems: list[Problem] = []

    def bad(where: str, message: str, value: object = None, hint: str | None = None) -> None:
        problems.append(
            Problem(file, f"{field_path}.{where}" if where else field_path, message, value, hint=hint)
        )

    if not isinstance(data, Mapping):
        raise LabFileError([Problem(file, field_path, "must be a mapping", data)])
    for key in data:
        if key not in TOP_FIELDS:
            bad(str(key), f"unknown field (allowed: {', '.join(TOP_FIELDS)})", key)
    common = _string_map(data.get("common_config") or {}, "common_config", bad)
    defaults = data.get("service_defaults") or {}
    if not isinstance(defaults, Mapping):
        bad("service_defaults", "must be a mapping", defaults)
        defaults = {}
    for key in defaults:
        if key not in DEFAULTABLE_FIELDS:
            bad(f"service_defaults.{key}", f"unknown field (allowed: {', '.join(DEFAULTABLE_FIELDS)})", key)
    defaults = {k: v for k, v in defaults.items() if k in DEFAULTABLE_FIELDS}
    raw_services = data.get("services")
    services: list[Service] = []
    if not isinstance(raw_services, Mapping) or not raw_services:
        bad("services", "must be a non-empty mapping of service name -> settings", raw_services)
        raw_services = {}
    for name, raw in raw_services.items():
        if isinstance(raw, Mapping) and raw.get("kind", "spring") == "spring":
            raw = merge(defaults, raw)  # the service's own settings win
        svc = _parse_service(str(name), raw, common, bad)
        if svc is not None:
            services.append(svc)

    max_parallel = data.get("max_parallel", 4)
    if not _is_int(max_parallel) or not 1 <= max_parallel <= 64:
        bad("max_parallel", "must be an integer between 1 and 64", max_parallel)
        max_parallel = 4
    host = data.get("host")
    if host is not None and not isinstance(host, str):
        bad("host", "must be the name of one of the lab's hosts", host)
        host = None
    jar_dir = data.get("jar_dir")
    if jar_dir is not None and not isinstance(jar_dir, str):
        bad("jar_dir", "must be a directory path", jar_dir)
        jar_dir = None
    post = _parse_post_deploy(data.get("post_deploy") or {}, bad)

    deployment = Deployment(tuple(services), host, jar_dir, int(max_parallel), post)
    for where, message, value, hint in check(deployment):
        bad(where, message, value, hint)
    if problems:
        raise LabFileError(problems)
    return deployment


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_port(value: object) -> bool:
    return _is_int(value) and 1 <= int(value) <= 65535  # type: ignore[arg-type]


def _string_map(raw: Any, where: str, bad: Any) -> dict[str, str]:
    """Spring properties: keys are property names, values are scalars rendered as strings."""
    if not isinstance(raw, Mapping):
        bad(where, "must be a mapping of Spring property -> value", raw)
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not KEY_RE.match(key):
            bad(f"{where}.{key}", "property names are letters, digits and . _ - [ ]", key)
            continue
        if value is None:
            continue  # null removes an inherited property
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            out[key] = str(value)
        else:
            bad(f"{where}.{key}", "must be a string, number or boolean", value)
    return out


def _parse_service(name: str, raw: Any, common: dict[str, str], bad: Any) -> Service | None:
    where = f"services.{name}"
    if not NAME_RE.match(name):
        bad(where, "service names are [a-z][a-z0-9-]*, at most 20 characters", name)
        return None
    if not isinstance(raw, Mapping):
        bad(where, "must be a mapping of service settings", raw)
        return None
    for key in raw:
        if key not in SERVICE_FIELDS:
            bad(f"{where}.{key}", f"unknown field (allowed: {', '.join(SERVICE_FIELDS)})", key)
    kind = raw.get("kind", "spring")
    if kind not in SERVICE_KINDS:
        bad(f"{where}.kind", f"must be one of {', '.join(SERVICE_KINDS)}", kind)
        kind = "spring"
    image = raw.get("image", "ignite" if kind == "ignite" else "alcor-service")
    if not isinstance(image, str) or not NAME_RE.match(image):
        bad(f"{where}.image", "must be an image recipe name", image)
    jar = raw.get("jar")
    if jar is not None and (not isinstance(jar, str) or "/" in jar or not jar.endswith(".jar")):
        bad(f"{where}.jar", "must be a jar file name or glob (no directories) ending in .jar", jar)
        jar = None
    if kind == "spring" and jar is None:
        bad(
            f"{where}.jar", "a Spring service needs its jar file name", None, "e.g. vpcmanager-*.jar"
        )
    port = raw.get("port")
    if not _valid_port(port):
        bad(f"{where}.port", "must be a TCP port number (1-65535)", port)
        port = 0
    extra = raw.get("extra_ports") or {}
    extra_ports: dict[str, int] = {}
    if not isinstance(extra, Mapping):
        bad(f"{where}.extra_ports", "must be a mapping of name -> port", extra)
    else:
        for pname, pvalue in extra.items():
            if (
                not isinstance(pname, str)
                or not re.match(r"^[a-z][a-z0-9_-]*$", pname)
                or pname
                in (
                    "host",
                    "port",
                    "url",
                )
            ):
                bad(
                    f"{where}.extra_ports.{pname}",
                    "port names are [a-z][a-z0-9_-]* (not host/port/url)",
                    pname,
                )
            elif not _valid_port(pvalue):
                bad(f"{where}.extra_ports.{pname}", "must be a TCP port number (1-65535)", pvalue)
            else:
                extra_ports[pname] = int(pvalue)
    address = raw.get("address")
    if address is not None:
        try:
            address = str(ipaddress.IPv4Address(address))
        except (ipaddress.AddressValueError, ValueError):
            bad(f"{where}.address", "must be an IPv4 address inside the lab's management network", address)
            address = None
    config = _string_map(raw.get("config") or {}, f"{where}.config", bad)
    if kind == "spring":
        config = {**common, **config}
    deps = raw.get("depends_on") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        bad(f"{where}.depends_on", "must be a list of service names", deps)
        deps = []
    res = raw.get("resources") or {}
    resources = Resources()
    if not isinstance(res, Mapping):
        bad(f"{where}.resources", "must be a mapping with cpu and/or memory", res)
    else:
        for key in res:
            if key not in ("cpu", "memory"):
                bad(f"{where}.resources.{key}", "unknown field (allowed: cpu, memory)", key)
        cpu, memory = res.get("cpu"), res.get("memory")
        if cpu is not None and not re.match(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$", str(cpu)):
            bad(f"{where}.resources.cpu", "must be a CPU count or a CPU set like 0-1 (LXD limits.cpu)", cpu)
            cpu = None
        if memory is not None and not MEMORY_RE.match(str(memory)):
            bad(f"{where}.resources.memory", "must be a size like 512MiB or 1GiB (LXD limits.memory)", memory)
            memory = None
        resources = Resources(None if cpu is None else str(cpu), None if memory is None else str(memory))
    health = _parse_health(raw.get("health") or {}, kind, f"{where}.health", bad)
    java_opts = raw.get("java_opts", "")
    if not isinstance(java_opts, str) or "\n" in java_opts:
        bad(f"{where}.java_opts", "must be one line of JVM options", java_opts)
        java_opts = ""
    local_forwards = _parse_forwards(raw.get("local_forwards") or {}, f"{where}.local_forwards", bad)
    return Service(
        name=name,
        kind=kind,
        image=str(image),
        jar=jar,
        port=int(port),
        extra_ports=extra_ports,
        address=address,
        config=config,
        depends_on=tuple(deps),
        resources=resources,
        health=health,
        java_opts=java_opts,
        local_forwards=local_forwards,
    )


def _parse_forwards(raw: Any, where: str, bad: Any) -> dict[int, str]:
    """`{loopback port: "host:port"}`: the container's 127.0.0.1:<port> reaches host:port."""
    if not isinstance(raw, Mapping):
        bad(where, "must be a mapping of loopback port -> 'host:port'", raw)
        return {}
    out: dict[int, str] = {}
    for key, target in raw.items():
        port = int(key) if isinstance(key, str) and key.isdigit() else key
        if not _valid_port(port):
            bad(f"{where}.{key}", "the key must be a TCP port number (1-65535)", key)
        elif not isinstance(target, str) or not re.match(r"^[^:\s]+:[^:\s]+$", target):
            bad(f"{where}.{key}", "must be 'host:port' (e.g. '{{ignite.host}}:{{ignite.port}}')", target)
        else:
            out[int(port)] = target
    return out


def _parse_health(raw: Any, kind: str, where: str, bad: Any) -> HealthCheck:
    if not isinstance(raw, Mapping):
        bad(where, "must be a mapping (kind, path, port, timeout, interval)", raw)
        return HealthCheck()
    for key in raw:
        if key not in HEALTH_FIELDS:
            bad(f"{where}.{key}", f"unknown field (allowed: {', '.join(HEALTH_FIELDS)})", key)
    hkind = raw.get("kind", "tcp" if kind == "ignite" else "http")
    if hkind not in HEALTH_KINDS:
        bad(f"{where}.kind", f"must be one of {', '.join(HEALTH_KINDS)}", hkind)
        hkind = "http"
    path = raw.get("path", ACTUATOR_HEALTH)
    if not isinstance(path, str) or not path.startswith("/"):
        bad(
            f"{where}.path",
            "must be an absolute URL path",
            path,
            f"Alcor's services answer {ACTUATOR_HEALTH}",
        )
        path = ACTUATOR_HEALTH
    port = raw.get("port", "port")
    if not isinstance(port, str):
        bad(f"{where}.port", "must be 'port' or the name of one of the service's extra_ports", port)
        port = "port"
    timeout = raw.get("timeout", 180)
    if not _is_number(timeout) or not 1 <= timeout <= 3600:
        bad(f"{where}.timeout", "must be a number of seconds between 1 and 3600", timeout)
        timeout = 180
    interval = raw.get("interval", 2)
    if not _is_number(interval) or not 0.1 <= interval <= 60:
        bad(f"{where}.interval", "must be a number of seconds between 0.1 and 60", interval)
        interval = 2
    return HealthCheck(hkind, path, port, float(timeout), float(interval))


def _parse_post_deploy(raw: Any, bad: Any) -> PostDeploy:
    if not isinstance(raw, Mapping):
        bad("post_deploy", "must be a mapping", raw)
        return PostDeploy()
    for key in raw:
        if key not in POST_DEPLOY_FIELDS:
            bad(f"post_deploy.{key}", f"unknown field (allowed: {', '.join(POST_DEPLOY_FIELDS)})", key)
    flags = {}
    for key in ("default_segment_table", "register_nodes"):
        value = raw.get(key, True)
        if not isinstance(value, bool):
            bad(f"post_deploy.{key}", "must be true or false", value)
            value = True
        flags[key] = value
    nd = raw.get("node_defaults") or {}
    defaults = NodeDefaults()
    if not isinstance(nd, Mapping):
        bad("post_deploy.node_defaults", "must be a mapping", nd)
    else:
        for key in nd:
            if key not in NODE_DEFAULT_FIELDS:
                bad(
                    f"post_deploy.node_defaults.{key}",
                    f"unknown field (allowed: {', '.join(NODE_DEFAULT_FIELDS)})",
                )
        server_port = nd.get("server_port", defaults.server_port)
        if not _valid_port(server_port):
            bad("post_deploy.node_defaults.server_port", "must be a TCP port number", server_port)
            server_port = defaults.server_port
        mac = nd.get("host_dvr_mac", defaults.host_dvr_mac)
        if not isinstance(mac, str) or not re.match(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$", mac):
            bad("post_deploy.node_defaults.host_dvr_mac", "must be a MAC address like fe:16:11:00:00:00", mac)
            mac = defaults.host_dvr_mac
        iface = nd.get("interface", defaults.interface)
        if not isinstance(iface, str) or not re.match(r"^eth[0-9]+$", iface):
            bad("post_deploy.node_defaults.interface", "must be a container interface name like eth1", iface)
            iface = defaults.interface
        defaults = NodeDefaults(int(server_port), mac.lower(), iface)
    return PostDeploy(flags["default_segment_table"], flags["register_nodes"], defaults)


# ---------------------------------------------------------------- checks and order


def check(deployment: Deployment) -> list[tuple[str, str, object, str | None]]:
    """Cross-field problems: (field, message, value, hint). Empty when the deployment is consistent."""
    found: list[tuple[str, str, object, str | None]] = []
    names = set(deployment.names)
    for svc in deployment.services:
        for dep in svc.depends_on:
            if dep not in names:
                found.append(
                    (
                        f"services.{svc.name}.depends_on",
                        f"unknown service '{dep}' (services: {', '.join(sorted(names))})",
                        dep,
                        None,
                    )
                )
            elif dep == svc.name:
                found.append(
                    (f"services.{svc.name}.depends_on", "a service cannot depend on itself", dep, None)
                )
        ports = svc.all_ports()
        seen: dict[int, str] = {}
        for pname, port in ports.items():
            if port and port in seen:
                found.append(
                    (f"services.{svc.name}.extra_ports.{pname}", f"same port as '{seen[port]}'", port, None)
                )
            seen.setdefault(port, pname)
        if svc.health.port not in ports:
            found.append(
                (
                    f"services.{svc.name}.health.port",
                    f"not a port of this service (ports: {', '.join(ports)})",
                    svc.health.port,
                    None,
                )
            )
        templated = [(f"config.{key}", value) for key, value in svc.config.items()]
        templated += [(f"local_forwards.{port}", value) for port, value in svc.local_forwards.items()]
        for where, value in templated:
            for ref, attr in TEMPLATE_RE.findall(value):
                problem = _template_problem(deployment, ref, attr)
                if problem:
                    found.append((f"services.{svc.name}.{where}", problem, value, None))
    cycle = find_cycle(deployment)
    if cycle:
        found.append(
            (
                f"services.{cycle[0]}.depends_on",
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                list(cycle),
                "remove one of these depends_on entries (Alcor's services only need Ignite to start)",
            )
        )
    # two services pinned to one address must not share a port
    by_address: dict[str, dict[int, str]] = {}
    for svc in deployment.services:
        if svc.address is None:
            continue
        used = by_address.setdefault(svc.address, {})
        for port in svc.all_ports().values():
            if port in used and used[port] != svc.name:
                found.append(
                    (
                        f"services.{svc.name}.port",
                        f"port {port} on {svc.address} is already used by service '{used[port]}'",
                        port,
                        "give one of them another port or another address",
                    )
                )
            used.setdefault(port, svc.name)
    return found


def _template_problem(deployment: Deployment, ref: str, attr: str) -> str | None:
    if ref == "lab":
        return None if attr == "name" else f"unknown reference '{{{{lab.{attr}}}}}' (only lab.name)"
    try:
        target = deployment.service(ref)
    except KeyError:
        return f"unknown service '{ref}' in '{{{{{ref}.{attr}}}}}'"
    fields = ("host", "port", "url", *target.extra_ports)
    if attr not in fields:
        return f"unknown field '{attr}' of service '{ref}' (fields: {', '.join(fields)})"
    return None


def find_cycle(deployment: Deployment) -> list[str]:
    """One dependency cycle (in order), or [] when depends_on is acyclic. Unknown names are ignored."""
    graph = {
        s.name: [d for d in s.depends_on if d in set(deployment.names) and d != s.name]
        for s in deployment.services
    }
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in graph[node]:
            if state.get(dep) == 1:
                return stack[stack.index(dep) :]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for name in graph:
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return []


def levels(deployment: Deployment) -> list[tuple[str, ...]]:
    """Topological levels: every service comes after all of its dependencies; names sorted in a level.

    Level 0 holds the services without dependencies (Ignite). Requires an acyclic deployment.
    """
    remaining = {s.name: set(s.depends_on) for s in deployment.services}
    out: list[tuple[str, ...]] = []
    placed: set[str] = set()
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if deps <= placed)
        if not ready:
            raise ValueError(f"dependency cycle among {sorted(remaining)}")
        out.append(tuple(ready))
        placed.update(ready)
        for n in ready:
            del remaining[n]
    return out


# ---------------------------------------------------------------- addresses and templating


def allocate_addresses(
    deployment: Deployment, network: str, used: Iterable[str], extra: int = 0, from_top: bool = False
) -> tuple[dict[str, str], list[str]]:
    """Management addresses (CIDR form) for every service without an explicit one, plus `extra` more.

    Pure and deterministic: the next free host addresses after the highest address in `used` (the
    fabric nodes and the gateway), in the deployment's service order; with `from_top`, the pool's
    highest free addresses downward (cdk.addressing keeps them free of node homes, so they stay put
    when the lab changes). Returns (service -> address, extra addresses).
    """
    net = ipaddress.IPv4Network(network, strict=False)
    taken = {ipaddress.IPv4Interface(a).ip for a in used}
    pinned = {ipaddress.IPv4Address(s.address) for s in deployment.services if s.address}
    taken |= pinned
    start = max(taken) if taken else net.network_address
    candidates = (
        free_addresses(net, taken)
        if from_top
        else (ip for ip in net.hosts() if ip > start and ip not in taken)
    )
    result: dict[str, str] = {}
    for svc in deployment.services:
        ip = ipaddress.IPv4Address(svc.address) if svc.address else next(candidates, None)
        if ip is None or ip not in net:
            raise LabFileError(
                [
                    Problem(
                        "<lab>",
                        f"alcor.services.{svc.name}.address",
                        f"no free address for it in the management network {net}",
                        svc.address,
                        hint="use a larger management pool",
                    )
                ]
            )
        result[svc.name] = f"{ip}/{net.prefixlen}"
    more: list[str] = []
    for _ in range(extra):
        ip = next(candidates, None)
        if ip is None:
            raise LabFileError(
                [Problem("<lab>", "addressing.management", f"management network {net} is full")]
            )
        more.append(f"{ip}/{net.prefixlen}")
    return result, more


def template_facts(deployment: Deployment, addresses: Mapping[str, str], lab: str) -> dict[str, str]:
    """The values `{{service.field}}` expands to, for every service."""
    facts = {"lab.name": lab}
    for svc in deployment.services:
        host = str(ipaddress.IPv4Interface(addresses[svc.name]).ip)
        facts[f"{svc.name}.host"] = host
        facts[f"{svc.name}.port"] = str(svc.port)
        facts[f"{svc.name}.url"] = f"http://{host}:{svc.port}"
        for pname, port in svc.extra_ports.items():
            facts[f"{svc.name}.{pname}"] = str(port)
    return facts


def render(value: str, facts: Mapping[str, str]) -> str:
    """Expand every `{{ref.field}}` in a value (references were validated by `check`)."""
    return TEMPLATE_RE.sub(lambda m: facts[f"{m.group(1)}.{m.group(2)}"], value)


def render_config(svc: Service, facts: Mapping[str, str]) -> dict[str, str]:
    """A service's Spring properties with references expanded; server.port always matches `port`."""
    out = {key: render(value, facts) for key, value in sorted(svc.config.items())}
    if svc.kind == "spring":
        out["server.port"] = str(svc.port)
    return out


