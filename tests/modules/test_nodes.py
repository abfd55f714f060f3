"""modules/nodes.py: plan fixtures, and converge/destroy against the in-memory LXD fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdk.errors import ReconcileError
from modules import lxd_rest as rest
from modules import nodes
from modules.nodes import IMAGE_KEY, TEMPLATE_KEY, NodesReconciler
from tests.fakes.lxd import FakeLxd
from tests.modules.plan_cases import HERE, cases, check_case

FINGERPRINT = "a" * 64


@pytest.mark.parametrize("path", cases("nodes"))
def test_plan_fixture(path: Path) -> None:
    check_case(NodesReconciler(), path)


@pytest.fixture
def spec_data() -> dict[str, Any]:
    return json.loads((HERE / "nodes" / "empty_host.json").read_text())["spec"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLxd:
    monkeypatch.setattr(nodes, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(nodes, "_mark_bridge", lambda bridge, lab: None)  # no host bridge in the fake
    return FakeLxd(aliases={"dl-fx-server": FINGERPRINT, "dl-fx-switch": FINGERPRINT})


def reconciler(fake: FakeLxd) -> NodesReconciler:
    r = NodesReconciler()
    r.connect = lambda spec: fake  # type: ignore[method-assign]
    return r


def test_converge_creates_nodes_from_templates_then_changes_nothing(
    fake: FakeLxd, spec_data: dict[str, Any]
) -> None:
    r = reconciler(fake)
    spec = r.load_spec(spec_data)
    assert r.converge(spec) == 7  # network, 2 templates, 4 nodes
    for node in spec.nodes:
        inst = fake.instances[node.instance]
        assert inst["status"] == "Running"
        assert inst["config"]["user.distrilab.lab"] == "fx"
        assert inst["config"][IMAGE_KEY] == FINGERPRINT
        assert TEMPLATE_KEY not in inst["config"]  # not inherited from the template
        assert inst["devices"]["eth0"]["network"] == spec.network
        assert ("tun" in inst["devices"]) == (node.kind == "switch")
    assert fake.instances["dl-fx--tpl-server"]["status"] == "Stopped"
    assert fake.networks[spec.network]["config"]["ipv4.dhcp"] == "false"
    assert r.converge(spec) == 0


def test_deleted_node_is_recreated_alone(fake: FakeLxd, spec_data: dict[str, Any]) -> None:
    r = reconciler(fake)
    spec = r.load_spec(spec_data)
    r.converge(spec)
    del fake.instances["dl-fx-srv-01-01"]
    fake.instances["dl-fx-leaf-01"]["status"] = "Stopped"
    actions = r.plan(spec, r.observe(fake, spec))
    planned = [(a.verb, a.target) for a in actions]
    assert planned == [("start", "dl-fx-leaf-01"), ("create", "dl-fx-srv-01-01")]
    r.converge(spec)
    assert fake.instances["dl-fx-srv-01-01"]["status"] == "Running"


def test_destroy_removes_only_the_labs_objects(fake: FakeLxd, spec_data: dict[str, Any]) -> None:
    r = reconciler(fake)
    spec = r.load_spec(spec_data)
    r.converge(spec)
    fake.add_instance("someone-elses", config={"user.distrilab.lab": "other"})
    fake.add_instance("dl-fx-unlabelled")  # right name, no label: not ours
    r.converge(r.empty_spec(spec))
    assert sorted(fake.instances) == ["dl-fx-unlabelled", "someone-elses"]
    assert fake.networks == {}


def test_destroy_stops_every_running_node_then_deletes_them(fake: FakeLxd, spec_data: dict[str, Any]) -> None:
    r = reconciler(fake)
    spec = r.load_spec(spec_data)
    r.converge(spec)
    fake.instances["dl-fx-leaf-01"]["status"] = "Stopped"  # a stopped node needs no stop
    fake.calls.clear()
    r.converge(r.empty_spec(spec))
    changes = [(method, path.split("/")[2]) for method, path in fake.calls
               if method in ("PUT", "DELETE") and path.startswith("/instances/")]
    stopped = [name for method, name in changes if method == "PUT"]
    assert sorted(stopped) == sorted(n.instance for n in spec.nodes if n.name != "leaf-01")
    # every stop first (on their own wider pool), then one delete per node and template
    deleted = [name for _, name in changes[len(stopped):]]
    assert [method for method, _ in changes] == ["PUT"] * len(stopped) + ["DELETE"] * len(deleted)
    templates = ["dl-fx--tpl-server", "dl-fx--tpl-switch"]
    assert sorted(deleted) == sorted([n.instance for n in spec.nodes] + templates)
    assert fake.instances == {} and fake.networks == {}


def test_a_failed_stop_is_reported_its_delete_skipped_and_a_rerun_finishes(
    fake: FakeLxd, spec_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = reconciler(fake)
    spec = r.load_spec(spec_data)
    r.converge(spec)
    set_state = fake._set_state

    def stuck(inst: dict[str, Any], action: str) -> Any:
        if inst["name"] == "dl-fx-srv-01-02" and action == "stop":
            return fake._operation(err="Failed to stop: the monitor did not answer")
        return set_state(inst, action)

    monkeypatch.setattr(fake, "_set_state", stuck)
    with pytest.raises(ReconcileError) as err:
        r.converge(r.empty_spec(spec))
    assert err.value.failures == [
        ("delete dl-fx-srv-01-02 (no longer in the lab)",
         "its stop failed: Failed to stop: the monitor did not answer"),
        # still attached to the node that is left
        ("delete-network dlm-fx (no longer in the lab)", "The network is currently in use"),
    ]
    assert sorted(fake.instances) == ["dl-fx-srv-01-02"]
    monkeypatch.setattr(fake, "_set_state", set_state)  # the cause is gone: the next run finishes
    assert r.converge(r.empty_spec(spec)) == 2  # its delete (a stop, then the delete), delete-network
    assert fake.instances == {} and fake.networks == {}


def test_a_template_whose_init_ended_before_its_stop_is_ready(
    fake: FakeLxd, spec_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_state = fake._set_state

    def ended(inst: dict[str, Any], action: str) -> Any:
        if "--tpl-" in inst["name"] and action == "stop":
            inst["status"] = "Stopped"  # it stopped by itself: the stop finds nothing running
            return fake._operation(err="container is not running")
        return set_state(inst, action)

    monkeypatch.setattr(fake, "_set_state", ended)
    r = reconciler(fake)
    r.converge(r.load_spec(spec_data))
    templates = {n: i for n, i in fake.instances.items() if "--tpl-" in n}
    assert templates and all(i["config"].get(nodes.TEMPLATE_READY_KEY) == "true" for i in templates.values())


def test_container_that_dies_after_start_fails_the_apply(fake: FakeLxd, spec_data: dict[str, Any]) -> None:
    r = reconciler(fake)
    fake.die_on_start.add("dl-fx-srv-01-02")
    with pytest.raises(ReconcileError) as err:
        r.converge(r.load_spec(spec_data))
    assert [f[0] for f in err.value.failures] == ["create dl-fx-srv-01-02 (missing)"]
    assert "Stopped right after start" in err.value.failures[0][1]


def test_a_create_the_cluster_database_times_out_is_sent_again(
    fake: FakeLxd, spec_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "TRANSIENT_RETRY_DELAYS", (0.0, 0.0))
    r = reconciler(fake)
    fake.busy_creates["dl-fx-srv-01-02"] = 2  # answered on the third try
    r.converge(r.load_spec(spec_data))
    assert fake.instances["dl-fx-srv-01-02"]["status"] == "Running"

    fake.instances.pop("dl-fx-srv-01-02")
    fake.busy_creates["dl-fx-srv-01-02"] = 3  # busy every time: the database's error is reported
    with pytest.raises(ReconcileError) as err:
        r.converge(r.load_spec(spec_data))
    assert "Failed to begin transaction" in err.value.failures[0][1]


def test_long_lab_names_get_a_hashed_management_bridge() -> None:
    from cdk.names import management_network

    assert management_network("short") == "dlm-short"
    long_name = management_network("a-very-long-lab-name")
    assert len(long_name) <= 15 and long_name.startswith("dlm-")
    assert long_name == management_network("a-very-long-lab-name")


def test_failed_template_skips_the_nodes_that_need_it(fake: FakeLxd, spec_data: dict[str, Any]) -> None:
    r = reconciler(fake)
    fake.aliases["dl-fx-switch"] = "c" * 64
    spec = r.load_spec(spec_data)
    observed = r.observe(fake, spec)
    actions = r.plan(spec, observed)
    fake.aliases = {"dl-fx-server": FINGERPRINT}  # the switch image vanished after the plan
    failures = r.execute(fake, spec, actions)
    assert any("Image not found" in err for _, err in failures)
    assert all(fake.instances[n]["status"] == "Stopped" for n in fake.instances if "--tpl-" in n)
    # the switches need the template that failed: skipped, naming it; the servers' came up
    switches = [n for n in spec.nodes if n.image == "dl-fx-switch"]
    skipped = [err for _, err in failures if err.startswith("skipped: needs dl-fx--tpl-switch")]
    assert switches and len(skipped) == len(switches)
    created = {n for n in fake.instances if "--tpl-" not in n}
    assert created == {n.instance for n in spec.nodes if n.image == "dl-fx-server"}


def test_a_start_that_fails_once_is_tried_again_and_twice_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modules import lxd_rest, nodes

    monkeypatch.setattr(nodes, "START_RETRY_DELAY", 0)
    tries: list[str] = []
    fail_times = {"n": 1}

    def set_state(client: object, name: str, action: str) -> None:
        tries.append(action)
        if len(tries) <= fail_times["n"]:
            raise lxd_rest.LxdCallError(f"Failed to run: /usr/bin/lxd forkstart {name} (try {len(tries)})")

    monkeypatch.setattr(lxd_rest, "set_state", set_state)
    monkeypatch.setattr(lxd_rest, "status", lambda client, name: "Running" if len(tries) > fail_times["n"]
                        else "Stopped")
    nodes.start_and_verify(None, "dl-x-srv-1")
    assert tries == ["start", "start"]
    tries.clear()
    fail_times["n"] = 2
    with pytest.raises(lxd_rest.LxdCallError, match=r"forkstart dl-x-srv-1 \(try 1\)"):
        nodes.start_and_verify(None, "dl-x-srv-1")


def test_a_template_whose_creation_was_interrupted_is_made_again() -> None:
    # its host went away while the image unpacked: copies of it failed ("Failed to handle idmapped
    # storage: ... rootfs") until it was recreated
    from modules import nodes

    spec = nodes.Spec(lab="t", host="h1", max_workers=1, workers_limit=None, pool="p", privileged=False,
                      network="n", gateway="10.0.0.1/24", nodes=())
    done = {"config": {nodes.IMAGE_KEY: "abc", nodes.TEMPLATE_READY_KEY: "true"}}
    assert nodes._template_drift(spec, done, "abc") is None
    interrupted = {"config": {nodes.IMAGE_KEY: "abc"}}
    assert nodes._template_drift(spec, interrupted, "abc") == "unfinished: its creation was interrupted"
