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


def poll(lab: Lab, lxd: Lxd, nodes: list[Node], command: str, parse: Callable[[str], T],
         wrong: Callable[[Node, T], list[str]], timeout: float) -> list[str]:
    """Ask every node `command` until none has anything `wrong` (or the timeout passed): the last
    findings, a node that does not answer among them."""
    from modules.check import _pool

    deadline = time.monotonic() + timeout
    while True:
        answers = _pool(lab, nodes, lambda n: answer(lxd, n, command, parse))
        findings = [f"{n.name}: not answering ({have})" for n, have in zip(nodes, answers, strict=True)
                    if isinstance(have, str)]
        findings += [line for n, have in zip(nodes, answers, strict=True) if not isinstance(have, str)
                     for line in wrong(n, have)]
        if not findings or time.monotonic() >= deadline:
            return findings
        time.sleep(1.0)


def check_bgp(lab: Lab, lxd: Lxd, timeout: float) -> CheckResult:
    """Every eBGP session of every switch is Established."""
    from modules.check import CheckResult

    routers = routing.routers(lab.topology, lab.addressing)
    switches = [n for n in lab.topology.nodes if n.name in routers]

    def not_established(node: Node, have: dict[str, str]) -> list[str]:
        return [f"{node.name} -> {s.peer} ({s.address} via {s.interface}): "
                f"{have.get(s.address) or 'no session'}"
                for s in routers[node.name].sessions if have.get(s.address) != "Established"]

    down = poll(lab, lxd, switches, BGP_SUMMARY, peer_states, not_established, timeout)
    sessions = sum(len(r.sessions) for r in routers.values())
    if not down:
        return CheckResult("bgp", True, f"{sessions} session(s) established on {len(switches)} switches", 0.0)
    return CheckResult("bgp", False, f"{len(down)} of {sessions} session(s) not established after "
                       f"{timeout:.0f}s", 0.0, down, {"down": down})


def check_ecmp(lab: Lab, lxd: Lxd, timeout: float) -> CheckResult:
    """Each rack switch routes to every other rack over all its equal-cost paths."""
    from modules.check import CheckResult

    expected = routing.expected_next_hops(lab.topology, lab.addressing)
    racks = [n for n in lab.topology.nodes if n.name in expected]
    if not racks:
        return CheckResult("ecmp", True, "no racks", 0.0)

    def incomplete(node: Node, have: dict[str, int]) -> list[str]:
        return [f"{node.name} -> {prefix}: {have.get(prefix, 0)} next hop(s), expected {want}"
                for prefix, want in sorted(expected[node.name].items()) if have.get(prefix, 0) != want]

    wrong = poll(lab, lxd, racks, BGP_ROUTES, route_next_hops, incomplete, timeout)
    routes = sum(len(r) for r in expected.values())
    if not wrong:
        widths = sorted({w for r in expected.values() for w in r.values()})
        return CheckResult("ecmp", True, f"{routes} rack route(s) on {len(racks)} rack switches, "
                           f"{'/'.join(map(str, widths))} next hops each", 0.0,
                           data={"routes": routes, "next_hops": widths})
    return CheckResult("ecmp", False, f"{len(wrong)} of {routes} rack route(s) incomplete after "
                       f"{timeout:.0f}s", 0.0, wrong, {"incomplete": wrong})
