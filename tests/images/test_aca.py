"""The `aca` image: recipe chain, content hashing, the aca_source/aca_deps steps, its scripts.

Unit tests run the recipe loader, the builder's planning and the image's shell scripts on this
host. The e2e tests (`-m e2e`) build the image for real, launch it in LXD and look inside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cdk.errors import ImageBuildError
from images.aca import (
    ACA_DEPS,
    ACA_SOURCE,
    aca_build_options,
    aca_deps_problems,
    aca_source_problems,
)
from images.builder import ImageBuilder
from images.recipe import RECIPES_DIR, RecipeBook

STANDIN = Path(__file__).parent / "fixtures" / "aca-standin"
#: the agent's process (by command line: the kernel truncates process names to 15 characters)
PGREP_ACA = "pgrep -f '^/usr/local/bin/AlcorControlAgent'"
FILES = RECIPES_DIR / "files" / "aca"


def _recipes_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped recipes, to edit without touching the tree."""
    dest = tmp_path / "recipes"
    shutil.copytree(RECIPES_DIR, dest)
    return dest


def _plan(recipes: Path, tmp_path: Path, **kwargs) -> dict[str, tuple[str, tuple[str, ...]]]:
    builder = ImageBuilder(book=RecipeBook([recipes]), cache=tmp_path / "cache")
    return {layer.name: (digest, skipped) for layer, digest, skipped in builder.plan("aca", **kwargs)}


def _without_aca() -> dict:
    return {"skip_missing": aca_build_options(without_aca_binary=True).skip}


# ---------------------------------------------------------------- recipe


def test_aca_extends_server_and_declares_its_services() -> None:
    chain = RecipeBook().chain("aca")
    assert [layer.name for layer in chain.layers] == ["server", "aca"]
    services = chain.services()
    assert {"rsyslog", "ovsdb-server", "ovs-vswitchd", "aca"} <= set(services)
    assert services["aca"] == "exec /usr/local/sbin/aca-run"
    packages = set(chain.leaf.packages)
    # run time: OVS and syslog; build time: the toolchain and the libraries ACA's CMake looks for
    assert {"openvswitch-switch", "rsyslog", "cmake", "libgrpc++-dev", "protobuf-compiler-grpc",
            "librdkafka-dev", "libevent-dev", "uuid-dev", "libgtest-dev"} <= packages


def test_aca_build_steps_need_their_inputs_in_order() -> None:
    steps = RecipeBook().get("aca").steps
    needs = [(s.name, s.needs) for s in steps if s.needs]
    # third-party libraries first: ACA's CMake looks for them at configure time
    assert needs == [("aca-third-party", ACA_DEPS), ("build-aca", ACA_SOURCE)]


def test_aca_scripts_are_executable() -> None:
    for name in ("aca-run", "aca-ovs-bridges", "build-aca", "build-aca-deps"):
        assert os.access(FILES / name, os.X_OK), name


def test_a_changed_aca_file_changes_the_aca_hash_only(tmp_path: Path) -> None:
    recipes = _recipes_copy(tmp_path)
    before = _plan(recipes, tmp_path, **_without_aca())
    env = recipes / "files" / "aca" / "aca.env"
    env.write_text(env.read_text().replace("ACA_GRPC_PORT=50001", "ACA_GRPC_PORT=50011"))
    after = _plan(recipes, tmp_path, **_without_aca())
    assert after["server"] == before["server"]
    assert after["aca"][0] != before["aca"][0]


def test_a_changed_package_list_changes_the_aca_hash(tmp_path: Path) -> None:
    recipes = _recipes_copy(tmp_path)
    before = _plan(recipes, tmp_path, **_without_aca())
    recipe = recipes / "aca.yaml"
    recipe.write_text(recipe.read_text().replace("  - libboost-dev\n", "  - libboost-dev\n  - jq\n"))
    assert _plan(recipes, tmp_path, **_without_aca())["aca"][0] != before["aca"][0]


# ---------------------------------------------------------------- needs / skip


def test_building_without_inputs_names_the_missing_input_and_flag(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError) as err:
        _plan(RECIPES_DIR, tmp_path)
    text = str(err.value)
    assert "aca-third-party" in text and "aca_deps" in text
    assert "--input aca_deps=PATH" in text


def test_without_aca_binary_skips_both_build_steps(tmp_path: Path) -> None:
    plan = _plan(RECIPES_DIR, tmp_path, **_without_aca())
    assert plan["aca"][1] == ("aca-third-party", "build-aca")
    assert plan["server"][1] == ()


def test_aca_source_alone_still_asks_for_the_third_party_input(tmp_path: Path) -> None:
    options = aca_build_options(aca_source=STANDIN)
    with pytest.raises(ImageBuildError, match="aca_deps"):
        _plan(RECIPES_DIR, tmp_path, inputs=options.inputs)


