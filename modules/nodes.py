"""Reconciler of a lab's containers on one host: `python -m modules.nodes apply|destroy --spec FILE`.

Owns, on the host the spec names, and only where labelled `user.distrilab.lab=<lab>` +
`user.distrilab.owner=nodes`:
- the lab's management network: an LXD-managed bridge (`dlm-<lab>`), gateway address from the
  lab, no NAT, no DHCP (fabric configures static addresses), no IPv6;
- one stopped template container per image (`dl-<lab>--tpl-<recipe>`), started once so LXD has
  already id-shifted its rootfs: every node is a btrfs copy of it (0.14 s) instead of an image
  unpack + shift on first start (0.4-0.5 s);
- the node containers `dl-<lab>-<node>`: root disk, `eth0` on the management bridge, limits,
  `/dev/net/tun` for nodes whose image runs OVS; created, started and verified RUNNING; repaired when missing,
  stopped or drifted; deleted when no longer described (every running one is force-stopped first,
  on a pool of STOP_WORKERS, then all are deleted on the stage's own pool: see STOP_WORKERS).
Link NICs (`eth1..`) belong to modules/links.py and are left alone here.
A clean destroy leaves no instance, template or network labelled with the lab.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pylxd.exceptions import LXDAPIException

from cdk.errors import DistrilabError, ReconcileError
from cdk.names import interface_alias, short_hash, template_name
from modules import lxd_rest as rest
from modules.host_shell import is_local
from modules.reconcile import Action, ProgressCallback, Reconciler, workers_fields

OWNER = "nodes"
NODE_KEY = "user.distrilab.node"
IMAGE_KEY = "user.distrilab.image"
TEMPLATE_KEY = "user.distrilab.template"
#: set once a template is complete: one without it was interrupted (its host went away while the
#: image unpacked) and its copies fail ("Failed to handle idmapped storage: ... rootfs")
TEMPLATE_READY_KEY = "user.distrilab.template-ready"

# execution phases: network first, templates, deletes (free memory), then creates, cleanup last
PHASE_NETWORK, PHASE_TEMPLATE, PHASE_DELETE, PHASE_NODE = 0, 1, 2, 3
PHASE_TEMPLATE_DELETE, PHASE_NETWORK_DELETE = 4, 5
#: parallel force-stops before the deletes. A stop mostly waits (LXD runs its stop hooks in turn
#: and lxcfs' post-stop hook sleeps 0.5 s), so on the deletes' pool the CPUs idle: 250 nodes, LXD
#: 5.0.2, 2 cores: stop+delete on 8 workers 39.3 s, stops on 32 then deletes on 8 24.3 + 6.7 s.
#: Deletes are CPU-bound in LXD and keep the stage's pool. No bulk call fits: LXD's `PUT
#: /1.0/instances` changes every instance of the project (other labs' too); DELETE has no force.
STOP_WORKERS = 32
#: how long a started container must stay RUNNING before it counts (inotify limits kill late)
SETTLE_SECONDS = 0.5


class PlanRefused(DistrilabError):
    """The host is in a state the nodes stage must not change (or cannot start from)."""

    def __init__(self, message: str, hint: str):
        self.hint = hint
        super().__init__(f"[{OWNER}] {message}\n  hint: {hint}")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    instance: str
    kind: str
    role: str
    image: str  # per-lab image alias
    cpu: str | None = None
    memory: str | None = None
    tun: bool = False  # /dev/net/tun passed in: the image runs OVS with the netdev datapath


@dataclass(frozen=True)
class Spec:
    lab: str
    host: str
    max_workers: int | None  # what the lab sets (modules/reconcile.py: resolve_workers)
    workers_limit: int | None  # the host's own limit
    pool: str
    privileged: bool
    network: str
    gateway: str
    nodes: tuple[NodeSpec, ...]
    endpoint: dict[str, Any] | None = None  # how to reach the host's LXD API
    target: str | None = None  # the LXD cluster member to create instances on (None: standalone)
    network_creator: str | None = None  # the member whose stage creates a cluster's network


def spec_for(owner: Any, members: tuple[NodeSpec, ...]) -> Spec:
    """The nodes stage's view of containers another stage owns (alcor's services, the test
    controller), on the owner's host, pool and network: to reuse the container construction.
    `owner` is that stage's spec, which carries the same host fields."""
    return Spec(lab=owner.lab, host=owner.host, max_workers=owner.max_workers,
                workers_limit=owner.workers_limit, pool=owner.pool, privileged=owner.privileged,
                network=owner.network, gateway=owner.gateway, nodes=members, endpoint=owner.endpoint)


