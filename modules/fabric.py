"""Reconciler of the network configuration inside a lab's nodes: `python -m modules.fabric apply|destroy`.

Owns, inside each node container of the lab on this host, `/etc/distrilab/boot.d/50-fabric.sh`
and what it configures: the management address on eth0 (+ default route to the lab's gateway);
on servers the fabric address of each fabric interface; on switches one OVS bridge `br0`
(datapath `netdev` unless the host has the openvswitch module), RSTP enabled before any port is
added (a Clos has loops), every fabric port added with TX checksum offload off (the netdev
datapath drops TCP over veth otherwise) and up; server-facing ports are RSTP edge ports.
The script is idempotent and lives in boot.d, so a restarted container configures itself again.
Observation is one script per node (script digest, `ip -j addr`, OVS bridge/ports, offloads),
skipped where the host sees that a local node has no script yet;
only nodes whose state differs are configured, with one script each (modules/node_shell.py runs
them: nsenter on the local host, LXD exec elsewhere). Destroy changes nothing:
the configuration disappears with the containers (modules/nodes.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdk.errors import DistrilabError
from modules import lxd_rest as rest
from modules.node_shell import NodeShell
from modules.reconcile import Action, Reconciler, workers_fields

OWNER = "fabric"
SCRIPT_PATH = "/etc/distrilab/boot.d/50-fabric.sh"
#: the host has the openvswitch kernel module: OVS can use the kernel datapath
_KERNEL_OVS = Path("/sys/module/openvswitch")
_HEREDOC = "DISTRILAB_FABRIC_EOF"
BRIDGE_TYPES = ("ovs", "linux", "plain")
#: FRR's per-daemon configuration of bgpd (images/recipes/router.yaml runs zebra and bgpd)
BGPD_CONF = "/etc/frr/bgpd.conf"
FRR_DAEMONS = ("zebra", "bgpd")


@dataclass(frozen=True)
class Port:
    name: str
    edge: bool = False


@dataclass(frozen=True)
class NodeSpec:
    name: str
    instance: str
    kind: str
    mgmt_address: str
    mgmt_gateway: str
    mtu: int
    bridge: str | None = None
    bridge_type: str = "ovs"  # "ovs" | "linux" | "plain" (a routed rack's: no STP, no loops)
    stp_priority: int = 32768  # the bridge priority in the (R)STP root election
    ports: tuple[Port, ...] = ()
    interfaces: tuple[tuple[str, str], ...] = ()  # (interface, CIDR address): servers, routed switches
    routes: tuple[tuple[str, str], ...] = ()  # (destination, gateway): servers of a routed fabric
    loopback: str | None = None  # routed switches: their /32 on lo
    bgpd: str | None = None  # routed switches: /etc/frr/bgpd.conf


@dataclass(frozen=True)
class Spec:
    lab: str
    host: str
    max_workers: int | None  # what the lab sets (modules/reconcile.py: resolve_workers)
    workers_limit: int | None  # the host's own limit
    datapath: str  # "auto" | "netdev" | "system"
    nodes: tuple[NodeSpec, ...]
    endpoint: dict[str, Any] | None = field(default=None, compare=False)


class FabricReconciler(Reconciler[Spec, dict[str, Any]]):
    name = OWNER

    def load_spec(self, data: dict[str, Any]) -> Spec:
        try:
            nodes = []
            for n in data.get("nodes", []):
                bridge = n.get("bridge") or {}
                nodes.append(NodeSpec(
                    name=n["name"], instance=n["instance"], kind=n["kind"],
                    mgmt_address=n["management"]["address"], mgmt_gateway=n["management"]["gateway"],
                    mtu=int(n.get("mtu") or 1500), bridge=bridge.get("name"),
                    bridge_type=bridge.get("type") or "ovs",
                    stp_priority=int(bridge.get("stp_priority") or 32768),
                    ports=tuple(Port(p["name"], bool(p.get("edge"))) for p in bridge.get("ports", [])),
                    interfaces=tuple((i["name"], i["address"]) for i in n.get("interfaces", [])),
                    routes=tuple((r["to"], r["via"]) for r in n.get("routes", [])),
                    loopback=n.get("loopback"), bgpd=n.get("bgpd"),
                ))
            for node in nodes:
                if node.bridge_type not in BRIDGE_TYPES:
                    raise DistrilabError(f"fabric spec: {node.name}: bridge type must be one of "
                                         f"{', '.join(BRIDGE_TYPES)} (got {node.bridge_type!r})")
            datapath = data.get("datapath") or "auto"
            if datapath not in ("auto", "netdev", "system"):
                raise DistrilabError(
                    f"fabric spec: datapath must be auto, netdev or system (got {datapath!r})"
                )
            return Spec(lab=data["lab"], host=data["host"], **workers_fields(data),
                        datapath=datapath, nodes=tuple(nodes), endpoint=data.get("endpoint"))
        except (KeyError, TypeError) as err:
            raise DistrilabError(f"fabric spec: missing or malformed field {err}") from err

    def empty_spec(self, spec: Spec) -> Spec:
        return dataclasses.replace(spec, nodes=())

    def connect(self, spec: Spec) -> NodeShell:
        endpoint = spec.endpoint or {"name": spec.host}
        return NodeShell.for_endpoint(rest.connect(endpoint, self.max_workers(spec)), endpoint)

    # -------------------------------------------------------------- observe (reads only)

    def observe(self, shell: NodeShell, spec: Spec) -> dict[str, Any]:
        owned = rest.owned_instances(shell.client, spec.lab) if spec.nodes else {}
        shell.prime([n.instance for n in spec.nodes])

        def one(node: NodeSpec) -> dict[str, Any]:
            status = owned.get(node.instance, {}).get("status", "missing")
            if status != "Running":
                return {"status": status}
            if shell.has_file(node.instance, SCRIPT_PATH) is False:
                # never configured (a new or recreated node): nothing else to observe
                return {"status": status, "unconfigured": True}
            result = shell.sh(node.instance, OBSERVE_SCRIPT, timeout=60)
            return {"status": status, **parse_observation(result.stdout)}

        workers = max(1, min(self.max_workers(spec), len(spec.nodes)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            states = dict(zip([n.instance for n in spec.nodes], pool.map(one, spec.nodes), strict=True))
        datapath = "system" if _KERNEL_OVS.exists() else "netdev"
        return {"host_datapath": datapath, "nodes": states}

    # -------------------------------------------------------------- plan (pure)

    def plan(self, spec: Spec, observed: dict[str, Any]) -> list[Action]:
        datapath = spec.datapath if spec.datapath != "auto" else observed.get("host_datapath", "netdev")
        actions = []
        for node in spec.nodes:
            have = observed.get("nodes", {}).get(node.instance, {"status": "missing"})
            script = render_script(node, datapath)
            reasons = node_drift(node, datapath, script, have)
            if reasons:
                actions.append(Action("configure", node.instance, ", ".join(reasons), 0, {"script": script}))
        return actions

    # -------------------------------------------------------------- execute

    def execute_action(self, shell: NodeShell, spec: Spec, action: Action) -> None:
        shell.sh(action.target, install_and_run(action.data["script"]), timeout=180).check()


# ------------------------------------------------------------------ the node script (pure)


def render_script(node: NodeSpec, datapath: str) -> str:
    """The idempotent boot script that configures one node; exits non-zero if a step failed."""
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        f"# distrilab fabric configuration of {node.name} (generated by modules/fabric.py; idempotent)",
        "fail=0",
        'step() { "$@" || { echo "failed: $*" >&2; fail=1; }; }',
        "has_addr() { ip -4 -o addr show dev \"$1\" | grep -q \" inet $2 \"; }",
        'setaddr() { has_addr "$1" "$2" || { ip -4 addr flush dev "$1"; ip addr add "$2" dev "$1"; }; }',

        "step ip link set lo up",
        f"step setaddr eth0 {q(node.mgmt_address)}",
        "step ip link set eth0 up",
        f"step ip route replace default via {q(node.mgmt_gateway)} dev eth0",
    ]
    if node.bridge and node.bridge_type != "ovs":
        lines += linux_bridge_lines(node)  # first: a routed rack's gateway address goes on it
    for name, address in node.interfaces:
        # checksums in software: a partial checksum would leave the sender unfinished when the
        # userspace datapath forwards the frame (TCP through a netdev OVS fails otherwise)
        lines += [f"step ip link set {q(name)} mtu {node.mtu} up", f"step ethtool -K {q(name)} tx off",
                  f"step setaddr {q(name)} {q(address)}"]
    lines += [f"step ip route replace {q(to)} via {q(via)}" for to, via in node.routes]
    if node.loopback:  # lo keeps 127.0.0.1: added, never flushed
        lines.append(f"has_addr lo {q(node.loopback)} || step ip addr add {q(node.loopback)} dev lo")
    if node.bgpd:
        lines += frr_lines(node.bgpd)
    if node.bridge and node.bridge_type == "ovs":
        lines += ovs_bridge_lines(node, datapath)
    lines.append("exit $fail")
    return "\n".join(lines) + "\n"


def ovs_bridge_lines(node: NodeSpec, datapath: str) -> list[str]:
    """Open vSwitch: one bridge with RSTP, every fabric port with TX checksums in software."""
    q = shlex.quote
    br = q(node.bridge or "br0")
    wanted = " ".join(p.name for p in node.ports)
    lines = [
        # a Linux bridge of the same name (the lab switched from linux) goes first
        f"[ -e /sys/class/net/{br}/bridge ] && step ip link del {br}",
        # at boot the init runs boot.d hooks before it starts OVS's services: configure the
        # switch in the background once ovsdb-server answers (apply runs the script with --now)
        'if [ "$1" != --now ] && ! ovs-vsctl --timeout=1 show >/dev/null 2>&1; then',
        '  "$0" --now >/var/log/distrilab-fabric.log 2>&1 </dev/null &',
        "  exit 0",
        "fi",
        "i=0; until ovs-vsctl --timeout=2 show >/dev/null 2>&1; do",
        "  i=$((i+1)); [ $i -ge 60 ] && { echo 'ovsdb-server not running' >&2; exit 1; }; sleep 0.5",
        "done",
        # RSTP on in the transaction that creates the bridge, before any port exists
        f"step ovs-vsctl --timeout=30 --may-exist add-br {br} -- set bridge {br} datapath_type={datapath}"
        f" stp_enable=false rstp_enable=true other_config:rstp-priority={node.stp_priority}",
        f"for p in $(ovs-vsctl --timeout=30 list-ports {br}); do",
        f'  case " {wanted} " in *" $p "*) ;; *) step ovs-vsctl --timeout=30 del-port {br} "$p";; esac',
        "done",
    ]
    add = []
    for p in node.ports:
        port = q(p.name)
        lines += [f"step ip link set {port} mtu {node.mtu} up", f"step ethtool -K {port} tx off"]
        add.append(
            f"-- --may-exist add-port {br} {port} -- set port {port}"
            f" other_config:rstp-port-admin-edge={'true' if p.edge else 'false'}"
            " other_config:rstp-port-auto-edge=false other_config:rstp-port-admin-p2p-mac=true"
        )
    if add:
        lines.append("step ovs-vsctl --timeout=30 " + " ".join(add))
    lines.append(f"step ip link set {br} up")
    return lines


#: the kernel STP's timers, in hundredths of a second: the fastest that keep 802.1D's rules
#: (max_age >= 2 x (hello + 1 s), 2 x (forward_delay - 1 s) >= max_age) for the 5-bridge
#: diameter of a 3-tier Clos; a port forwards 2 x forward_delay = 8 s after it comes up
STP_TIMERS = "hello_time 100 max_age 600 forward_delay 400"


def linux_bridge_lines(node: NodeSpec) -> list[str]:
    """A Linux bridge with the kernel's STP on before any port joins (a Clos has loops); a routed
    rack's `plain` bridge joins servers only, so it runs no STP."""
    q = shlex.quote
    br = q(node.bridge or "br0")
    wanted = " ".join(p.name for p in node.ports)
    stp = "stp_state 0" if node.bridge_type == "plain" else "stp_state 1"
    settings = stp if node.bridge_type == "plain" else f"{stp} priority {node.stp_priority} {STP_TIMERS}"
    lines = [
        # an Open vSwitch bridge of the same name (the lab switched from ovs) goes first
        f"if [ -e /sys/class/net/{br} ] && [ ! -e /sys/class/net/{br}/bridge ]; then",
        f"  step ovs-vsctl --timeout=10 --if-exists del-br {br}",
        "fi",
        f"[ -e /sys/class/net/{br}/bridge ] || step ip link add {br} type bridge {stp}",
        f"step ip link set {br} type bridge {settings}",
        f"for p in $(ls /sys/class/net/{br}/brif); do",
        f'  case " {wanted} " in *" $p "*) ;; *) step ip link set "$p" nomaster;; esac',
        "done",
    ]
    lines += [f"step ip link set {q(p.name)} mtu {node.mtu} master {br} up" for p in node.ports]
    lines.append(f"step ip link set {br} up")
    return lines


