"""Expand a scenario into the operations of one run and the dependencies between them.

Pure: the same scenario and run id give the same operations. Request bodies are built only when
an operation is dispatched (`Operation.call()`), so a plan of a million ports stays small.
"""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from modules.loadgen import alcor_api
from modules.loadgen.scenario import NodeSpec, Scenario

#: Operations one run may hold; larger scenarios are cut by `limits.max_requests` anyway.
MAX_PLANNED = 2_000_000


@dataclass(frozen=True)
class PortRef:
    """A port as the ping verifier sees it."""

    port_id: str
    ip: str
    node: str
    subnet_id: str
    project_id: str = ""


class Operation:
    """One request (or one ping) of the run; `parents` must succeed before it may be sent."""

    __slots__ = ("call", "children", "index", "parents", "ping", "step")

    def __init__(
        self,
        index: int,
        step: str,
        parents: tuple[int, ...],
        call: Callable[[], alcor_api.ApiCall] | None = None,
        ping: tuple[PortRef, PortRef] | None = None,
    ):
        self.index = index
        self.step = step
        self.parents = parents
        self.call = call
        self.ping = ping
        self.children: list[int] = []


@dataclass
class Plan:
    operations: list[Operation]
    run_id: str
    truncated: bool = False  # the scenario describes more operations than max_requests

    def count(self, step: str) -> int:
        return sum(1 for op in self.operations if op.step == step)


def build_plan(scenario: Scenario, run_id: str) -> Plan:
    """Operations in a dependency-respecting order (parents before children)."""
    ns = uuid.uuid5(uuid.NAMESPACE_URL, f"distrilab-loadgen/{scenario.name}/{run_id}")

    def uid(kind: str, *idx: int) -> str:
        return str(uuid.uuid5(ns, kind + "/" + "/".join(map(str, idx))))

    ops: list[Operation] = []
    enabled = set(scenario.step_names)

    # No run sends more than max_requests, so a larger plan would only cost memory.
    cap = min(MAX_PLANNED, scenario.max_requests)

    def add(step: str, parents: tuple[int | None, ...], **kw: object) -> int:
        if len(ops) >= cap:
            raise OverflowError
        op = Operation(len(ops), step, tuple(p for p in parents if p is not None), **kw)  # type: ignore[arg-type]
        for p in op.parents:
            ops[p].children.append(op.index)
        ops.append(op)
        return op.index

    try:
        _expand(scenario, enabled, add, uid)
    except OverflowError:
        return Plan(ops, run_id, truncated=True)
    return Plan(ops, run_id)


