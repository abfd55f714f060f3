"""The alcor reconciler's pure parts: planning from observed state, container files, env editing."""

from __future__ import annotations

from typing import Any

import pytest

from cdk.errors import ReconcileError
from cdk.pipeline import lab_from_dict
from cdk.stages import alcor as stage
from modules import alcor, alcor_files, alcor_spec
from modules.nodes import IMAGE_KEY, TEMPLATE_KEY

LAB = "ua1"
FP = "f" * 64


def spec_data(**alcor_section: Any) -> dict[str, Any]:
    lab = lab_from_dict(
        {
            "name": LAB,
            "topology": {"kind": "linear", "switches": 1, "servers_per_switch": 2},
            "images": {"server": "aca"},
            "alcor": alcor_section or "default",
        },
        "labs/ua1.yaml",
        host_routes=[],
    )
    data = stage.build(lab, lab.hosts[0])
    assert data is not None
    return data


@pytest.fixture(scope="module")
def spec() -> alcor_spec.Spec:
    return alcor_spec.load(spec_data())


def converged(spec: alcor_spec.Spec) -> dict[str, Any]:
    """What observe returns for a fully deployed, healthy control plane."""
    images = {s.image: FP for s in spec.services}
    instances: dict[str, Any] = {}
    for s in spec.services:
        digest = alcor_files.service_hash(s, FP, None)
        config = {alcor_spec.HASH_KEY: digest, alcor_spec.SERVICE_KEY: s.name}
        if s.name == "vpc":
            config[alcor_spec.SEGMENT_KEY] = "created"
        instances[s.instance] = {"status": "Running", "config": config}
    for recipe in {s.recipe for s in spec.services}:
        tpl = alcor_spec.template_of(spec.lab, recipe)
        instances[tpl] = {"status": "Stopped", "config": {TEMPLATE_KEY: recipe, IMAGE_KEY: FP}}
    macs = {n.name: f"00:16:3e:00:00:{i:02x}" for i, n in enumerate(spec.aca_nodes)}
    registered = [alcor_files.host_info(n, macs[n.name]) for n in spec.aca_nodes]
    return {
        "images": images,
        "jars": {},
        "instances": instances,
        "health": {s.name: None for s in spec.services},
        "registered": registered,
        "aca": {
            n.name: {"mac": macs[n.name], "env": dict(spec.aca_env), "status": "Running"}
            for n in spec.aca_nodes
        },
    }


def verbs(actions: list[Any]) -> list[tuple[str, str]]:
    return sorted((a.verb, a.target) for a in actions)


def test_converged_plans_nothing(spec: alcor_spec.Spec) -> None:
    assert alcor.AlcorReconciler().plan(spec, converged(spec)) == []


def test_empty_host_plans_everything_in_dependency_phases(spec: alcor_spec.Spec) -> None:
    observed = {
        "images": {s.image: FP for s in spec.services},
        "jars": {},
        "instances": {},
        "health": {},
        "registered": None,
        "aca": {n.name: {"mac": "00:16:3e:00:00:01", "env": {}, "status": "Running"} for n in spec.aca_nodes},
    }
    actions = alcor.AlcorReconciler().plan(spec, observed)
    creates = {a.data["service"]: a.phase for a in actions if a.verb == "create"}
    assert len(creates) == 16
    for svc in spec.services:
        for dep in svc.depends_on:
            assert creates[dep] < creates[svc.name], (svc.name, dep)
    assert creates["ignite"] == min(creates.values())
    post = [a for a in actions if a.phase >= alcor.PHASE_POST]
    assert min(a.phase for a in post) > max(creates.values())
    assert sorted(a.verb for a in post) == [
        "configure-aca",
        "configure-aca",
        "create-segment-table",
        "register-node",
        "register-node",
    ]
    register = next(a for a in actions if a.verb == "register-node")
    assert register.phase > next(a for a in actions if a.verb == "configure-aca").phase


