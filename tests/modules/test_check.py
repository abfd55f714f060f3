"""modules/check.py: parsing RSTP state, the ping fan-out, the choice of the TCP pair."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.labs import leaf_spine
from modules.check import ping_script, port_settled, rstp_state, tcp_pair

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
