"""What the alcor stage is asked for: its spec, read from the stage's JSON, and the names it owns.

Pure. cdk/stages/alcor.py writes the JSON; modules/alcor.py converges a host to it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cdk.errors import DistrilabError
from cdk.names import template_name
from modules.reconcile import workers_fields

OWNER = "alcor"


SERVICE_KEY = "user.distrilab.alcor.service"


HASH_KEY = "user.distrilab.alcor.hash"


#: set on the VPC manager's container once its default segment table exists
SEGMENT_KEY = "user.distrilab.alcor.segment-table"


#: the alcor-service image's launcher (/usr/local/sbin/alcor-service) reads these; runit service `alcor`
ENV_FILE = "/etc/alcor/service.env"


PROPERTIES_FILE = "/etc/alcor/application-overrides.properties"


#: jars copied from the lab's jar_dir (the image's own jars are in /opt/alcor/jars)
PUSHED_JAR_DIR = "/opt/alcor/lab"


LAUNCHER_LOG = "/var/log/alcor/alcor-service.log"


#: the ignite image's launcher (/usr/local/sbin/ignite-node) reads this; runit service `ignite`
IGNITE_ENV_FILE = "/etc/ignite/ignite.env"


IGNITE_LOG = "/var/log/ignite/ignite-node.log"


BOOT_HOOK = "/etc/distrilab/boot.d/10-alcor-address"


ACA_ENV_FILE = "/etc/aca/aca.env"


@dataclass(frozen=True)
class Health:
    kind: str  # http | tcp
    path: str
    port: int
    timeout: float
    interval: float


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    instance: str
    kind: str
    recipe: str
    image: str  # per-lab image alias
    jar: str | None
    port: int
    extra_ports: dict[str, int]
    address: str  # CIDR
    java_opts: str
    properties: dict[str, str]
    depends_on: tuple[str, ...]
    level: int
    cpu: str | None
    memory: str | None
    health: Health
    #: loopback port inside the container -> "address:port" it reaches (an LXD proxy device)
    local_forwards: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True)
class AcaNode:
    name: str
    instance: str
    node_id: str
    local_ip: str
    data_path_ip: str
    interface: str
    server_port: int
    host_dvr_mac: str


@dataclass(frozen=True)
class Spec:
    lab: str
    host: str
    max_workers: int | None  # what the lab sets (modules/reconcile.py: resolve_workers)
    workers_limit: int | None  # the host's own limit
    pool: str
    privileged: bool
    network: str
    gateway: str
    jar_dir: str | None
    max_parallel: int
    services: tuple[ServiceSpec, ...]
    segment_table_url: str | None = None
    node_manager_url: str | None = None
    aca_nodes: tuple[AcaNode, ...] = ()
    aca_env: dict[str, str] = field(default_factory=dict)
    endpoint: dict[str, Any] | None = None

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)


def load(data: dict[str, Any]) -> Spec:
    """The stage spec JSON -> Spec (DistrilabError on a malformed spec)."""
    try:
        services = tuple(
            ServiceSpec(
                name=s["name"],
                instance=s["instance"],
                kind=s["kind"],
                recipe=s["recipe"],
                image=s["image"],
                jar=s.get("jar"),
                port=int(s["port"]),
                extra_ports={k: int(v) for k, v in (s.get("extra_ports") or {}).items()},
                address=s["address"],
                java_opts=s.get("java_opts") or "",
                properties={str(k): str(v) for k, v in (s.get("properties") or {}).items()},
                depends_on=tuple(s.get("depends_on") or ()),
                level=int(s["level"]),
                cpu=(s.get("limits") or {}).get("cpu"),
                memory=(s.get("limits") or {}).get("memory"),
                health=Health(**s["health"]),
                local_forwards={str(k): str(v) for k, v in (s.get("local_forwards") or {}).items()},
            )
            for s in data.get("services", [])
        )
        post = data.get("post_deploy") or {}
        aca = tuple(AcaNode(**n) for n in post.get("nodes", []))
        return Spec(
            lab=data["lab"],
            host=data["host"],
            **workers_fields(data),
            pool=data.get("pool") or "distrilab",
            privileged=bool(data.get("privileged")),
            network=data["network"]["name"],
            gateway=data["network"]["gateway"],
            jar_dir=data.get("jar_dir"),
            max_parallel=int(data.get("max_parallel") or 4),
            services=services,
            segment_table_url=post.get("segment_table_url"),
            node_manager_url=post.get("node_manager_url"),
            aca_nodes=aca,
            aca_env={str(k): str(v) for k, v in (post.get("aca_env") or {}).items()},
            endpoint=data.get("endpoint"),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DistrilabError(f"alcor spec: missing or malformed field {err}") from err


def template_of(lab: str, recipe: str) -> str:
    """Alcor's own templates, apart from the nodes stage's (which deletes templates it does not use)."""
    return template_name(lab, f"alcor-{recipe}")

