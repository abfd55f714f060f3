"""Many hosts for real: three fresh testbed machines (modules/testbed.py) as `kind: ssh` hosts.

`up` bootstraps them over ssh (LXD installed from the same list as .ci/setup), forms one LXD
cluster, places a 3-tier Clos lab across it, links cross-host ends with VXLAN over the testbed
bridge, and checks ping and TCP between servers on different hosts. A node and a tunnel deleted
by hand on remote hosts are repaired by the next `up`; `down` leaves every host clean. Runs
twice: the default `partition` placement, then `round-robin` (many cross-host links).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modules import testbed
from stacks import cli
from stacks.paths import Paths
from stacks.terraform import Terraform

TOPOLOGY = {"kind": "clos", "pods": 2, "cores": 2, "aggregations_per_pod": 2, "edges_per_pod": 2,
            "servers_per_edge": 2}


@pytest.fixture(scope="module")
def bed() -> Iterator[testbed.Testbed]:
    made = testbed.create(3)
    try:
        yield made
    finally:
        testbed.destroy(made)


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # the lab's keys, known_hosts and certificates stay inside the test's folder
    monkeypatch.setenv("DISTRILAB_SECRETS", str(tmp_path / "secrets"))
    return tmp_path / "secrets"


def write_lab(bed: testbed.Testbed, folder: Path, strategy: str) -> tuple[str, Path]:
    name = f"mh{secrets.token_hex(3)}"
    lab = {
        "name": name,
        "hosts": testbed.ssh_hosts(bed),
        "topology": TOPOLOGY,
        "placement": {"strategy": strategy},
        "resources": {"defaults": {"memory": "128MiB"}},
        # distinct pools per run: the testbed hosts keep nothing between labs, but be explicit
        "addressing": {"management": "10.230.0.0/16"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return name, path


LOGS = Path(os.environ.get("DISTRILAB_TEST_LOGS", "/tmp/distrilab-test-logs"))


def distrilab(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI; its output goes to a log file (named in any failure) and is returned."""
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"multi-host-{argv[0]}-{Path(argv[-1]).stem}-{time.strftime('%H%M%S')}.log"
    log.write_text(captured.out + captured.err)
    tail = "\n".join((captured.out + captured.err).splitlines()[-30:])
    return rc, f"{captured.out}{captured.err}\n(log {log})\n{tail}"


def assert_torn_down(bed: testbed.Testbed, name: str, down: tuple[int, str]) -> None:
    """`down` succeeded and left no instance of the lab and no lab interface on any host."""
    assert down[0] == 0, down[1][-4000:]
    assert instances(bed, name) == {}
    for index in range(len(bed.machines)):
        assert lab_interfaces(bed, index, name) == [], f"h{index + 1} keeps interfaces"


def on(bed: testbed.Testbed, index: int, script: str) -> subprocess.CompletedProcess[str]:
    return testbed.run(bed.machine(index), script, timeout=300)


def instances(bed: testbed.Testbed, lab: str) -> dict[str, str]:
    """instance -> cluster member, as the cluster reports it."""
    out = on(bed, 0, "lxc list --format json").stdout
    return {i["name"]: i["location"] for i in json.loads(out or "[]")
            if i.get("config", {}).get("user.distrilab.lab") == lab}


def lab_interfaces(bed: testbed.Testbed, index: int, lab: str) -> list[str]:
    out = on(bed, index, "ip -o link show").stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if f"alias distrilab:{lab}:" in line]


