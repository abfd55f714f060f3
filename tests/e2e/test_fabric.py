"""End to end on the real LXD daemon: a small Clos (2 spines, 2 leaves, 2 servers per leaf).

Through the images, nodes, links and fabric reconcilers (the same specs terraform passes them):
deploy, then `modules.check` (RSTP converged, every server pings every other, TCP across racks);
a second apply changes nothing; a node deleted behind distrilab's back is repaired; editing the
lab (a third leaf, then one server per leaf) changes only the difference; destroy leaves nothing
of the lab on the host, while a container the lab did not create survives.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import deploy
from bench.labs import free_pools, leaf_spine
from cdk.model import Lab
from cdk.stages import STAGES
from modules import lxd_rest as rest
from modules.check import run_checks
from modules.node_shell import NodeShell
from tests.e2e.conftest import cli_lab, lab_leftovers, leaf_spine_file, report
from tests.json_schema import valid_document

pytestmark = pytest.mark.e2e

HOST_STAGES = ("nodes", "links", "fabric")
REPO = Path(__file__).resolve().parents[2]


def planned(lab: Lab) -> dict[str, list[tuple[str, str]]]:
    """What each host stage would do now: {stage: [(verb, target), ...]} (reads only)."""
    result = {}
    for stage in HOST_STAGES:
        r = deploy.reconciler_of(stage)
        spec = r.load_spec(next(s for s in STAGES if s.name == stage).build(lab, lab.hosts[0]))
        result[stage] = sorted((a.verb, a.target) for a in r.plan(spec, r.observe(r.connect(spec), spec)))
    return result


def fabric_nodes_changed(old: Lab, new: Lab) -> set[str]:
    """Instances whose fabric spec differs between two versions of a lab (what fabric may touch)."""
    def specs(lab: Lab) -> dict[str, Any]:
        data = next(s for s in STAGES if s.name == "fabric").build(lab, lab.hosts[0]) or {"nodes": []}
        return {n["instance"]: n for n in data["nodes"]}

    before, after = specs(old), specs(new)
    return {name for name, spec in after.items() if before.get(name) != spec}


def assert_healthy(lab: Lab) -> None:
    report = run_checks(lab, rstp_timeout=60)
    assert report.ok, report.to_dict()


def test_clos_lifecycle(lab_name: str) -> None:
    pools = free_pools(lab_name)
    lab = leaf_spine(lab_name, 2, 2, 2, pools=pools)
    client = rest.connect(None)
    foreign = f"dl-{lab_name}-foreign"
    try:
        deploy.apply(lab)
        assert_healthy(lab)
        report = run_checks(lab, full=True)  # every ordered pair of the 4 servers
        assert {c.name for c in report.checks} == {"rstp", "ping", "tcp"}
        assert "12/12" in next(c.summary for c in report.checks if c.name == "ping")

        # nsenter (the local way into a node) sees what LXD exec sees: root, files, network
        server = lab.instance_name("srv-01-01")
        script = "id -u; hostname; ip -o -4 addr show dev eth1 | wc -l; echo oops >&2; exit 3"
        shell = NodeShell(client, local=True)
        assert shell.init_pid(server) is not None
        direct, via_lxd = shell.sh(server, script), rest.sh(client, server, script)
        assert (direct.returncode, direct.stdout, direct.stderr) == (3, f"0\n{server}\n1\n", "oops\n")
        assert (via_lxd.returncode, via_lxd.stdout, via_lxd.stderr) == (3, f"0\n{server}\n1\n", "oops\n")

        # converged: a second apply has nothing to do
        assert planned(lab) == {stage: [] for stage in HOST_STAGES}

        # a node deleted behind our back is recreated, cabled and configured again, alone
        victim = lab.instance_name("srv-02-01")
        subprocess.run(["lxc", "delete", "--force", victim], check=True)
        plan = planned(lab)
        assert plan["nodes"] == [("create", victim)]
        assert plan["links"] == [("create-end", "srv-02-01:eth1")]
        deploy.apply(lab, ("nodes", "links"))
        # the host sees the new copy has no boot script: fabric observes nothing more in it
        fabric = deploy.reconciler_of("fabric")
        spec = fabric.load_spec(next(s for s in STAGES if s.name == "fabric").build(lab, lab.hosts[0]))
        seen = fabric.observe(fabric.connect(spec), spec)["nodes"]
        assert seen[victim] == {"status": "Running", "unconfigured": True}
        assert all("script" in seen[n.instance] for n in spec.nodes if n.instance != victim)
        deploy.apply(lab, ("fabric",))
        assert_healthy(lab)

        # a container in the lab's namespace that the lab did not create
        body = {"name": foreign, "source": {"type": "image", "alias": f"dl-{lab_name}-server"},
                "devices": {"root": {"type": "disk", "path": "/", "pool": "distrilab"}}}
        rest.wait_operation(client, client.api.instances.post(json=body))

        # edit: a third leaf with its servers -> only the new nodes and links appear
        bigger = leaf_spine(lab_name, 2, 3, 2, pools=pools)
        plan = planned(bigger)
        new_nodes = {bigger.instance_name(n) for n in ("leaf-03", "srv-03-01", "srv-03-02")}
        assert plan["nodes"] == sorted(("create", n) for n in new_nodes)
        new_links = {link.id for link in bigger.topology.links} - {link.id for link in lab.topology.links}
        links_spec = next(s for s in STAGES if s.name == "links").build(bigger, bigger.hosts[0]) or {}
        new_bridges = {b["bridge"] for b in links_spec["links"] if b["id"] in new_links}
        assert {t for v, t in plan["links"] if v == "create-bridge"} == new_bridges
        assert all(v in ("create-bridge", "create-end") for v, _ in plan["links"])
        deploy.apply(bigger, HOST_STAGES)
        # fabric configured exactly the nodes whose desired configuration changed
        assert planned(bigger) == {stage: [] for stage in HOST_STAGES}
        assert fabric_nodes_changed(lab, bigger) >= new_nodes

        # edit: one server per leaf -> the second servers and their links go, nothing else
        smaller = leaf_spine(lab_name, 2, 3, 1, pools=pools)
        plan = planned(smaller)
        gone = {smaller.instance_name(f"srv-0{i}-02") for i in (1, 2, 3)}
        assert plan["nodes"] == sorted(("delete", n) for n in gone)
        assert {v for v, _ in plan["links"]} == {"delete"} and len(plan["links"]) == 3 * 3  # bridge + 2 ends
        deploy.apply(smaller, HOST_STAGES)
        assert_healthy(smaller)
        lab = smaller
    finally:
        deploy.destroy(lab)
        leftovers = lab_leftovers(lab_name)
        survived = _exists(client, foreign)
        if survived:
            rest.delete_instance(client, foreign, running=False)
    assert leftovers == {}
    assert survived


def _exists(client: Any, name: str) -> bool:
    try:
        client.api.instances[name].get()
    except rest.NotFound:
        return False
    return True


def test_distrilab_up_check_down(lab_name: str, tmp_path: Path) -> None:
    """The same through the CLI and terraform: `up` (which runs `check`), `check --json`, `up` again
    (no changes), repair of a node deleted by hand (plan shows the drift), `down`."""
    lab_file = leaf_spine_file(tmp_path, lab_name, 1, 2, 1)

    with cli_lab(lab_name, lab_file) as distrilab:
        up = distrilab("up")
        assert up.returncode == 0, report(up)
        check = distrilab("check", "--json")
        assert check.returncode == 0, report(check)
        checked = valid_document(check.stdout, "distrilab-check")
        assert checked["ok"] and {c["name"] for c in checked["checks"]} == {"rstp", "ping", "tcp"}
        # a second up changes nothing, and says so
        again = distrilab("up", "--no-check")
        assert again.returncode == 0 and "no changes" in again.stdout, again.stdout[-3000:]
        # a node deleted behind terraform's back: plan shows the drift, up repairs only that
        client = rest.connect(None)
        rest.delete_instance(client, f"dl-{lab_name}-srv-02-01", running=True)
        plan = distrilab("plan", "--json")
        assert plan.returncode == 0 and "drift nodes@local" in plan.stderr, plan.stderr[-3000:]
        planned = valid_document(plan.stdout, "distrilab-plan")  # stdout: the JSON document only
        drifted = [(d["stage"], d["host"]) for d in planned["drift"]]
        # the node, and with it its links' veths and its switch config: drift in those stages only
        assert planned["changed"] and ("nodes", "local") in drifted
        assert {stage for stage, _ in drifted} <= {"nodes", "links", "fabric"}, drifted
        repaired = distrilab("up")
        assert repaired.returncode == 0, report(repaired)
        assert _exists(client, f"dl-{lab_name}-srv-02-01")  # and `up` ran `check` on it: all green
