"""End to end: Alcor's 16 containers through the alcor stage, on the real LXD daemon.

Alcor's jars and Apache Ignite cannot be fetched here, so every container runs the TEST DOUBLE of
tests/doubles/alcor_standin (a tiny Java service) through the real `alcor-service` image and its
launcher, exactly as a service jar would run; the deployment file points jar_dir at copies of it
under each service's jar pattern, and runs the Ignite entry on the same image. The fabric is real:
a linear lab (one switch, two servers on the real `aca` image) through the nodes and links stages.

Checked: start order (every service after its dependencies, Ignite first), the configuration each
service received, the post-deploy calls (one default segment table, one registration per ACA
node with the right fields, ACA pointed at the NCM), a second apply changing nothing, health
gating (a service told to stay unhealthy fails with its name and log tail, its dependents are not
started, a fixed re-apply converges), and a destroy that leaves nothing of the lab behind. Then
the controller stage: the load-test controller runs once in its own container against the
stand-in API gateway (which answers 404, counted as errors), with the lab's ACA nodes as its
nodes; its report is copied out and a second apply changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdk import alcor as model
from cdk.errors import ReconcileError
from cdk.model import Lab
from cdk.pipeline import lab_from_dict
from cdk.stages import alcor as alcor_stage
from cdk.stages import controller as controller_stage
from cdk.stages import images as images_stage
from cdk.stages import links as links_stage
from cdk.stages import nodes as nodes_stage
from modules import alcor, alcor_files, alcor_http, alcor_spec, controller, lxd_client
from modules import lxd_rest as rest
from modules.images import Images
from modules.links import LinksReconciler
from modules.nodes import NodesReconciler
from modules.sweep import Sweep
from tests.doubles.alcor_api import AlcorApiDouble
from tests.doubles.alcor_standin import build_jar
from tests.modules.plan_cases import captured

pytestmark = pytest.mark.e2e

#: the service told to stay unhealthy in the gating test (the API gateway depends on it)
BROKEN = "quota"
#: a management /24 of the test's own: other labs' bridges on this host use the default pool
#: (10.210-10.213 hold the lab's own default loopback, p2p and server pools: stay above them)
POOL = f"10.{220 + secrets.randbelow(30)}.{secrets.randbelow(256)}.0/24"


def standin_jars(directory: Path) -> Path:
    """jar_dir for the deployment: the stand-in under a name matching every service's jar pattern."""
    jar = build_jar(directory)
    jars = directory / "jars"
    jars.mkdir(exist_ok=True)
    default = model.resolve_section("default")
    assert default is not None
    names = {s.jar.replace("*", "standin") for s in default.services if s.jar} | {"ignite-standin.jar"}
    for name in names:
        if not (jars / name).exists():
            (jars / name).hardlink_to(jar)
    return jars


def deployment(jar_dir: Path, broken: bool) -> dict[str, Any]:
    """The default deployment file, with the stand-in as every jar and small JVMs."""
    services: dict[str, Any] = {
        # Ignite's stand-in runs on the alcor-service image (the ignite image needs Ignite itself)
        "ignite": {"image": "alcor-service", "jar": "ignite-standin.jar", "resources": {"memory": "256MiB"}},
    }
    if broken:
        services[BROKEN] = {"config": {"standin.healthy": False}, "health": {"timeout": 8}}
        # a change to a dependent of the broken service: its recreation must wait, then be skipped
        services["api-gateway"] = {"config": {"standin.note": "changed with quota"}}
    return {
        "jar_dir": str(jar_dir),
        "max_parallel": 8,
        "service_defaults": {
            "resources": {"memory": "256MiB"},
            "java_opts": "-Xms16m -Xmx48m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1",
            "health": {"timeout": 90, "interval": 0.5},
        },
        "services": services,
    }


