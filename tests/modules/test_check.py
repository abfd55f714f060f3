"""modules/check.py: parsing RSTP state, the ping fan-out, the choice of the TCP pair."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.labs import leaf_spine
from modules import check
from modules.check import (
    check_ping,
    linux_stp_state,
    ping_script,
    port_settled,
    port_settled_802_1d,
    rstp_state,
    tcp_pair,
)

HERE = Path(__file__).parent / "check"
POOLS = {"management": "10.100.0.0/16", "loopbacks": "10.101.0.0/16", "p2p": "10.102.0.0/16",
         "servers": "10.103.0.0/16"}


def test_rstp_state_of_a_real_leaf() -> None:
    root, ports = rstp_state((HERE / "rstp_leaf.txt").read_text())
    assert root == "1.000.a2077312f847"
    assert ports == {"eth1": ("Root", "Forwarding"), "eth2": ("Designated", "Forwarding"),
                     "eth3": ("Designated", "Forwarding")}


def test_designated_port_still_discarding_is_not_converged() -> None:
    assert not port_settled("Designated", "Discarding")
    assert port_settled("Alternate", "Discarding")
    assert port_settled("Root", "Forwarding")
    assert not port_settled("Root", "Learning")


def test_stp_state_of_a_real_linux_bridge() -> None:
    root, ports = linux_stp_state((HERE / "stp_linux.txt").read_text())
    assert root == "4000.5601cbd7309c"
    assert ports == {"eth1": ("", "disabled"), "eth2": ("", "disabled")}
    assert port_settled_802_1d("", "blocking") and not port_settled_802_1d("", "learning")
    assert linux_stp_state("") == (None, {})


def test_rstp_state_without_a_bridge() -> None:
    assert rstp_state("") == (None, {})


def test_ping_script_reports_every_target(tmp_path: Path) -> None:
    # run the generated shell with a stand-in `ping` that answers only for 127.0.0.1
    fake_ping = tmp_path / "ping"
    fake_ping.write_text('#!/bin/sh\nfor a; do last=$a; done\n[ "$last" = 127.0.0.1 ]\n')
    fake_ping.chmod(0o755)
    script = ping_script(["127.0.0.1", "192.0.2.254"], deadline=1)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout
    assert sorted(out.splitlines()) == ["fail 192.0.2.254", "ok 127.0.0.1"]


def test_tcp_pair_spans_racks() -> None:
    lab = leaf_spine("tp", 2, 3, 2, pools=POOLS, host_routes=[])
    pair = tcp_pair(lab)
    assert pair is not None
    (a, _), (b, _) = pair
    assert a.rack != b.rack


class FlakyServers:
    """Stands in for the lab's node shells: answers each ping script from a table of how many tries
    a target needs before it answers (None: never), and records what was tried, from where."""

    def __init__(self, needs: dict[str, int | None]):
        self.needs, self.tries, self.scripts = needs, {}, []

    def sh(self, node: Any, script: str, timeout: int = 120) -> Any:
        self.scripts.append((node.name, script))
        lines = []
        for ip in re.findall(r"\d+\.\d+\.\d+\.\d+", script.split("|")[0]):
            key = (node.name, ip)
            self.tries[key] = self.tries.get(key, 0) + 1
            need = self.needs.get(ip, 1)
            lines.append(f"{'ok' if need is not None and self.tries[key] >= need else 'fail'} {ip}")
        return type("Result", (), {"stdout": "\n".join(lines), "ok": True})()


def test_ping_retries_before_a_pair_counts_as_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "RETRY_BACKOFF", (0.0, 0.0, 0.0))
    lab = leaf_spine("tp", 2, 3, 3, pools=POOLS, host_routes=[])
    servers = dict(check._servers(lab))
    by_name = {n.name: ip for n, ip in servers.items()}
    lost, dead = by_name["srv-02-01"], by_name["srv-03-03"]
    shells = FlakyServers({lost: 3, dead: None})
    result = check_ping(lab, shells, deadline=1)  # type: ignore[arg-type]
    assert not result.ok
    unreachable = result.data["unreachable"]
    assert unreachable and all(b == "srv-03-03" for _, b in unreachable)
    answered = result.data["answered_on_retry"]
    assert answered and all(b == "srv-02-01" for _, b in answered)
    assert "lost under load, answered on retry" in result.summary
    assert result.data["tries"] == 4 and len(result.data["pairs"]) == result.data["tried"]
    assert [d for d in result.details if d.startswith("unreachable")] == [
        f"unreachable: {a} -> {b}" for a, b in unreachable]
    # retries ping one target at a time per source
    assert all("xargs -P 1 " in s for _, s in shells.scripts[-len(unreachable):])


def test_ping_that_answers_on_retry_only_is_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "RETRY_BACKOFF", (0.0, 0.0, 0.0))
    lab = leaf_spine("tp", 2, 3, 3, pools=POOLS, host_routes=[])
    lost = dict((n.name, ip) for n, ip in check._servers(lab))["srv-01-02"]
    result = check_ping(lab, FlakyServers({lost: 2}), deadline=1)  # type: ignore[arg-type]
    assert result.ok and result.data["unreachable"] == [] and result.data["answered_on_retry"]
    full = check_ping(lab, FlakyServers({}), deadline=1, full=True)  # type: ignore[arg-type]
    assert full.ok and full.data["tried"] == 9 * 8 and full.data["pairs"] == "all ordered pairs of servers"
