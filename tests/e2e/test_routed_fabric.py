"""A routed leaf-spine (`fabric: {mode: l3}`) end to end, through the CLI as a user runs it.

`up` builds the `router` image (FRR), gives every fabric link a /31 and every switch its bgpd.conf;
`check` finds every eBGP session established, each leaf's route to the other rack over both
spines (ECMP), every rack pair reachable and TCP across racks. Then one spine's container goes
down while every server of rack 1 pings every server of rack 2: the check names the lost sessions
and the routes left with one next hop, the traffic goes on over the other spine, and `up` brings
the spine back. A stopped container's bgpd dies with its sockets, which end its sessions at once
(measured: flows the kernel had hashed onto that spine lost no ping at 0.2 s intervals); the bound
asserted is BGP's hold time, 9 s with FRR's datacenter defaults, what a silent failure would cost.
A bgpd stopped by hand is drift that `plan` names and `up` repairs. `down` leaves nothing (cli_lab).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bench.labs import free_pools
from cdk import routing
from cdk.model import Lab
from cdk.routing import RACK_BRIDGE
from modules import lxd_rest as rest
from stacks.loading import load
from tests.e2e.conftest import cli_lab

pytestmark = pytest.mark.e2e

TOPOLOGY = {"kind": "leaf-spine", "spines": 2, "leaves": 2, "servers_per_leaf": 2}
#: FRR's datacenter profile: hold time 9 s; a flow hashed onto the dead spine waits that long
HOLD_SECONDS = 9
PING_INTERVAL = 0.2


def lxc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=check, timeout=300)


def next_hop(lab: Lab, leaf: str, source: str, target: str) -> str:
    """The spine a leaf sends `source`'s packets to `target` through: its ECMP hash's choice."""
    got = lxc("exec", lab.instance_name(leaf), "--", "ip", "-j", "route", "get", target, "from", source,
              "iif", RACK_BRIDGE).stdout
    gateway = json.loads(got)[0].get("gateway")
    sessions = routing.routers(lab.topology, lab.addressing)[leaf].sessions
    return next(s.peer for s in sessions if s.address == gateway)


def healthy(up: subprocess.CompletedProcess[str], lab: str) -> None:
    assert up.returncode == 0 and f"lab {lab}: healthy" in up.stdout, up.stdout[-3000:] + up.stderr[-2000:]


def checks_of(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    report = json.loads(proc.stdout)
    return {c["name"]: c for c in report["checks"]}


def test_a_routed_leaf_spine_spreads_over_both_spines_and_survives_one(
    lab_name: str, tmp_path: Path
) -> None:
    lab_file = tmp_path / f"{lab_name}.yaml"
    lab_file.write_text(yaml.safe_dump({
        "name": lab_name, "topology": TOPOLOGY, "addressing": free_pools(lab_name),
        "fabric": {"mode": "l3"}, "resources": {"defaults": {"memory": "128MiB"}},
    }))
    lab = load(lab_file, check_host_routes=False)
    instance = lab.instance_name
    address = {a.node: a.address.split("/")[0] for a in lab.addressing.servers}
    with cli_lab(lab_name, lab_file) as distrilab:
        healthy(distrilab("up"), lab_name)
        check = distrilab("check", "--json")
        checks = checks_of(check)
        assert check.returncode == 0, check.stdout[-3000:]
        assert set(checks) == {"bgp", "ecmp", "ping", "tcp"}
        assert checks["ecmp"]["data"] == {"routes": 2, "next_hops": [2]}  # a leaf: the other rack, 2 spines
        route = lxc("exec", instance("leaf-01"), "--", "ip", "route", "show",
                    lab.addressing.rack_subnets["leaf-02"]).stdout
        assert route.count("nexthop via") == 2, route  # in the kernel: both spines

        # a spine goes down while every server of rack 1 pings every server of rack 2 every 0.2 s:
        # four flows, each hashed onto one spine per direction, so some cross the one that stops
        count = int(40 / PING_INTERVAL)
        pingers = {}
        for source, target in (("srv-01-01", "srv-02-01"), ("srv-01-01", "srv-02-02"),
                               ("srv-01-02", "srv-02-01"), ("srv-01-02", "srv-02-02")):
            ping = ["ping", "-n", "-i", str(PING_INTERVAL), "-c", str(count), address[target]]
            pingers[f"{source}->{target}"] = subprocess.Popen(
                ["lxc", "exec", instance(source), "--", *ping], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
        # which flows the kernel hashed onto spine-01, at either rack switch (the replies' way back)
        via_spine = {}
        for flow in pingers:
            source, target = flow.split("->")
            ways = (("leaf-01", source, target), ("leaf-02", target, source))
            via_spine[flow] = [leaf for leaf, src, dst in ways
                               if next_hop(lab, leaf, address[src], address[dst]) == "spine-01"]
        time.sleep(5)
        lxc("stop", "--force", instance("spine-01"))
        down = distrilab("check", "--json")
        checks = checks_of(down)
        assert down.returncode != 0 and not checks["bgp"]["ok"], down.stdout[-3000:]
        lost = checks["bgp"]["details"]
        # spine-01 itself, and the session to it of leaf-01 and leaf-02
        assert len(lost) == 3 and all("spine-01" in line for line in lost), lost
        assert any(line.startswith("spine-01: not answering") for line in lost), lost
        assert not checks["ecmp"]["ok"] and all("1 next hop(s), expected 2" in line
                                                for line in checks["ecmp"]["details"]), checks["ecmp"]
        assert checks["ping"]["ok"] and checks["tcp"]["ok"], down.stdout[-3000:]  # over spine-02
        for flow, pinger in pingers.items():
            output, _ = pinger.communicate(timeout=120)
            stats = re.search(r"(\d+) packets transmitted, (\d+) received", output)
            assert stats, output
            sent, received = int(stats.group(1)), int(stats.group(2))
            lost_seconds = (sent - received) * PING_INTERVAL
            way = f"via spine-01 at {', '.join(via_spine[flow])}" if via_spine[flow] else "not via spine-01"
            print(f"spine down, {flow} ({way}): {sent - received} of {sent} lost ({lost_seconds:.1f} s)")
            assert lost_seconds <= HOLD_SECONDS + 3, output[-2000:]
            if not via_spine[flow]:
                assert sent == received, output[-2000:]  # the other spine's flows never notice

        healthy(distrilab("up"), lab_name)
        assert rest.status(rest.connect(None), instance("spine-01")) == "Running"

        # bgpd stopped by hand: drift, repaired by up
        lxc("exec", instance("leaf-02"), "--", "sv", "stop", "bgpd")
        plan = distrilab("plan")
        assert plan.returncode == 0 and "bgpd down" in plan.stdout, plan.stdout[-3000:]
        healthy(distrilab("up"), lab_name)
        assert lxc("exec", instance("leaf-02"), "--", "sv", "status", "bgpd").stdout.startswith("run:")
