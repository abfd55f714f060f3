"""The design-time pipeline: a lab file (or a Python dict) in, a fully resolved `Lab` out.

    load -> validate -> expand -> address -> place -> check

Each stage collects every problem it finds and raises one `LabFileError` at its end, so a user
sees all the mistakes of a stage at once, and never a later stage's confusion about an earlier
one's mistake. Nothing is created anywhere: the pipeline reads the lab file, the image recipes
directory, the placement file and the host's routes, and is otherwise pure and deterministic.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cdk.addressing import AddressPools, PoolExhausted, assign, overlaps, pool_capacity_problems
from cdk.errors import LabFileError, Problem
from cdk.host_routes import HostRoute
from cdk.lab import LabSpec, validate
from cdk.lab_source import AttrPath, LabSource, Problems, locate, parse_path, read_lab_file, source_from_dict
from cdk.model import (
    IFNAME_MAX,
    INSTANCE_NAME_MAX,
    Addressing,
    Lab,
    Limits,
    Placement,
    Topology,
    instance_name,
)
from cdk.placement import PlacementError, place
from cdk.topology import GENERATORS

#: an LXD instance name is a DNS label that must not start with a digit
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")


def load_lab(
    path: str | Path,
    *,
    host_routes: Sequence[HostRoute] | None = None,
    recipes_dir: Path | None = None,
    capacities: Mapping[str, int] | None = None,
    pool_records: Mapping[str, Mapping[str, str]] | None = None,
) -> Lab:
    """Load, validate and resolve a lab file; raises LabFileError naming every problem of a stage.

    `host_routes`: this machine's routes and resolvers, read by the caller (stacks/host_facts.py;
    none given: the pools are checked against each other only);
    `recipes_dir` to the shipped images/recipes; `capacities` (host -> nodes, read from the
    hosts by `up`) stand in for the capacity of hosts the lab gives none; `pool_records` (lab ->
    pools) the pools labs chose when they came up (stacks/pool_records.py): this lab keeps its
    own and avoids the others'.
    """
    return run_pipeline(lambda: read_lab_file(path), host_routes=host_routes, recipes_dir=recipes_dir,
                        capacities=capacities, pool_records=pool_records)


def lab_from_dict(
    data: dict[str, Any],
    source: str = "<python>",
    *,
    host_routes: Sequence[HostRoute] | None = None,
    recipes_dir: Path | None = None,
) -> Lab:
    """The same pipeline for a lab written in Python (`source` names it in error messages)."""
    return run_pipeline(
        lambda: source_from_dict(data, source), host_routes=host_routes, recipes_dir=recipes_dir
    )


def run_pipeline(
    load: Callable[[], LabSource],
    *,
    host_routes: Sequence[HostRoute] | None = None,
    recipes_dir: Path | None = None,
    capacities: Mapping[str, int] | None = None,
    pool_records: Mapping[str, Mapping[str, str]] | None = None,
) -> Lab:
    """Every stage in order; each raises LabFileError at its end if it found problems."""
    source = load()  # the file, its YAML syntax and the line of every key
    spec = validate(source, recipes_dir)  # JSON schema + semantic checks, defaults filled in
    if capacities:  # what the hosts hold, for those the lab gives no capacity
        hosts = tuple(dataclasses.replace(h, capacity=capacities[h.name])
                      if not h.capacity_given and h.name in capacities else h for h in spec.hosts)
        spec = dataclasses.replace(spec, hosts=hosts)
    topology = expand(spec, source)  # topology generator: its constraints, then its nodes and links
    routes = host_routes or ()
    spec = choose_pools(spec, routes, pool_records or {})  # the pools the file leaves to the lab
    addressing = address(spec, topology, source, routes)  # pools: overlaps, capacity, host routes
    placement = place_nodes(spec, topology, source)  # nodes -> hosts, within their capacity
    check_names(spec, topology, source)  # container and interface names the kernel and LXD accept
    lab = Lab(
        name=spec.name,
        source=source.file,
        hosts=spec.hosts,
        topology=topology,
        addressing=addressing,
        placement=placement,
        images=spec.images,
        limits=resolve_limits(spec.limits, topology),
        lxd=spec.lxd,
        alcor=spec.alcor,
        controller=spec.controller,
        image_options=spec.image_options,
        image_packages=spec.image_packages,
        fabric=spec.fabric,
        state=spec.state,
    )
    check_services(lab, source)  # the alcor and controller sections, before anything runs
    return lab


def check_services(lab: Lab, source: LabSource | None = None) -> None:
    """Validate the `alcor` and `controller` sections now, not when their stage specs are built:
    every problem of both at once, each at the line of the lab file it comes from (`source`; for
    an Alcor setting the lab leaves to the default, the line of its nearest key in the lab)."""
    from cdk.alcor import resolve_section  # imported here: only labs with these sections need them
    from cdk.stages.controller import validate_section

    found: list[Problem] = []
    checks = [lambda: resolve_section(lab.alcor, lab.source)]
    if lab.controller is not None:
        checks.append(lambda: validate_section(lab))
    for run in checks:
        try:
            run()
        except LabFileError as err:
            found += err.problems
    if found:
        # the controller reads the Alcor deployment too: its problems may come twice
        located = {str(q): q for q in (locate(p, source) for p in found)}
        raise LabFileError(sorted(located.values(), key=lambda q: q.line or 0))


# ---------------------------------------------------------------- expand


def expand(spec: LabSpec, source: LabSource) -> Topology:
    """The generator's constraints on the parameters as written, then the generated topology."""
    generator = GENERATORS[spec.topology_kind]
    problems = Problems(source)
    for field, message, value, hint in generator.constraints(spec.topology_params):
        problems.add(parse_path(field), message, value, hint)
    problems.raise_if_any()
    return generator.generate(spec.topology_params)