SCENARIO = """\
name: e2e
projects_per_tenant: 1
vpcs_per_project: 1
subnets_per_vpc: 1
ports_per_subnet: 4
nodes: {count: 2}
rate: 20
concurrency: 4
steps: {create_vpc: true, create_subnet: true, create_port: true, bind_port: true, verify_ping: true}
limits: {max_duration: 10, max_requests: 50}
"""


def make_lab(name: str, jar_dir: Path, broken: bool = False) -> Lab:
    return lab_from_dict(
        {
            "name": name,
            "topology": {"kind": "linear", "switches": 1, "servers_per_switch": 2},
            "images": {"server": "aca", "switch": "switch"},
            "images_options": {"without": ["aca_source", "aca_deps", "alcor_jars", "alcor_source"]},
            "resources": {"defaults": {"memory": "256MiB"}},
            "addressing": {"management": POOL},
            "alcor": deployment(jar_dir, broken),
            "controller": {
                "scenario": str(jar_dir.parent / "scenario.yaml"),
                "timeout": 120,
                "endpoints": {"node_manager": "node"},
            },
        },
        f"<e2e {name}>",
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def apply_alcor(lab: Lab) -> int:
    spec = alcor_stage.build(lab, lab.hosts[0])
    assert spec is not None
    return alcor.AlcorReconciler().converge(alcor_spec.load(spec))


@pytest.fixture(scope="module")
def lab_name() -> str:
    return f"alc{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def deployed(lab_name: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The lab's images, fabric containers and links; Alcor deployed once. Everything removed after."""
    jar_dir = standin_jars(tmp_path_factory.mktemp("standin"))
    (jar_dir.parent / "scenario.yaml").write_text(SCENARIO)
    lab = make_lab(lab_name, jar_dir)
    host = lab.hosts[0]
    stages = [
        (Images(), Images().load_spec(images_stage.build(lab, host))),
        (NodesReconciler(), NodesReconciler().load_spec(nodes_stage.build(lab, host))),
        (LinksReconciler(), LinksReconciler().load_spec(links_stage.build(lab, host))),
    ]
    try:
        for reconciler, spec in stages:
            reconciler.converge(spec)
        started = time.monotonic()
        apply_alcor(lab)
        yield {"lab": lab, "jar_dir": jar_dir, "first_apply_seconds": time.monotonic() - started}
    finally:
        ctl = controller.ControllerReconciler()
        ctl.converge(ctl.empty_spec(controller_spec(lab, jar_dir.parent / "reports")))
        spec = alcor_stage.build(lab, host)
        assert spec is not None
        reconciler = alcor.AlcorReconciler()
        reconciler.converge(reconciler.empty_spec(alcor_spec.load(spec)))
        for reconciler, spec in reversed(stages):
            reconciler.converge(reconciler.empty_spec(spec))
        sweep = Sweep()
        sweep.converge(sweep.empty_spec(sweep.load_spec({"lab": lab.name})))


def controller_spec(lab: Lab, reports: Path) -> controller.Spec:
    data = controller_stage.build(lab, lab.hosts[0])
    assert data is not None
    return controller.load({**data, "reports_dir": str(reports)})


def services_of(lab: Lab) -> dict[str, dict[str, Any]]:
    spec = alcor_stage.build(lab, lab.hosts[0])
    assert spec is not None
    return {s["name"]: s for s in spec["services"]}


def info(svc: dict[str, Any]) -> dict[str, Any]:
    return get_json(f"http://{svc['address'].split('/')[0]}:{svc['port']}/standin/info")


def calls(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return get_json(f"http://{svc['address'].split('/')[0]}:{svc['port']}/standin/calls")


def test_every_aca_server_runs_ovs_with_br_int_and_br_tun(deployed: dict[str, Any]) -> None:
    """The lab's servers use `image: aca`: each has OVS up with ACA's bridges on this host's datapath."""
    lab = deployed["lab"]
    client = rest.connect(None)
    datapath = "system" if Path("/sys/module/openvswitch").exists() else "netdev"
    servers = [n for n in lab.topology.nodes if n.kind == "server"]
    assert servers and all(lab.image_of(n) == "aca" for n in servers)
    for node in servers:
        name = lab.instance_name(node.name)
        result = rest.sh(
            client,
            name,
            "for br in br-int br-tun; do ovs-vsctl get bridge $br datapath_type || exit 1; done;"
            " ovs-vsctl get interface vxlan-generic ofport; sv status ovs-vswitchd",
        )
        assert result.ok, f"{name}: {result.stdout} {result.stderr}"
        lines = result.stdout.split()
        assert lines[:2] == [datapath, datapath], f"{name}: {result.stdout}"
        assert "100" in lines and "run:" in result.stdout, f"{name}: {result.stdout}"


def test_all_sixteen_run_healthy_in_dependency_order(deployed: dict[str, Any]) -> None:
    lab = deployed["lab"]
    services = services_of(lab)
    assert len(services) == 16
    print(f"first apply of the 16 stand-ins: {deployed['first_apply_seconds']:.1f}s")
    started = {name: info(svc)["started_at"] for name, svc in services.items()}
    assert min(started, key=started.get) == "ignite"
    for name, svc in services.items():
        for dep in svc["depends_on"]:
            assert started[dep] < started[name], f"{name} started before its dependency {dep}"


def test_what_alcor_observes_is_what_the_unit_tests_plan_from(deployed: dict[str, Any]) -> None:
    """tests/modules/alcor/converged.json was captured here (DISTRILAB_CAPTURE=1 rewrites it):
    a converged deployment plans nothing, and the fixture keeps the shape of the real thing."""
    lab = deployed["lab"]
    data = alcor_stage.build(lab, lab.hosts[0])
    assert data is not None
    reconciler = alcor.AlcorReconciler()
    spec = reconciler.load_spec(data)
    observed = reconciler.observe(reconciler.connect(spec), spec)
    assert reconciler.plan(spec, observed) == []
    captured("alcor", "converged", {"spec": data, "observed": observed, "plan": []})


def test_each_service_received_its_configuration(deployed: dict[str, Any]) -> None:
    lab = deployed["lab"]
    for name, svc in services_of(lab).items():
        got = info(svc)["properties"]
        assert got["server.port"] == str(svc["port"]), name
        assert got["spring.config.additional-location"] == f"file:{alcor_spec.PROPERTIES_FILE}", name
        for key, value in svc["properties"].items():
            assert got.get(key) == value, (name, key)
    services = services_of(lab)
    dpm = info(services["data-plane"])["properties"]
    ncm_ip = services["network-config"]["address"].split("/")[0]
    assert dpm["microservices.netwconfigmanager.service.url"] == ncm_ip
    # Alcor connects to ignite.host:ignite.port only for the literal localhost: the stand-in
    # refuses to start otherwise, and waits for Ignite at localhost:10800, which reaches the
    # Ignite container only through the container's proxy device
    assert dpm["ignite.host"] == "localhost" and dpm["ignite.port"] == "10800"
    ignite = services["ignite"]["address"].split("/")[0]
    assert all(svc["local_forwards"] == {"10800": f"{ignite}:10800"}
               for name, svc in services.items() if name != "ignite")


def test_post_deploy_segment_table_and_node_registrations(deployed: dict[str, Any]) -> None:
    lab = deployed["lab"]
    services = services_of(lab)
    segment_calls = [c for c in calls(services["vpc"]) if c["path"] == "/segments/createDefaultTable"]
    assert len(segment_calls) == 1
    node_url = f"http://{services['node']['address'].split('/')[0]}:9007"
    registered = {n["node_name"]: n for n in get_json(f"{node_url}/nodes")["nodeInfos"]}
    servers = sorted(n.name for n in lab.topology.nodes if n.kind == "server")
    assert sorted(registered) == servers
    client = lxd_client.connect()
    fabric = {a.node: a.address.split("/")[0] for a in lab.addressing.servers}
    for name in servers:
        node = registered[name]
        state = rest.metadata(client.api.instances[lab.instance_name(name)].state.get())
        assert node["node_id"] == alcor_stage.node_id(lab.name, name)
        assert node["local_ip"] == lab.addressing.management[name].split("/")[0]
        assert node["mac_address"] == state["network"]["eth1"]["hwaddr"]
        assert node["data-path-ip"] == fabric[name]
        assert node["veth"] == "eth1" and node["server_port"] == 50001
        assert node["host_dvr_mac"] == "fe:16:11:00:00:00"
        aca_env = rest.sh(client, lab.instance_name(name), f"cat {alcor_spec.ACA_ENV_FILE}").stdout
        env = alcor_files.parse_env(aca_env)
        assert env["ACA_NCM_ADDRESS"] == services["network-config"]["address"].split("/")[0]
        assert env["ACA_NCM_PORT"] == "9016"


def test_second_apply_changes_nothing(deployed: dict[str, Any]) -> None:
    lab = deployed["lab"]
    assert apply_alcor(lab) == 0
    services = services_of(lab)
    posts = [c for c in calls(services["node"]) if c["method"] == "POST" and c["path"] == "/nodes"]
    assert len(posts) == 2  # registered once each, not again
    assert len([c for c in calls(services["vpc"]) if c["path"] == "/segments/createDefaultTable"]) == 1


def test_unhealthy_service_fails_clearly_and_reapply_recovers(deployed: dict[str, Any]) -> None:
    lab, jar_dir = deployed["lab"], deployed["jar_dir"]
    broken = make_lab(lab.name, jar_dir, broken=True)
    started = time.monotonic()
    with pytest.raises(ReconcileError) as info_:
        apply_alcor(broken)
    text = str(info_.value)
    print(f"failing apply: {time.monotonic() - started:.1f}s\n{text}")
    assert f"service {BROKEN} not healthy after 8s" in text
    assert "told to stay unhealthy" in text  # the stand-in's own log line, from the log tail
    assert f"recreate dl-{lab.name}-alcor-api-gateway" in text
    assert f"skipped: needs dl-{lab.name}-alcor-{BROKEN}, which failed" in text  # its dependant waits
    spec = alcor_spec.load(alcor_stage.build(lab, lab.hosts[0]) or {})
    unhealthy = [s.name for s in spec.services if alcor_http.probe(s) is not None]
    assert unhealthy == [BROKEN]  # the rest of the control plane kept running
    assert apply_alcor(lab) == 1  # the fixed deployment converges: quota (the gateway was never changed)
    assert apply_alcor(lab) == 0
    spec = alcor_spec.load(alcor_stage.build(lab, lab.hosts[0]) or {})
    assert [s.name for s in spec.services if alcor_http.probe(s) is not None] == []


def test_controller_runs_once_in_its_container_and_reports(deployed: dict[str, Any]) -> None:
    lab, reports = deployed["lab"], deployed["jar_dir"].parent / "reports"
    spec = controller_spec(lab, reports)
    started = time.monotonic()
    assert controller.ControllerReconciler().converge(spec) == 3  # template, container, run
    print(f"controller stage: {time.monotonic() - started:.1f}s")
    record = json.loads((reports / controller.RUN_RECORD).read_text())
    assert record["exit"] == 0 and "report.json" in record["files"]
    report = json.loads((reports / "report.json").read_text())
    assert report["totals"]["error_total"] > 0  # the stand-in gateway answers 404 to Alcor's API
    # verify_ping went through the lab's ping agent (served on the management gateway for the
    # controller's container); with no port created, every pair was skipped, none faked
    assert report["verify_ping"] == [] and report["steps"]["verify_ping"]["skipped"] > 0
    gateway = services_of(lab)["api-gateway"]
    assert any(c["method"] == "POST" and c["path"].endswith("/vpcs") for c in calls(gateway))
    client = lxd_client.connect()
    ran = rest.sh(client, spec.instance, f"cat {controller.REMOTE_ROOT}/scenario.yaml").stdout
    nodes = {n["name"]: n for n in yaml.safe_load(ran)["nodes"]["list"]}
    assert sorted(nodes) == sorted(n.name for n in lab.topology.nodes if n.kind == "server")
    for name, node in nodes.items():
        state = rest.metadata(client.api.instances[lab.instance_name(name)].state.get())
        assert node["mac"] == state["network"]["eth1"]["hwaddr"]
        assert node["id"] == alcor_stage.node_id(lab.name, name)
    assert controller.ControllerReconciler().converge(spec) == 0
    # what the unit tests plan from (tests/modules/controller/ran.json) has the shape of this run's
    reconciler = controller.ControllerReconciler()
    data = {**controller_stage.build(lab, lab.hosts[0]), "reports_dir": str(reports)}  # type: ignore[dict-item]
    observed = reconciler.observe(client, reconciler.load_spec(data))
    captured("controller", "ran", {"spec": data, "observed": observed, "plan": []})


PING_SCENARIO = """\
name: e2e-ping
projects_per_tenant: 1
vpcs_per_project: 1
subnets_per_vpc: 1
ports_per_subnet: 2
nodes: {count: 2}
concurrency: 2
steps: {create_vpc: true, create_subnet: true, create_port: true, bind_port: true, verify_ping: true}
limits: {max_duration: 90}
"""


def test_verify_ping_in_the_controller_stage_reports_each_pair(
    deployed: dict[str, Any], tmp_path: Path
) -> None:
    """The controller stage against the strict API double (tests/doubles/alcor_api.py, listening
    on the lab's management gateway, where the controller's container reaches the host), the
    lab's ACA nodes registered in it as the alcor stage registers them: the run creates two
    ports, binds them to different nodes, and verify_ping attaches each port's endpoint on its
    node's br-int (its MAC, IP and VLAN tag) and pings across. The outcome is whatever the data
    plane does (no ACA programs flows here): it is reported per pair in report.json, not faked,
    and the endpoints are gone after the run."""
    lab = deployed["lab"]
    scenario = tmp_path / "ping.yaml"
    scenario.write_text(PING_SCENARIO)
    base = controller_spec(lab, tmp_path / "reports")
    client = lxd_client.connect()
    with AlcorApiDouble(host=base.gateway.split("/")[0]) as api:
        for entry in base.nodes:
            state = rest.metadata(client.api.instances[entry["instance"]].state.get())
            mac = state["network"][entry["interface"]]["hwaddr"]
            info = alcor_files.host_info(alcor_spec.AcaNode(**entry), mac)
            status, _ = api.state.handle("POST", "/nodes", json.dumps({"host_info": info}).encode())
            assert status == 201
        spec = dataclasses.replace(base, target_url=api.url, endpoints={}, scenario=str(scenario))
        # the run, after the template and container when no earlier test made them
        assert controller.ControllerReconciler().converge(spec) in (1, 3)
        bound = {p["binding:host_id"] for p in api.state.ports.values()}
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert len(bound) == 2 and report["steps"]["verify_ping"]["sent"] == 1, report["steps"]
    [pair] = report["verify_ping"]
    assert pair["source"]["node"] != pair["target"]["node"], pair
    assert {pair["source"]["node"], pair["target"]["node"]} == bound
    assert isinstance(pair["ok"], bool) and "packets transmitted" in pair["detail"], pair  # ping ran
    source, target = pair["source"]["node"], pair["target"]["node"]
    print(f"verify_ping {source} -> {target}: ok={pair['ok']} ({pair['detail']})")
    for entry in base.nodes:  # the agent detached what it attached
        ports = rest.sh(client, entry["instance"], "ovs-vsctl list-ports br-int").stdout.split()
        assert not any(p.startswith("tap") for p in ports), (entry["instance"], ports)