def test_the_aca_source_content_is_part_of_the_hash(tmp_path: Path) -> None:
    source = tmp_path / "aca-standin"
    shutil.copytree(STANDIN, source)
    kwargs = {"inputs": {ACA_SOURCE: source}, "skip_missing": [ACA_DEPS]}
    first = _plan(RECIPES_DIR, tmp_path, **kwargs)
    assert first["aca"][1] == ("aca-third-party",)
    main = source / "src" / "aca_main.cpp"
    main.write_text(main.read_text() + "\n// changed\n")
    second = _plan(RECIPES_DIR, tmp_path, **kwargs)
    assert second["aca"][0] != first["aca"][0]
    assert second["server"] == first["server"]
    assert second["aca"][0] != _plan(RECIPES_DIR, tmp_path, **_without_aca())["aca"][0]


def test_without_aca_binary_contradicts_given_inputs() -> None:
    with pytest.raises(ImageBuildError, match="cannot be combined"):
        aca_build_options(aca_source=STANDIN, without_aca_binary=True)


# ---------------------------------------------------------------- checkout checks


def test_the_standin_passes_the_checkout_checks() -> None:
    assert aca_source_problems(STANDIN) == []
    assert aca_build_options(aca_source=STANDIN).inputs == {ACA_SOURCE: STANDIN.resolve()}


def test_a_checkout_without_its_submodule_is_refused_before_building(tmp_path: Path) -> None:
    source = tmp_path / "aca"
    shutil.copytree(STANDIN, source)
    shutil.rmtree(source / "alcor")
    with pytest.raises(ImageBuildError) as err:
        aca_build_options(aca_source=source)
    assert "--aca-source" in str(err.value)
    assert "git submodule update --init" in str(err.value)


def test_a_directory_that_is_not_aca_is_refused(tmp_path: Path) -> None:
    (tmp_path / "CMakeLists.txt").write_text("project(Other)\n")
    problems = aca_source_problems(tmp_path)
    assert any("project(AlcorControlAgent)" in p for p in problems)


def test_aca_deps_lists_every_missing_component(tmp_path: Path) -> None:
    (tmp_path / "cppkafka").mkdir()
    (tmp_path / "pulsar").mkdir()
    problems = "\n".join(aca_deps_problems(tmp_path))
    assert "marl: missing" in problems and "openvswitch: missing" in problems
    assert "no apache-pulsar-client*.deb" in problems
    assert "cppkafka: missing" not in problems


# ---------------------------------------------------------------- the image's scripts, run here


