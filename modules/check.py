"""End-to-end health check of a deployed lab: RSTP converged, all servers reach each other, TCP flows.

Reads only (plus short-lived ping/iperf3 processes inside the lab's own servers). Three checks:
- `rstp` (`stp` with Linux-bridge switches): every switch agrees on one root and no port is still
  learning (waits, bounded); a routed fabric has `bgp` and `ecmp` instead (modules/check_routing.py);
- `ping`: servers ping each other's fabric address: a sample that covers every rack pair, pod
  pair and server (modules/reach_pairs.py), or every pair with `--full`; bounded per host, and
  what fails is tried again after a back-off before it counts as unreachable;
- `tcp`: a 10 MB iperf3 transfer between two servers of different racks (different pods when
  the topology has pods).
`python -m modules.check LAB_FILE [--json]` prints JSON; `distrilab check` renders the table.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from cdk.model import Lab, Node
from cdk.stages.nodes import endpoint
from modules import check_routing, reach_pairs
from modules import lxd_rest as rest
from modules.node_shell import NodeShell
from modules.reconcile import resolve_workers

Progress = Callable[[str], None]

#: probes mostly wait on the network, so the check runs more of them than a stage runs actions
CHECK_WORKERS = 8


def check_workers(lab: Lab) -> int:
    """Parallel probes: `--workers N` for this run, else the lab's `lxd.max_workers`, else 8."""
    return resolve_workers(lab.lxd.max_workers or CHECK_WORKERS)


@dataclass
class CheckResult:
    name: str
    ok: bool
    summary: str
    seconds: float
    details: list[str] = field(default_factory=list)  # what failed, one line each
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable detail for --json


@dataclass
class Report:
    lab: str
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


class Lxd:
    """One node shell per host of the lab, and the instance -> shell mapping."""

    def __init__(self, lab: Lab, workers: int):
        hosts = {h.name: h for h in lab.hosts}
        used = {lab.placement.assignment[n.name] for n in lab.topology.nodes}
        ends = {name: endpoint(h, lab.name) for name, h in hosts.items() if name in used}
        shells = {name: NodeShell.for_endpoint(rest.connect(end, workers), end) for name, end in ends.items()}
        self.lab = lab
        self.shells = {lab.instance_name(n.name): shells[lab.placement.assignment[n.name]]
                       for n in lab.topology.nodes}
        for shell in shells.values():
            shell.prime(list(self.shells))

    def sh(self, node: Node, script: str, timeout: int = 120) -> rest.ExecResult:
        instance = self.lab.instance_name(node.name)
        return self.shells[instance].sh(instance, script, timeout=timeout)


def run_checks(
    lab: Lab, rstp_timeout: float = 60.0, ping_deadline: int = 10, progress: Progress | None = None,
    lxd: Lxd | None = None, full: bool = False,
) -> Report:
    """Run every check in order; never raises for a failing lab (the report says what failed).
    `full` pings every ordered server pair instead of the sample that covers every rack pair."""
    lxd = lxd or Lxd(lab, check_workers(lab))
    say = progress or (lambda _text: None)
    checks = []
    if lab.fabric.mode == "l3":  # a routed fabric converges through BGP, not a spanning tree
        control: list[tuple[str, Callable[[], CheckResult]]] = [
            ("bgp", lambda: check_routing.check_bgp(lab, lxd, rstp_timeout)),
            ("ecmp", lambda: check_routing.check_ecmp(lab, lxd, rstp_timeout)),
        ]
    else:
        stp = "stp" if lab.fabric.bridge == "linux" else "rstp"
        control = [(stp, lambda: check_rstp(lab, lxd, rstp_timeout))]
    for name, fn in (*control,
                     ("ping", lambda: check_ping(lab, lxd, ping_deadline, full, check_workers(lab))),
                     ("tcp", lambda: check_tcp(lab, lxd))):
        say(f"checking {name}")
        started = time.monotonic()
        try:
            result = fn()
        except Exception as err:  # a check that cannot run is a failed check, with the reason
            result = CheckResult(name, False, f"could not run: {rest.error_text(err)}", 0.0)
        result.seconds = round(time.monotonic() - started, 2)
        say(f"{name}: {'ok' if result.ok else 'FAILED'} ({result.summary})")
        checks.append(result)
    return Report(lab.name, checks)


