"""The host reconciler on aws hosts, at unit level (it needs real instances to run for real):
addresses from the provisioner's environment, sudo, the ready marker, private cluster addresses."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from cdk.aws import READY_MARKER, SSH_USER
from cdk.errors import ReconcileError
from cdk.pipeline import lab_from_dict
from cdk.stages import cluster
from modules.host_shell import LocalShell, SshShell
from modules.lxd_host import (
    BOOTSTRAP_ADDRESS_ENV,
    HOST_ADDRESS_ENV,
    HOST_PRIVATE_ADDRESS_ENV,
    LxdHost,
    Spec,
    SudoShell,
    bootstrap_preseed,
    host_shell,
    join_preseed,
    parse_spec,
    wait_until_ready,
    with_apply_time_addresses,
)

AWS_LAB = Path(__file__).resolve().parents[2] / "labs" / "aws-2hosts.yaml"
ENV = {
    HOST_ADDRESS_ENV: "203.0.113.20",
    HOST_PRIVATE_ADDRESS_ENV: "172.30.0.12",
    BOOTSTRAP_ADDRESS_ENV: "203.0.113.10",
}


def cluster_spec(host_index: int) -> Spec:
    """The cluster-stage spec synth writes for a host of labs/aws-2hosts.yaml (no addresses yet)."""
    lab = lab_from_dict(yaml.safe_load(AWS_LAB.read_text()), str(AWS_LAB), host_routes=())
    data = cluster.build(lab, lab.hosts[host_index])
    assert data is not None
    return parse_spec(data)


class Recorder:
    """A Shell that records commands and answers with the queued exit codes (then 0)."""

    def __init__(self, codes: Sequence[int | Exception] = ()):
        self.name = "rec"
        self.codes = list(codes)
        self.commands: list[list[str]] = []

    def run(
        self, cmd: Sequence[str], stdin: str | None = None, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(cmd))
        code = self.codes.pop(0) if self.codes else 0
        if isinstance(code, Exception):
            raise code
        return subprocess.CompletedProcess(list(cmd), code, "", "")


def test_synth_time_spec_gets_its_addresses_and_login_user_from_the_environment() -> None:
    synthesized = cluster_spec(1)  # aws-2 joins the cluster aws-1 bootstraps
    assert synthesized.endpoint["address"] is None and synthesized.cluster.bootstrap["address"] is None
    assert synthesized.ssh_user is None
    spec = with_apply_time_addresses(synthesized, ENV)
    assert spec.endpoint == {
        "name": "aws-2",
        "kind": "aws",
        "address": "203.0.113.20",
        "private_address": "172.30.0.12",
        "lab": "aws2",  # the lab's credentials reach the host (modules/lab_secrets.py)
    }
    assert spec.cluster.bootstrap == {
        "name": "aws-1", "kind": "aws", "address": "203.0.113.10", "lab": "aws2"}
    assert spec.ssh_user == SSH_USER
    # what the spec already says wins over the environment
    named = with_apply_time_addresses(
        Spec("l", "h", endpoint={"name": "h", "kind": "ssh", "address": "198.51.100.7"}, ssh_user="ops"), ENV
    )
    assert named.endpoint["address"] == "198.51.100.7" and named.ssh_user == "ops"


def test_local_host_spec_is_untouched_without_the_variables() -> None:
    spec = Spec("l", "local", endpoint={"name": "local", "kind": "local", "address": None})
    assert with_apply_time_addresses(spec, {}) == spec


def test_load_spec_reads_the_provisioner_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    lab = lab_from_dict(yaml.safe_load(AWS_LAB.read_text()), str(AWS_LAB), host_routes=())
    spec = LxdHost().load_spec(cluster.build(lab, lab.hosts[0]) or {})
    assert spec.endpoint["address"] == "203.0.113.20" and spec.ssh_user == SSH_USER


def test_cluster_members_talk_over_private_addresses() -> None:
    joining = with_apply_time_addresses(cluster_spec(1), ENV)
    assert join_preseed(joining, "TOKEN", "btrfs")["cluster"]["server_address"] == "172.30.0.12:8443"
    first = with_apply_time_addresses(
        cluster_spec(0), {HOST_ADDRESS_ENV: "203.0.113.10", HOST_PRIVATE_ADDRESS_ENV: "172.30.0.11"}
    )
    assert bootstrap_preseed(first)["config"] == {"core.https_address": "172.30.0.11:8443"}


def test_remote_non_root_users_run_commands_through_sudo() -> None:
    spec = with_apply_time_addresses(cluster_spec(0), ENV)
    shell = host_shell(spec.endpoint, spec.ssh_user)
    assert isinstance(shell, SudoShell) and isinstance(shell.inner, SshShell)
    assert shell.inner.argv(["true"])[-3] == f"{SSH_USER}@203.0.113.20"
    recorder = Recorder()
    SudoShell("rec", recorder).run(["lxc", "query", "/1.0"], check=False)
    assert recorder.commands == [["sudo", "-n", "lxc", "query", "/1.0"]]
    # root over ssh and the local machine run commands as they are
    assert isinstance(host_shell({"name": "h", "kind": "ssh", "address": "198.51.100.7"}, "root"), SshShell)
    assert isinstance(host_shell({"name": "local", "kind": "local"}, None), LocalShell)


def test_waits_for_the_ready_marker_while_ssh_fails_then_returns() -> None:
    shell = Recorder([255, subprocess.TimeoutExpired("ssh", 60), 1, 0])  # refused, hung, not yet, ready
    slept: list[float] = []
    wait_until_ready(shell, timeout=100, poll=5, sleep=slept.append, clock=lambda: 0.0)
    assert shell.commands == [["test", "-f", READY_MARKER]] * 4
    assert slept == [5, 5, 5]


def test_gives_up_on_the_ready_marker_after_the_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ReconcileError, match=r"not there after 30 s") as raised:
        wait_until_ready(Recorder([1] * 100), timeout=30, poll=10, sleep=sleep, clock=lambda: now[0])
    assert "cloud-init-output.log" in str(raised.value)
    assert now[0] == 30
