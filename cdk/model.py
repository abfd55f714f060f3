"""The typed model every design-time stage produces and every later stage consumes.

Pipeline (cdk/pipeline.py): load -> validate -> expand (topology generators) -> address -> place -> check.
Everything here is frozen and JSON-friendly (`to_dict`), so the same lab file always gives
byte-identical desired-state JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

NodeKind = Literal["switch", "server"]
#: role names the generators use; `kind` says how a node behaves (OVS switch or server)
SWITCH_ROLES = ("core", "aggregation", "edge", "spine", "leaf", "switch")
SERVER_ROLES = ("server",)

#: Linux interface names are at most 15 characters (IFNAMSIZ - 1)
IFNAME_MAX = 15
#: LXD instance names are DNS labels: at most 63 characters
INSTANCE_NAME_MAX = 63


def to_dict(obj: Any) -> Any:
    """Deterministic plain-data form of any model object (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return obj


# ---------------------------------------------------------------- topology (generator output)


@dataclass(frozen=True)
class Node:
    """A node of the fabric graph, before addressing and placement."""

    name: str  # e.g. "spine-01", "leaf-07", "srv-03-02"; unique in the lab
    role: str  # one of SWITCH_ROLES or SERVER_ROLES
    kind: NodeKind
    pod: int | None = None  # pod / rack index where the topology has one (1-based)
    rack: str | None = None  # the switch a server hangs off (its server subnet is per rack)


@dataclass(frozen=True)
class Endpoint:
    node: str
    interface: str  # name inside the container: eth1, eth2, ... (eth0 is management)


@dataclass(frozen=True)
class Link:
    """A point-to-point link; `a` sorts before `b` by (node, interface)."""

    a: Endpoint
    b: Endpoint

    @property
    def id(self) -> str:
        return f"{self.a.node}:{self.a.interface}--{self.b.node}:{self.b.interface}"


@dataclass(frozen=True)
class Topology:
    """What a generator returns: sorted nodes, sorted links, interface names assigned."""

    kind: str
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


# ---------------------------------------------------------------- addressing


@dataclass(frozen=True)
class InterfaceAddress:
    node: str
    interface: str
    address: str  # CIDR form, "10.213.1.5/16"


@dataclass(frozen=True)
class Addressing:
    """Every address of the lab, from cdk/addressing.py pools only."""

    management_network: str  # "10.210.0.0/16": the lab's management bridge
    management_gateway: str  # "10.210.0.1/16": the host side of the management bridge
    management: dict[str, str]  # node -> "10.210.0.11/16" (eth0)
    loopbacks: dict[str, str]  # switch node -> "10.211.0.1/32"
    p2p: dict[str, str]  # link id -> "10.212.0.0/31" (switch-switch links)
    server_network: str  # "10.213.0.0/16": servers are on-link across the L2 fabric
    servers: tuple[InterfaceAddress, ...]  # server fabric interface addresses
    rack_subnets: dict[str, str]  # rack switch -> "10.213.3.0/24" (servers' addresses come from it)
    mtu: int
    #: routed fabric only: rack switch -> its address in the rack, the servers' gateway ("10.213.3.254/24")
    rack_gateways: dict[str, str] = field(default_factory=dict)
    #: the four pools the addresses came from (management, loopbacks, p2p, servers -> network)
    pools: dict[str, str] = field(default_factory=dict)
    #: the pools the lab chose because its file leaves them out (kept across re-applies)
    chosen: tuple[str, ...] = ()


# ---------------------------------------------------------------- placement


@dataclass(frozen=True)
class Host:
    """A machine that runs lab containers (a member of the lab's LXD cluster)."""

    name: str  # "local" for this machine
    kind: Literal["local", "ssh", "aws"] = "local"
    address: str | None = None  # underlay address for VXLAN tunnels and the LXD API
    capacity: int = 1000  # how many nodes it may hold
    ssh_user: str | None = None
    ssh_key: str | None = None  # absolute path of the private key (None: the lab's own key)
    host_key: str | None = None  # pinned ssh host key fingerprint (SHA256:...)
    underlay: str | None = None  # interface VXLAN tunnels leave through
    max_workers: int | None = None  # this host's own cap on parallel actions per stage
    capacity_given: bool = False  # False: `up` reads what the host can hold before placing
    aws: dict[str, Any] = field(default_factory=dict)  # instance type, region, ... (kind == aws)


@dataclass(frozen=True)
class Placement:
    strategy: str  # "round-robin" | "partition" | "file"
    assignment: dict[str, str]  # node -> host name
    cross_host_links: int


# ---------------------------------------------------------------- the resolved lab


@dataclass(frozen=True)
class Limits:
    cpu: str | None = None  # LXD limits.cpu, e.g. "1"
    memory: str | None = None  # LXD limits.memory, e.g. "256MiB"


@dataclass(frozen=True)
class LxdSettings:
    storage: Literal["auto", "btrfs", "dir"] = "auto"
    storage_size: str = "20GiB"  # btrfs loop file size (applies when the pool is created)
    #: parallel actions per stage and host (None: this machine's vCPU count, at run time;
    #: `up/down --workers N` overrides it for one run: modules/reconcile.py resolve_workers)
    max_workers: int | None = None
    privileged: bool = False
    pool: str = "distrilab"  # the LXD storage pool of the lab's containers (created if missing)


@dataclass(frozen=True)
class FabricSettings:
    #: how switches forward in the L2 fabric: Open vSwitch with RSTP (the kernel datapath where the
    #: host has the openvswitch module, else userspace netdev, ~2% of a core per idle switch), or a
    #: Linux bridge with the kernel's STP (forwarding in the kernel: no CPU at idle; labs of 1000)
    bridge: Literal["ovs", "linux"] = "ovs"
    #: l2: one bridged domain (the bridge above); l3: every switch-to-switch link a routed /31,
    #: eBGP on each (FRR, cdk/routing.py), ECMP over every equal-cost path, a /24 per rack
    mode: Literal["l2", "l3"] = "l2"


@dataclass(frozen=True)
class StateBackend:
    """Where terraform keeps the lab's state. `local`: `terraform.<lab>.tfstate` in the checkout;
    `pg` and `s3`: shared by a team or CI, locked while a run holds it (credentials never go in
    the lab file: terraform reads PG_CONN_STR, or the AWS variables and profiles, at init)."""

    backend: Literal["local", "pg", "s3"] = "local"
    #: how long a run waits for another run's lock before failing (terraform's -lock-timeout)
    lock_timeout: str = "60s"
    #: pg: `schema_name` (default distrilab_<lab>); s3: bucket, key (default distrilab/<lab>.tfstate),
    #: region, endpoint, use_lockfile (default true) or dynamodb_table
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lab:
    """A fully expanded, addressed and placed lab: the input of every stack and stage."""

    name: str  # [a-z0-9-], short; containers are "dl-<lab>-<node>"
    source: str  # the lab file it came from ("<python>" when built in code)
    hosts: tuple[Host, ...]
    topology: Topology
    addressing: Addressing
    placement: Placement
    images: dict[str, str]  # role -> image recipe name ("server", "switch", "aca", ...)
    limits: dict[str, Limits]  # role -> limits
    lxd: LxdSettings
    alcor: dict[str, Any] | None = None  # filled by the Alcor issue
    controller: dict[str, Any] | None = None  # filled by the controller issue
    image_options: dict[str, Any] = field(default_factory=dict)  # mirror, aca_source, ...
    #: recipe -> every package it installs, parents included (cdk.lab.recipe_packages: read while
    #: the lab loads, so that stage builders read no file)
    image_packages: dict[str, frozenset[str]] = field(default_factory=dict)
    fabric: FabricSettings = field(default_factory=FabricSettings)
    state: StateBackend = field(default_factory=StateBackend)

    def instance_name(self, node: str) -> str:
        return instance_name(self.name, node)

    def image_of(self, node: Node) -> str:
        return self.images.get(node.role) or self.images[node.kind]

    def nodes_on(self, host: str) -> tuple[Node, ...]:
        return tuple(n for n in self.topology.nodes if self.placement.assignment[n.name] == host)


def instance_name(lab: str, node: str) -> str:
    """The LXD container name of a lab node (length checked by the check stage of cdk/pipeline.py)."""
    return f"dl-{lab}-{node}"
