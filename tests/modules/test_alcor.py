"""The alcor reconciler's pure parts: planning from a real deployment's captured state (edited per
case), container files, env editing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdk.errors import ReconcileError
from cdk.pipeline import lab_from_dict
from cdk.stages import alcor as stage
from modules import alcor, alcor_files, alcor_spec
from tests.modules.plan_cases import HERE, check_case

LAB = "ua1"
#: a real deployment's spec and observed state, captured by tests/e2e/test_alcor.py
CAPTURED = HERE / "alcor" / "converged.json"


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


@pytest.fixture(scope="module")
def real() -> alcor_spec.Spec:
    """The spec of a real deployment: tests/e2e/test_alcor.py captured it with what it observed."""
    return alcor_spec.load(json.loads(CAPTURED.read_text())["spec"])


def converged() -> dict[str, Any]:
    """What observe returned for that deployment, converged and healthy (a fresh copy to edit)."""
    observed: dict[str, Any] = json.loads(CAPTURED.read_text())["observed"]
    return observed


def verbs(actions: list[Any]) -> list[tuple[str, str]]:
    return sorted((a.verb, a.target) for a in actions)


def test_converged_plans_nothing() -> None:
    check_case(alcor.AlcorReconciler(), CAPTURED)


def test_empty_host_plans_everything_in_dependency_phases(real: alcor_spec.Spec) -> None:
    observed = {**converged(), "instances": {}, "health": {}, "registered": None}
    for node in observed["aca"].values():
        node["env"] = {}  # ACA not yet pointed at the NCM
    actions = alcor.AlcorReconciler().plan(real, observed)
    creates = {a.data["service"]: a.phase for a in actions if a.verb == "create"}
    assert len(creates) == 16
    for svc in real.services:
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


def test_missing_image_is_reported_with_a_hint(real: alcor_spec.Spec) -> None:
    observed = converged()
    observed["images"] = {k: None for k in observed["images"]}
    with pytest.raises(ReconcileError) as info:
        alcor.AlcorReconciler().plan(real, observed)
    assert f"image {real.service('vpc').image}: alias not found" in str(info.value)
    assert "images' stage" in str(info.value)


def test_jar_dir_problems_are_reported(real: alcor_spec.Spec) -> None:
    observed = converged()
    observed["jars"]["vpcmanager-*.jar"] = "no file matches it in /x"
    with pytest.raises(ReconcileError) as info:
        alcor.AlcorReconciler().plan(real, observed)
    assert "jar vpcmanager-*.jar: no file matches it in /x" in str(info.value)


def _port(observed: dict[str, Any], spec: alcor_spec.Spec) -> dict[str, Any]:
    port: dict[str, Any] = observed["instances"][spec.service("port").instance]
    return port


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda o, s: _port(o, s).update(status="Stopped"), [("start", "port")]),
        (lambda o, s: _port(o, s)["config"].update({alcor_spec.HASH_KEY: "old"}), [("recreate", "port")]),
        (lambda o, s: o["health"].update(port="GET ...: 503"), [("restart", "port")]),
    ],
)
def test_service_drift(real: alcor_spec.Spec, change: Any, expected: list[tuple[str, str]]) -> None:
    observed = converged()
    change(observed, real)
    assert verbs(alcor.AlcorReconciler().plan(real, observed)) == [
        (verb, real.service(name).instance) for verb, name in expected]


def test_a_service_no_longer_deployed_is_deleted(real: alcor_spec.Spec) -> None:
    observed = converged()
    extra = f"dl-{real.lab}-alcor-extra"
    observed["instances"][extra] = {"status": "Running", "config": {}}
    assert verbs(alcor.AlcorReconciler().plan(real, observed)) == [("delete", extra)]


def test_recreated_node_manager_registers_again(real: alcor_spec.Spec) -> None:
    observed = converged()
    observed["instances"][real.service("node").instance]["config"][alcor_spec.HASH_KEY] = "old"
    actions = alcor.AlcorReconciler().plan(real, observed)
    assert verbs(actions) == sorted(
        [("recreate", real.service("node").instance)] + [("register-node", n.name) for n in real.aca_nodes]
    )


def test_recreated_vpc_manager_gets_a_new_segment_table(real: alcor_spec.Spec) -> None:
    observed = converged()
    observed["instances"][real.service("vpc").instance]["config"][alcor_spec.HASH_KEY] = "old"
    assert ("create-segment-table", real.service("vpc").instance) in verbs(
        alcor.AlcorReconciler().plan(real, observed)
    )


def test_registration_drift_updates_and_foreign_nodes_stay(real: alcor_spec.Spec) -> None:
    observed = converged()
    first = real.aca_nodes[0]
    observed["aca"][first.name]["mac"] = "00:16:3e:aa:bb:cc"  # the node's veth was recreated
    # a node of this lab that is gone (its id is the lab's), and one another tool registered
    stale = {**observed["registered"][0], "node_id": stage.node_id(real.lab, "gone"), "node_name": "gone",
             "local_ip": "10.0.0.9", "data-path-ip": "10.0.0.9"}
    foreign = {**stale, "node_id": "1112a4d4-ffff-4ece-b3f0-8d36e3d85001", "node_name": "node1"}
    observed["registered"] += [stale, foreign]
    actions = alcor.AlcorReconciler().plan(real, observed)
    assert verbs(actions) == [("deregister-node", "gone"), ("update-node", first.name)]
    update = next(a for a in actions if a.verb == "update-node")
    assert update.reason == "drift: mac_address"


def test_aca_pointed_at_the_ncm(real: alcor_spec.Spec) -> None:
    observed = converged()
    node = real.aca_nodes[0]
    observed["aca"][node.name]["env"] = {"ACA_NCM_ADDRESS": "", "ACA_NCM_PORT": ""}
    [action] = alcor.AlcorReconciler().plan(real, observed)
    assert (action.verb, action.target) == ("configure-aca", node.instance)
    assert action.data["values"] == real.aca_env


def test_destroy_deletes_every_instance_it_observed_and_nothing_else(real: alcor_spec.Spec) -> None:
    reconciler = alcor.AlcorReconciler()
    observed = converged()
    actions = reconciler.plan(reconciler.empty_spec(real), {**observed, "registered": None, "aca": {}})
    assert {a.verb for a in actions} == {"delete"}
    assert sorted(a.target for a in actions) == sorted(observed["instances"])  # services and templates


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