def test_missing_image_is_reported_with_a_hint(spec: alcor_spec.Spec) -> None:
    observed = converged(spec)
    observed["images"] = {k: None for k in observed["images"]}
    with pytest.raises(ReconcileError) as info:
        alcor.AlcorReconciler().plan(spec, observed)
    assert f"image dl-{LAB}-alcor-service: alias not found" in str(info.value)
    assert "images' stage" in str(info.value)


def test_jar_dir_problems_are_reported(spec: alcor_spec.Spec) -> None:
    observed = converged(spec)
    observed["jars"] = {"vpcmanager-*.jar": "no file matches it in /x"}
    with pytest.raises(ReconcileError) as info:
        alcor.AlcorReconciler().plan(spec, observed)
    assert "jar vpcmanager-*.jar: no file matches it in /x" in str(info.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda o, s: o["instances"][s.service("port").instance].update(status="Stopped"),
            [("start", f"dl-{LAB}-alcor-port")],
        ),
        (
            lambda o, s: o["instances"][s.service("port").instance]["config"].update(
                {alcor_spec.HASH_KEY: "old"}),
            [("recreate", f"dl-{LAB}-alcor-port")],
        ),
        (lambda o, s: o["health"].update(port="GET ...: 503"), [("restart", f"dl-{LAB}-alcor-port")]),
        (
            lambda o, s: o["instances"].update(
                {f"dl-{LAB}-alcor-extra": {"status": "Running", "config": {}}}
            ),
            [("delete", f"dl-{LAB}-alcor-extra")],
        ),
    ],
)
def test_service_drift(spec: alcor_spec.Spec, change: Any, expected: list[tuple[str, str]]) -> None:
    observed = converged(spec)
    change(observed, spec)
    assert verbs(alcor.AlcorReconciler().plan(spec, observed)) == expected


def test_recreated_node_manager_registers_again(spec: alcor_spec.Spec) -> None:
    observed = converged(spec)
    observed["instances"][spec.service("node").instance]["config"][alcor_spec.HASH_KEY] = "old"
    actions = alcor.AlcorReconciler().plan(spec, observed)
    assert verbs(actions) == sorted(
        [("recreate", f"dl-{LAB}-alcor-node")] + [("register-node", n.name) for n in spec.aca_nodes]
    )


def test_recreated_vpc_manager_gets_a_new_segment_table(spec: alcor_spec.Spec) -> None:
    observed = converged(spec)
    observed["instances"][spec.service("vpc").instance]["config"][alcor_spec.HASH_KEY] = "old"
    assert ("create-segment-table", f"dl-{LAB}-alcor-vpc") in verbs(
        alcor.AlcorReconciler().plan(spec, observed)
    )


def test_registration_drift_updates_and_foreign_nodes_stay(spec: alcor_spec.Spec) -> None:
    observed = converged(spec)
    first = spec.aca_nodes[0]
    observed["aca"][first.name]["mac"] = "00:16:3e:aa:bb:cc"  # the node's veth was recreated
    stale = alcor_files.host_info(
        alcor_spec.AcaNode(
            "gone",
            "x",
            stage.node_id(LAB, "gone"),
            "10.0.0.9",
            "10.0.0.9",
            "eth1",
            50001,
            "fe:16:11:00:00:00",
        ),
        "00:16:3e:00:00:99",
    )
    foreign = {**stale, "node_id": "1112a4d4-ffff-4ece-b3f0-8d36e3d85001", "node_name": "node1"}
    observed["registered"] += [stale, foreign]
    actions = alcor.AlcorReconciler().plan(spec, observed)
    assert verbs(actions) == [("deregister-node", "gone"), ("update-node", first.name)]
    update = next(a for a in actions if a.verb == "update-node")
    assert update.reason == "drift: mac_address"


def test_aca_pointed_at_the_ncm(spec: alcor_spec.Spec) -> None:
    observed = converged(spec)
    node = spec.aca_nodes[0]
    observed["aca"][node.name]["env"] = {"ACA_NCM_ADDRESS": "", "ACA_NCM_PORT": ""}
    [action] = alcor.AlcorReconciler().plan(spec, observed)
    assert (action.verb, action.target) == ("configure-aca", node.instance)
    assert action.data["values"] == spec.aca_env


