"""The README's first command, verbatim, on a fresh Debian 12 machine: a testbed container built
here with debootstrap (no LXD, kmod, dnsmasq, python3 or node; TF_CLI_CONFIG_FILE naming a file
that does not exist, as on this machine kind), given a clean copy of the repository.

Shared with the machine, read-only or as copies: the package sources this machine kind is set up
with (pip's local mirror and config) and the built `server`/`switch` image layers (their packed
tarballs). Apt packages, the venv, node_modules, terraform and the LXD daemon are the machine's own.

DISTRILAB_FRESH_DROP_PACKAGE=<pkg> makes the copy's installer leave one package out (to show
the failure that names the missing program and its package).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules import testbed

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = "/root/distrilab"
LOGS = Path(os.environ.get("DISTRILAB_TEST_LOGS", "/tmp/distrilab-test-logs"))


def readme_first_command() -> str:
    """The command under '# 1.' in the README's first sh block, as a user would paste it."""
    block = re.search(r"```sh\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    assert block, "README has no sh block"
    lines = block.group(1).splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith("# 1."))
    return lines[marker + 1].strip()


@pytest.fixture(scope="module")
def machine() -> Iterator[testbed.Machine]:
    disks, config = testbed.package_sources()
    bed = testbed.create(1, disks=disks)
    try:
        host = bed.machine(0)
        testbed.push_tree(host, config, "/")
        testbed.push_tree(host, testbed.repository_files(REPO_ROOT), CHECKOUT)
        testbed.seed_image_cache(host, ["server", "switch"])
        yield host
    finally:
        testbed.destroy(bed)


def test_readme_first_command_on_a_fresh_machine(machine: testbed.Machine) -> None:
    # the machine really is fresh: what the installer must bring is absent
    for program in ("modprobe", "dnsmasq", "lxd", "python3", "node", "terraform"):
        probe = testbed.run(machine, f"command -v {program}")
        assert probe.returncode != 0, f"{program} is already on the fresh machine: {probe.stdout}"
    assert testbed.run(machine, "test -e /root/.terraformrc").returncode != 0

    drop = os.environ.get("DISTRILAB_FRESH_DROP_PACKAGE")
    if drop:
        # the installer without one package: after its package list is read, filter it out
        testbed.run(machine, f"sed -i '/^mapfile -t missing/a missing=($(printf \"%s\\\\n\" "
                             f"\"${{missing[@]}}\" | grep -vx {drop}))' {CHECKOUT}/.ci/setup")

    command = readme_first_command()
    LOGS.mkdir(parents=True, exist_ok=True)
    log_file = LOGS / f"fresh-machine-{machine.name}.log"
    started = time.monotonic()
    result = testbed.run(
        machine,
        f"cd {CHECKOUT} && {command}",
        env={"CI": "true", "TF_CLI_CONFIG_FILE": "/root/.terraformrc"},
        timeout=2400,
        log_file=log_file,
    )
    seconds = time.monotonic() - started
    print(f"fresh machine: '{command}' exited {result.returncode} in {seconds:.0f} s (log {log_file})")
    tail = "\n".join(result.stdout.splitlines()[-40:])
    assert result.returncode == 0, f"README command 1 failed on a fresh machine:\n{tail}"
    assert "lab default: healthy" in result.stdout, tail

    # what the check does not show: the list's programs are all there, and down cleans up
    doctor = testbed.run(machine, f"cd {CHECKOUT} && .venv/bin/distrilab doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    down = testbed.run(machine, f"cd {CHECKOUT} && .venv/bin/distrilab down labs/default.yaml", timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    left = testbed.run(machine, "lxc list --format csv -c n")
    assert left.stdout.strip() == "", f"down left containers: {left.stdout}"