class NodesReconciler(Reconciler[Spec, dict[str, Any]]):
    name = OWNER

    def load_spec(self, data: dict[str, Any]) -> Spec:
        try:
            nodes = tuple(
                NodeSpec(
                    name=n["name"], instance=n["instance"], kind=n["kind"], role=n["role"], image=n["image"],
                    cpu=(n.get("limits") or {}).get("cpu"), memory=(n.get("limits") or {}).get("memory"),
                    tun=bool(n.get("tun", n["kind"] == "switch")),
                )
                for n in data.get("nodes", [])
            )
            return Spec(
                lab=data["lab"], host=data["host"], **workers_fields(data),
                pool=data.get("pool") or "distrilab", privileged=bool(data.get("privileged")),
                network=data["network"]["name"], gateway=data["network"]["gateway"], nodes=nodes,
                network_creator=data["network"].get("creator"),
                endpoint=data.get("endpoint"), target=data.get("target"),
            )
        except (KeyError, TypeError) as err:
            raise DistrilabError(f"nodes spec: missing or malformed field {err}") from err

    def empty_spec(self, spec: Spec) -> Spec:
        return dataclasses.replace(spec, nodes=())

    def connect(self, spec: Spec) -> Any:
        # as many kept-alive connections as the widest pool (the stops') has threads
        return rest.connect(spec.endpoint or {"name": spec.host}, max(self.max_workers(spec), STOP_WORKERS))

    # -------------------------------------------------------------- observe (reads only)

    def observe(self, client: Any, spec: Spec) -> dict[str, Any]:
        network = None
        try:
            net = rest.metadata(client.api.networks[spec.network].get())
            # in a cluster a network another member's stage is still creating is not there yet
            if net.get("status", "Created") == "Created":
                network = {"name": net["name"], "config": net.get("config", {})}
        except rest.NotFound:
            pass
        images: dict[str, str | None] = {}
        for alias in sorted({n.image for n in spec.nodes}):
            try:
                images[alias] = rest.metadata(client.api.images.aliases[alias].get())["target"]
            except rest.NotFound:
                images[alias] = None
        owned = rest.owned_instances(client, spec.lab)
        # in an LXD cluster the API lists every member's instances: this stage owns its member's
        here = {n: i for n, i in owned.items() if not spec.target or i.get("location") == spec.target}
        instances = {
            name: {
                "status": inst["status"],
                "config": {k: v for k, v in inst.get("config", {}).items() if not k.startswith("volatile.")},
                "devices": inst.get("devices", {}),
            }
            for name, inst in sorted(here.items())
            # other stages (alcor, controller) own containers of the same lab: leave them alone
            if inst.get("config", {}).get(rest.OWNER_KEY) == OWNER
        }
        elsewhere = sorted(set(owned) - set(here))
        return {"network": network, "images": images, "instances": instances, "elsewhere": elsewhere}

    # -------------------------------------------------------------- plan (pure)

    def plan(self, spec: Spec, observed: dict[str, Any]) -> list[Action]:
        actions = _plan_network(spec, observed.get("network"))
        images: dict[str, str | None] = observed.get("images", {})
        instances: dict[str, dict[str, Any]] = observed.get("instances", {})
        missing = sorted(a for a in {n.image for n in spec.nodes} if not images.get(a))
        if missing:
            raise PlanRefused(
                f"image alias(es) {', '.join(missing)} not found on host {spec.host}",
                hint="build and import the lab's images first: 'distrilab up' does (its images stage runs "
                "before this one and re-creates missing aliases; 'npx cdktf deploy' does not detect them)",
            )
        templates = {name: inst for name, inst in instances.items() if inst["config"].get(TEMPLATE_KEY)}
        nodes = {name: inst for name, inst in instances.items() if name not in templates}

        wanted_templates: dict[str, str] = {}  # template -> image alias
        for n in spec.nodes:
            wanted_templates[_template_of(spec, n.image)] = n.image
        for tpl, alias in sorted(wanted_templates.items()):
            fingerprint = images[alias]
            have = templates.get(tpl)
            data = {"image": alias, "fingerprint": fingerprint}
            if have is None:
                actions.append(Action("create-template", tpl, "missing", PHASE_TEMPLATE, data))
                continue
            reason = _template_drift(spec, have, fingerprint)
            if reason:
                actions.append(Action("recreate-template", tpl, reason, PHASE_TEMPLATE,
                                      {**data, "running": have["status"] != "Stopped"}))
        for tpl, have in sorted(templates.items()):
            if tpl not in wanted_templates:
                actions.append(Action("delete", tpl, "template no longer used", PHASE_TEMPLATE_DELETE,
                                      {"running": have["status"] != "Stopped"}))

        wanted = {n.instance: n for n in spec.nodes}
        for name, have in sorted(nodes.items()):
            if name not in wanted:
                actions.append(Action("delete", name, "no longer in the lab", PHASE_DELETE,
                                      {"running": have["status"] != "Stopped"}))
        setup = {a.target for a in actions if a.phase in (PHASE_NETWORK, PHASE_TEMPLATE)}
        for name, node in sorted(wanted.items()):
            # without its network or its template, a node cannot be made: skip it when they fail
            needs = tuple(t for t in (spec.network, _template_of(spec, node.image)) if t in setup)
            actions.extend(dataclasses.replace(a, after=needs)
                           for a in _plan_node(spec, node, nodes.get(name), images[node.image]))

        # a cluster's network is shared by every member: the last member's stage to empty deletes it
        last = not observed.get("elsewhere")
        if not spec.nodes and last and observed.get("network") and _owned_network(spec, observed["network"]):
            actions.append(
                Action("delete-network", spec.network, "no longer in the lab", PHASE_NETWORK_DELETE)
            )
        return actions

    # -------------------------------------------------------------- execute

    def execute_action(self, client: Any, spec: Spec, action: Action) -> None:
        try:
            self._execute_action(client, spec, action)
        except (rest.LxdCallError, LXDAPIException) as err:
            text = rest.error_text(err)
            if rest.out_of_space(text) and not isinstance(err, rest.PoolFullError):
                raise rest.PoolFullError(spec.pool, text) from err
            raise

    def failure_hint(self, failures: list[tuple[str, str]]) -> str | None:
        pools = sorted({p for _, err in failures for p in _full_pools(err)})
        return rest.pool_full_hint(pools[0]) if pools else super().failure_hint(failures)

    def _execute_action(self, client: Any, spec: Spec, action: Action) -> None:
        verb, target, data = action.verb, action.target, action.data
        if verb == "create-network":
            body = {"name": target, "type": "bridge", "config": network_config(spec)}
            if spec.target:
                create_cluster_network(client, body, spec)
            else:
                rest.wait_operation(client, client.api.networks.post(json=body))
            if target != f"dlm-{spec.lab}" and is_local(spec.endpoint):
                _mark_bridge(target, spec.lab)
        elif verb == "update-network":
            rest.wait_operation(client, client.api.networks[target].patch(json={"config": data["config"]}))
        elif verb == "delete-network":
            rest.wait_operation(client, client.api.networks[target].delete())
        elif verb in ("create-template", "recreate-template"):
            converge_template(client, spec, action)
        elif verb in ("create", "recreate"):
            if verb == "recreate":
                rest.delete_instance(client, target, data["running"])
            node = _node_by_instance(spec, target)
            template = _template_of(spec, node.image)
            body = {
                "name": target,
                "source": {"type": "copy", "source": template, "instance_only": True},
                "config": instance_config(spec, node, data["fingerprint"]),
                "devices": instance_devices(spec, node),
            }
            where = _target(spec)
            rest.retry_transient(
                lambda: rest.wait_operation(client, client.api.instances.post(json=body, params=where)),
                f"create {target}",
                before_retry=lambda: remove_partial(client, target),
            )
            start_and_verify(client, target)
        elif verb == "update":
            patch = {k: v for k, v in (("config", data.get("config")), ("devices", data.get("devices"))) if v}
            rest.wait_operation(client, client.api.instances[target].patch(json=patch))
            if data.get("status") != "Running":
                start_and_verify(client, target, data.get("status"))
        elif verb == "start":
            start_and_verify(client, target, data.get("status"))
        elif verb == "stop":  # only from execute(): the first half of a running node's delete
            rest.set_state(client, target, "stop", force=True)
        elif verb == "delete":
            rest.delete_instance(client, target, data["running"])
        else:
            raise ValueError(f"unknown action verb {verb!r}")

    def execute_batch(
        self,
        client: Any,
        spec: Spec,
        batch: Sequence[Action],
        report: Callable[[Action, str | None], None],
        workers: int | None = None,
    ) -> None:
        """Deletes of running instances: every one force-stopped first, all at once on the wider
        stop pool (see STOP_WORKERS), then deleted on the stage's own pool."""
        running = [a for a in batch if a.verb == "delete" and a.data.get("running")]
        if running:
            stop_failed: dict[str, str] = {}

            def stopped(stop: Action, err: str | None) -> None:
                if err is not None:
                    stop_failed[stop.target] = err

            wide = max(self.max_workers(spec), STOP_WORKERS)
            wide = min(wide, spec.workers_limit) if spec.workers_limit else wide  # the host's own limit holds
            stops = [Action("stop", a.target, a.reason, a.phase) for a in running]
            super().execute_batch(client, spec, stops, stopped, wide)
            for action in running:
                if action.target in stop_failed:
                    report(action, f"its stop failed: {stop_failed[action.target]}")
            batch = [dataclasses.replace(a, data={**a.data, "running": False}) if a in running else a
                     for a in batch if a.target not in stop_failed]
        if batch:
            super().execute_batch(client, spec, batch, report, workers)

    def converge(self, spec: Spec, dry_run: bool = False, progress: ProgressCallback | None = None) -> int:
        count = super().converge(spec, dry_run, progress)
        if count and not dry_run and spec.nodes:
            self.verify_running(self.connect(spec), spec)
        if not dry_run and not spec.nodes and spec.target:
            self.release_cluster_network(self.connect(spec), spec)
        return count

    def release_cluster_network(self, client: Any, spec: Spec) -> None:
        """The members' destroys run in parallel and each plans before the others finish, so
        none may see the cluster's network unused: whichever finds no instance of the lab left
        after its own deletes removes it (a leaked bridge keeps its address and blocks the next
        lab's network on that member)."""
        if rest.owned_instances(client, spec.lab):
            return
        try:
            net = rest.metadata(client.api.networks[spec.network].get())
            if _owned_network(spec, {"config": net.get("config", {})}):
                rest.wait_operation(client, client.api.networks[spec.network].delete())
                print(f"[{self.name}] delete-network {spec.network} (the lab's last instance is gone)")
        except rest.NotFound:
            pass  # another member's destroy removed it
        except (rest.LxdCallError, LXDAPIException) as err:
            if "not found" not in rest.error_text(err).lower():
                raise

    def verify_running(self, client: Any, spec: Spec) -> None:
        """Every node RUNNING a moment after the last start: a container can die after a 0 exit."""
        time.sleep(SETTLE_SECONDS)
        instances = rest.owned_instances(client, spec.lab)
        states = {n.instance: instances.get(n.instance, {}).get("status", "missing") for n in spec.nodes}
        dead = [(name, f"status {state}") for name, state in states.items() if state != "Running"]
        if dead:
            raise ReconcileError(
                OWNER, dead,
                hint="see 'lxc info --show-log NAME'; raise fs.inotify.max_user_instances if many died",
            )


