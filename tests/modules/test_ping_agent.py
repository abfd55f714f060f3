"""The ping agent behind verify_ping: asked over HTTP by the load controller, it reads each port
from Alcor (here the API double), attaches its endpoint on the node the port is bound to, pings,
and keeps the outcome per pair (the real attach and ping on ACA nodes: tests/e2e/test_aca_tunnels.py)."""

from __future__ import annotations

import json
from pathlib import Path

from modules.controller import add_ping_results, verifies_ping
from modules.loadgen.__main__ import http_ping
from modules.loadgen.plan import PortRef
from modules.ping_agent import PingAgent
from tests.doubles.alcor_api import AlcorApiDouble
from tests.loadgen.test_double import post


def test_the_controller_asks_the_agent_and_the_agent_reports_each_pair(tmp_path: Path) -> None:
    scripts: list[tuple[str, str]] = []

    def node_run(instance: str, script: str) -> tuple[int, str]:
        scripts.append((instance, script))
        if "ping -c" in script:  # what ping prints when nothing answers
            return 1, "3 packets transmitted, 0 received, 100% packet loss, time 2041ms\n"
        return 0, ""

    with AlcorApiDouble() as alcor:
        post(alcor, "/project/p/vpcs", {"network": {"id": "v", "cidr": "10.9.0.0/16"}})
        post(alcor, "/project/p/subnets", {"subnet": {"id": "s", "network_id": "v", "cidr": "10.9.1.0/24"}})
        for pid, ip in (("a" * 20, "10.9.1.5"), ("b" * 20, "10.9.1.6")):
            post(alcor, "/project/p/ports", {"port": {"id": pid, "network_id": "v", "mac_address":
                                                      f"fa:16:3e:00:00:{ip[-1]}0", "fixed_ips": [
                                                          {"subnet_id": "s", "ip_address": ip}]}})
        with PingAgent({"n1": "dl-x-srv-1", "n2": "dl-x-srv-2"}, alcor.url, alcor.url, node_run) as agent:
            ping = http_ping(agent.url)
            a = PortRef("a" * 20, "10.9.1.5", "n1", "s", "p")
            b = PortRef("b" * 20, "10.9.1.6", "n2", "s", "p")
            ok = ping(a, b)
            stray = ping(a, PortRef("c" * 20, "10.9.1.7", "n9", "s", "p"))
            results = list(agent.results)
    assert ok is False and stray is False  # nothing programs these nodes: no answer, reported so
    assert results[0]["detail"].startswith("3 packets transmitted, 0 received")
    assert "not an ACA node of the lab" in results[1]["detail"]
    attach = [s for i, s in scripts if "ovs-vsctl add-port br-int" in s]
    assert len(attach) == 2  # once per port, on its own node, with Alcor's MAC and the subnet's prefix
    assert "add-port br-int tapaaaaaaaaaaa tag=1" in attach[0] and "fa:16:3e:00:00:50" in attach[0]
    assert "10.9.1.5/24" in attach[0]
    assert [i for i, s in scripts if s in attach] == ["dl-x-srv-1", "dl-x-srv-2"]
    assert sum("ip netns del" in s and "add-port" not in s for _, s in scripts) == 2  # detached at the end

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"totals": {}}))
    add_ping_results(report, agent)
    assert json.loads(report.read_text())["verify_ping"] == results


def test_only_scenarios_with_verify_ping_get_an_agent() -> None:
    assert verifies_ping("name: t\nnodes: {count: 2}\nsteps: [create_vpc, create_subnet, create_port,"
                         " bind_port, verify_ping]\n")
    assert not verifies_ping("name: t\n") and not verifies_ping(": not yaml [")
