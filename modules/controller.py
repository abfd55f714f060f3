"""Reconciler of the test controller run: `python -m modules.controller apply|destroy --spec FILE`.

The lab's last stage. It runs the load-test controller (`python -m modules.loadgen`) once per
scenario and target against Alcor, bounded by the spec's timeout, and copies the report
(report.json and the plots) to `<reports_dir>/` on the machine running the stage, next to a
`run.json` that records what was run. A second apply with the same scenario file content, target
and endpoints finds that record and changes nothing; a changed scenario runs again.

Modes:
- `container`: in its own container `dl-<lab>-controller` (labelled `user.distrilab.lab=<lab>`,
  `user.distrilab.owner=controller`) on the lab's management network, from an image with
  python3 and the controller's dependencies; the controller's sources are copied in.
- `host`: as a subprocess of this reconciler, with its interpreter (the host reaches the
  management network through the bridge's gateway address).
Destroy deletes the container; reports stay (they are the lab's output).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdk.errors import DistrilabError
from cdk.names import template_name
from modules import lxd_rest as rest
from modules import nodes
from modules.alcor_files import management_mac
from modules.loadgen.scenario import parse_scenario
from modules.lxd_rest import push_file, read_file
from modules.ping_agent import PingAgent
from modules.reconcile import Action, Reconciler, workers_fields
from modules.source_closure import source_closure

OWNER = "controller"
HASH_KEY = "user.distrilab.controller.hash"
RUN_RECORD = "run.json"
#: where the controller's sources, scenario and report live inside the container
REMOTE_ROOT = "/opt/distrilab"
REMOTE_REPORT = "/var/lib/distrilab/report"
REPO_ROOT = Path(__file__).resolve().parents[1]
#: what the controller runs (`python -m modules.loadgen`); every project file these import goes along
ENTRY_PACKAGE = "modules/loadgen"
#: imported by the controller but not packaged by Debian: copied from this interpreter's environment
#: (a CPython 3.11 extension inside: the container's python3 must be 3.11, as in Debian bookworm)
VENDORED = ("hdrh", "pyhdrh")
OUTPUT_TAIL_CHARS = 1500

PHASE_TEMPLATE, PHASE_CONTAINER, PHASE_RUN, PHASE_CLEANUP = 0, 1, 2, 3


@dataclass(frozen=True)
class Spec:
    lab: str
    host: str
    max_workers: int | None  # what the lab sets (modules/reconcile.py: resolve_workers)
    workers_limit: int | None  # the host's own limit
    mode: str  # container | host
    pool: str
    privileged: bool
    network: str
    gateway: str
    instance: str
    recipe: str
    image: str
    address: str
    cpu: str | None
    memory: str | None
    scenario: str
    target_url: str
    endpoints: dict[str, str]
    timeout: int
    reports_dir: str
    nodes: tuple[
        dict[str, Any], ...
    ] = ()  # the lab's ACA nodes: name, instance, node_id, data_path_ip, interface
    endpoint: dict[str, Any] | None = field(default=None, compare=False)
    wanted: bool = True  # False: destroy (nothing desired)


def load(data: dict[str, Any]) -> Spec:
    try:
        limits = data.get("limits") or {}
        return Spec(
            lab=data["lab"],
            host=data["host"],
            **workers_fields(data),
            mode=data["mode"],
            pool=data.get("pool") or "distrilab",
            privileged=bool(data.get("privileged")),
            network=data["network"]["name"],
            gateway=data["network"]["gateway"],
            instance=data["instance"],
            recipe=data["recipe"],
            image=data["image"],
            address=data["address"],
            cpu=limits.get("cpu"),
            memory=limits.get("memory"),
            scenario=data["scenario"],
            target_url=data["target_url"],
            endpoints=dict(data.get("endpoints") or {}),
            timeout=int(data["timeout"]),
            reports_dir=data["reports_dir"],
            nodes=tuple(dict(n) for n in data.get("nodes") or ()),
            endpoint=data.get("endpoint"),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DistrilabError(f"controller spec: missing or malformed field {err}") from err


def run_key(spec: Spec, scenario_digest: str) -> dict[str, Any]:
    """What identifies a run: the same key means the report on disk is the answer."""
    return {
        "scenario_sha256": scenario_digest,
        "target": spec.target_url,
        "endpoints": dict(sorted(spec.endpoints.items())),
        "mode": spec.mode,
    }


def derive_scenario(text: str, nodes: tuple[dict[str, Any], ...], macs: dict[str, str | None]) -> str:
    """The scenario to run: the file as written, its `nodes` replaced by the lab's ACA nodes (if any).

    Pure. A port's binding:host_id must be a node_name the alcor stage registered, so the ports
    bind to the lab's real nodes (name, data-path IP, MAC and the registration id).
    """
    if not nodes:
        return text
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return text  # loadgen reports the malformed file itself
    old = data.get("nodes")
    per_node = old.get("ports_per_node") if isinstance(old, dict) else None
    # the registration the alcor stage sent, field for field (modules/alcor.py host_info), marked
    # registered: the run binds ports to these nodes and never registers them over again
    entries = [
        {"name": n["name"], "ip": n["data_path_ip"], "mac": macs.get(n["name"]) or "", "id": n["node_id"],
         "local_ip": n["local_ip"], "veth": n["interface"], "server_port": n["server_port"],
         "host_dvr_mac": n["host_dvr_mac"], "registered": True}
        for n in nodes
    ]
    data["nodes"] = {"list": entries, **({"ports_per_node": per_node} if per_node else {})}
    header = "# derived by distrilab's controller stage: nodes are the lab's registered ACA nodes\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def loadgen_args(spec: Spec, scenario: str, out: str, ping_url: str | None = None) -> list[str]:
    args = ["-m", "modules.loadgen", scenario, "--target", spec.target_url, "--out", out, "--quiet"]
    for name, url in sorted(spec.endpoints.items()):
        args += ["--endpoint", f"{name}={url}"]
    if ping_url:
        args += ["--ping-url", ping_url]
    return args


def verifies_ping(text: str) -> bool:
    try:
        return parse_scenario(yaml.safe_load(text), "scenario").enabled("verify_ping")
    except (DistrilabError, yaml.YAMLError):
        return False  # the controller reports the scenario's problems itself


@contextlib.contextmanager
def ping_agent(client: Any, spec: Spec, text: str) -> Iterator[PingAgent | None]:
    """The lab's ping agent for the run when its scenario verifies pings (else None), where the
    controller reaches it: the management gateway from its container, loopback on the host."""
    if not verifies_ping(text):
        yield None
        return

    def run(instance: str, script: str) -> tuple[int, str]:
        result = rest.sh(client, instance, script, timeout=120)
        return result.returncode, result.stdout + result.stderr

    bind = spec.gateway.split("/")[0] if spec.mode == "container" else "127.0.0.1"
    port_manager = spec.endpoints.get("port_manager", spec.target_url)
    subnet_manager = spec.endpoints.get("subnet_manager", spec.target_url)
    with PingAgent({n["name"]: n["instance"] for n in spec.nodes}, port_manager, subnet_manager, run,
                   bind=bind) as agent:
        yield agent


def add_ping_results(report: Path, agent: PingAgent | None) -> None:
    """Per-pair verify_ping outcomes into report.json (the run's counts are there already)."""
    if agent is None or not report.is_file():
        return
    doc = json.loads(report.read_text())
    doc["verify_ping"] = agent.results
    report.write_text(json.dumps(doc, indent=2) + "\n")


def template_of(spec: Spec) -> str:
    return template_name(spec.lab, f"controller-{spec.recipe}")


class ControllerReconciler(Reconciler[Spec, dict[str, Any]]):
    name = OWNER

    def load_spec(self, data: dict[str, Any]) -> Spec:
        return load(data)

    def empty_spec(self, spec: Spec) -> Spec:
        return dataclasses.replace(spec, wanted=False)

    def connect(self, spec: Spec) -> Any:
        return rest.connect(spec.endpoint or {"name": spec.host})

    # -------------------------------------------------------------- observe (reads only)

    def observe(self, client: Any, spec: Spec) -> dict[str, Any]:
        owned = {
            name: {"status": inst["status"], "config": inst.get("config", {})}
            for name, inst in rest.owned_instances(client, spec.lab).items()
            if inst.get("config", {}).get(rest.OWNER_KEY) == OWNER
        }
        image = None
        if spec.wanted and spec.mode == "container":
            try:
                image = rest.metadata(client.api.images.aliases[spec.image].get())["target"]
            except rest.NotFound:
                image = None
        scenario = Path(spec.scenario)
        text = scenario.read_text() if scenario.is_file() else None
        macs: dict[str, str | None] = {}
        if spec.wanted and text is not None:
            for node in spec.nodes:
                try:
                    state = rest.metadata(client.api.instances[node["instance"]].state.get()) or {}
                except rest.NotFound:
                    state = {}
                macs[node["name"]] = ((state.get("network") or {}).get(node["interface"]) or {}).get("hwaddr")
        record_path = Path(spec.reports_dir) / RUN_RECORD
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = None
        return {"instances": owned, "image": image, "scenario": text, "macs": macs, "record": record}

    # -------------------------------------------------------------- plan (pure)

    def plan(self, spec: Spec, observed: dict[str, Any]) -> list[Action]:
        instances: dict[str, dict[str, Any]] = observed.get("instances", {})
        if not spec.wanted:
            return [
                Action("delete", name, "destroy", PHASE_CLEANUP, {"running": inst["status"] != "Stopped"})
                for name, inst in sorted(instances.items())
            ]
        text = observed.get("scenario")
        if text is None:
            raise DistrilabError(
                f"[controller] scenario file {spec.scenario} not found\n"
                "  hint: controller.scenario is relative to the lab file"
            )
        actions: list[Action] = []
        wanted: set[str] = set()
        if spec.mode == "container":
            image = observed.get("image")
            if not image:
                raise DistrilabError(
                    f"[controller] image alias {spec.image} not found on host {spec.host}\n"
                    "  hint: the images stage builds it (recipe "
                    f"'{spec.recipe}'); or run the controller with controller.mode: host"
                )
            tpl, digest_c = template_of(spec), _container_hash(spec, image)
            wanted = {tpl, spec.instance}
            have_tpl = instances.get(tpl)
            if have_tpl is None or have_tpl["config"].get(nodes.IMAGE_KEY) != image:
                data = {"image": spec.image, "fingerprint": image, "running": bool(have_tpl)}
                verb = "recreate-template" if have_tpl else "create-template"
                actions.append(
                    Action(verb, tpl, "missing" if not have_tpl else "drift: image", PHASE_TEMPLATE, data)
                )
            have = instances.get(spec.instance)
            data = {"fingerprint": image, "hash": digest_c}
            if have is None:
                actions.append(Action("create", spec.instance, "missing", PHASE_CONTAINER, data))
            elif have["config"].get(HASH_KEY) != digest_c:
                running = have["status"] != "Stopped"
                actions.append(
                    Action("recreate", spec.instance, "drift", PHASE_CONTAINER, {**data, "running": running})
                )
            elif have["status"] != "Running":
                actions.append(
                    Action("start", spec.instance, f"status {have['status']}", PHASE_CONTAINER, data)
                )
        for name, inst in sorted(instances.items()):
            if name not in wanted:
                running = inst["status"] != "Stopped"
                actions.append(Action("delete", name, "no longer used", PHASE_CLEANUP, {"running": running}))
        macs = observed.get("macs") or {}
        missing = sorted(n["name"] for n in spec.nodes if not macs.get(n["name"]))
        if missing:
            raise DistrilabError(
                f"[controller] no MAC address for ACA node(s) {', '.join(missing)}\n"
                "  hint: are they running, with their links? ('distrilab up' runs the earlier stages)"
            )
        scenario = derive_scenario(text, spec.nodes, macs)
        key = run_key(spec, hashlib.sha256(scenario.encode()).hexdigest())
        record = observed.get("record") or {}
        if {k: record.get(k) for k in key} != key or record.get("exit") != 0:
            reason = (
                "no report yet"
                if not record
                else "scenario, target or endpoints changed, or the last run failed"
            )
            target = spec.instance if spec.mode == "container" else "host"
            actions.append(Action("run", target, reason, PHASE_RUN, {"key": key, "scenario": scenario}))
        return actions

    # -------------------------------------------------------------- execute

    def execute_action(self, client: Any, spec: Spec, action: Action) -> None:
        verb, target, data = action.verb, action.target, action.data
        if verb in ("create-template", "recreate-template"):
            nodes.converge_template(client, _nodes_spec(spec), action, owner=OWNER)
        elif verb in ("create", "recreate"):
            if verb == "recreate":
                rest.delete_instance(client, target, data["running"])
            _create_container(client, spec, data)
        elif verb == "start":
            nodes.start_and_verify(client, target)
        elif verb == "delete":
            rest.delete_instance(client, target, data["running"])
        elif verb == "run":
            with ping_agent(client, spec, data["scenario"]) as agent:
                if spec.mode == "container":
                    _run_in_container(client, spec, data["key"], data["scenario"], agent)
                else:
                    _run_on_host(spec, data["key"], data["scenario"], agent)
        else:
            raise ValueError(f"unknown action verb {verb!r}")


# ------------------------------------------------------------------ helpers


def _container_hash(spec: Spec, image: str) -> str:
    payload = {"image": image, "address": spec.address, "cpu": spec.cpu, "memory": spec.memory, "layout": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _nodes_spec(spec: Spec) -> nodes.Spec:
    members = (
        nodes.NodeSpec(
            "controller", spec.instance, "server", "controller", spec.image, spec.cpu, spec.memory
        ),
    )
    return nodes.spec_for(spec, members)


def _create_container(client: Any, spec: Spec, data: dict[str, Any]) -> None:
    nspec = _nodes_spec(spec)
    node = nspec.nodes[0]
    config = nodes.instance_config(nspec, node, data["fingerprint"], owner=OWNER)
    config.pop(nodes.NODE_KEY, None)
    config[HASH_KEY] = data["hash"]
    devices = nodes.instance_devices(nspec, node)
    devices["eth0"]["hwaddr"] = management_mac(spec.lab, "controller")
    body = {
        "name": spec.instance,
        "source": {"type": "copy", "source": template_of(spec), "instance_only": True},
        "config": config,
        "devices": devices,
    }
    rest.wait_operation(client, client.api.instances.post(json=body))
    hook = f"#!/bin/sh\nip link set eth0 up\nip addr replace {spec.address} dev eth0\n"
    push_file(
        client, spec.instance, "/etc/distrilab/boot.d/10-controller-address", hook.encode(), mode="0755"
    )
    nodes.start_and_verify(client, spec.instance)


def _source_files() -> list[tuple[Path, str]]:
    """(local file, path relative to REMOTE_ROOT) of everything the controller needs to run."""
    entries = [
        ".".join(f.relative_to(REPO_ROOT).with_suffix("").parts)
        for f in sorted((REPO_ROOT / ENTRY_PACKAGE).glob("*.py"))
    ]
    files = [(f, str(f.relative_to(REPO_ROOT))) for f in source_closure(REPO_ROOT, entries)]
    for name in VENDORED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise DistrilabError(f"[controller] module {name} is not installed where distrilab runs")
        origin = Path(spec.origin)
        if origin.name == "__init__.py":  # a package: every module in it
            files += [
                (f, f"{name}/{f.relative_to(origin.parent)}") for f in sorted(origin.parent.rglob("*.py"))
            ]
        else:
            files.append((origin, origin.name))
    return files


def _run_in_container(
    client: Any, spec: Spec, key: dict[str, Any], text: str, agent: PingAgent | None = None
) -> None:
    """Copy the controller in, run it with a deadline, copy its report out."""
    for path, relative in _source_files():
        push_file(client, spec.instance, f"{REMOTE_ROOT}/{relative}", path.read_bytes())
    scenario = f"{REMOTE_ROOT}/scenario.yaml"
    push_file(client, spec.instance, scenario, text.encode())
    argv = loadgen_args(spec, scenario, REMOTE_REPORT, agent and agent.url)
    args = " ".join(_sh_quote(a) for a in argv)
    script = (
        f"rm -rf {REMOTE_REPORT} && mkdir -p {REMOTE_REPORT} && cd {REMOTE_ROOT} && "
        f"timeout --kill-after=10 {spec.timeout} python3 {args}"
    )
    started = time.time()
    result = rest.sh(client, spec.instance, script, timeout=spec.timeout + 60)
    out = Path(spec.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = rest.sh(client, spec.instance, f"ls -1 {REMOTE_REPORT}", timeout=30).stdout.split()
    for name in names:
        (out / name).write_bytes(read_file(client, spec.instance, f"{REMOTE_REPORT}/{name}"))
    add_ping_results(out / "report.json", agent)
    _finish(spec, key, result.returncode, result.stdout + result.stderr, started, names)


def _run_on_host(spec: Spec, key: dict[str, Any], text: str, agent: PingAgent | None = None) -> None:
    out = Path(spec.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    scenario = out / "scenario.yaml"
    scenario.write_text(text)
    started = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, *loadgen_args(spec, str(scenario.resolve()), str(out.resolve()),
                                           agent and agent.url)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=spec.timeout,
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, output = 124, f"stopped after {spec.timeout}s\n{err.stdout or ''}{err.stderr or ''}"
    names = sorted(
        p.name for p in out.iterdir() if p.name not in (RUN_RECORD, "scenario.yaml", "controller.log")
    )
    add_ping_results(out / "report.json", agent)
    _finish(spec, key, code, output, started, names)


def _finish(
    spec: Spec, key: dict[str, Any], code: int, output: str, started: float, files: list[str]
) -> None:
    """Record the run next to its report; a failed run raises with the controller's output tail."""
    record = {
        **key,
        "exit": code,
        "started_at": started,
        "seconds": round(time.time() - started, 1),
        "files": files,
    }
    Path(spec.reports_dir, RUN_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (Path(spec.reports_dir) / "controller.log").write_text(output)
    if code != 0:
        reason = f"stopped after its {spec.timeout}s timeout" if code == 124 else f"exited {code}"
        raise RuntimeError(
            f"the test controller {reason}; its output ends with:\n{output[-OUTPUT_TAIL_CHARS:]}"
        )
    print(f"[controller] report in {spec.reports_dir}/: {', '.join(files)}", flush=True)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    sys.exit(ControllerReconciler().main())