def _run_script(name: str, env_text: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "aca.env"
    env_file.write_text(env_text)
    env = {"PATH": os.environ["PATH"], "ACA_ENV_FILE": str(env_file),
           "ACA_RUN_LOG": str(tmp_path / "run.log")}
    return subprocess.run([str(FILES / name), *args], env=env, capture_output=True, text=True, timeout=30)


def test_aca_run_passes_the_env_file_as_aca_flags(tmp_path: Path) -> None:
    env_text = (FILES / "aca.env").read_text()
    env_text += "ACA_NCM_ADDRESS=10.213.0.5\nACA_NCM_PORT=9014\nACA_DEBUG=true\nACA_PULSAR_TOPIC=Host-ts-7\n"
    proc = _run_script("aca-run", env_text, tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "/usr/local/bin/AlcorControlAgent -a 10.213.0.5 -p 9014 -h Host-ts-7 -s 50001 -d"
    )


def test_aca_run_leaves_out_empty_settings(tmp_path: Path) -> None:
    proc = _run_script("aca-run", (FILES / "aca.env").read_text(), tmp_path, "--dry-run")
    assert proc.stdout.strip() == "/usr/local/bin/AlcorControlAgent -s 50001"


def test_bridges_get_the_datapath_this_host_supports(tmp_path: Path) -> None:
    proc = _run_script("aca-ovs-bridges", "ACA_OVS_DATAPATH=auto\n", tmp_path, "--print-datapath")
    expected = "system" if Path("/sys/module/openvswitch").is_dir() else "netdev"
    assert proc.stdout.strip() == expected
    forced = _run_script("aca-ovs-bridges", "ACA_OVS_DATAPATH=system\n", tmp_path, "--print-datapath")
    assert forced.stdout.strip() == "system"


def test_a_bad_datapath_setting_is_refused(tmp_path: Path) -> None:
    proc = _run_script("aca-ovs-bridges", "ACA_OVS_DATAPATH=kernel\n", tmp_path, "--print-datapath")
    assert proc.returncode == 2
    assert "must be auto, netdev or system (got 'kernel')" in proc.stderr


# ---------------------------------------------------------------- e2e: built, launched, looked at


@pytest.fixture(scope="module")
def aca_without_binary():  # -> BuiltImage
    from images.builder import ImageBuilder

    return ImageBuilder().build("aca", skip_missing=aca_build_options(without_aca_binary=True).skip)


@pytest.mark.e2e
def test_aca_image_without_binary_runs_ovs_and_says_aca_is_missing(
    aca_without_binary, record_property
) -> None:
    from images.builder import rootfs_bytes
    from tests.images.node_launch import launched, sh, unique_lab, wait_for

    image = aca_without_binary
    assert image.skipped == ("aca-third-party", "build-aca")
    assert image.properties["distrilab.skipped"] == "aca-third-party,build-aca"
    size = rootfs_bytes(image)
    record_property("aca_rootfs_bytes", size)
    print(f"aca image without ACA: rootfs {size / 1e6:.0f} MB")
    assert not (image.rootfs / "usr/local/bin/AlcorControlAgent").exists()

    with launched(image, unique_lab("acanb"), "aca") as node:
        expected = "system" if Path("/sys/module/openvswitch").is_dir() else "netdev"
        for bridge in ("br-int", "br-tun"):
            wait_for(f"{bridge} with datapath_type {expected}", lambda b=bridge: sh(
                node, f"ovs-vsctl --timeout=2 get bridge {b} datapath_type").stdout.strip() == expected)
        ports = sh(node, "ovs-vsctl list-ports br-int; ovs-vsctl list-ports br-tun").stdout.split()
        assert sorted(ports) == ["patch-int", "patch-tun", "vxlan-generic"]
        assert sh(node, "ovs-vsctl get interface vxlan-generic ofport").stdout.strip() == "100"

        log = "/var/log/aca/aca-run.log"
        wait_for("the ACA service's missing-binary message",
                 lambda: "ACA binary missing" in sh(node, f"cat {log}").stdout)
        message = sh(node, f"tail -n 1 {log}").stdout
        assert "/usr/local/bin/AlcorControlAgent does not exist" in message
        assert "distrilab image build aca --aca-source PATH" in message
        # the same line reaches syslog (where ACA itself logs, facility local1)
        wait_for("the message in /var/log/aca.log",
                 lambda: "ACA binary missing" in sh(node, "cat /var/log/aca.log").stdout)

        status = sh(node, "sv status /etc/service/*").stdout
        for service in ("ovsdb-server", "ovs-vswitchd", "rsyslog"):
            assert f"run: /etc/service/{service}:" in status, status
        assert "/etc/service/aca:" in status
        assert sh(node, "pgrep -x rsyslogd").returncode == 0
        # the boot hook brings lo up: ACA talks to its OpenFlow controller on 127.0.0.1
        assert "UP" in sh(node, "ip -br link show lo").stdout
        assert sh(node, PGREP_ACA).returncode != 0
        # OVS keeps running while the ACA service fails
        assert sh(node, "pgrep -x ovs-vswitchd && pgrep -x ovsdb-server").returncode == 0


@pytest.mark.e2e
def test_aca_image_builds_the_checkout_and_supervises_the_binary() -> None:
    from images.builder import ImageBuilder
    from tests.images.node_launch import launched, sh, unique_lab, wait_for

    options = aca_build_options(aca_source=STANDIN)
    image = ImageBuilder().build("aca", inputs=options.inputs, skip_missing=[ACA_DEPS])
    assert image.skipped == ("aca-third-party",)
    binary = image.rootfs / "usr/local/bin/AlcorControlAgent"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert "sha256=" in (image.rootfs / "etc/aca/build-info").read_text()
    assert not (image.rootfs / "var/local/src/alcor-control-agent").exists()  # build tree removed

    env = (FILES / "aca.env").read_text() + "ACA_NCM_ADDRESS=127.0.0.1\nACA_NCM_PORT=50002\nACA_DEBUG=true\n"
    with launched(image, unique_lab("acasi"), "aca", files={"/etc/aca/aca.env": env}) as node:
        wait_for("AlcorControlAgent running", lambda: sh(node, PGREP_ACA).returncode == 0)
        args = sh(node, f"cat /proc/$({PGREP_ACA})/cmdline | tr '\\0' ' '").stdout.strip()
        assert args == "/usr/local/bin/AlcorControlAgent -a 127.0.0.1 -p 50002 -s 50001 -d"
        wait_for("gRPC port 50001 listening", lambda: ":50001 " in sh(node, "ss -Hltn").stdout)
        wait_for("ACA's syslog line", lambda: "stand-in started: ncm=127.0.0.1:50002 grpc_port=50001"
                 in sh(node, "cat /var/log/aca.log").stdout)
        assert sh(node, "ovs-vsctl br-exists br-int && ovs-vsctl br-exists br-tun").returncode == 0

        # runit restarts ACA when it dies
        first = sh(node, PGREP_ACA).stdout.strip()
        sh(node, f"kill -9 {first}")
        wait_for("ACA restarted with a new pid", lambda: sh(node, PGREP_ACA).stdout.strip()
                 not in ("", first), timeout=30)
