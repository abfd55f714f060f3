"""Reconciler of Alcor's control plane on one host: `python -m modules.alcor apply|destroy --spec FILE`.

Owns, on the host the spec names, and only where labelled `user.distrilab.lab=<lab>` +
`user.distrilab.owner=alcor`:
- one stopped template container per image recipe it uses (`dl-<lab>--tpl-alcor-<recipe>`);
- the service containers `dl-<lab>-alcor-<service>` (copies of the template, `eth0` on the lab's
  management bridge with a static address, limits), each holding its configuration:
  `/etc/alcor/service.env` (what the image's launcher runs), `/etc/alcor/application.properties`
  (the Spring overrides) and its jar in `/opt/alcor/`;
and, through Alcor's own APIs once the services are up, the post-deploy state:
- the VPC manager's default segment table (`POST /segments/createDefaultTable`, once per VPC
  manager container: Alcor answers an error on a second call);
- one node-manager registration (`POST /nodes`) per ACA server of the lab, under a deterministic
  id, so a second apply registers nothing and a changed node is updated (`PUT /nodes/{id}`);
- `ACA_NCM_ADDRESS`/`ACA_NCM_PORT` in each ACA node's `/etc/aca/aca.env` (ACA restarted on change).

Services start in dependency order (Ignite first), one topological level at a time with at most
`max_parallel` at once; each is gated on its health check and fails with its log tail. A service
whose dependency failed is not started. A clean destroy leaves no instance labelled owner=alcor
(the registrations go with the node manager's container; the ACA nodes belong to the nodes stage).

The rooms: alcor_spec.py (the spec and the names it owns), alcor_files.py (what goes into the
containers, pure), alcor_http.py (Alcor's HTTP API); files in instances go through lxd_rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from cdk.errors import ReconcileError
from modules import lxd_rest as rest
from modules import nodes
from modules.alcor_files import (
    boot_hook,
    env_block,
    forward_devices,
    host_info,
    management_mac,
    parse_env,
    properties_file,
    service_hash,
    update_env,
)
from modules.alcor_http import AlcorCallError, call_node_manager, http, probe, registered_nodes
from modules.alcor_spec import (
    ACA_ENV_FILE,
    BOOT_HOOK,
    ENV_FILE,
    HASH_KEY,
    IGNITE_ENV_FILE,
    IGNITE_LOG,
    LAUNCHER_LOG,
    OWNER,
    PROPERTIES_FILE,
    PUSHED_JAR_DIR,
    SEGMENT_KEY,
    SERVICE_KEY,
    AcaNode,
    ServiceSpec,
    Spec,
    load,
    template_of,
)
from modules.lxd_rest import pull_file, push_file
from modules.reconcile import Action, Reconciler

LOG_TAIL_LINES = 8
LOG_LINE_CHARS = 150

PHASE_TEMPLATE, PHASE_DELETE, PHASE_SERVICES = 0, 1, 10
PHASE_POST = 1000  # segment table, ACA settings
PHASE_REGISTER = 1001  # node registrations (need the NCM address in the ACAs first)
PHASE_TEMPLATE_DELETE = 1002



# ------------------------------------------------------------------ spec












# ------------------------------------------------------------------ container contents (pure)


























# ------------------------------------------------------------------ HTTP to Alcor








class HealthTimeout(RuntimeError):
    """A service did not become healthy in time; the message carries its log tail."""


# ------------------------------------------------------------------ the reconciler


class AlcorReconciler(Reconciler[Spec, dict[str, Any]]):
    name = OWNER

    def load_spec(self, data: dict[str, Any]) -> Spec:
        return load(data)

    def empty_spec(self, spec: Spec) -> Spec:
        return dataclasses.replace(
            spec, services=(), segment_table_url=None, node_manager_url=None, aca_nodes=(), aca_env={}
        )

    def connect(self, spec: Spec) -> Any:
        return rest.connect(spec.endpoint or {"name": spec.host})

    def max_workers(self, spec: Spec) -> int:
        return max(1, min(super().max_workers(spec), spec.max_parallel))

    # -------------------------------------------------------------- observe (reads only)

    def observe(self, client: Any, spec: Spec) -> dict[str, Any]:
        images: dict[str, str | None] = {}
        for alias in sorted({s.image for s in spec.services}):
            try:
                images[alias] = rest.metadata(client.api.images.aliases[alias].get())["target"]
            except rest.NotFound:
                images[alias] = None
        jars = _local_jars(spec)
        owned = rest.owned_instances(client, spec.lab)
        instances = {
            name: {
                "status": inst["status"],
                "config": {k: v for k, v in inst.get("config", {}).items() if not k.startswith("volatile.")},
            }
            for name, inst in sorted(owned.items())
            if inst.get("config", {}).get(rest.OWNER_KEY) == OWNER
        }
        health: dict[str, str | None] = {}
        for svc in spec.services:
            if instances.get(svc.instance, {}).get("status") == "Running":
                health[svc.name] = probe(svc)
        registered = None
        if spec.node_manager_url and instances.get(_node_instance(spec), {}).get("status") == "Running":
            registered = registered_nodes(spec.node_manager_url)
        aca = {
            n.name: _observe_aca(client, n, owned.get(n.instance), bool(spec.aca_env)) for n in spec.aca_nodes
        }
        return {
            "images": images,
            "jars": jars,
            "instances": instances,
            "health": health,
            "registered": registered,
            "aca": aca,
        }

    # -------------------------------------------------------------- plan (pure)

    def plan(self, spec: Spec, observed: dict[str, Any]) -> list[Action]:
        images: dict[str, str | None] = observed.get("images", {})
        jars: dict[str, dict[str, str] | str] = observed.get("jars", {})
        _check_inputs(spec, images, jars)
        instances: dict[str, dict[str, Any]] = observed.get("instances", {})
        templates = {n: i for n, i in instances.items() if i["config"].get(nodes.TEMPLATE_KEY)}
        services = {n: i for n, i in instances.items() if n not in templates}
        actions: list[Action] = []

        wanted_templates = {template_of(spec.lab, s.recipe): s.image for s in spec.services}
        for tpl, alias in sorted(wanted_templates.items()):
            have = templates.get(tpl)
            data = {"image": alias, "fingerprint": images[alias]}
            if have is None:
                actions.append(Action("create-template", tpl, "missing", PHASE_TEMPLATE, data))
            elif have["config"].get(nodes.IMAGE_KEY) != images[alias]:
                running = have["status"] != "Stopped"
                actions.append(
                    Action(
                        "recreate-template", tpl, "drift: image", PHASE_TEMPLATE, {**data, "running": running}
                    )
                )
        for tpl, have in sorted(templates.items()):
            if tpl not in wanted_templates:
                running = have["status"] != "Stopped"
                actions.append(
                    Action(
                        "delete", tpl, "template no longer used", PHASE_TEMPLATE_DELETE, {"running": running}
                    )
                )

        wanted = {s.instance: s for s in spec.services}
        for name, have in sorted(services.items()):
            if name not in wanted:
                actions.append(
                    Action(
                        "delete",
                        name,
                        "no longer in the deployment",
                        PHASE_DELETE,
                        {"running": have["status"] != "Stopped"},
                    )
                )
        fresh: set[str] = set()  # services (re)created, started or restarted in this plan
        health: dict[str, str | None] = observed.get("health", {})
        for svc in spec.services:
            action = _plan_service(spec, svc, services.get(svc.instance), images, jars, health.get(svc.name))
            if action:
                # a service whose dependency failed to start is not started: skipped, naming it
                needs = tuple(spec.service(d).instance for d in svc.depends_on)
                actions.append(dataclasses.replace(action, after=needs))
                fresh.add(svc.name)  # new or restarted: what it held in memory may be gone

        actions += _plan_post_deploy(spec, observed, services, fresh)
        return actions

    # -------------------------------------------------------------- execute

    def execute_action(self, client: Any, spec: Spec, action: Action) -> None:
        verb, target, data = action.verb, action.target, action.data
        if verb in ("create-template", "recreate-template"):
            nodes.converge_template(client, _nodes_spec(spec), action, owner=OWNER)
        elif verb == "delete":
            rest.delete_instance(client, target, data["running"])
        elif verb in ("create", "recreate", "start", "restart"):
            self._run_service(client, spec, spec.service(data["service"]), verb, data)
        elif verb == "create-segment-table":
            _create_segment_table(client, spec, data)
        elif verb == "configure-aca":
            _configure_aca(client, spec, data)
        elif verb in ("register-node", "update-node", "deregister-node"):
            call_node_manager(spec, verb, data)
        else:
            raise ValueError(f"unknown action verb {verb!r}")

    def _run_service(
        self, client: Any, spec: Spec, svc: ServiceSpec, verb: str, data: dict[str, Any]
    ) -> None:
        if verb in ("create", "recreate"):
            if verb == "recreate":
                rest.delete_instance(client, svc.instance, data["running"])
            _create_service(client, spec, svc, data)
        elif verb == "restart":
            rest.set_state(client, svc.instance, "restart", force=True)
        else:
            nodes.start_and_verify(client, svc.instance, data.get("status"))
        wait_healthy(client, svc)


# ------------------------------------------------------------------ planning helpers (pure)


def _check_inputs(spec: Spec, images: dict[str, str | None], jars: dict[str, dict[str, str] | str]) -> None:
    failures = [
        (f"image {a}", f"alias not found on host {spec.host}") for a, fp in sorted(images.items()) if not fp
    ]
    if failures:
        raise ReconcileError(
            OWNER,
            failures,
            hint="build and import the lab's images first (the 'images' stage of 'distrilab up')",
        )
    missing = [(f"jar {j}", found) for j, found in sorted(jars.items()) if isinstance(found, str)]
    if missing:
        raise ReconcileError(
            OWNER,
            missing,
            hint="alcor.jar_dir must hold exactly one jar per `jar:` pattern of the deployment file "
            "(Alcor's services/<svc>/target/*.jar after 'mvn package'), or leave jar_dir unset to use "
            "the jars built into the alcor-service image",
        )


def _plan_service(
    spec: Spec,
    svc: ServiceSpec,
    have: dict[str, Any] | None,
    images: dict[str, str | None],
    jars: dict[str, dict[str, str] | str],
    health: str | None,
) -> Action | None:
    phase = PHASE_SERVICES + svc.level
    found = jars.get(svc.jar or "")
    local = found if isinstance(found, dict) else None  # the jar comes from jar_dir
    digest = service_hash(svc, images[svc.image], local["digest"] if local else None)
    data: dict[str, Any] = {"service": svc.name, "hash": digest, "fingerprint": images[svc.image]}
    if local:
        data["jar_path"], data["jar_file"] = local["path"], local["file"]
    if have is None:
        return Action("create", svc.instance, "missing", phase, data)
    running = have["status"] != "Stopped"
    if have["config"].get(HASH_KEY) != digest:
        reason = f"drift: configuration {str(have['config'].get(HASH_KEY))[:8]}->{digest[:8]}"
        return Action("recreate", svc.instance, reason, phase, {**data, "running": running})
    if have["status"] != "Running":
        return Action(
            "start", svc.instance, f"status {have['status']}", phase, {**data, "status": have["status"]}
        )
    if health is not None:
        return Action("restart", svc.instance, f"unhealthy: {health[:120]}", phase, data)
    return None


def _node_instance(spec: Spec) -> str:
    try:
        return spec.service("node").instance
    except KeyError:
        return ""


def _plan_post_deploy(
    spec: Spec, observed: dict[str, Any], services: dict[str, dict[str, Any]], fresh: set[str]
) -> list[Action]:
    actions: list[Action] = []
    if spec.segment_table_url:
        vpc = spec.service("vpc")
        marked = services.get(vpc.instance, {}).get("config", {}).get(SEGMENT_KEY) == "created"
        # a new VPC manager or a new Ignite has no table, whatever an old marker says
        if not marked or fresh & {"vpc", "ignite"}:
            actions.append(
                Action(
                    "create-segment-table",
                    vpc.instance,
                    "default segment table missing",
                    PHASE_POST,
                    {"url": spec.segment_table_url},
                    after=(vpc.instance,),  # not when the VPC manager failed to start
                )
            )
    aca: dict[str, dict[str, Any]] = observed.get("aca", {})
    for node in spec.aca_nodes:
        have = aca.get(node.name) or {}
        env = have.get("env")
        if spec.aca_env and env is not None and any(env.get(k) != v for k, v in spec.aca_env.items()):
            changes = ", ".join(
                f"{k} {env.get(k) or '(empty)'}->{v}"
                for k, v in sorted(spec.aca_env.items())
                if env.get(k) != v
            )
            data = {"instance": node.instance, "values": spec.aca_env}
            actions.append(Action("configure-aca", node.instance, changes, PHASE_POST, data))
    if not spec.node_manager_url:
        return actions
    registered: list[dict[str, Any]] | None = observed.get("registered")
    if "node" in fresh or "ignite" in fresh:
        registered = None  # a new node manager (or store) starts empty
    by_id = {str(r.get("node_id")): r for r in registered or []}
    wanted_ids = set()
    for node in spec.aca_nodes:
        wanted_ids.add(node.node_id)
        body = host_info(node, (aca.get(node.name) or {}).get("mac"))
        data = {"node": node.name, "host_info": body, "url": spec.node_manager_url}
        have = by_id.get(node.node_id)
        manager = (_node_instance(spec),)  # not when the node manager failed to start
        if have is None:
            actions.append(Action("register-node", node.name, "not registered", PHASE_REGISTER, data,
                                  after=manager))
            continue
        drift = sorted(k for k, v in body.items() if k in have and str(have.get(k)) != str(v))
        if drift:
            actions.append(
                Action("update-node", node.name, "drift: " + ", ".join(drift), PHASE_REGISTER, data,
                       after=manager)
            )
    from cdk.stages.alcor import node_id  # the id scheme: a registration is ours when its id matches

    for node_key, have in sorted(by_id.items()):
        name = str(have.get("node_name"))
        if node_key not in wanted_ids and node_id(spec.lab, name) == node_key:
            data = {"node": name, "node_id": node_key, "url": spec.node_manager_url}
            actions.append(
                Action("deregister-node", name, "no longer an ACA node of the lab", PHASE_REGISTER, data)
            )
    return actions


# ------------------------------------------------------------------ observing helpers


def _local_jars(spec: Spec) -> dict[str, dict[str, str] | str]:
    """jar pattern -> {file, path, digest} of its one match in jar_dir, or why there is none.

    Empty without jar_dir: the services then run the jars built into their image.
    """
    if not spec.jar_dir:
        return {}
    directory = Path(spec.jar_dir)
    out: dict[str, dict[str, str] | str] = {}
    for pattern in sorted({s.jar for s in spec.services if s.jar}):
        matches = sorted(p for p in directory.glob(pattern) if p.is_file()) if directory.is_dir() else []
        if len(matches) == 1:
            out[pattern] = {"file": matches[0].name, "path": str(matches[0]), "digest": _sha256(matches[0])}
        elif not matches:
            out[pattern] = f"no file matches it in {directory}"
        else:
            out[pattern] = f"{len(matches)} files match it in {directory}: " + ", ".join(
                m.name for m in matches
            )
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()




def _observe_aca(client: Any, node: AcaNode, inst: dict[str, Any] | None, read_env: bool) -> dict[str, Any]:
    """The ACA node's data-path MAC and, if asked, its aca.env settings.

    The MAC comes from LXD's instance state, which lists every interface in the container's
    network namespace: the links stage creates fabric veths there directly, not as LXD devices.
    """
    if inst is None:
        return {"mac": None, "env": None, "status": "missing"}
    if inst.get("status") != "Running":
        return {"mac": None, "env": None, "status": inst.get("status")}
    state = rest.metadata(client.api.instances[node.instance].state.get()) or {}
    mac = ((state.get("network") or {}).get(node.interface) or {}).get("hwaddr") or None
    env = None
    if read_env:
        try:
            env = parse_env(pull_file(client, node.instance, ACA_ENV_FILE))
        except rest.LxdCallError:  # no aca.env (not an aca image): nothing to configure
            env = None
    return {"mac": mac, "env": env, "status": "Running"}


# ------------------------------------------------------------------ executing helpers


def _nodes_spec(spec: Spec, svc: ServiceSpec | None = None) -> nodes.Spec:
    """The nodes stage's view of a service container, to reuse its container construction."""
    members = ()
    if svc is not None:
        members = (
            nodes.NodeSpec(
                name=f"alcor-{svc.name}",
                instance=svc.instance,
                kind="server",
                role="alcor",
                image=svc.image,
                cpu=svc.cpu,
                memory=svc.memory,
            ),
        )
    return nodes.spec_for(spec, members)


