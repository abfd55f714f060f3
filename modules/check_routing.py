"""The checks of a routed fabric (`fabric: {mode: l3}`): BGP sessions up, ECMP routes complete.

Read-only: `vtysh` inside the lab's switches (images/recipes/router.yaml). What each switch must
have comes from design time (cdk/routing.py): its sessions, and for each rack switch the number
of next hops of its route to every other rack. Both checks wait (bounded) for BGP to converge,
and report what is missing: a spine that is down shows as its lost sessions and as routes with
fewer next hops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from cdk import routing
from cdk.model import Lab, Node
from modules import lxd_rest as rest

if TYPE_CHECKING:  # modules.check imports this module
    from modules.check import CheckResult, Lxd

T = TypeVar("T")
BGP_SUMMARY = "vtysh -c 'show bgp summary json'"
BGP_ROUTES = "vtysh -c 'show ip route bgp json'"


def peer_states(raw: str) -> dict[str, str]:
    """Pure: `show bgp summary json` -> {peer address: BGP state} (IPv4 unicast sessions)."""
    data = json.loads(raw or "{}")
    peers = (data.get("ipv4Unicast") or {}).get("peers") or {}
    return {address: str(peer.get("state", "")) for address, peer in peers.items()}


def route_next_hops(raw: str) -> dict[str, int]:
    """Pure: `show ip route bgp json` -> {prefix: next hops installed in the kernel} for the
    selected route of each prefix."""
    data: dict[str, list[dict[str, Any]]] = json.loads(raw or "{}")
    hops = {}
    for prefix, entries in data.items():
        for entry in entries:
            if entry.get("selected"):
                hops[prefix] = sum(1 for hop in entry.get("nexthops", []) if hop.get("fib"))
    return hops


def answer(lxd: Lxd, node: Node, command: str, parse: Callable[[str], T]) -> T | str:
    """What a switch says, parsed; or why it said nothing (a stopped container, say)."""
    try:
        return parse(lxd.sh(node, command).stdout)
    except Exception as err:  # the switch is part of what is being checked: its failure is a finding
        return rest.error_text(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def check_bgp(lab: Lab, lxd: Lxd, timeout: float) -> CheckResult:
    """Every eBGP session of every switch is Established."""
    from modules.check import CheckResult, _pool

    routers = routing.routers(lab.topology, lab.addressing)
    switches = [n for n in lab.topology.nodes if n.name in routers]
    deadline = time.monotonic() + timeout
    while True:
        states = _pool(lab, switches, lambda n: answer(lxd, n, BGP_SUMMARY, peer_states))
        silent = [f"{n.name}: not answering ({have})" for n, have in zip(switches, states, strict=True)
                  if isinstance(have, str)]
        down = silent + [
            f"{n.name} -> {s.peer} ({s.address} via {s.interface}): {have.get(s.address) or 'no session'}"
            for n, have in zip(switches, states, strict=True) if isinstance(have, dict)
            for s in routers[n.name].sessions if have.get(s.address) != "Established"]
        sessions = sum(len(r.sessions) for r in routers.values())
        if not down:
            summary = f"{sessions} session(s) established on {len(switches)} switches"
            return CheckResult("bgp", True, summary, 0.0)
        if time.monotonic() >= deadline:
            return CheckResult("bgp", False, f"{len(down)} of {sessions} session(s) not established after "
                               f"{timeout:.0f}s", 0.0, down, {"down": down})
        time.sleep(1.0)


def check_ecmp(lab: Lab, lxd: Lxd, timeout: float) -> CheckResult:
    """Each rack switch routes to every other rack over all its equal-cost paths."""
    from modules.check import CheckResult, _pool

    expected = routing.expected_next_hops(lab.topology, lab.addressing)
    racks = [n for n in lab.topology.nodes if n.name in expected]
    if not racks:
        return CheckResult("ecmp", True, "no racks", 0.0)
    deadline = time.monotonic() + timeout
    while True:
        found = _pool(lab, racks, lambda n: answer(lxd, n, BGP_ROUTES, route_next_hops))
        wrong = [f"{n.name}: not answering ({have})" for n, have in zip(racks, found, strict=True)
                 if isinstance(have, str)]
        wrong += [f"{n.name} -> {prefix}: {have.get(prefix, 0)} next hop(s), expected {want}"
                  for n, have in zip(racks, found, strict=True) if isinstance(have, dict)
                  for prefix, want in sorted(expected[n.name].items()) if have.get(prefix, 0) != want]
        routes = sum(len(r) for r in expected.values())
        widths = sorted({w for r in expected.values() for w in r.values()})
        if not wrong:
            return CheckResult("ecmp", True, f"{routes} rack route(s) on {len(racks)} rack switches, "
                               f"{'/'.join(map(str, widths))} next hops each", 0.0,
                               data={"routes": routes, "next_hops": widths})
        if time.monotonic() >= deadline:
            return CheckResult("ecmp", False, f"{len(wrong)} of {routes} rack route(s) incomplete after "
                               f"{timeout:.0f}s", 0.0, wrong, {"incomplete": wrong})
        time.sleep(1.0)