# ------------------------------------------------------------------ desired objects (pure)


def network_config(spec: Spec) -> dict[str, str]:
    return {
        "ipv4.address": spec.gateway,
        "ipv4.nat": "false",
        "ipv4.dhcp": "false",
        "ipv6.address": "none",
        "dns.mode": "none",  # static addresses, no DHCP: no dnsmasq process per lab
        rest.LAB_KEY: spec.lab,
        rest.OWNER_KEY: OWNER,
    }


def instance_config(spec: Spec, node: NodeSpec, fingerprint: str, owner: str = OWNER) -> dict[str, str]:
    config = {
        rest.LAB_KEY: spec.lab,
        rest.OWNER_KEY: owner,
        NODE_KEY: node.name,
        IMAGE_KEY: fingerprint,
        TEMPLATE_KEY: "",  # copies inherit the template's config: these must not carry over
        TEMPLATE_READY_KEY: "",
        "security.privileged": "true" if spec.privileged else "false",
    }
    if node.cpu:
        config["limits.cpu"] = node.cpu
    if node.memory:
        config["limits.memory"] = node.memory
    return config


def instance_devices(spec: Spec, node: NodeSpec) -> dict[str, dict[str, str]]:
    devices = {
        "root": {"type": "disk", "path": "/", "pool": spec.pool},
        "eth0": {"type": "nic", "network": spec.network, "name": "eth0"},
    }
    if node.tun:
        # OVS's userspace (netdev) datapath needs a tap device for its bridge port
        devices["tun"] = {"type": "unix-char", "source": "/dev/net/tun", "path": "/dev/net/tun"}
    return devices


