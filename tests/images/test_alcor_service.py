"""The `alcor-service` and `ignite` images: recipes, the service launcher, the health probe.

The launcher and probe are the image's own shell scripts; here they run on this host against a
stand-in service jar compiled with javac (tests/images/fixtures/alcor-standin), on loopback.
The e2e test runs the same jar inside a launched alcor-service container under runit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cdk.errors import ImageBuildError
from images.builder import ImageBuilder
from images.recipe import RECIPES_DIR, RecipeBook
from tests.ci import skip_unless_ci

SERVICE_FILES = RECIPES_DIR / "files" / "alcor-service"
IGNITE_FILES = RECIPES_DIR / "files" / "ignite"
STANDIN_SOURCE = Path(__file__).parent / "fixtures" / "alcor-standin" / "StandInService.java"


@pytest.fixture(scope="module")
def standin_jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vpcmanager-0.1.0-SNAPSHOT.jar: the stand-in service, named like Alcor's VPC manager jar."""
    if shutil.which("javac") is None or shutil.which("jar") is None:
        skip_unless_ci("needs a JDK (javac, jar): apt-get install openjdk-17-jdk-headless")
    work = tmp_path_factory.mktemp("standin")
    subprocess.run(["javac", "--release", "17", "-d", str(work / "classes"), str(STANDIN_SOURCE)],
                   check=True, timeout=120)
    jar = work / "jars" / "vpcmanager-0.1.0-SNAPSHOT.jar"
    jar.parent.mkdir()
    subprocess.run(["jar", "--create", "--file", str(jar), "--main-class", "StandInService",
                    "-C", str(work / "classes"), "."], check=True, timeout=60)
    return jar


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_env(tmp_path: Path, jars: Path, **settings: str) -> dict[str, str]:
    """Environment that points the launcher at a service.env written from `settings`."""
    values = {"ALCOR_SERVICE": "vpm", "ALCOR_PORT": "9001", "ALCOR_RETRY_SECONDS": "0",
              "JAVA_OPTS": '"-Xmx64m"', "ALCOR_OVERRIDES": ""} | settings
    env_file = tmp_path / "service.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return {"PATH": os.environ["PATH"], "ALCOR_ENV_FILE": str(env_file), "ALCOR_JARS_DIR": str(jars),
            "ALCOR_RUN_LOG": str(tmp_path / "alcor-service.log")}


def _launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SERVICE_FILES / "alcor-service"), *args], env=env,
                          capture_output=True, text=True, timeout=30)


# ---------------------------------------------------------------- recipes


def test_alcor_service_and_ignite_extend_server_with_java_17() -> None:
    book = RecipeBook()
    for name, service in (("alcor-service", "alcor"), ("ignite", "ignite")):
        chain = book.chain(name)
        assert [layer.name for layer in chain.layers] == ["server", name]
        assert "openjdk-17-jre-headless" in chain.leaf.packages
        assert service in chain.services()
    assert book.get("alcor-service").needed_inputs() == ("alcor_jars", "alcor_source")
    assert book.get("ignite").needed_inputs() == ("ignite_dist", "alcor_jars")


def test_alcor_service_without_jars_names_both_ways_to_get_them(tmp_path: Path) -> None:
    builder = ImageBuilder(cache=tmp_path)
    with pytest.raises(ImageBuildError, match="--input alcor_jars=PATH"):
        builder.plan("alcor-service")
    plan = builder.plan("alcor-service", skip_missing=["alcor_jars", "alcor_source"])
    assert plan[-1][2] == ("install-jars", "build-jars")


def test_the_jars_are_part_of_the_image_hash(tmp_path: Path, standin_jar: Path) -> None:
    builder = ImageBuilder(cache=tmp_path / "cache")
    jars = tmp_path / "jars"
    shutil.copytree(standin_jar.parent, jars)
    first = builder.plan("alcor-service", inputs={"alcor_jars": jars}, skip_missing=["alcor_source"])
    (jars / "extra-0.1.0.jar").write_bytes(b"PK")
    second = builder.plan("alcor-service", inputs={"alcor_jars": jars}, skip_missing=["alcor_source"])
    assert first[0][1] == second[0][1]  # server layer unchanged
    assert first[-1][1] != second[-1][1]


