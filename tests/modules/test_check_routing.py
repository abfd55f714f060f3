"""modules/check_routing.py: parsing FRR 8.4's JSON (shapes recorded from the router image), and
the checks against a fake lab whose switches answer as bgpd would."""

from __future__ import annotations

import json
from typing import Any

import yaml

from cdk import routing
from cdk.model import Lab, Node
from cdk.pipeline import lab_from_dict
from modules.check_routing import check_bgp, check_ecmp, peer_states, route_next_hops
from modules.lxd_rest import ExecResult
from tests.cdk.golden import LABS_DIR

#: `vtysh -c 'show bgp summary json'` on a router of images/recipes/router.yaml (trimmed)
SUMMARY = {"ipv4Unicast": {"routerId": "10.255.0.1", "as": 65001, "peerCount": 2, "peers": {
    "10.212.0.1": {"hostname": "b", "remoteAs": 65002, "pfxRcd": 2, "state": "Established"},
    "10.212.0.3": {"remoteAs": 65003, "pfxRcd": 0, "state": "Active", "peerState": "OK"}}}}
#: `vtysh -c 'show ip route bgp json'`: an ECMP route with both next hops in the kernel
ROUTES = {"10.255.0.100/32": [{"prefix": "10.255.0.100/32", "protocol": "bgp", "selected": True,
                               "installed": True, "nexthops": [
                                   {"fib": True, "ip": "10.212.0.1", "interfaceName": "eth1"},
                                   {"fib": True, "ip": "10.212.0.3", "interfaceName": "eth2"}]}],
          "10.255.0.2/32": [{"prefix": "10.255.0.2/32", "protocol": "bgp", "selected": True,
                             "nexthops": [{"fib": True, "ip": "10.212.0.1", "active": True},
                                          {"ip": "10.212.0.3", "active": False}]}]}


def test_peer_states() -> None:
    assert peer_states(json.dumps(SUMMARY)) == {"10.212.0.1": "Established", "10.212.0.3": "Active"}
    assert peer_states("{}") == {}  # no `router bgp` yet
    assert peer_states("") == {}  # bgpd not running: vtysh prints nothing on stdout


def test_route_next_hops_counts_what_the_kernel_has() -> None:
    assert route_next_hops(json.dumps(ROUTES)) == {"10.255.0.100/32": 2, "10.255.0.2/32": 1}


def routed_lab() -> Lab:
    data = yaml.safe_load((LABS_DIR / "default.yaml").read_text())
    data["fabric"] = {"mode": "l3"}
    return lab_from_dict(data)


class FakeSwitches:
    """Answers vtysh as every switch of a converged lab would, except for `down` (a dead spine)."""

    def __init__(self, lab: Lab, down: str | None = None) -> None:
        self.routers = routing.routers(lab.topology, lab.addressing)
        self.expected = routing.expected_next_hops(lab.topology, lab.addressing)
        self.down = down

    def sh(self, node: Node, script: str, timeout: int = 120) -> ExecResult:
        router = self.routers[node.name]
        if node.name == self.down:
            raise RuntimeError(f"Instance is not running: dl-x-{node.name}")
        if "summary" in script:
            peers = {s.address: {"state": "Active" if s.peer == self.down else "Established"}
                     for s in router.sessions}
            out: Any = {"ipv4Unicast": {"peers": peers}}
        else:
            lost = 1 if self.down else 0
            out = {prefix: [{"selected": True, "nexthops": [{"fib": True}] * (hops - lost)}]
                   for prefix, hops in self.expected.get(node.name, {}).items()}
        return ExecResult(script, 0, json.dumps(out), "")


def test_a_converged_fabric_passes_and_a_dead_spine_is_named() -> None:
    lab = routed_lab()
    healthy = FakeSwitches(lab)
    assert check_bgp(lab, healthy, 0).ok and check_ecmp(lab, healthy, 0).ok  # type: ignore[arg-type]
    assert check_ecmp(lab, healthy, 0).data == {"routes": 2, "next_hops": [2]}  # type: ignore[arg-type]
    broken = FakeSwitches(lab, down="spine-01")
    bgp = check_bgp(lab, broken, 0)  # type: ignore[arg-type]
    assert not bgp.ok and len(bgp.details) == 3
    assert bgp.details[0] == "spine-01: not answering (Instance is not running: dl-x-spine-01)"
    assert all("-> spine-01" in d and "Active" in d for d in bgp.details[1:])
    ecmp = check_ecmp(lab, broken, 0)  # type: ignore[arg-type]
    assert not ecmp.ok and all("1 next hop(s), expected 2" in d for d in ecmp.details)