def _full_pools(error: str) -> list[str]:
    """Pools a failure text reports full (rest.PoolFullError's wording)."""
    return re.findall(r"storage pool (\S+) is full:", error)


def _template_of(spec: Spec, alias: str) -> str:
    """The template an image's nodes are copied from; one per member in a cluster (instance names
    are cluster-wide, and a copy from another member would move the whole rootfs)."""
    name = template_name(spec.lab, alias.removeprefix(f"dl-{spec.lab}-"))
    return f"{name}-{short_hash(spec.target, 6)}" if spec.target else name


def create_cluster_network(client: Any, body: dict[str, Any], spec: Spec, timeout: float = 300) -> None:
    """A managed network in an LXD cluster is one object for all members: the creator's stage
    defines it on every member (`?target=`) and creates it (an errored attempt is deleted
    first); the other members' stages, running in parallel, wait until it is created."""
    name = body["name"]

    def status() -> str | None:
        try:
            return str(rest.metadata(client.api.networks[name].get()).get("status"))
        except rest.NotFound:
            return None

    if spec.target != spec.network_creator:
        deadline = time.monotonic() + timeout
        while status() != "Created":
            if time.monotonic() > deadline:
                raise rest.LxdCallError(
                    f"network {name} not created by {spec.network_creator}'s stage after {timeout:.0f}s")
            time.sleep(1)
        return
    found = status()
    if found == "Created":  # meanwhile (an earlier run)
        return
    if found not in (None, "Pending"):  # Errored: a failed attempt is removed, then made again
        rest.wait_operation(client, client.api.networks[name].delete())
    listed = rest.metadata(client.api.cluster.members.get(params={"recursion": 1}))
    for member in sorted(m["server_name"] for m in listed):
        try:
            pending = {"name": name, "type": body["type"]}
            rest.wait_operation(client, client.api.networks.post(json=pending, params={"target": member}))
        except (rest.LxdCallError, LXDAPIException) as err:
            if "already" not in rest.error_text(err).lower():
                raise
    rest.wait_operation(client, client.api.networks.post(json=body))