def _create_service(client: Any, spec: Spec, svc: ServiceSpec, data: dict[str, Any]) -> None:
    """Copy the template, write the service's files into it, start it (not yet health-checked)."""
    nspec = _nodes_spec(spec, svc)
    node = nspec.nodes[0]
    config = nodes.instance_config(nspec, node, data["fingerprint"], owner=OWNER)
    config.pop(nodes.NODE_KEY, None)  # not a fabric node
    config[SERVICE_KEY] = svc.name
    config[HASH_KEY] = data["hash"]
    body = {
        "name": svc.instance,
        "source": {"type": "copy", "source": template_of(spec.lab, svc.recipe), "instance_only": True},
        "config": config,
        "devices": nodes.instance_devices(nspec, node),
    }
    # a recreated service keeps its MAC: neighbours' ARP entries for its address stay valid
    body["devices"]["eth0"]["hwaddr"] = management_mac(spec.lab, svc.name)
    body["devices"].update(forward_devices(svc))
    rest.wait_operation(client, client.api.instances.post(json=body))
    push_file(client, svc.instance, BOOT_HOOK, boot_hook(svc).encode(), mode="0755")
    env_path, env_text, ignite_image = _launcher_env(client, svc)
    pushed = data.get("jar_file")
    if pushed:
        push_file(client, svc.instance, f"{PUSHED_JAR_DIR}/{pushed}", Path(data["jar_path"]).read_bytes())
    if not ignite_image:
        push_file(client, svc.instance, PROPERTIES_FILE, properties_file(svc).encode())
    push_file(client, svc.instance, env_path, (env_text + env_block(svc, pushed, ignite_image)).encode())
    nodes.start_and_verify(client, svc.instance)