# ---------------------------------------------------------------- launcher


def test_dry_run_prints_the_exact_command(tmp_path: Path, standin_jar: Path) -> None:
    overrides = tmp_path / "overrides.properties"
    overrides.write_text("ignite.host=localhost\n")
    env = _service_env(tmp_path, standin_jar.parent, ALCOR_JAR="vpcmanager-*.jar", ALCOR_PORT="9001",
                       ALCOR_OVERRIDES=str(overrides), ALCOR_EXTRA_ARGS="--debug")
    proc = _launcher(env, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == (
        f"java -Xmx64m -jar {standin_jar} --server.port=9001 "
        f"--spring.config.additional-location=file:{overrides} --debug"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ALCOR_JAR": ""}, "ALCOR_JAR is empty"),
        ({"ALCOR_JAR": "portmanager-*.jar"}, "--input alcor_jars=DIR"),
        ({"ALCOR_JAR": "*.jar"}, "2 jars match"),
        ({"ALCOR_JAR": "vpcmanager-*.jar", "ALCOR_PORT": "90x1"}, "ALCOR_PORT must be a port number"),
        ({"ALCOR_JAR": "vpcmanager-*.jar", "ALCOR_OVERRIDES": "/nonexistent.properties"},
         "/nonexistent.properties, which does not exist"),
    ],
)
def test_launcher_refuses_bad_settings_clearly(
    tmp_path: Path, standin_jar: Path, settings: dict[str, str], message: str
) -> None:
    jars = tmp_path / "jars"
    shutil.copytree(standin_jar.parent, jars)
    (jars / "common-0.1.0-SNAPSHOT.jar").write_bytes(b"PK")
    proc = _launcher(_service_env(tmp_path, jars, **settings))
    assert proc.returncode == 1
    assert message in proc.stdout
    assert message in (tmp_path / "alcor-service.log").read_text()