_BGPD_HEREDOC = "DISTRILAB_BGPD_EOF"


def frr_lines(bgpd: str) -> list[str]:
    """bgpd's configuration, replaced only when it changed; runit's daemons (re)started when it
    supervises them (at boot the hooks run first: the daemons then start with the new file)."""
    conf = BGPD_CONF
    return [
        f"cat > {conf}.new <<'{_BGPD_HEREDOC}'",
        bgpd.rstrip("\n"),
        _BGPD_HEREDOC,
        "changed=0",
        f"cmp -s {conf}.new {conf} || {{ step mv {conf}.new {conf}; changed=1; }}",
        f"rm -f {conf}.new; step chmod 644 {conf}",
        "if sv status zebra >/dev/null 2>&1; then",
        "  step sv up zebra",
        '  if [ $changed = 1 ]; then step sv restart bgpd; else step sv up bgpd; fi',
        "fi",
    ]


def script_digest(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()


def install_and_run(script: str) -> str:
    """One shell command that writes the script into boot.d atomically and runs it."""
    tmp = SCRIPT_PATH + ".new"
    return (
        f"mkdir -p {Path(SCRIPT_PATH).parent} && cat > {tmp} <<'{_HEREDOC}'\n{script}{_HEREDOC}\n"
        f"chmod 755 {tmp} && mv {tmp} {SCRIPT_PATH} && {SCRIPT_PATH} --now"
    )


# ------------------------------------------------------------------ observation


OBSERVE_SCRIPT = f"""
echo '== script'; sha256sum {SCRIPT_PATH} 2>/dev/null | cut -d' ' -f1
echo '== addr'; ip -j -d addr show
if command -v ovs-vsctl >/dev/null 2>&1 && ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  echo '== bridges'
  ovs-vsctl --timeout=5 --format=json --columns=name,datapath_type,rstp_enable,ports list bridge
  echo '== ports'; ovs-vsctl --timeout=5 --format=json --columns=_uuid,name list port
fi
if [ -f {BGPD_CONF} ]; then
  echo '== frr'; sha256sum {BGPD_CONF} | cut -d' ' -f1; sv status {" ".join(FRR_DAEMONS)} 2>&1
fi
echo '== routes'; ip -j route show
echo '== txcsum'
for p in $(ls /sys/class/net); do
  echo "$p $(ethtool -k $p 2>/dev/null | sed -n 's/^tx-checksumming: //p')"
done
"""


def parse_observation(text: str) -> dict[str, Any]:
    """Pure: OBSERVE_SCRIPT output -> {script, addresses, up, bridges, tx_csum} (JSON-friendly)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    result: dict[str, Any] = {"script": "".join(sections.get("script", [])).strip() or None}
    addresses: dict[str, list[str]] = {}
    up: list[str] = []
    items = json.loads("\n".join(sections.get("addr", [])) or "[]")
    for item in items:
        addresses[item["ifname"]] = sorted(
            f"{a['local']}/{a['prefixlen']}" for a in item.get("addr_info", []) if a.get("family") == "inet"
        )
        if "UP" in item.get("flags", []):
            up.append(item["ifname"])
    result["addresses"] = addresses
    result["up"] = sorted(up)
    bridges = linux_bridges(items)
    if "bridges" in sections:
        port_names = _ovs_rows(sections.get("ports", []))
        names = {row["_uuid"]: row["name"] for row in port_names}
        for row in _ovs_rows(sections["bridges"]):
            bridges[row["name"]] = {
                "type": "ovs",
                "datapath_type": row["datapath_type"],
                "rstp_enable": row["rstp_enable"],
                "ports": sorted(names[u] for u in row["ports"] if u in names and names[u] != row["name"]),
            }
    if bridges or "bridges" in sections:
        result["bridges"] = bridges
    if "frr" in sections:
        lines = sections["frr"]
        result["bgpd_conf"] = lines[0].strip() if lines else None
        result["daemons"] = runit_states(lines[1:])
    if "routes" in sections:
        routes = json.loads("\n".join(sections["routes"]) or "[]")
        result["routes"] = sorted(f"{r['dst']} via {r['gateway']}" for r in routes if r.get("gateway"))
    if "txcsum" in sections:
        tx: dict[str, str] = {}
        for line in sections.get("txcsum", []):
            parts = line.split()
            if len(parts) >= 2:
                tx[parts[0]] = parts[1]  # "on" / "off" (ignore "[fixed]")
        result["tx_csum"] = tx
    return result


def runit_states(lines: list[str]) -> dict[str, str]:
    """Pure: `sv status` lines ("run: bgpd: (pid 9) 5s", "down: bgpd: 3s") -> {service: state}."""
    states = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) >= 2 and parts[0] in ("run", "down", "finish", "fail", "warning"):
            states[parts[1].strip().rsplit("/", 1)[-1]] = parts[0]
    return states


def linux_bridges(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pure: `ip -j -d addr show` -> {bridge: {type, stp_state, priority, ports}} for Linux bridges."""
    bridges: dict[str, dict[str, Any]] = {}
    for item in items:
        info = item.get("linkinfo") or {}
        if info.get("info_kind") == "bridge":
            data = info.get("info_data") or {}
            bridges[item["ifname"]] = {"type": "linux", "stp_state": data.get("stp_state"),
                                       "priority": data.get("priority"), "ports": []}
    for item in items:
        if item.get("master") in bridges:
            bridges[item["master"]]["ports"].append(item["ifname"])
    for bridge in bridges.values():
        bridge["ports"].sort()
    return bridges


def _ovs_rows(lines: list[str]) -> list[dict[str, Any]]:
    """ovs-vsctl --format=json table -> rows of plain values (uuids as strings, sets as lists)."""
    data = json.loads("\n".join(lines) or '{"headings": [], "data": []}')
    return [{h: _ovs_value(v) for h, v in zip(data["headings"], row, strict=True)} for row in data["data"]]


def _ovs_value(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] in ("uuid", "set", "map"):
        kind, inner = value
        if kind == "uuid":
            return inner
        if kind == "set":
            return [_ovs_value(v) for v in inner]
        return {_ovs_value(k): _ovs_value(v) for k, v in inner}
    return value


def node_drift(node: NodeSpec, datapath: str, script: str, have: dict[str, Any]) -> list[str]:
    """Pure: why a node's observed state differs from its spec ([] when it is configured)."""
    if have.get("status") != "Running":
        return [f"container {have.get('status', 'missing')}"]
    if have.get("unconfigured"):
        return ["not configured yet"]
    reasons = []
    if have.get("script") != script_digest(script):
        reasons.append("script missing" if not have.get("script") else "script changed")
    addresses, up = have.get("addresses", {}), set(have.get("up", []))
    for ifname, address in (("eth0", node.mgmt_address), *node.interfaces):
        if address not in addresses.get(ifname, []):
            reasons.append(f"{ifname} lacks {address}")
        if ifname not in up:
            reasons.append(f"{ifname} down")
    tx = have.get("tx_csum", {})
    # TX checksums in software where the userspace datapath forwards: servers (ACA's OVS), OVS ports
    software = [*(i for i, _ in node.interfaces), *(p.name for p in node.ports if node.bridge_type == "ovs")]
    offloaded = [p for p in software if tx.get(p, "on") != "off"]
    if offloaded:
        reasons.append(f"tx offload on {','.join(offloaded)}")
    reasons += [f"no route to {to} via {via}" for to, via in node.routes
                if f"{to} via {via}" not in have.get("routes", [])]
    if node.loopback and node.loopback not in addresses.get("lo", []):
        reasons.append(f"lo lacks {node.loopback}")
    if node.bgpd:
        reasons += frr_drift(node.bgpd, have)
    if node.bridge:
        reasons += bridge_drift(node, datapath, have)
    return reasons


def frr_drift(bgpd: str, have: dict[str, Any]) -> list[str]:
    """Pure: bgpd's configuration edited or its daemons stopped."""
    if have.get("bgpd_conf") != script_digest(bgpd):
        return ["bgpd.conf missing" if not have.get("bgpd_conf") else "bgpd.conf changed"]
    daemons = have.get("daemons", {})
    return [f"{d} {daemons.get(d, 'not supervised')}" for d in FRR_DAEMONS if daemons.get(d) != "run"]


def bridge_drift(node: NodeSpec, datapath: str, have: dict[str, Any]) -> list[str]:
    """Pure: how a switch's observed bridge differs from its spec."""
    bridge = have.get("bridges", {}).get(node.bridge)
    kernel = node.bridge_type in ("linux", "plain")
    if bridge is None or bridge.get("type") != ("linux" if kernel else "ovs"):
        return [f"no {'Linux' if kernel else 'OVS'} bridge {node.bridge}"]
    reasons = []
    if node.bridge_type == "plain":
        if bridge["stp_state"] != 0:
            reasons.append("STP on a rack bridge")
    elif node.bridge_type == "linux":
        if bridge["stp_state"] != 1:
            reasons.append("kernel STP off")
        if bridge["priority"] != node.stp_priority:
            reasons.append(f"STP priority {bridge['priority']}->{node.stp_priority}")
    else:
        if bridge["datapath_type"] != datapath:
            reasons.append(f"datapath {bridge['datapath_type'] or 'system'}->{datapath}")
        if bridge["rstp_enable"] is not True:
            reasons.append("RSTP off")
    wanted = sorted(p.name for p in node.ports)
    if bridge["ports"] != wanted:
        missing = sorted(set(wanted) - set(bridge["ports"]))
        extra = sorted(set(bridge["ports"]) - set(wanted))
        reasons.append("ports" + (f" missing {','.join(missing)}" if missing else "")
                       + (f" extra {','.join(extra)}" if extra else ""))
    down = [p.name for p in node.ports if p.name not in set(have.get("up", []))]
    if down:
        reasons.append(f"down {','.join(down)}")
    return reasons


if __name__ == "__main__":
    sys.exit(FabricReconciler().main())