def _node_by_instance(spec: Spec, instance: str) -> NodeSpec:
    for n in spec.nodes:
        if n.instance == instance:
            return n
    raise KeyError(instance)


def _owned_network(spec: Spec, network: dict[str, Any]) -> bool:
    return network.get("config", {}).get(rest.LAB_KEY) == spec.lab


def _plan_network(spec: Spec, network: dict[str, Any] | None) -> list[Action]:
    if not spec.nodes:
        return []
    if network is None:
        return [Action("create-network", spec.network, "missing", PHASE_NETWORK)]
    if not _owned_network(spec, network):
        raise PlanRefused(
            f"network {spec.network} exists and is not labelled {rest.LAB_KEY}={spec.lab}",
            hint="another lab or tool uses this name; rename the lab or delete that network",
        )
    changed = {k: v for k, v in network_config(spec).items() if network["config"].get(k) != v}
    if not changed:
        return []
    reason = "drift: " + ", ".join(f"{k} {network['config'].get(k)}->{v}" for k, v in sorted(changed.items()))
    return [Action("update-network", spec.network, reason, PHASE_NETWORK, {"config": changed})]


def _template_drift(spec: Spec, have: dict[str, Any], fingerprint: str | None) -> str | None:
    if have["config"].get(TEMPLATE_READY_KEY) != "true":
        return "unfinished: its creation was interrupted"
    if have["config"].get(IMAGE_KEY) != fingerprint:
        return f"drift: image {str(have['config'].get(IMAGE_KEY))[:12]}->{str(fingerprint)[:12]}"
    if have["config"].get("security.privileged", "false") != ("true" if spec.privileged else "false"):
        return "drift: security.privileged"
    return None