def _pool(lab: Lab, items: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    workers = max(1, min(check_workers(lab), len(items)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# ------------------------------------------------------------------ rstp

_RSTP_PORTS = "ovs-vsctl --timeout=5 --format=json --columns=name,rstp_status list port"
_RSTP_ROOT = "ovs-vsctl --timeout=5 get bridge br0 rstp_status:rstp_root_id"


def rstp_state(raw: str) -> tuple[str | None, dict[str, tuple[str, str]]]:
    """Pure: the output of `_RSTP_ROOT; _RSTP_PORTS` -> (root id, {port: (role, state)})."""
    first, _, rest_text = raw.partition("\n")
    root = first.strip().strip('"') or None
    ports: dict[str, tuple[str, str]] = {}
    if rest_text.strip():
        data = json.loads(rest_text)
        for name, status in data["data"]:
            values = dict(status[1]) if isinstance(status, list) and status[0] == "map" else {}
            if "rstp_port_state" in values:
                ports[name] = (values.get("rstp_port_role", ""), values["rstp_port_state"])
    return root, ports


def port_settled(role: str, state: str) -> bool:
    """A port is done converging when root/designated ports forward and the others discard.

    A designated port stays Discarding until its neighbour agrees (or the forward delay ends):
    Discarding alone is not a final state.
    """
    if role in ("Root", "Designated"):
        return state == "Forwarding"
    return state in ("Discarding", "Disabled")


#: Linux bridges (`fabric: {bridge: linux}`): the kernel STP's root and each port's state
_STP_STATE = "cat /sys/class/net/br0/bridge/root_id; bridge -j link show"


def linux_stp_state(raw: str) -> tuple[str | None, dict[str, tuple[str, str]]]:
    """Pure: the output of `_STP_STATE` -> (root id, {port: ("", state)}) for br0's ports.
    802.1D shows no port roles: a port is settled when it forwards or blocks."""
    first, _, rest_text = raw.partition("\n")
    root = first.strip() or None
    ports = {p["ifname"]: ("", p.get("state", "")) for p in json.loads(rest_text or "[]")
             if p.get("master") == "br0"}
    return root, ports


def port_settled_802_1d(_role: str, state: str) -> bool:
    return state in ("forwarding", "blocking", "disabled")


def check_rstp(lab: Lab, lxd: Lxd, timeout: float) -> CheckResult:
    """The spanning tree has converged: OVS's RSTP, or the kernel's STP on Linux bridges."""
    linux = lab.fabric.bridge == "linux"
    name, command = ("stp", _STP_STATE) if linux else ("rstp", f"{_RSTP_ROOT}; {_RSTP_PORTS}")
    parse, settled = (linux_stp_state, port_settled_802_1d) if linux else (rstp_state, port_settled)
    switches = [n for n in lab.topology.nodes if n.kind == "switch"]
    if not switches:
        return CheckResult(name, True, "no switches", 0.0)
    deadline = time.monotonic() + timeout
    while True:
        states = _pool(lab, switches, lambda n: parse(lxd.sh(n, command).stdout))
        roots = {root for root, _ in states}
        learning = [f"{n.name}:{p} {role} {state}" for n, (_, ports) in zip(switches, states, strict=True)
                    for p, (role, state) in sorted(ports.items()) if not settled(role, state)]
        missing = [n.name for n, (root, _) in zip(switches, states, strict=True) if root is None]
        if len(roots) == 1 and not learning and not missing:
            blocked = sum(1 for _, ports in states for _, state in ports.values()
                          if state in ("Discarding", "blocking"))
            return CheckResult(name, True, f"converged: 1 root, {len(switches)} switches, "
                               f"{blocked} port(s) {'blocking' if linux else 'discarding'}", 0.0)
        if time.monotonic() >= deadline:
            details = [f"{len(roots)} different roots: {', '.join(sorted(str(r) for r in roots))}"]
            details += [f"no {name.upper()} on {m}" for m in missing]
            details += [f"not converged: {x}" for x in learning]
            return CheckResult(name, False, f"not converged after {timeout:.0f}s", 0.0, details)
        time.sleep(1.0)


# ------------------------------------------------------------------ ping


def _servers(lab: Lab) -> list[tuple[Node, str]]:
    """(server, fabric IP) for every server with a fabric address, in topology order."""
    first: dict[str, str] = {}
    for a in lab.addressing.servers:
        first.setdefault(a.node, a.address.split("/")[0])
    return [(n, first[n.name]) for n in lab.topology.nodes if n.kind == "server" and n.name in first]


def ping_script(targets: list[str], deadline: int, parallel: int = 4) -> str:
    """Ping every target once (waiting up to `deadline` s for a reply), `parallel` at a time."""
    lines = "\n".join(targets)
    return (
        f"printf '%s\\n' {shlex.quote(lines)} | xargs -P {parallel} -I@ "
        f"sh -c 'ping -c 1 -w {deadline} -q @ >/dev/null 2>&1 && echo ok @ || echo fail @'"
    )


#: seconds to wait before each new try of the pairs still failing: a ping lost to a moment of
#: load (a busy switch, ARP under a burst) answers a second later; a broken path never does
RETRY_BACKOFF = (1.0, 2.0, 4.0)


def check_ping(lab: Lab, lxd: Lxd, deadline: int, full: bool = False, per_host: int = 8) -> CheckResult:
    """Ping the sampled server pairs (modules/reach_pairs.py; all ordered pairs with `full`),
    at most `per_host` sources at a time on each host, and try what failed again after each
    back-off: a pair counts as unreachable only when every try failed."""
    servers = _servers(lab)
    if len(servers) < 2:
        return CheckResult("ping", True, "fewer than 2 servers", 0.0)
    nodes = [node for node, _ in servers]
    pairs = reach_pairs.all_pairs(nodes) if full else reach_pairs.sampled_pairs(nodes)
    address = {node.name: ip for node, ip in servers}
    failing = ping_pairs(lab, lxd, pairs, address, deadline, per_host)
    first_failures = failing
    for delay in RETRY_BACKOFF:
        if not failing:
            break
        time.sleep(delay)
        # the retries run one ping at a time per source: they must not make the load that lost them
        failing = ping_pairs(lab, lxd, failing, address, deadline, per_host, parallel=1)
    still_failing = set(failing)
    answered = [p for p in first_failures if p not in still_failing]
    cover = reach_pairs.coverage(nodes, pairs)
    mode = "all pairs" if full else (f"sampled: {cover.rack_pairs} rack pairs, {cover.pod_pairs} pod pairs, "
                                     f"{cover.servers} servers")
    summary = f"{len(pairs) - len(failing)}/{len(pairs)} server pairs reachable ({mode})"
    if answered:
        summary += f"; {len(answered)} lost under load, answered on retry"
    details = ([f"unreachable: {a} -> {b}" for a, b in failing]
               + [f"answered on retry: {a} -> {b}" for a, b in answered])
    data = {
        "mode": "full" if full else "sampled",
        "tried": len(pairs),
        # every pair is listed for the sample; --full says "all ordered pairs" instead of n² lines
        "pairs": "all ordered pairs of servers" if full else [list(p) for p in pairs],
        "coverage": asdict(cover),
        "tries": 1 + len(RETRY_BACKOFF),
        "answered_on_retry": [list(p) for p in answered],
        "unreachable": [list(p) for p in failing],
    }
    return CheckResult("ping", not failing, summary, 0.0, details[:50], data)


def ping_pairs(lab: Lab, lxd: Lxd, pairs: list[reach_pairs.Pair], address: dict[str, str], deadline: int,
               per_host: int, parallel: int = 4) -> list[reach_pairs.Pair]:
    """The pairs whose ping got no reply: one exec per source server, `per_host` at a time per host."""
    by_source: dict[str, list[str]] = {}
    for source, target in pairs:
        by_source.setdefault(source, []).append(target)
    nodes = {n.name: n for n in lab.topology.nodes}

    def from_source(source: str) -> list[reach_pairs.Pair]:
        targets = by_source[source]
        script = ping_script([address[t] for t in targets], deadline, parallel)
        out = lxd.sh(nodes[source], script, timeout=deadline * len(targets) + 60).stdout
        ok = {line.split()[1] for line in out.splitlines() if line.startswith("ok ")}
        return [(source, t) for t in targets if address[t] not in ok]

    results = _per_host_pool(lab, list(by_source), from_source, per_host)
    return sorted(pair for failed in results for pair in failed)


def _per_host_pool(lab: Lab, sources: list[str], fn: Callable[[str], Any], per_host: int) -> list[Any]:
    """fn over `sources` with at most `per_host` running at once on each host (the pings load the
    host whose switches forward them; one host's share must not starve another's)."""
    hosts = {lab.placement.assignment[s] for s in sources}
    gates = {h: threading.BoundedSemaphore(per_host) for h in hosts}

    def gated(source: str) -> Any:
        with gates[lab.placement.assignment[source]]:
            return fn(source)

    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), per_host * len(hosts)))) as pool:
        return list(pool.map(gated, sources))