def test_destroy_plans_only_deletes(spec: alcor_spec.Spec) -> None:
    reconciler = alcor.AlcorReconciler()
    observed = converged(spec)
    actions = reconciler.plan(reconciler.empty_spec(spec), {**observed, "registered": None, "aca": {}})
    assert {a.verb for a in actions} == {"delete"}
    assert len(actions) == 16 + 2  # services + the ignite and alcor-service templates


def test_host_info_uses_alcors_field_names(spec: alcor_spec.Spec) -> None:
    node = spec.aca_nodes[0]
    body = alcor_files.host_info(node, "00:16:3e:01:02:03")
    assert set(body) == {
        "node_id",
        "node_name",
        "local_ip",
        "mac_address",
        "veth",
        "server_port",
        "host_dvr_mac",
        "data-path-ip",
    }
    assert body["server_port"] == 50001 and body["veth"] == "eth1"


def test_env_block_appends_to_the_image_defaults() -> None:
    data = spec_data(service_defaults={"java_opts": "-Xmx300m"})
    svc = alcor_spec.load(data).service("vpc")
    block = alcor_files.env_block(svc, None, ignite_image=False)
    env = alcor_files.parse_env('JAVA_OPTS="--add-opens=x"\n' + block)
    assert env["ALCOR_JAR"] == "vpcmanager-*.jar" and env["ALCOR_PORT"] == "9001"
    assert env["ALCOR_OVERRIDES"] == alcor_spec.PROPERTIES_FILE
    assert 'JAVA_OPTS="$JAVA_OPTS -Xmx300m"' in block
    pushed = alcor_files.env_block(svc, "vpcmanager-0.1.0-SNAPSHOT.jar", ignite_image=False)
    assert "ALCOR_JAR='/opt/alcor/lab/vpcmanager-0.1.0-SNAPSHOT.jar'" in pushed


def test_properties_file_is_sorted_and_escaped(spec: alcor_spec.Spec) -> None:
    text = alcor_files.properties_file(spec.service("port"))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == sorted(lines)
    assert "alcor.vif_type=ovs" in lines
    mac = spec.service("mac")
    assert f"microservices.mac.service.url=http://{mac.ip}:9005/macs" in lines  # values keep their colons
    assert (
        alcor_files.properties_file(
            alcor_spec.ServiceSpec(**{**spec.service("mac").__dict__, "properties": {"a b": "x"}})
        ).splitlines()[1]
        == "a\\ b=x"
    )  # keys escape what java.util.Properties would split on


def test_update_env_keeps_other_lines() -> None:
    text = "# comment\nACA_NCM_ADDRESS=\nACA_GRPC_PORT=50001\n"
    out = alcor_files.update_env(text, {"ACA_NCM_ADDRESS": "10.0.0.5", "ACA_NCM_PORT": "9016"})
    assert out == "# comment\nACA_NCM_ADDRESS=10.0.0.5\nACA_GRPC_PORT=50001\nACA_NCM_PORT=9016\n"
    assert alcor_files.parse_env(out) == {
        "ACA_NCM_ADDRESS": "10.0.0.5",
        "ACA_GRPC_PORT": "50001",
        "ACA_NCM_PORT": "9016",
    }


def test_management_mac_is_stable_and_local() -> None:
    mac = alcor_files.management_mac(LAB, "vpc")
    assert mac == alcor_files.management_mac(LAB, "vpc") != alcor_files.management_mac(LAB, "subnet")
    assert mac.startswith("00:16:3e:") and len(mac) == 17


def test_local_forwards_become_proxy_devices_on_the_containers_loopback(spec: alcor_spec.Spec) -> None:
    vpc = spec.service("vpc")
    [(name, device)] = alcor_files.forward_devices(vpc).items()
    target = vpc.local_forwards["10800"]
    assert target == f"{spec.service('ignite').ip}:10800" and vpc.properties["ignite.host"] == "localhost"
    assert name == "fwd-10800" and device == {
        "type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:10800", "connect": f"tcp:{target}"}
    assert alcor_files.forward_devices(spec.service("ignite")) == {}