def _expand(scenario: Scenario, enabled: set[str], add: Callable[..., int], uid: Callable[..., str]) -> None:
    segment_op = (
        add("create_segment_table", (), call=alcor_api.create_segment_table)
        if "create_segment_table" in enabled
        else None
    )

    node_ops: dict[str, int] = {}
    if "register_node" in enabled:
        # the lab's own registrations stand: never overwritten (the same ids would replace them)
        fresh = [(i, node) for i, node in enumerate(scenario.nodes) if not node.registered]
        batch = scenario.bulk.get("register_node", 1)
        for start in range(0, len(fresh), batch):
            chunk = fresh[start : start + batch]
            infos = [node.host_info(node.id or uid("node", i)) for i, node in chunk]
            call = (_bind(alcor_api.register_node, infos[0]) if batch == 1
                    else _bind(alcor_api.register_nodes_bulk, infos))
            op = add("register_node", (), call=call)
            node_ops.update((node.name, op) for _, node in chunk)

    vpc_net = ipaddress.ip_network(scenario.vpc_cidr)
    subnet_nets = list(_first_subnets(vpc_net, scenario.subnet_prefix, scenario.subnets_per_vpc))
    nodes = scenario.nodes
    port_counter = 0
    # Bound ports per (subnet index path) for ping pairs.
    for t in range(scenario.tenants):
        tenant_id = uid("tenant", t)
        for p in range(scenario.projects_per_tenant):
            project_id = uid("project", t, p)
            sg_ids: list[str] = []
            sg_op = None
            if "create_security_group" in enabled:
                for g in range(scenario.security_groups_per_project):
                    sg_id = uid("sg", t, p, g)
                    sg_ids.append(sg_id)
                    op = add(
                        "create_security_group",
                        (),
                        call=_bind(
                            alcor_api.create_security_group, project_id, tenant_id, sg_id, f"sg-{t}-{p}-{g}"
                        ),
                    )
                    sg_op = op if sg_op is None else sg_op
            if "create_vpc" not in enabled:
                continue
            for v in range(scenario.vpcs_per_project):
                vpc_id = uid("vpc", t, p, v)
                vpc_op = add(
                    "create_vpc",
                    (segment_op,),
                    call=_bind(
                        alcor_api.create_vpc, project_id, tenant_id, vpc_id, f"vpc-{t}-{p}-{v}", str(vpc_net)
                    ),
                )
                if "create_subnet" not in enabled:
                    continue
                for s, net in enumerate(subnet_nets):
                    subnet_id = uid("subnet", t, p, v, s)
                    subnet_op = add(
                        "create_subnet",
                        (vpc_op,),
                        call=_bind(
                            alcor_api.create_subnet,
                            project_id,
                            tenant_id,
                            subnet_id,
                            vpc_id,
                            f"subnet-{t}-{p}-{v}-{s}",
                            str(net),
                        ),
                    )
                    if "create_port" not in enabled:
                        continue
                    bound: list[tuple[int, PortRef]] = []
                    # +2: skip the network address and the gateway (Alcor's first host address).
                    first_ip = int(net.network_address) + 2
                    # Port ids count up from a per-subnet base in their first 8 hex digits, the
                    # rest is the subnet id's: unique, UUID-shaped, ~20x cheaper than a uuid5 per
                    # port, and different in their first 11 characters, all ACA keeps of an id for
                    # the port's device ("tap" + 11: aca_get_port_name): ids sharing a longer
                    # prefix would give many ports one device name.
                    base, id_rest = int(subnet_id[:8], 16), subnet_id[8:]
                    sgs = sg_ids[:1]
                    batch = scenario.bulk.get("create_port", 1)
                    for start in range(0, scenario.ports_per_subnet, batch):
                        ports = []
                        for n in range(start, min(start + batch, scenario.ports_per_subnet)):
                            port_id = f"{(base + n) & 0xFFFFFFFF:08x}{id_rest}"
                            ip = _dotted(first_ip + n)
                            ports.append((tenant_id, port_id, vpc_id, subnet_id, ip,
                                          alcor_api.port_name(port_id), sgs))
                        call = (_bind(alcor_api.create_port, project_id, *ports[0]) if batch == 1
                                else _bind(alcor_api.create_ports_bulk, project_id, ports))
                        port_op = add("create_port", (subnet_op, sg_op if sgs else None), call=call)
                        for _, port_id, _, _, ip, _, _ in ports:
                            if "bind_port" in enabled and nodes:
                                node = _node_for(nodes, port_counter, scenario.ports_per_node)
                                bind_op = add(
                                    "bind_port",
                                    (port_op, node_ops.get(node.name)),
                                    call=_bind(alcor_api.bind_port, project_id, port_id, node.name),
                                )
                                ref = PortRef(port_id, ip, node.name, subnet_id, project_id)
                                bound.append((bind_op, ref))
                            port_counter += 1
                    if "verify_ping" in enabled:
                        for (a_op, a), (b_op, b) in itertools.pairwise(bound):
                            if a.node != b.node:
                                add("verify_ping", (a_op, b_op), ping=(a, b))


def _dotted(address: int) -> str:
    return f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"


def _node_for(nodes: tuple[NodeSpec, ...], counter: int, ports_per_node: int | None) -> NodeSpec:
    """Round-robin over nodes, or fill each node with ports_per_node before the next one."""
    if ports_per_node is None:
        return nodes[counter % len(nodes)]
    return nodes[(counter // ports_per_node) % len(nodes)]


def _first_subnets(net: ipaddress.IPv4Network | ipaddress.IPv6Network, prefix: int, count: int):
    subnets = net.subnets(new_prefix=prefix) if prefix > net.prefixlen else iter([net])
    for i, sub in enumerate(subnets):
        if i >= count:
            return
        yield sub


def _bind(fn: Callable[..., alcor_api.ApiCall], *args: object) -> Callable[[], alcor_api.ApiCall]:
    return lambda: fn(*args)