# ---------------------------------------------------------------- address


def address(spec: LabSpec, topology: Topology, source: LabSource, routes: Sequence[HostRoute]) -> Addressing:
    """Check the pools against each other, the topology's needs and the host; then assign."""
    problems = Problems(source)
    pools = AddressPools(**spec.pools)
    # the addressing module names pools by field ("p2p"); older versions gave "addressing.p2p"
    for first, second in overlaps(pools):
        first, second = _pool_name(first), _pool_name(second)
        problems.add(
            ("addressing", second),
            f"overlaps addressing.{first} ({spec.pools[first]})",
            spec.pools[second],
            "every pool needs its own range",
        )
    for pool, message, value, hint in pool_capacity_problems(topology, pools):
        problems.add(("addressing", _pool_name(pool)), message, value, hint)
    for pool, network in spec.pools.items():
        for route in _host_conflicts(network, spec.name, routes):
            free = _free_range(network, spec.pools, routes)
            problems.add(
                ("addressing", pool),
                f"overlaps {route.network} of the lab {route.lab} ({route.origin})" if route.lab
                else f"overlaps this host's {route.network} ({route.origin})",
                network,
                f"leave addressing.{pool} out (the lab then takes a free range) or pick one no lab "
                f"uses, e.g. {free}" if route.lab else f"pick a range the host does not use, e.g. {free}",
            )
    problems.raise_if_any()
    chosen = tuple(name for name in spec.pools if name not in spec.pools_given)
    try:
        return dataclasses.replace(assign(topology, pools, spec.mtu, routed=spec.fabric.mode == "l3"),
                                   chosen=chosen)
    except PoolExhausted as exc:
        problems.add(("addressing", exc.pool_name), str(exc))
        problems.raise_if_any()
        raise  # unreachable: raise_if_any raised


def choose_pools(spec: LabSpec, routes: Sequence[HostRoute],
                 records: Mapping[str, Mapping[str, str]]) -> LabSpec:
    """Every pool the lab file does not set: the one recorded when the lab came up, else the
    default, unless the host (another lab's bridge) or another lab's record uses it; then the next
    free 10.x range of its size. So labs that leave their pools out run side by side, and keep
    their addresses while they run. (Records only steer this choice: a pool the file sets is
    refused only for what the host really routes, in `address`.)"""
    recorded = records.get(spec.name, {})
    others = [ipaddress.ip_network(r.network) for r in routes if r.lab != spec.name]
    others += [ipaddress.ip_network(net) for lab, pools in records.items() if lab != spec.name
               for net in pools.values()]
    chosen = {name: spec.pools[name] for name in spec.pools if name in spec.pools_given}
    for name, default in spec.pools.items():
        if name in chosen:
            continue
        # the defaults still to be chosen are avoided too: a moved pool must not take their place
        later = [spec.pools[n] for n in spec.pools if n not in chosen and n != name]
        taken = others + [ipaddress.ip_network(p) for p in [*chosen.values(), *later]]
        candidate = ipaddress.ip_network(recorded.get(name, default))
        if any(candidate.overlaps(t) for t in taken):
            candidate = _first_free(candidate, taken) or candidate  # none free: address() says so
        chosen[name] = str(candidate)
    return dataclasses.replace(spec, pools={name: chosen[name] for name in spec.pools})


