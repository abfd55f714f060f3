"""The service stand-in (tests/doubles/alcor_standin, a TEST DOUBLE) refuses to start where
Alcor's services would (IgniteConfiguration.java at futurewei-cloud/alcor 21f11b5, cited in
StandIn.java): an `ignite.host` other than the literal localhost, and no `ignite.port`."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import skip_unless_ci
from tests.doubles.alcor_standin import build_jar


@pytest.fixture(scope="module")
def jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("javac") or not shutil.which("java"):
        skip_unless_ci("no JDK: bash .ci/setup installs it (cdk/programs.py)")
    built = build_jar(tmp_path_factory.mktemp("standin"))
    service = built.with_name("vpcmanager-standin.jar")  # installed under a service's jar name
    shutil.copy(built, service)
    return service


def start(jar: Path, *props: str, wait: float = 30) -> subprocess.CompletedProcess[str]:
    # spring.config.location replaces the jar's own application.properties: only what is given counts
    argv = ["java", "-jar", str(jar), "--spring.config.location=/nonexistent", *props,
            "--standin.ignite.wait=3"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=wait)


@pytest.fixture
def ignite_port() -> Iterator[int]:
    """Something answering TCP on loopback where the services expect Ignite's thin client port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_an_ignite_host_other_than_localhost_is_refused(jar: Path, ignite_port: int) -> None:
    done = start(jar, "--ignite.host=127.0.0.1", f"--ignite.port={ignite_port}", "--server.port=0")
    assert done.returncode == 1
    assert "ignite.host is '127.0.0.1', not 'localhost'); IgniteClient is null" in done.stderr


def test_a_missing_ignite_port_is_refused(jar: Path) -> None:
    done = start(jar, "--ignite.host=localhost", "--server.port=0")
    assert done.returncode == 1
    assert "Could not resolve placeholder 'ignite.port'" in done.stderr


def test_localhost_with_ignite_answering_starts(jar: Path, ignite_port: int) -> None:
    argv = ["java", "-jar", str(jar), "--spring.config.location=/nonexistent", "--ignite.host=localhost",
            f"--ignite.port={ignite_port}", "--server.port=0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert f"standin: Ignite answers at localhost:{ignite_port}\n" in lines, lines
        assert lines[-1].startswith("standin: TEST DOUBLE listening"), lines
    finally:
        proc.kill()
        proc.wait(timeout=30)