@pytest.mark.e2e
@pytest.mark.parametrize("strategy", ["partition", "round-robin"])
def test_a_clos_lab_across_three_ssh_hosts(
    bed: testbed.Testbed, strategy: str, tmp_path: Path, secrets_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, lab_file = write_lab(bed, tmp_path, strategy)
    started = time.monotonic()
    try:
        rc, out = distrilab(capsys, "up", str(lab_file))
        up_seconds = time.monotonic() - started
        assert rc == 0 and f"lab {name}: healthy" in out, out[-4000:]

        placed = instances(bed, name)
        members = set(placed.values())
        assert members == {"h1", "h2", "h3"}, placed
        if strategy == "round-robin":  # switches and servers on every host
            for host in ("h1", "h2", "h3"):
                roles = {n.split("-")[2] for n, h in placed.items() if h == host and "--tpl-" not in n}
                assert roles & {"core", "agg", "edge"} and "srv" in roles, (host, roles)
        assert_no_secret_in_clear(name, out)
        tunnels = [i for i in lab_interfaces(bed, 1, name) if "x" in i[6:7]]
        assert tunnels, "no VXLAN tunnel on h2"

        # drift on remote hosts: a node deleted on h2, a tunnel deleted on h3
        victim = next(n for n, h in placed.items() if h == "h2" and "-srv-" in n)
        assert on(bed, 1, f"lxc delete --force {victim}").returncode == 0
        tunnel = next(i for i in lab_interfaces(bed, 2, name) if i[6] == "x")
        assert on(bed, 2, f"ip link del {tunnel}").returncode == 0
        rc, plan_out = distrilab(capsys, "plan", str(lab_file))
        assert rc == 0 and "drift" in plan_out and "nodes@h2" in plan_out and "links@h3" in plan_out, plan_out
        rc, out = distrilab(capsys, "up", str(lab_file))
        assert rc == 0 and f"lab {name}: healthy" in out, out[-4000:]
        assert victim in instances(bed, name) and tunnel in lab_interfaces(bed, 2, name)
        print(f"multi-host {strategy}: up {up_seconds:.0f} s for {len(placed)} instances")

        # what a stage that failed on h3 leaves: tainted resources, whose destroy provisioners
        # terraform skips; the sweep must still remove h3's nodes and links before the cluster goes
        for stage in ("nodes", "links"):
            Terraform(Paths.for_repo().workdir(name)).taint(f"terraform_data.{stage}_h3")
    finally:
        down = distrilab(capsys, "down", str(lab_file))
    assert_torn_down(bed, name, down)
    assert_cluster_gone(bed, name)


#: what a private key or a certificate looks like in clear
PEM = re.compile(r"-----BEGIN [A-Z ]+-----|PRIVATE KEY")
#: base64 JSON (LXD's join token is one, with a "secret" field)
BASE64_JSON = re.compile(r"eyJ[A-Za-z0-9+/]{20,}={0,2}")


def secret_in(text: str) -> str | None:
    if match := PEM.search(text):
        return match.group(0)
    for candidate in BASE64_JSON.findall(text):
        try:
            decoded = base64.b64decode(candidate + "=" * (-len(candidate) % 4)).decode(errors="replace")
        except ValueError:
            continue
        if '"secret"' in decoded:
            return f"a join token ({candidate[:12]}...)"
    return None


def assert_no_secret_in_clear(name: str, output: str) -> None:
    """The lab's state, specs, terraform files, logs and output hold paths and fingerprints only:
    no key, certificate or cluster join token."""
    paths = Paths.for_repo()
    files = [paths.state_file(name), cli.DEBUG_LOG, *LOGS.glob(f"multi-host-*-{name}-*.log")]
    for folder in (paths.specs_dir / name, paths.state_dir / name, paths.workdir(name)):
        files += [f for f in folder.rglob("*") if f.is_file() and ".terraform" not in f.parts]
    texts = {str(f): f.read_text(errors="replace") for f in files if f.is_file()} | {"up's output": output}
    found = {where: why for where, text in texts.items() if (why := secret_in(text))}
    assert found == {}, found
    assert texts[str(paths.state_file(name))], "the lab's state file is empty: nothing was checked"


def assert_cluster_gone(bed: testbed.Testbed, name: str) -> None:
    """The lab formed the cluster on hosts that held nothing: its members left, the first host
    dissolved it, and no host keeps the lab's certificate, its claim or LXD's cluster database."""
    for index in range(len(bed.machines)):
        left = on(bed, index, "lxc query /1.0/certificates?recursion=1 2>/dev/null; "
                  "lxc query /1.0 2>/dev/null | grep '\"server_clustered\": true'; "
                  "ls /var/lib/distrilab/cluster-formed-by /var/lib/lxd/database/global 2>/dev/null").stdout
        assert f"distrilab-{name}" not in left and "server_clustered" not in left, (index, left)
        assert "cluster-formed-by" not in left and "database" not in left, (index, left)


@pytest.mark.e2e
def test_bad_hosts_are_refused_before_anything_is_created(
    bed: testbed.Testbed, tmp_path: Path, secrets_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    name, lab_file = write_lab(bed, tmp_path, "round-robin")
    lab = yaml.safe_load(lab_file.read_text())

    def refused(edit: dict[str, object], index: int = 1, code: int = 2) -> str:
        broken = json.loads(json.dumps(lab))
        broken["hosts"][index].update(edit)
        lab_file.write_text(yaml.safe_dump(broken, sort_keys=False))
        assert cli.main(["up", str(lab_file)]) == code
        err = capsys.readouterr().err
        assert instances(bed, name) == {}, err
        assert "error:" in err, err
        return err

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    unused = str(bed.gateway.network[250])  # on the underlay, but no machine there
    # bad hosts are bad input (exit 2), reported before anything is created
    assert f"unreachable: no ssh answer at {unused}" in refused({"address": unused})
    assert "nothing was created" in refused({"ssh_key": str(stranger)})
    assert "ssh login as root@" in refused({"ssh_key": str(stranger)})
    # capacities the lab gives are kept at design time (one read from the host: unit-tested)
    small = json.loads(json.dumps(lab))
    for host in small["hosts"]:
        host["capacity"] = 2  # 6 places for 18 nodes
    lab_file.write_text(yaml.safe_dump(small, sort_keys=False))
    assert cli.main(["up", str(lab_file)]) == 2
    assert "capacity" in capsys.readouterr().err and instances(bed, name) == {}

    # a machine "reinstalled" under the same address: new host keys
    lab_file.write_text(yaml.safe_dump(lab, sort_keys=False))
    from modules.host_preflight import preflight
    from stacks.loading import load

    preflight(load(lab_file))  # first contact: keys recorded
    h2 = bed.machine(1)
    on(bed, 1, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && sv restart sshd >/dev/null")
    err = refused({})
    assert "host key CHANGED" in err, err
    new_key = re.search(r"host_key: (SHA256:\S+)", err)
    assert new_key, err
    lab["hosts"][1]["host_key"] = new_key.group(1)  # the user pins the new key: accepted
    lab_file.write_text(yaml.safe_dump(lab, sort_keys=False))
    preflight(load(lab_file))
    assert h2.address


@pytest.mark.e2e
def test_a_host_that_disappears_mid_apply_is_completed_after_it_returns(
    bed: testbed.Testbed, tmp_path: Path, secrets_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    name, lab_file = write_lab(bed, tmp_path, "round-robin")
    h3 = bed.machine(2)
    outcome: dict[str, int] = {}
    apply = threading.Thread(target=lambda: outcome.update(rc=cli.main(["up", "--no-check", str(lab_file)])))
    try:
        apply.start()
        deadline = time.monotonic() + 900
        while not instances(bed, name) and time.monotonic() < deadline and apply.is_alive():
            time.sleep(1)  # nodes being created: the cluster is formed, h3 is a member
        testbed.lxc("stop", "--force", h3.name)  # the machine goes away mid-apply
        apply.join(1800)
        assert outcome.get("rc") not in (None, 0), "up went on as if h3 were there"

        testbed.lxc("start", h3.name)  # it comes back: LXD not running, its cgroups unmounted
        testbed.wait_ssh(bed, h3)
        capsys.readouterr()
        rc, out = distrilab(capsys, "up", str(lab_file))
        assert rc == 0 and f"lab {name}: healthy" in out, out[-4000:]
        assert "h3" in set(instances(bed, name).values())
    finally:
        down = distrilab(capsys, "down", str(lab_file))
    assert_torn_down(bed, name, down)
    assert_cluster_gone(bed, name)