def _first_free(start: ipaddress.IPv4Network, taken: Sequence[ipaddress._BaseNetwork]
                ) -> ipaddress.IPv4Network | None:
    """The first range of `start`'s size in 10.0.0.0/8 from `start` on (wrapping) that overlaps
    nothing taken."""
    if not start.subnet_of(ipaddress.ip_network("10.0.0.0/8")):
        start = ipaddress.ip_network(f"10.0.0.0/{max(start.prefixlen, 8)}")
    ranges = list(ipaddress.ip_network("10.0.0.0/8").subnets(new_prefix=start.prefixlen))
    first = ranges.index(start)
    for candidate in ranges[first:] + ranges[:first]:
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    return None


def _pool_name(field: str) -> str:
    return field.rsplit(".", 1)[-1]


def _host_conflicts(network: str, lab: str, routes: Sequence[HostRoute]) -> list[HostRoute]:
    net = ipaddress.ip_network(network)
    # a route through this lab's own bridge is the lab itself, already deployed
    return [r for r in routes if r.lab != lab and net.overlaps(ipaddress.ip_network(r.network))]


def _free_range(network: str, pools: dict[str, str], routes: Sequence[HostRoute]) -> str:
    """The first 10.x network of the same size that collides with neither the host nor the pools."""
    taken = [ipaddress.ip_network(r.network) for r in routes]
    taken += [ipaddress.ip_network(p) for p in pools.values() if p != network]
    free = _first_free(ipaddress.ip_network(f"10.0.0.0/{max(ipaddress.ip_network(network).prefixlen, 8)}"),
                       taken)
    return str(free) if free else "a free private range"


# ---------------------------------------------------------------- place


def place_nodes(spec: LabSpec, topology: Topology, source: LabSource) -> Placement:
    """Assign every node to a host, within the hosts' capacity."""
    problems = Problems(source)
    try:
        return place(topology, list(spec.hosts), spec.placement_strategy, spec.placement_file)
    except PlacementError as exc:
        # what is left after validation: a replayed file that does not fit, or hosts too small
        path: AttrPath = ("placement", "file") if spec.placement_strategy == "file" else ("hosts",)
        message = str(exc).split("\n  hint:")[0]  # the hint is shown on its own line below
        problems.add(path, message, hint=exc.hint)
        problems.raise_if_any()
        raise  # unreachable: raise_if_any raised


# ---------------------------------------------------------------- check


def check_names(spec: LabSpec, topology: Topology, source: LabSource) -> None:
    """Every container name is a valid LXD instance name; every interface name fits the kernel."""
    problems = Problems(source)
    too_long = [n.name for n in topology.nodes if len(instance_name(spec.name, n.name)) > INSTANCE_NAME_MAX]
    if too_long:
        longest = max(too_long, key=lambda node: (len(node), node))
        name = instance_name(spec.name, longest)
        problems.add(
            ("name",),
            f"makes container names longer than {INSTANCE_NAME_MAX} characters: {name} "
            f"({len(name)}; {len(too_long)} of {len(topology.nodes)} nodes)",
            spec.name,
            "shorten the lab name or the node names",
        )
    for node in topology.nodes:
        name = instance_name(spec.name, node.name)
        if len(name) <= INSTANCE_NAME_MAX and not DNS_LABEL.match(name):
            problems.add(
                _node_path(spec, node.name),
                f"gives container name {name}, which is not a DNS label",
                node.name,
                "use lowercase letters, digits and '-' (not at the end)",
            )
    for link in topology.links:
        for end in (link.a, link.b):
            if len(end.interface) > IFNAME_MAX:
                problems.add(
                    ("topology", "links"),
                    f"interface {end.node}:{end.interface} is longer than {IFNAME_MAX} characters",
                    end.interface,
                    "Linux interface names have at most 15 characters",
                )
    problems.raise_if_any()


def _node_path(spec: LabSpec, node: str) -> AttrPath:
    """Where a node is written in the lab file (explicit topologies name their nodes)."""
    for index, entry in enumerate(spec.topology_params.get("nodes") or []):
        if isinstance(entry, dict) and entry.get("name") == node:
            return ("topology", "nodes", index, "name")
    return ("topology",)


# ---------------------------------------------------------------- resources


def resolve_limits(limits: dict[str, Limits], topology: Topology) -> dict[str, Limits]:
    """The limits of each role in the topology: the role's over its kind's over `defaults`."""
    resolved = {}
    for role, kind in sorted({(n.role, n.kind) for n in topology.nodes}):
        layers = [limits.get("defaults"), limits.get(kind), limits.get(role)]
        cpu = memory = None
        for layer in layers:
            if layer is not None:
                cpu = layer.cpu if layer.cpu is not None else cpu
                memory = layer.memory if layer.memory is not None else memory
        resolved[role] = Limits(cpu=cpu, memory=memory)
    return resolved