def _plan_node(
    spec: Spec, node: NodeSpec, have: dict[str, Any] | None, fingerprint: str | None
) -> list[Action]:
    data: dict[str, Any] = {"fingerprint": fingerprint}
    if have is None:
        return [Action("create", node.instance, "missing", PHASE_NODE, data)]
    config = have["config"]
    running = have["status"] != "Stopped"
    want_config = instance_config(spec, node, fingerprint or "")
    # a new image or privilege mode means a new rootfs: recreate
    for key in (IMAGE_KEY, "security.privileged"):
        if config.get(key, "false" if key == "security.privileged" else None) != want_config[key]:
            short = key.removeprefix("user.distrilab.")
            reason = f"drift: {short} {str(config.get(key))[:12]}->{want_config[key][:12]}"
            return [Action("recreate", node.instance, reason, PHASE_NODE, {**data, "running": running})]
    changed_config = {k: v for k, v in want_config.items() if config.get(k, "") != v}
    for key in ("limits.cpu", "limits.memory"):
        if key in config and key not in want_config:
            changed_config[key] = ""  # an empty value unsets the key
    want_devices = instance_devices(spec, node)
    changed_devices = {k: v for k, v in want_devices.items() if have["devices"].get(k) != v}
    if changed_config or changed_devices:
        parts = [f"{k} {config.get(k)}->{v or 'unset'}" for k, v in sorted(changed_config.items())]
        parts += [f"device {k}" for k in sorted(changed_devices)]
        update = {"config": changed_config, "devices": changed_devices, "status": have["status"]}
        return [Action("update", node.instance, "drift: " + ", ".join(parts), PHASE_NODE, update)]
    if have["status"] != "Running":
        status = have["status"]
        return [Action("start", node.instance, f"status {status}", PHASE_NODE, {"status": status})]
    return []


