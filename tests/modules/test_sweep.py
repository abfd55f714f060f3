"""modules/sweep.py: plan() is pure; what it deletes, in which order, and what it leaves alone."""

from __future__ import annotations

import subprocess

import pytest

from cdk.errors import DistrilabError
from cdk.sweep import HOST_ADDRESSES_ENV
from modules.sweep import (
    PHASE_IMAGES,
    PHASE_INSTANCES,
    PHASE_LINKS,
    PHASE_NETWORKS,
    PHASE_PROFILES,
    Observed,
    Sweep,
    SweepSpec,
    labelled,
)

SPEC = SweepSpec("lab1", sweeping=True)


def test_nothing_labelled_plans_nothing() -> None:
    assert Sweep().plan(SPEC, Observed()) == []


def test_everything_labelled_goes_in_dependency_order() -> None:
    observed = Observed(
        instances={"dl-lab1-a": "Running", "dl-lab1-b": "Stopped"},
        profiles=("dl-lab1-p",),
        networks=("dlm-lab1",),
        host_links={"h2": ("dl1veth",), "h1": ("dl1x",)},
    )
    actions = Sweep().plan(SPEC, observed)
    assert [(a.phase, a.target) for a in actions] == [
        (PHASE_INSTANCES, "instance dl-lab1-a"),
        (PHASE_INSTANCES, "instance dl-lab1-b"),
        (PHASE_LINKS, "link dl1x"),
        (PHASE_LINKS, "link dl1veth"),
        (PHASE_PROFILES, "profile dl-lab1-p"),
        (PHASE_NETWORKS, "network dlm-lab1"),
    ]
    assert actions[0].data == {"status": "Running"}
    assert actions[3].data == {"host": "h2"} and "on h2" in str(actions[3])  # deleted through h2's shell
    assert PHASE_INSTANCES < PHASE_LINKS < PHASE_PROFILES < PHASE_NETWORKS < PHASE_IMAGES


def test_image_goes_with_its_last_alias_shared_image_keeps_others() -> None:
    observed = Observed(
        aliases={"dl-lab1-server": "f1", "dl-lab1-switch": "f1", "dl-lab1-aca": "f2"},
        image_aliases={"f1": ("dl-lab1-server", "dl-lab1-switch"), "f2": ("dl-lab1-aca", "dl-other-aca")},
    )
    actions = Sweep().plan(SPEC, observed)
    assert [(a.target, a.data) for a in actions] == [
        ("image f1 (dl-lab1-server, dl-lab1-switch)", {"fingerprint": "f1"}),
        ("alias dl-lab1-aca", {}),
    ]


def test_only_the_exact_label_counts() -> None:
    assert labelled({"config": {"user.distrilab.lab": "lab1"}}, "lab1")
    assert not labelled({"config": {"user.distrilab.lab": "lab1-x"}}, "lab1")
    assert not labelled({"config": {}}, "lab1")
    assert not labelled({}, "lab1")


@pytest.mark.parametrize("bad", ["", "Lab", "1lab", "a" * 21, "lab_1", None])
def test_bad_lab_names_are_refused(bad: object) -> None:
    with pytest.raises(DistrilabError, match="lab: must match"):
        Sweep().load_spec({"lab": bad})


def test_command_line_refuses_a_bad_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert Sweep().main(["destroy", "--lab", "BAD"]) == 2
    assert "must match" in capsys.readouterr().err


def test_apply_reads_nothing_and_changes_nothing() -> None:
    sweep = Sweep()
    spec = sweep.load_spec({"lab": "lab1"})
    assert not spec.sweeping and sweep.connect(spec) is None
    assert sweep.observe(None, spec) == Observed()
    assert sweep.empty_spec(spec).sweeping  # only destroy sweeps


def test_hosts_whose_address_comes_at_apply_get_it_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(HOST_ADDRESSES_ENV, '{"aws-1": "203.0.113.7"}')
    spec = Sweep().load_spec({
        "lab": "lab1",
        "cluster": {"name": "aws-1", "kind": "aws", "address": None, "lab": "lab1"},
        "hosts": [{"name": "aws-1", "kind": "aws", "address": None, "lab": "lab1"},
                  {"name": "h2", "kind": "ssh", "address": "10.0.0.2", "lab": "lab1"}],
    })
    assert spec.cluster["address"] == "203.0.113.7"
    assert [h["address"] for h in spec.hosts] == ["203.0.113.7", "10.0.0.2"]


class GoneShell:
    """A host where the interface is already gone (a veth deleted with its container's end)."""

    name = "h2"

    def __init__(self, stderr: str) -> None:
        self.stderr = stderr
        self.ran: list[list[str]] = []

    def run(self, cmd: list[str], stdin: str | None = None, check: bool = True,
            timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        self.ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", self.stderr)


def test_a_link_already_gone_is_swept_and_another_failure_is_reported() -> None:
    from modules.host_shell import ShellError
    from modules.sweep import Connections

    action = Sweep().plan(SPEC, Observed(host_links={"h2": ("dl1veth",)}))[0]
    gone = GoneShell('Cannot find device "dl1veth"')
    Sweep().execute_action(Connections(None, {"h2": gone}), SPEC, action)
    assert gone.ran == [["ip", "link", "del", "dl1veth"]]
    with pytest.raises(ShellError, match="Operation not permitted"):
        refused = GoneShell("RTNETLINK answers: Operation not permitted")
        Sweep().execute_action(Connections(None, {"h2": refused}), SPEC, action)