# ------------------------------------------------------------------ tcp


def tcp_pair(lab: Lab) -> tuple[tuple[Node, str], tuple[Node, str]] | None:
    """Two servers as far apart as the topology allows: different pods, else different racks."""
    servers = _servers(lab)
    if len(servers) < 2:
        return None
    a = servers[0]
    for key in (lambda n: n.pod, lambda n: n.rack):
        for b in reversed(servers):
            if key(a[0]) is not None and key(b[0]) != key(a[0]):
                return a, b
    return a, servers[-1]


def check_tcp(lab: Lab, lxd: Lxd, megabytes: int = 10) -> CheckResult:
    pair = tcp_pair(lab)
    if pair is None:
        return CheckResult("tcp", True, "fewer than 2 servers", 0.0)
    (server, server_ip), (client, _) = pair
    # one-shot server (-1) in the background; the client retries until it listens
    # (its output goes to a file: an exec only ends once every holder of its stdout has exited)
    lxd.sh(server, "iperf3 -s -1 -D --logfile /tmp/distrilab-iperf3.log </dev/null >/dev/null 2>&1",
           timeout=30).check()
    script = (
        "for i in $(seq 1 20); do "
        f"out=$(iperf3 -c {server_ip} -n {megabytes}M -J 2>&1) && {{ echo \"$out\"; exit 0; }}; sleep 0.5; "
        "done; echo \"$out\"; exit 1"
    )
    result = lxd.sh(client, script, timeout=120)
    where = f"{client.name} -> {server.name}"
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return CheckResult("tcp", False, f"{where}: iperf3 failed", 0.0, [result.stdout.strip()[-300:]])
    end = data.get("end", {})
    sent = int(end.get("sum_sent", {}).get("bytes", 0))
    received = end.get("sum_received", {})
    # iperf3 -n: the sender's total is exact; the receiver's sum stops at the sender's last report
    if not result.ok or sent < megabytes * 1_048_576 or not received.get("bytes"):
        error = data.get("error") or f"sent {sent} bytes, received {received.get('bytes', 0)}"
        return CheckResult("tcp", False, f"{where}: {error}", 0.0)
    mbps = received.get("bits_per_second", 0) / 1e6
    retrans = end.get("sum_sent", {}).get("retransmits", 0)
    return CheckResult("tcp", True, f"{where}: {sent / 1e6:.1f} MB at {mbps:.0f} Mbit/s "
                       f"({retrans} retransmits)", 0.0)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from cdk.pipeline import load_lab

    parser = argparse.ArgumentParser(prog="python -m modules.check", description=__doc__)
    parser.add_argument("lab", help="lab file")
    parser.add_argument("--rstp-timeout", type=float, default=60.0)
    parser.add_argument("--full", action="store_true", help="ping every pair of servers")
    args = parser.parse_args(argv)
    report = run_checks(load_lab(args.lab), rstp_timeout=args.rstp_timeout, full=args.full,
                        progress=lambda text: print(f"[check] {text}", file=sys.stderr, flush=True))
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