def converge_template(client: Any, spec: Spec, action: Action, owner: str = OWNER) -> None:
    """Carry out a `create-template`/`recreate-template` action (the alcor and controller stages
    plan the same actions for their own images, owned by them)."""
    if action.verb == "recreate-template":
        rest.delete_instance(client, action.target, action.data["running"])
    create_template(client, spec, action.target, action.data["image"], action.data["fingerprint"], owner)


TEMPLATE_TIMEOUT = 900


def create_template(
    client: Any, spec: Spec, name: str, alias: str, fingerprint: str, owner: str = OWNER
) -> None:
    config = {
        rest.LAB_KEY: spec.lab,
        rest.OWNER_KEY: owner,
        TEMPLATE_KEY: alias,
        IMAGE_KEY: fingerprint,
        "security.privileged": "true" if spec.privileged else "false",
    }
    body = {
        "name": name,
        "source": {"type": "image", "fingerprint": fingerprint},
        "config": config,
        "devices": {"root": {"type": "disk", "path": "/", "pool": spec.pool}},
    }
    # unpacking an image on a `dir` pool (a nested host, or another member fetching the image
    # first) takes minutes, not the seconds of a btrfs pool
    created = client.api.instances.post(json=body, params=_target(spec))
    rest.wait_operation(client, created, timeout=TEMPLATE_TIMEOUT)
    if not spec.privileged:
        # LXD shifts the rootfs to the container's id range on first start; copies inherit it
        rest.set_state(client, name, "start")
        try:
            rest.set_state(client, name, "stop", force=True)
        except rest.LxdCallError:
            # seen under load: the template's init ended on its own between the start and the
            # stop ("container is not running"); stopped is all a template must be
            if rest.status(client, name) != "Stopped":
                raise
    ready = {"config": {TEMPLATE_READY_KEY: "true"}}
    rest.wait_operation(client, client.api.instances[name].patch(json=ready))


def _target(spec: Spec) -> dict[str, str]:
    """In an LXD cluster, create on this stage's member (LXD would otherwise pick the emptiest)."""
    return {"target": spec.target} if spec.target else {}


def _mark_bridge(bridge: str, lab: str) -> None:
    """Give a hashed management bridge name the lab's ifalias, so host route checks know it is the
    lab's (`dlm-<lab>` is recognised by its name). modules.sweep deletes aliased interfaces before
    LXD networks: it must delete this one through LXD, not with `ip link del`."""
    subprocess.run(["ip", "link", "set", "dev", bridge, "alias", interface_alias(lab, "management")],
                   check=False, capture_output=True)


def remove_partial(client: Any, name: str) -> None:
    """Delete what a failed create left of an instance (a record without a started container)."""
    try:
        running = rest.status(client, name) != "Stopped"
    except rest.NotFound:
        return
    rest.delete_instance(client, name, running)


#: seconds before a failed start is tried once more
START_RETRY_DELAY = 3.0


def start_and_verify(client: Any, name: str, status: str | None = "Stopped") -> None:
    action = "unfreeze" if status == "Frozen" else "start"
    try:
        rest.set_state(client, name, action)
    except rest.LxdCallError as first:
        # seen on a nested host just back from a restart (its LXD rejoining the cluster): 2 of 6
        # containers failed "lxd forkstart ... exit status 1" and started fine a moment later;
        # a start that fails twice is reported with the first error
        time.sleep(START_RETRY_DELAY)
        if rest.status(client, name) != "Running":
            try:
                rest.set_state(client, name, action)
            except rest.LxdCallError:
                raise first from None
    now = rest.status(client, name)
    if now != "Running":
        raise rest.LxdCallError(f"{name} is {now} right after start; see 'lxc info --show-log {name}'")


if __name__ == "__main__":
    sys.exit(NodesReconciler().main())