def test_launcher_runs_the_jar_with_port_and_overrides(tmp_path: Path, standin_jar: Path) -> None:
    """The real thing on loopback: launcher -> java -> stand-in; probe and config read back."""
    port = _free_port()
    overrides = tmp_path / "overrides.properties"
    overrides.write_text("ignite.host=localhost\nmicroservices.subnet.service.url=http://10.210.0.3:9002\n")
    env = _service_env(tmp_path, standin_jar.parent, ALCOR_JAR="vpcmanager-*.jar", ALCOR_PORT=str(port),
                       ALCOR_OVERRIDES=str(overrides))
    proc = subprocess.Popen([str(SERVICE_FILES / "alcor-service")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        probe = _wait_healthy(env, proc)
        assert probe.stdout.startswith(f"UP http://127.0.0.1:{port}/actuator/health")
        config = subprocess.run(["curl", "-fsS", f"http://127.0.0.1:{port}/standin/config"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
        assert config.splitlines() == [
            f"server.port={port}",
            "ignite.host=localhost",
            "microservices.subnet.service.url=http://10.210.0.3:9002",
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # the launcher exec'd java: the process we started was the JVM itself
    assert proc.returncode in (143, -15)


def test_a_service_alcor_would_not_start_stops_with_alcors_reason(tmp_path: Path, standin_jar: Path) -> None:
    overrides = tmp_path / "overrides.properties"
    overrides.write_text("ignite.host=10.210.0.9\n")  # Alcor's thin client takes only localhost
    env = _service_env(tmp_path, standin_jar.parent, ALCOR_JAR="vpcmanager-*.jar",
                       ALCOR_PORT=str(_free_port()), ALCOR_OVERRIDES=str(overrides))
    proc = subprocess.run([str(SERVICE_FILES / "alcor-service")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "ignite.host is '10.210.0.9', not 'localhost'; IgniteClient is null" in proc.stdout + proc.stderr


def _wait_healthy(env: dict[str, str], proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    probe = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        probe = subprocess.run([str(SERVICE_FILES / "alcor-health"), "--timeout", "1"], env=env,
                               capture_output=True, text=True, timeout=10)
        if probe.returncode == 0:
            return probe
        time.sleep(0.3)
    raise AssertionError(f"service never became healthy: {probe.stdout if probe else ''}")


def test_health_probe_reports_down_when_nothing_listens(tmp_path: Path, standin_jar: Path) -> None:
    env = _service_env(tmp_path, standin_jar.parent, ALCOR_PORT=str(_free_port()))
    probe = subprocess.run([str(SERVICE_FILES / "alcor-health"), "--timeout", "1"], env=env,
                           capture_output=True, text=True, timeout=10)
    assert probe.returncode == 1
    assert probe.stdout.startswith("DOWN http://127.0.0.1:")


# ---------------------------------------------------------------- ignite launcher


def _ignite(tmp_path: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "ignite.env"
    env_file.write_text(f'IGNITE_HOME={home}\nIGNITE_CONFIG={IGNITE_FILES / "alcor-ignite.xml"}\n'
                        'JVM_OPTS="-Xmx256m"\nIGNITE_RETRY_SECONDS=0\n')
    env = {"PATH": os.environ["PATH"], "IGNITE_ENV_FILE": str(env_file)}
    return subprocess.run([str(IGNITE_FILES / "ignite-node"), *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_ignite_without_a_distribution_says_how_to_add_one(tmp_path: Path) -> None:
    proc = _ignite(tmp_path, tmp_path / "no-ignite")
    assert proc.returncode == 1
    assert "Apache Ignite distribution missing" in proc.stdout
    assert "--input ignite_dist=PATH" in proc.stdout


def test_ignite_dry_run_uses_the_distributions_start_script(tmp_path: Path) -> None:
    home = tmp_path / "apache-ignite-bin"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "ignite.sh").write_text("#!/bin/sh\n")
    (home / "bin" / "ignite.sh").chmod(0o755)
    proc = _ignite(tmp_path, home, "--dry-run")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip() == (
        f'IGNITE_HOME={home} JVM_OPTS="-Xmx256m" {home}/bin/ignite.sh {IGNITE_FILES / "alcor-ignite.xml"}'
    )


# ---------------------------------------------------------------- e2e: the image under runit


@pytest.mark.e2e
def test_alcor_service_image_runs_the_jar_under_runit(standin_jar: Path, record_property) -> None:
    from images.builder import ImageBuilder, rootfs_bytes
    from tests.images.node_launch import launched, sh, unique_lab, wait_for

    image = ImageBuilder().build("alcor-service", skip_missing=["alcor_jars", "alcor_source"])
    record_property("alcor_service_rootfs_bytes", rootfs_bytes(image))
    env = (SERVICE_FILES / "service.env").read_text() + (
        "ALCOR_SERVICE=vpm\nALCOR_JAR=vpcmanager-*.jar\nALCOR_PORT=9001\nALCOR_RETRY_SECONDS=2\n")
    files = {
        "/opt/alcor/jars/vpcmanager-0.1.0-SNAPSHOT.jar": standin_jar,
        "/etc/alcor/service.env": env,
        "/etc/alcor/application-overrides.properties": "ignite.host=localhost\nignite.port=10800\n",
    }
    with launched(image, unique_lab("alcsv"), "vpm", files=files) as node:
        wait_for("alcor-health UP", lambda: sh(node, "alcor-health").returncode == 0, timeout=90)
        config = sh(node, "curl -fsS http://127.0.0.1:9001/standin/config").stdout.splitlines()
        assert config == ["server.port=9001", "ignite.host=localhost", "ignite.port=10800"]
        assert sh(node, "java -version 2>&1").stdout.startswith('openjdk version "17')
        # the launcher exec'd java, so runit supervises the JVM itself
        assert sh(node, "sv status alcor").stdout.startswith("run: alcor:")
        assert "java" in sh(node, "cat /proc/$(pgrep -x java)/cmdline | tr '\\0' ' '").stdout

        # a missing jar: the service fails with the message (and keeps retrying)
        sh(node, "rm /opt/alcor/jars/*.jar && sv restart alcor")
        wait_for("the missing-jar message", lambda: "--input alcor_jars=DIR" in sh(
            node, "cat /var/log/alcor/alcor-service.log").stdout, timeout=30)
        assert sh(node, "alcor-health --timeout 1").returncode == 1