def _launcher_env(client: Any, svc: ServiceSpec) -> tuple[str, str, bool]:
    """(path, content, is the ignite image) of the launcher's env file the image ships."""
    for path, ignite in ((ENV_FILE, False), (IGNITE_ENV_FILE, True)):
        try:
            return path, pull_file(client, svc.instance, path), ignite
        except rest.LxdCallError:
            continue
    raise rest.LxdCallError(
        f"image {svc.image} of {svc.instance} has neither {ENV_FILE} nor {IGNITE_ENV_FILE}: "
        "use the alcor-service or ignite recipe (or one extending them)"
    )


def wait_healthy(client: Any, svc: ServiceSpec) -> None:
    """Probe until healthy or `health.timeout` passes; then raise HealthTimeout with the log tail."""
    deadline = time.monotonic() + svc.health.timeout
    why = probe(svc)
    while why is not None:
        if time.monotonic() >= deadline:
            raise HealthTimeout(
                f"service {svc.name} not healthy after {svc.health.timeout:g}s ({why})\n"
                f"    log of {svc.instance}:\n" + _log_tail(client, svc)
            )
        time.sleep(svc.health.interval)
        why = probe(svc)


def _log_tail(client: Any, svc: ServiceSpec) -> str:
    """The launcher's last words and the container's console (where the JVM's output goes).

    Lines are cut to LOG_LINE_CHARS so the whole error stays readable in terraform's output.
    """
    lines: list[str] = []
    try:
        script = f"tail -q -n 2 {LAUNCHER_LOG} {IGNITE_LOG} 2>/dev/null; sv status /etc/service/* 2>/dev/null"
        lines += rest.sh(client, svc.instance, script, timeout=30).stdout.splitlines()
    except Exception as err:  # the tail is a courtesy: the health failure is the error
        lines.append(f"(cannot read the launcher log: {rest.error_text(err)})")
    try:
        console = client.api.instances[svc.instance].console.get().text
        lines.append("console:")
        lines += [line for line in console.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    except Exception as err:
        lines.append(f"(cannot read the console log: {rest.error_text(err)})")
    cut = [line if len(line) <= LOG_LINE_CHARS else line[: LOG_LINE_CHARS - 3] + "..." for line in lines]
    return "\n".join("      | " + line for line in cut) if cut else "      | (empty)"








def _create_segment_table(client: Any, spec: Spec, data: dict[str, Any]) -> None:
    status, text = http("POST", data["url"])
    # Alcor refuses a second table (VxlanRangeRepository: "Network Range already exists")
    if not (200 <= status < 300 or "already exist" in text.lower()):
        raise AlcorCallError(f"POST {data['url']}: {status} {text.strip()[:300]}")
    vpc = spec.service("vpc").instance
    rest.wait_operation(client, client.api.instances[vpc].patch(json={"config": {SEGMENT_KEY: "created"}}))


def _configure_aca(client: Any, spec: Spec, data: dict[str, Any]) -> None:
    """Point an ACA node at the NCM: rewrite its aca.env keys, then restart ACA's runit service."""
    instance = data["instance"]
    text = update_env(pull_file(client, instance, ACA_ENV_FILE), data["values"])
    push_file(client, instance, ACA_ENV_FILE, text.encode())
    rest.sh(client, instance, "sv restart aca >/dev/null 2>&1 || true", timeout=60)






if __name__ == "__main__":
    sys.exit(AlcorReconciler().main())
